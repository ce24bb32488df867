using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;

namespace HyperNF.Control;

/// <summary>
/// Attaches host network interfaces to VALE bridges (vale-ctl -a/-d). Implemented outside
/// the daemon (AF_PACKET in src/HyperNF/Ports); the daemon only calls it and remembers what
/// it attached so it can detach everything at shutdown.
/// </summary>
public interface IInterfaceAttacher
{
    /// <summary>Attaches interface <paramref name="interfaceName"/> to <paramref name="bridge"/> as a port of the same name; throws with a one-line reason on failure.</summary>
    void Attach(Bridge bridge, string interfaceName);
    /// <summary>Detaches the interface port <paramref name="portName"/> from <paramref name="bridge"/>.</summary>
    void Detach(Bridge bridge, string portName);
    /// <summary>What <c>vale-ctl -l</c> shows of an attached interface, or null when it is not one of ours.</summary>
    InterfacePortInfo? Describe(Bridge bridge, string portName) => null;
}

public sealed record ControlDaemonOptions
{
    public required string SocketPath { get; init; }
    /// <summary>
    /// Connections served at once; one more is answered "busy" and closed. Lowered at start so
    /// clients can take at most half of the file descriptors the process may open (RLIMIT_NOFILE,
    /// less a reserve): domains, interfaces and the accept of the next "busy" answer need theirs.
    /// </summary>
    public int MaxClients { get; init; } = 4096;
    /// <summary>Changes (create, destroy, set ...) waiting for the change thread; one more is answered "busy".</summary>
    public int MaxQueuedChanges { get; init; } = 1024;
    /// <summary>
    /// Bytes all connections together may hold in unfinished request lines beyond the first
    /// 64 KiB of each (<see cref="LineBudget"/>); a connection whose line would go past it is
    /// answered "busy" and closed.
    /// </summary>
    public long MaxBufferedRequestBytes { get; init; } = 64L << 20;
    /// <summary>A connection with no request for this long is closed.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>A request line must be complete this long after its first byte arrived.</summary>
    public TimeSpan LineTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>A client that does not read its answer for this long is dropped.</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>CPU sampling interval for list's cpu%.</summary>
    public TimeSpan SampleInterval { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Where the daemon writes its log lines (stderr in the CLI); null: silent.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>The daemon cannot start: another daemon holds the socket, the path is not usable ...</summary>
public sealed class DaemonStartException(string message) : Exception(message);

/// <summary>
/// <c>hypernf daemon</c>: holds a <see cref="Host"/> (bridges, ports, domains) and serves the
/// control protocol (<see cref="ControlProtocol"/>) on a Unix socket (mode 0600).
/// </summary>
/// <remarks>
/// Connections are served with async socket I/O, so a slow or hostile client only holds its
/// own connection. Reads (list, stats, get ...) run on the connection's continuation;
/// changes (create, destroy, set ...) run one at a time on a dedicated change thread, so
/// they never interleave, and a change's parsing (a config, a CPU list) is done before it is
/// queued, so no request holds the change thread with work of its own size. One daemon per
/// socket path: a flock on <c>PATH.lock</c>, a file only the daemon's user can open, is the
/// instance lock (<see cref="InstanceLock"/>; released by the kernel when the process dies), and
/// a socket file left by a killed daemon is detected (nobody accepts) and replaced.
/// </remarks>
public sealed partial class ControlDaemon : IDisposable
{
    private readonly Host _host;
    private readonly ControlDaemonOptions _options;
    private readonly string _path;
    private readonly CancellationTokenSource _cts = new();
    private readonly ManualResetEventSlim _stopRequested = new(false);
    private readonly BlockingCollection<Action> _changes = new();
    private readonly ConcurrentDictionary<long, Task> _connections = new();
    private readonly object _lifecycle = new();
    private readonly long _startedAt = Stopwatch.GetTimestamp();
    private InstanceLock? _lock;
    private Socket? _listener;
    private Thread? _changeThread;
    private Thread? _sampler;
    private Task? _acceptLoop;
    private long _nextConnection;
    private int _clients;
    private int _maxClients;
    private readonly LineBudget _lineBudget;
    private long _lastAcceptLog;
    private volatile bool _started;
    private volatile bool _stopping;
    private bool _stopped;

    public ControlDaemon(Host host, ControlDaemonOptions options)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(options);
        _host = host;
        _options = options;
        _path = Path.GetFullPath(options.SocketPath);
        _sampleMs = (int)Math.Clamp(options.SampleInterval.TotalMilliseconds, 100, 60_000);
        _lineBudget = new LineBudget(options.MaxBufferedRequestBytes);
    }

    public Host Host => _host;
    /// <summary>The socket's absolute path.</summary>
    public string SocketPath => _path;
    /// <summary>Attaches physical interfaces for vale-ctl -a/-d; null: those are refused with a clear message.</summary>
    public IInterfaceAttacher? Attacher { get; set; }
    /// <summary>Connections served at once: <see cref="ControlDaemonOptions.MaxClients"/>, or fewer when the file-descriptor limit is low.</summary>
    public int MaxClients => _maxClients;

    /// <summary>Descriptors kept for everything but client connections (the runtime itself holds about 70).</summary>
    private const int ReservedDescriptors = 256;

    /// <summary>Bytes unfinished request lines now hold beyond their first 64 KiB (see <see cref="ControlDaemonOptions.MaxBufferedRequestBytes"/>).</summary>
    public long BufferedRequestBytes => _lineBudget.Used;

    /// <summary>Connections being served.</summary>
    public int ClientCount => Volatile.Read(ref _clients);
    public bool IsStopping => _stopping;

    private void Log(string line) => _options.Log?.Invoke(line);

    /// <summary>Takes the socket and starts serving.</summary>
    /// <exception cref="DaemonStartException">Another daemon serves this path, or the path cannot be used.</exception>
    public void Start()
    {
        lock (_lifecycle)
        {
            if (_started) throw new InvalidOperationException("the daemon is already started");
            if (_stopped) throw new InvalidOperationException("the daemon was stopped; create a new one");
            _started = true;
        }
        try
        {
            TakeSocket();
        }
        catch
        {
            _lock?.Dispose();
            _listener?.Dispose();
            lock (_lifecycle) _stopped = true;
            throw;
        }
        long fdLimit = SocketFiles.OpenFileLimit();
        int byLimit = (int)Math.Clamp((fdLimit - ReservedDescriptors) / 2, 16, int.MaxValue);
        _maxClients = Math.Min(Math.Max(1, _options.MaxClients), byLimit);
        if (_maxClients < _options.MaxClients)
            Log($"serving at most {_maxClients} connections at once: the open-file limit ({fdLimit}) keeps the rest for domains and interfaces");
        _changeThread = new Thread(ChangeThreadMain) { IsBackground = true, Name = "hypernf-ctl-changes" };
        _changeThread.Start();
        _sampler = new Thread(SamplerMain) { IsBackground = true, Name = "hypernf-ctl-sampler" };
        _sampler.Start();
        _acceptLoop = Task.Run(AcceptLoopAsync);
        Log($"listening on {_path} (pid {Environment.ProcessId}, protocol {ControlProtocol.Version})");
    }

    private void TakeSocket()
    {
        if (Encoding.UTF8.GetByteCount(_path) > 107)
            throw new DaemonStartException($"socket path {_path} is too long for a Unix socket (at most 107 bytes); choose a shorter one with --socket");
        string dir = Path.GetDirectoryName(_path) ?? "/";
        try
        {
            if (!Directory.Exists(dir))
                Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                                               UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DaemonStartException($"cannot create the socket's directory {dir}: {e.Message}");
        }

        // The instance lock: a flock on PATH.lock, a file only this user can open, in a directory
        // nobody else can replace files in (InstanceLock). The kernel frees it with the process.
        try
        {
            _lock = InstanceLock.Acquire(LockPath(_path));
        }
        catch (InstanceLockException e)
        {
            throw new DaemonStartException(e.Refusal == InstanceLockRefusal.Held
                ? AlreadyRunning(e.HolderPid)
                : $"cannot take the daemon's lock for {_path}: {e.Message}");
        }

        switch (SocketFiles.Stat(_path, out _, out uint owner))
        {
            case SocketFiles.Kind.Missing:
                break;
            case SocketFiles.Kind.Socket:
                if (owner != SocketFiles.GetEuid())
                    throw new DaemonStartException(
                        $"{_path} is a socket of {InstanceLock.DescribeUid(owner)}, not of this daemon's user ({InstanceLock.DescribeUid(SocketFiles.GetEuid())}); " +
                        "it is not ours to replace: stop what serves it, or choose another socket with --socket");
                // We hold the lock, so no daemon of this build serves it; one of an older build
                // (which locked differently) or something else might: ask before removing.
                if (Probe(_path, out _)) throw new DaemonStartException(AlreadyRunning());
                File.Delete(_path);
                Log($"removed stale socket {_path} (left by a daemon that did not shut down; nobody was listening)");
                break;
            default:
                throw new DaemonStartException($"{_path} exists and is not a socket; remove it or choose another path with --socket");
        }

        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            SocketFiles.WithUmask(0x7F /* 0177: the socket is created 0600 */, () => _listener.Bind(new UnixDomainSocketEndPoint(_path)));
            File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            _listener.Listen(1024);
        }
        catch (SocketException e)
        {
            throw new DaemonStartException(e.SocketErrorCode == SocketError.AddressAlreadyInUse
                ? AlreadyRunning()
                : $"cannot listen on {_path}: {e.Message}");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DaemonStartException($"cannot listen on {_path}: {e.Message}");
        }
    }

