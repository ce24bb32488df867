using System.Net.Sockets;
using System.Text.Json;

namespace HyperNF.Control;

/// <summary>
/// A connection to <c>hypernf daemon</c>: sends requests, reads answers
/// (<see cref="ControlProtocol"/>). Not thread-safe: one request at a time per client.
/// </summary>
public sealed class ControlClient : IDisposable
{
    private readonly NetworkStream _stream;
    private readonly LineReader _reader;
    private long _nextId;

    public string SocketPath { get; }

    private ControlClient(Socket socket, string path)
    {
        SocketPath = path;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new LineReader(_stream, ControlProtocol.MaxResponseBytes);
    }

    /// <summary>Connects to the daemon at <paramref name="socketPath"/>.</summary>
    /// <exception cref="ControlUnavailableException">No daemon there, with what to do about it.</exception>
    public static ControlClient Connect(string socketPath, TimeSpan? timeout = null)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
            s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token).AsTask().GetAwaiter().GetResult();
            return new ControlClient(s, socketPath);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ArgumentException)
        {
            s.Dispose();
            throw new ControlUnavailableException(Explain(socketPath, e));
        }
    }

    private static string Explain(string path, Exception e)
    {
        const string Start = "start one with 'hypernf daemon'";
        string which = $" (or point --socket or {ControlProtocol.SocketEnvironmentVariable} at a running one)";
        if (e is OperationCanceledException) return $"the daemon at {path} did not accept the connection in time; it may be overloaded or hung";
        if (e is ArgumentException) return $"{path} cannot be a Unix socket path: {e.Message}";
        var se = (SocketException)e;
        return se.SocketErrorCode switch
        {
            SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported when !File.Exists(path) && !Directory.Exists(path) =>
                $"no hypernf daemon at {path}: the socket does not exist; {Start}{which}",
            SocketError.ConnectionRefused => $"no hypernf daemon is listening at {path} (a stale socket, or not a socket); {Start}",
            SocketError.AccessDenied => $"permission denied on {path}: the daemon's socket is owner-only (mode 0600); run as its owner",
            _ when !File.Exists(path) => $"no hypernf daemon at {path}: the socket does not exist; {Start}{which}",
            _ => $"cannot connect to the daemon at {path}: {se.Message}",
        };
    }

    /// <summary>Sends a request and returns its <c>result</c>.</summary>
    /// <exception cref="ControlException">The daemon refused it (its error message and code).</exception>
    public JsonElement Call(string op, object? args = null, TimeSpan? timeout = null) =>
        Stream(op, args, null, CancellationToken.None, timeout ?? TimeSpan.FromMinutes(2));

    /// <summary>Sends a request and returns its result as <typeparamref name="T"/>.</summary>
    public T Call<T>(string op, object? args = null) =>
        Call(op, args).Deserialize<T>(ControlProtocol.Json) ?? throw new ControlException(ControlErrorCodes.Internal, $"{op}: empty answer");

    /// <summary>
    /// Sends a request whose answer may be preceded by events (top, pkt-gen); each event is
    /// passed to <paramref name="onEvent"/>. When <paramref name="stop"/> fires, a stop
    /// request is sent and the final answer still read.
    /// </summary>
    public JsonElement Stream(string op, object? args, Action<string, JsonElement>? onEvent, CancellationToken stop, TimeSpan? timeout = null)
    {
        long id = ++_nextId;
        Write(ControlProtocol.Request(op, args, id));
        using var reg = stop.Register(() =>
        {
            try { Write(ControlProtocol.Request("stop", null, -id)); } catch (Exception) { }
        });
        while (true)
        {
            using var cts = new CancellationTokenSource();
            if (timeout is { } t) cts.CancelAfter(t);
            ReadOnlyMemory<byte>? line;
            try
            {
                line = _reader.ReadLineAsync(cts.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                throw new ControlException(ControlErrorCodes.Busy, $"the daemon did not answer {op} within {timeout!.Value.TotalSeconds:F0} s");
            }
            catch (IOException e)
            {
                throw new ControlUnavailableException($"the daemon closed the connection during {op}: {e.Message}");
            }
            if (line is null) throw new ControlUnavailableException($"the daemon closed the connection during {op} (did it stop?)");
            JsonElement msg;
            try
            {
                using var doc = JsonDocument.Parse(line.Value);
                msg = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new ControlException(ControlErrorCodes.Internal, $"the daemon sent something that is not JSON: {e.Message}");
            }
            if (msg.ValueKind != JsonValueKind.Object) throw new ControlException(ControlErrorCodes.Internal, "the daemon sent a line that is not an object");
            if (msg.TryGetProperty("event", out var ev))
            {
                onEvent?.Invoke(ev.GetString() ?? "", msg.TryGetProperty("data", out var data) ? data : default);
                continue;
            }
            if (!msg.TryGetProperty("ok", out var ok)) throw new ControlException(ControlErrorCodes.Internal, "the daemon sent a line with neither ok nor event");
            // An answer to another request (a refused stop) carries another id: skip it.
            if (msg.TryGetProperty("id", out var rid) && rid.ValueKind == JsonValueKind.Number && rid.GetInt64() != id) continue;
            if (ok.ValueKind == JsonValueKind.True)
                return msg.TryGetProperty("result", out var result) ? result : default;
            string error = msg.TryGetProperty("error", out var e2) ? e2.GetString() ?? "error" : "error";
            string code = msg.TryGetProperty("code", out var c2) ? c2.GetString() ?? ControlErrorCodes.Internal : ControlErrorCodes.Internal;
            throw new ControlException(code, error);
        }
    }

    private readonly object _writeGate = new();

    private void Write(byte[] line)
    {
        lock (_writeGate)
        {
            try
            {
                _stream.Write(line);
            }
            catch (IOException e)
            {
                throw new ControlUnavailableException($"the daemon closed the connection: {e.Message}");
            }
        }
    }

    public void Dispose() => _stream.Dispose();
}
