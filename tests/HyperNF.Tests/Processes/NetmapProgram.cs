using System.Diagnostics;
using System.Text;
using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Tests.Control;

namespace HyperNF.Tests.Processes;

/// <summary>
/// A run of tests/native/nm_tool (our own netmap program) with libhypernf-netmap.so preloaded
/// by hand (LD_PRELOAD, HYPERNF_SOCKET), as docs/process-domains.md describes. Its key=value
/// lines are collected as they arrive.
/// </summary>
internal sealed class NetmapProgram : IDisposable
{
    private readonly StringBuilder _out = new(), _err = new();
    private readonly ManualResetEventSlim _ready = new();
    public System.Diagnostics.Process Process { get; }
    public string What { get; }

    public static string Tool => Path.Combine(Cli.RepoRoot, "artifacts", "test-native", "nm_tool");
    public static string Library => Path.Combine(Cli.RepoRoot, "artifacts", "preload", "libhypernf-netmap.so");

    public NetmapProgram(string socket, params string[] args) : this(socket, null, args) { }

    public NetmapProgram(string socket, IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        What = $"nm_tool {string.Join(' ', args)}";
        var psi = new ProcessStartInfo(Tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["LD_PRELOAD"] = Library;
        psi.Environment[ControlProtocol.SocketEnvironmentVariable] = socket;
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        Process = System.Diagnostics.Process.Start(psi)!;
        Process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_out) _out.AppendLine(e.Data);
            if (e.Data == "ready=1") _ready.Set();
        };
        Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        Process.BeginOutputReadLine();
        Process.BeginErrorReadLine();
    }

    public string Output { get { lock (_out) return _out.ToString(); } }
    public string Errors { get { lock (_err) return _err.ToString(); } }

    /// <summary>Waits for the program's "ready=1" (its port is registered).</summary>
    public void WaitReady(int timeoutMs = 20_000)
    {
        if (!_ready.Wait(timeoutMs)) throw new TimeoutException($"{What} did not register within {timeoutMs} ms: {this}");
    }

    /// <summary>Waits for the program to end and returns its exit code.</summary>
    public int WaitExit(int timeoutMs = 60_000)
    {
        if (!Process.WaitForExit(timeoutMs)) throw new TimeoutException($"{What} did not finish within {timeoutMs} ms: {this}");
        Process.WaitForExit();
        return Process.ExitCode;
    }

    /// <summary>The last value printed for <paramref name="key"/>.</summary>
    public string Value(string key)
    {
        string? v = null;
        foreach (var line in Output.Split('\n'))
            if (line.StartsWith(key + "=", StringComparison.Ordinal)) v = line[(key.Length + 1)..].Trim();
        return v ?? throw new KeyNotFoundException($"{What} printed no {key}: {this}");
    }

    public long Long(string key) => long.Parse(Value(key), System.Globalization.CultureInfo.InvariantCulture);
    public double Double(string key) => double.Parse(Value(key), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Runs to the end; fails the test with the output unless it exits 0.</summary>
    public static NetmapProgram Run(string socket, params string[] args)
    {
        var p = new NetmapProgram(socket, args);
        int rc = p.WaitExit();
        if (rc != 0) throw new Xunit.Sdk.XunitException($"{p.What} exited {rc}: {p}");
        return p;
    }

    public override string ToString() => $"pid {Process.Id}\nstdout:\n{Output}\nstderr:\n{Errors}";

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
        catch (InvalidOperationException) { }
        Process.Dispose();
    }
}

/// <summary>An in-process daemon (a Host and its ControlDaemon) on a temporary socket.</summary>
internal sealed class NetmapHost : IDisposable
{
    private readonly TempDir _tmp = new();
    public Host Host { get; }
    public ControlDaemon Daemon { get; }
    public string Socket => Daemon.SocketPath;
    public List<string> Logs { get; } = new();

    public NetmapHost(IoModel model = IoModel.Hypercall, bool cpuControl = false)
    {
        Host = new Host { DefaultIoModel = model };
        if (cpuControl) Host.EnableCpuControl();
        Daemon = new ControlDaemon(Host, new ControlDaemonOptions { SocketPath = _tmp.File("d.sock"), Log = l => { lock (Logs) Logs.Add(l); } });
        Daemon.Start();
    }

    public Domain[] ProcessDomains => Host.Domains.Where(d => d.Kind == DomainKind.Process && d.State != DomainState.Destroyed).ToArray();

    /// <summary>Polls <paramref name="condition"/> for up to <paramref name="timeoutMs"/>.</summary>
    public static bool Eventually(Func<bool> condition, int timeoutMs = 20_000)
    {
        var until = Environment.TickCount64 + timeoutMs;
        while (Environment.TickCount64 < until)
        {
            if (condition()) return true;
            Thread.Sleep(20);
        }
        return condition();
    }

    public string LogText { get { lock (Logs) return string.Join('\n', Logs); } }

    public void Dispose()
    {
        Daemon.Dispose();
        Host.Dispose();
        _tmp.Dispose();
    }
}