    /// <summary>The instance lock beside the socket: <c>PATH.lock</c>.</summary>
    public static string LockPath(string socketPath) => Path.GetFullPath(socketPath) + ".lock";

    /// <param name="lockPid">The pid the lock's holder wrote, used when the socket does not answer.</param>
    private string AlreadyRunning(int lockPid = 0)
    {
        if (!Probe(_path, out int pid) || pid <= 0) pid = lockPid;
        string who = pid > 0 ? $" (pid {pid})" : "";
        string stop = pid > 0 ? $"stop it first (kill -TERM {pid})" : "stop it first";
        return $"another hypernf daemon{who} is already running on {_path}; {stop} or choose another socket with --socket or {ControlProtocol.SocketEnvironmentVariable}";
    }

    /// <summary>True when something accepts on <paramref name="path"/>; <paramref name="pid"/> is the daemon's if it answered hello.</summary>
    private static bool Probe(string path, out int pid)
    {
        pid = 0;
        try
        {
            using var client = ControlClient.Connect(path, TimeSpan.FromSeconds(1));
            try
            {
                var hello = client.Call("hello", timeout: TimeSpan.FromSeconds(2)).Deserialize<HelloResult>(ControlProtocol.Json);
                pid = hello?.Pid ?? 0;
            }
            catch (Exception)
            {
                // Something listens but does not speak the protocol: still "in use".
            }
            return true;
        }
        catch (ControlUnavailableException)
        {
            return false;
        }
    }

