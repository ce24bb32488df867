using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using HyperNF.Control;

namespace HyperNF.Tests.Control;

/// <summary>A short temporary directory under /tmp (Unix socket paths are limited to 107 bytes).</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("hnf-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A raw protocol client: bytes in, lines out, for bad-input tests.</summary>
internal sealed class RawClient : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly LineReader _reader;

    public RawClient(string path)
    {
        _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _socket.Connect(new UnixDomainSocketEndPoint(path));
        _stream = new NetworkStream(_socket, ownsSocket: true);
        _reader = new LineReader(_stream, 64 << 20);
    }

    public void Send(byte[] bytes) => _stream.Write(bytes);

    public void SendLine(string line) => Send(Encoding.UTF8.GetBytes(line + "\n"));

    /// <summary>The next line as JSON, or null when the daemon closed the connection.</summary>
    public JsonElement? Read(int timeoutMs = 20_000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        var line = _reader.ReadLineAsync(cts.Token).AsTask().GetAwaiter().GetResult();
        if (line is null) return null;
        using var doc = JsonDocument.Parse(line.Value);
        return doc.RootElement.Clone();
    }

    public JsonElement Ask(string line)
    {
        SendLine(line);
        return Read() ?? throw new IOException($"the daemon closed the connection after: {line}");
    }

    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    public void Dispose() => _stream.Dispose();
}

internal static class Answers
{
    public static bool Ok(JsonElement a) => a.GetProperty("ok").GetBoolean();

    public static string Error(JsonElement a)
    {
        if (Ok(a)) throw new Xunit.Sdk.XunitException($"expected an error, got {a.GetRawText()}");
        return a.GetProperty("error").GetString()!;
    }

    public static string Code(JsonElement a) => a.GetProperty("code").GetString()!;

    public static JsonElement Result(JsonElement a)
    {
        if (!Ok(a)) throw new Xunit.Sdk.XunitException($"expected ok, got {a.GetRawText()}");
        return a.GetProperty("result");
    }
}

/// <summary>Runs the real CLI (<c>dotnet HyperNF.Cli.dll ...</c>) built next to the tests.</summary>
internal static partial class Cli
{
    /// <summary>
    /// The CLI the test project builds through its ProjectReference (ReferenceOutputAssembly=false):
    /// src/HyperNF.Cli/bin/&lt;Configuration&gt;/&lt;tfm&gt;/HyperNF.Cli.dll, found from this assembly's own
    /// bin/&lt;Configuration&gt;/&lt;tfm&gt; folder.
    /// </summary>
    /// <summary>The repository root (the folder with HyperNF.slnx) above the test assembly.</summary>
    public static string RepoRoot { get; } = FindRoot();

    public static string Dll { get; } = FindDll();

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (System.IO.File.Exists(System.IO.Path.Combine(d.FullName, "HyperNF.slnx"))) return d.FullName;
        throw new DirectoryNotFoundException($"no HyperNF.slnx above {AppContext.BaseDirectory}");
    }

    private static string FindDll()
    {
        var here = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
        string tfm = here.Name, configuration = here.Parent!.Name;
        string dll = System.IO.Path.Combine(RepoRoot, "src", "HyperNF.Cli", "bin", configuration, tfm, "HyperNF.Cli.dll");
        return System.IO.File.Exists(dll)
            ? dll
            : throw new FileNotFoundException($"the CLI is not built at {dll}; build tests/HyperNF.Tests (it references src/HyperNF.Cli)");
    }

    public sealed record Result(int Exit, string Out, string Err)
    {
        public override string ToString() => $"exit {Exit}\nstdout:\n{Out}\nstderr:\n{Err}";
    }

    public static Result Run(string socket, params string[] args) => RunProcess(Start(socket, args), $"hypernf {string.Join(' ', args)}");

    /// <summary>Runs a process to its end (at most 60 s) and collects its output.</summary>
    public static Result RunProcess(ProcessStartInfo psi, string what)
    {
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            throw new TimeoutException($"{what} did not finish in 60 s");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static ProcessStartInfo Start(string socket, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Dll);
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment[ControlProtocol.SocketEnvironmentVariable] = socket;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return psi;
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string existing, string created);

    /// <summary>
    /// Leaves a socket file at <paramref name="path"/> that nobody listens on, as a killed daemon
    /// does (.NET unlinks a bound socket's file on Dispose, so the file is hard-linked first).
    /// </summary>
    public static void MakeStaleSocket(string path)
    {
        string tmp = path + ".bind";
        using (var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
        {
            s.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(tmp));
            if (Link(tmp, path) != 0) throw new IOException($"link({tmp}, {path}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
        if (System.IO.File.Exists(tmp)) System.IO.File.Delete(tmp);
    }

    public const int SIGINT = 2;
    public const int SIGTERM = 15;
    public const int SIGKILL = 9;

    /// <summary>Sends <paramref name="signal"/> to one process we started, by its id.</summary>
    public static void Signal(Process p, int signal)
    {
        if (p.HasExited) return;
        if (Kill(p.Id, signal) != 0) throw new IOException($"kill({p.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }
}

/// <summary>A <c>hypernf daemon</c> child process on a socket in a temporary directory.</summary>
internal sealed class DaemonProcess : IDisposable
{
    private readonly StringBuilder _err = new();
    public Process Process { get; }
    public string Socket { get; }

    public DaemonProcess(string socket, bool waitReady = true, params string[] extraArgs)
        : this(socket, Cli.Start(socket, ["daemon", "--socket", socket, .. extraArgs]), waitReady)
    {
    }

    /// <summary>A daemon started by <paramref name="psi"/> (e.g. <see cref="Cli.Start"/> wrapped in prlimit).</summary>
    public DaemonProcess(string socket, ProcessStartInfo psi, bool waitReady = true)
    {
        Socket = socket;
        Process = Process.Start(psi)!;
        Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        Process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        Process.BeginErrorReadLine();
        Process.BeginOutputReadLine();
        if (waitReady) WaitReady();
    }

    public string Log { get { lock (_err) return _err.ToString(); } }

    public void WaitReady()
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (Process.HasExited) throw new InvalidOperationException($"the daemon exited with {Process.ExitCode}: {Log}");
            try
            {
                using var c = ControlClient.Connect(Socket, TimeSpan.FromSeconds(2));
                c.Call("hello");
                return;
            }
            catch (ControlUnavailableException) when (DateTime.UtcNow < until)
            {
                Thread.Sleep(50);
            }
        }
    }

    public int WaitExit(int timeoutMs = 30_000)
    {
        if (!Process.WaitForExit(timeoutMs)) throw new TimeoutException($"the daemon (pid {Process.Id}) did not exit in {timeoutMs} ms: {Log}");
        Process.WaitForExit(); // flush the output handlers
        return Process.ExitCode;
    }

    public void Dispose()
    {
        try
        {
            if (!Process.HasExited)
            {
                Cli.Signal(Process, Cli.SIGKILL);
                Process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        Process.Dispose();
    }
}