    /// <summary>Asks the daemon to stop (signal handlers call this); <see cref="WaitForStopRequest"/> returns.</summary>
    public void RequestStop() => _stopRequested.Set();

    /// <summary>Blocks until <see cref="RequestStop"/> or <see cref="Stop"/>.</summary>
    public bool WaitForStopRequest(TimeSpan? timeout = null) => _stopRequested.Wait(timeout ?? Timeout.InfiniteTimeSpan);

    /// <summary>
    /// Stops serving and cleans up: closes the socket and removes its file, ends every
    /// connection, destroys every domain (cgroups released by the host's CPU policy), detaches
    /// the interfaces it attached and removes the empty bridges.
    /// </summary>
    public void Stop()
    {
        lock (_lifecycle)
        {
            if (_stopped) return;
            _stopped = true;
        }
        _stopping = true;
        _stopRequested.Set();
        _cts.Cancel();
        try { _listener?.Dispose(); } catch (Exception) { }
        try
        {
            if (_listener is not null && SocketFiles.KindOf(_path) == SocketFiles.Kind.Socket) File.Delete(_path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log($"could not remove {_path}: {e.Message}");
        }
        try { _acceptLoop?.Wait(TimeSpan.FromSeconds(2)); } catch (AggregateException) { }
        var conns = _connections.Values.ToArray();
        try { Task.WaitAll(conns, TimeSpan.FromSeconds(3)); } catch (AggregateException) { }
        StopNetmapConnections();
        _changes.CompleteAdding();
        _changeThread?.Join(TimeSpan.FromSeconds(30));
        _sampler?.Join(TimeSpan.FromSeconds(5));

        int destroyed = 0;
        foreach (var d in _host.Domains)
        {
            try
            {
                if (_host.Destroy(d)) destroyed++;
                else Log($"domain '{d.Name}' (id {d.Id}) did not stop in time; its memory is held until its vCPUs exit");
            }
            catch (Exception e)
            {
                Log($"destroying domain '{d.Name}': {e.Message}");
            }
        }
        DisposePersistentPorts(); // their users were destroyed above
        int detached = 0;
        foreach (var ((bridge, port), _) in _interfaces.ToArray())
        {
            try
            {
                if (_host.Switch.FindBridge(bridge) is { } b && Attacher is { } a)
                {
                    a.Detach(b, port);
                    detached++;
                }
            }
            catch (Exception e)
            {
                Log($"detaching {bridge}:{port}: {e.Message}");
            }
            _interfaces.TryRemove((bridge, port), out _);
        }
        try { (_host.CpuPolicy as IDisposable)?.Dispose(); } catch (Exception e) { Log($"CPU policy cleanup: {e.Message}"); }
        try { (Attacher as IDisposable)?.Dispose(); } catch (Exception e) { Log($"interface attacher cleanup: {e.Message}"); }
        foreach (var b in _host.Switch.Bridges)
        {
            try { if (b.Ports.Count == 0) _host.Switch.RemoveBridge(b.Name); } catch (InvalidOperationException) { }
        }
        _lock?.Dispose();
        if (_started && _listener is not null)
            Log($"stopped: {destroyed} domain(s) destroyed, {detached} interface(s) detached, socket {_path} removed");
    }

    public void Dispose() => Stop();

    // ---------------------------------------------------------------- connections

    private async Task AcceptLoopAsync()
    {
        var ct = _cts.Token;
        while (!ct.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await _listener!.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                break;
            }
            catch (SocketException e)
            {
                if (ct.IsCancellationRequested) break;
                // EMFILE and friends: back off instead of spinning; the backlog keeps the clients.
                // One log line a second at most: this can repeat every 50 ms.
                long now = Environment.TickCount64;
                if (now - _lastAcceptLog >= 1000)
                {
                    _lastAcceptLog = now;
                    Log($"accept failed: {e.Message} ({ClientCount} connections open)");
                }
                try { await Task.Delay(50, ct).ConfigureAwait(false); } catch (OperationCanceledException) { break; }
                continue;
            }
            long id = Interlocked.Increment(ref _nextConnection);
            if (Interlocked.Increment(ref _clients) > _maxClients)
            {
                Interlocked.Decrement(ref _clients);
                _ = RejectAsync(s);
                continue;
            }
            var tcs = new TaskCompletionSource();
            _connections[id] = tcs.Task;
            _ = ServeAndTrackAsync(s, id, tcs);
        }
    }

    private async Task ServeAndTrackAsync(Socket s, long id, TaskCompletionSource done)
    {
        try
        {
            await ServeAsync(s).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _clients);
            _connections.TryRemove(id, out _);
            done.TrySetResult();
        }
    }

    private async Task RejectAsync(Socket s)
    {
        try
        {
            using var stream = new NetworkStream(s, ownsSocket: true);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await stream.WriteAsync(ControlProtocol.Error(null, ControlErrorCodes.Busy,
                $"too many clients ({_maxClients} connections are open); try again"), cts.Token).ConfigureAwait(false);
            await LingerAsync(s, TimeSpan.FromMilliseconds(250), 64 * 1024).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The client is gone or not reading: nothing more to do.
        }
    }

    /// <summary>
    /// Before closing a connection the daemon ends (after its last answer): shuts down sending,
    /// then reads and drops what the client still sends, for at most <paramref name="max"/> and
    /// <paramref name="maxBytes"/>. Closing a Unix socket with unread input resets the peer
    /// (ECONNRESET), which can make the client lose the answer that says why it was closed.
    /// </summary>
    private async Task LingerAsync(Socket s, TimeSpan max, int maxBytes)
    {
        try
        {
            s.Shutdown(SocketShutdown.Send);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(_cts.Token);
            cts.CancelAfter(max);
            var scratch = new byte[16 * 1024];
            for (int total = 0; total < maxBytes;)
            {
                int n = await s.ReceiveAsync(scratch, SocketFlags.None, cts.Token).ConfigureAwait(false);
                if (n == 0) return;
                total += n;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // Gone, or still sending after the grace period: close anyway.
        }
    }

    /// <summary>One client connection: its reader, the read in flight, and writes with a timeout.</summary>
    private sealed class Connection(Socket socket, NetworkStream stream, ControlDaemon daemon)
    {
        public readonly LineReader Reader = new(stream, ControlProtocol.MaxRequestBytes, daemon._lineBudget);
        public Task<ReadOnlyMemory<byte>?>? Pending;
        public long LastActivity = Stopwatch.GetTimestamp();

        /// <summary>
        /// The client shut down its sending side (end of stream on read). It may still be reading:
        /// <c>echo '{"op":"top"}' | socat - UNIX-CONNECT:...</c> does exactly that, so the answer
        /// to what it sent is still written; only a full close (<see cref="HungUp"/>) ends it.
        /// </summary>
        public bool ReadClosed;

        public Task<ReadOnlyMemory<byte>?> NextRead() =>
            Pending ??= Reader.ReadLineAsync(daemon._cts.Token).AsTask();

        /// <summary>True when the client closed the connection entirely (not only its sending side).</summary>
        public bool HungUp => SocketFiles.PeerHungUp(socket);

        public async Task WriteAsync(byte[] line)
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(daemon._cts.Token);
            cts.CancelAfter(daemon._options.WriteTimeout);
            await stream.WriteAsync(line, cts.Token).ConfigureAwait(false);
            LastActivity = Stopwatch.GetTimestamp();
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        Connection? c = null;
        bool handedOff = false; // a netmap_open connection belongs to its netmap thread afterwards
        try
        {
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            c = new Connection(socket, stream, this);
            while (!_cts.IsCancellationRequested && !c.ReadClosed)
            {
                ReadOnlyMemory<byte>? line;
                try
                {
                    line = await ReadRequestAsync(c).ConfigureAwait(false);
                }
                catch (Exception e) when (e is LineTooLongException or TimeoutException or LineBudgetException)
                {
                    // The daemon ends the connection: say why, then close without resetting the client.
                    await c.WriteAsync(e switch
                    {
                        LineTooLongException t => ControlProtocol.Error(null, ControlErrorCodes.BadRequest,
                            $"request line longer than {t.Max} bytes (1 MiB); closing the connection"),
                        LineBudgetException => ControlProtocol.Error(null, ControlErrorCodes.Busy,
                            $"{e.Message} (other clients' long requests); closing the connection: try again"),
                        _ => ControlProtocol.Error(null, ControlErrorCodes.BadRequest, e.Message),
                    }).ConfigureAwait(false);
                    // After a refused line the rest of it may still be arriving; after a timeout a read
                    // is still pending and takes whatever comes.
                    if (e is not TimeoutException)
                        await LingerAsync(socket, TimeSpan.FromSeconds(2), 2 * ControlProtocol.MaxRequestBytes).ConfigureAwait(false);
                    break;
                }
                if (line is null) break; // the client closed; a partial line is not a request
                var outcome = await AnswerAsync(line.Value, c, socket).ConfigureAwait(false);
                if (outcome == Answered.HandedOff) { handedOff = true; return; }
                if (outcome == Answered.Close) break;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // The client went away, stopped reading, or the daemon is stopping.
        }
        catch (Exception e)
        {
            Log($"connection failed: {e}");
        }
        finally
        {
            c?.Reader.ReleaseBudget();
            if (!handedOff) socket.Dispose();
        }
    }

    private enum Answered { Continue, Close, HandedOff }

    /// <summary>
    /// Answers one complete request line (a stream sends its events first); says whether the
    /// connection goes on, must close, or now belongs to a process domain (netmap_open). Every line gets an answer: a failure nobody foresaw is an
    /// <c>internal</c> error line, logged, and the connection goes on.
    /// </summary>
    private async Task<Answered> AnswerAsync(ReadOnlyMemory<byte> line, Connection c, Socket socket)
    {
        byte[] answer;
        try
        {
            var req = ControlRequest.Parse(line);
            if (req.Op == NetmapOpenOp)
                return await NetmapOpenAsync(req, c, socket).ConfigureAwait(false) ? Answered.HandedOff : Answered.Close;
            if (IsStreaming(req.Op)) return await StreamAsync(req, c).ConfigureAwait(false) ? Answered.Continue : Answered.Close;
            answer = await ExecuteAsync(req).ConfigureAwait(false);
        }
        catch (ControlException e)
        {
            // Parse refused the line (ExecuteAsync and StreamAsync answer their own refusals): no id to echo.
            answer = ControlProtocol.Error(null, e.Code, e.Message);
        }
        catch (Exception e) when (e is not (IOException or SocketException or ObjectDisposedException or OperationCanceledException))
        {
            Log($"internal error answering a request: {e}");
            answer = ControlProtocol.Error(null, ControlErrorCodes.Internal,
                $"internal error ({e.GetType().Name}: {e.Message}); the daemon keeps running");
        }
        await c.WriteAsync(answer).ConfigureAwait(false);
        return Answered.Continue;
    }

    /// <summary>The next request line, enforcing the idle and line timeouts; null when the client closed.</summary>
    private async Task<ReadOnlyMemory<byte>?> ReadRequestAsync(Connection c)
    {
        var read = c.NextRead();
        while (!read.IsCompleted)
        {
            long now = Stopwatch.GetTimestamp();
            TimeSpan left;
            bool inLine = c.Reader.InLine;
            if (inLine)
            {
                left = _options.LineTimeout - Stopwatch.GetElapsedTime(c.Reader.LineStartTicks, now);
                if (left <= TimeSpan.Zero)
                    throw new TimeoutException($"incomplete request: no newline within {_options.LineTimeout.TotalSeconds:F0} s of its first byte; closing the connection");
            }
            else
            {
                left = _options.IdleTimeout - Stopwatch.GetElapsedTime(c.LastActivity, now);
                if (left <= TimeSpan.Zero)
                    throw new TimeoutException($"idle for {_options.IdleTimeout.TotalSeconds:F0} s; closing the connection");
            }
            // Recheck at least every second: a line may start while we wait for the idle deadline.
            var wait = left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1);
            await Task.WhenAny(read, Task.Delay(wait, _cts.Token)).ConfigureAwait(false);
            _cts.Token.ThrowIfCancellationRequested();
        }
        c.Pending = null;
        c.LastActivity = Stopwatch.GetTimestamp();
        return await read.ConfigureAwait(false);
    }

    // ---------------------------------------------------------------- the change thread

    private void ChangeThreadMain()
    {
        foreach (var item in _changes.GetConsumingEnumerable())
        {
            try
            {
                item();
            }
            catch (Exception e)
            {
                Log($"change failed: {e}");
            }
        }
    }

    /// <summary>Runs <paramref name="change"/> on the change thread (one change at a time).</summary>
    private Task<T> RunChangeAsync<T>(Func<T> change)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (_stopping) throw new ControlException(ControlErrorCodes.ShuttingDown, "the daemon is shutting down");
        if (_changes.Count >= _options.MaxQueuedChanges)
            throw new ControlException(ControlErrorCodes.Busy, $"the daemon is busy ({_changes.Count} changes queued); try again");
        try
        {
            _changes.Add(() =>
            {
                if (_stopping)
                {
                    tcs.TrySetException(new ControlException(ControlErrorCodes.ShuttingDown, "the daemon is shutting down"));
                    return;
                }
                try
                {
                    tcs.TrySetResult(change());
                }
                catch (Exception e)
                {
                    tcs.TrySetException(e);
                }
            });
        }
        catch (InvalidOperationException)
        {
            throw new ControlException(ControlErrorCodes.ShuttingDown, "the daemon is shutting down");
        }
        return tcs.Task;
    }

    // ---------------------------------------------------------------- dispatch

    /// <summary>
    /// Handles one request line without a socket and returns the answer line (without its
    /// newline). For embedding and tests; streaming ops are refused here.
    /// </summary>
    public string Handle(string line)
    {
        byte[] answer;
        try
        {
            var req = ControlRequest.Parse(Encoding.UTF8.GetBytes(line));
            answer = IsStreaming(req.Op)
                ? ControlProtocol.Error(req.Id, ControlErrorCodes.BadRequest, $"{req.Op} streams its answer; use a socket connection")
                : ExecuteAsync(req).GetAwaiter().GetResult();
        }
        catch (ControlException e)
        {
            answer = ControlProtocol.Error(null, e.Code, e.Message);
        }
        return Encoding.UTF8.GetString(answer.AsSpan(0, answer.Length - 1));
    }

    private async Task<byte[]> ExecuteAsync(ControlRequest req)
    {
        try
        {
            if (!Ops.TryGetValue(req.Op, out var op))
            {
                if (req.Op == "stop")
                    throw ControlException.Conflict("nothing to stop: no top, pkt-gen or capture runs on this connection");
                throw new ControlException(ControlErrorCodes.UnknownOp,
                    $"unknown op '{ControlRequest.Short(req.Op)}'; ops: {string.Join(", ", OpNames)}");
            }
            if (_stopping) throw new ControlException(ControlErrorCodes.ShuttingDown, "the daemon is shutting down");
            object? result = op.Change is { } prepare
                ? await RunChangeAsync(prepare(this, req)).ConfigureAwait(false)
                : op.Async is { } wait ? await wait(this, req).ConfigureAwait(false)
                : op.Read!(this, req);
            return ControlProtocol.Ok(req.Id, result);
        }
        catch (Exception e)
        {
            return ErrorFor(req.Id, e);
        }
    }

    private byte[] ErrorFor(JsonElement? id, Exception e)
    {
        var (code, message) = Classify(e);
        if (code == ControlErrorCodes.Internal) Log($"internal error: {e}");
        return ControlProtocol.Error(id, code, message);
    }

    private (string Code, string Message) Classify(Exception e) => e switch
    {
        ControlException ce => (ce.Code, ce.Message),
        XlConfigException xe => (ControlErrorCodes.Invalid, xe.Message),
        ArgumentException ae => (ControlErrorCodes.Invalid, StripParameter(ae)),
        FormatException fe => (ControlErrorCodes.Invalid, fe.Message),
        ObjectDisposedException when _stopping => (ControlErrorCodes.ShuttingDown, "the daemon is shutting down"),
        InvalidOperationException ie => (ControlErrorCodes.Conflict, ie.Message),
        _ => (ControlErrorCodes.Internal, $"internal error ({e.GetType().Name}: {e.Message}); the daemon keeps running"),
    };

    /// <summary>ArgumentException's message without " (Parameter 'x')" and the actual-value line.</summary>
    private static string StripParameter(ArgumentException e)
    {
        string m = e.Message;
        int p = m.IndexOf(" (Parameter '", StringComparison.Ordinal);
        return p > 0 ? m[..p] : m;
    }
}
