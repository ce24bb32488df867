using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Serialization;
using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;
using HyperNF.Tools;

namespace HyperNF.Bench;

public sealed record ProcessBenchmarkOptions
{
    public IReadOnlyList<IoModel> Models { get; init; } = [IoModel.Hypercall, IoModel.Split, IoModel.Merge];
    public IReadOnlyList<int> Batches { get; init; } = [1, 32, 256];
    public int FrameSize { get; init; } = 64;
    public double Seconds { get; init; } = 3;
    public double WarmupSeconds { get; init; } = 0.5;
    /// <summary>Also run the same pair as thread domains (C# pkt-gen) for each point.</summary>
    public bool ThreadDomains { get; init; } = true;
    /// <summary>Process domains: also measure the bare hand-off (nm-pktgen -f nop) per model.</summary>
    public bool HandOff { get; init; } = true;
    /// <summary>Kernel CPU control (cgroups) for the domains, as the daemon installs it; null = accounting only.</summary>
    public Func<IDomainCpuPolicy?>? CpuPolicy { get; init; }
    public int SenderCpu { get; init; }
    public int ReceiverCpu { get; init; } = Math.Min(1, Environment.ProcessorCount - 1);
    /// <summary>nm-pktgen (artifacts/netmap-tools) and libhypernf-netmap.so (artifacts/preload).</summary>
    public required string Tool { get; init; }
    public required string Library { get; init; }
    public Action<string>? Log { get; init; }
}

public sealed record ProcessBenchmarkPoint
{
    /// <summary>"process" (two netmap programs, each a process domain) or "thread" (two pkt-gen thread domains).</summary>
    [JsonPropertyName("domains")] public string Domains { get; init; } = "";
    [JsonPropertyName("io_model")] public string IoModel { get; init; } = "";
    [JsonPropertyName("batch")] public int Batch { get; init; }
    [JsonPropertyName("frame_size")] public int FrameSize { get; init; }
    /// <summary>Frames the receiver consumed per second over the measured window.</summary>
    [JsonPropertyName("rx_mpps")] public double RxMpps { get; init; }
    [JsonPropertyName("tx_mpps")] public double TxMpps { get; init; }
    [JsonPropertyName("sent")] public long Sent { get; init; }
    [JsonPropertyName("received")] public long Received { get; init; }
    [JsonPropertyName("dropped")] public long Dropped { get; init; }
    [JsonPropertyName("drops")] public Dictionary<string, long> Drops { get; init; } = new();
    [JsonPropertyName("unaccounted")] public long Unaccounted { get; init; }
    /// <summary>Sequence gaps the receiver saw (frames dropped before it: ring_full).</summary>
    [JsonPropertyName("lost")] public long Lost { get; init; }
    /// <summary>The sender domain's CPU (% of one CPU): its program or vCPU thread plus its host threads.</summary>
    [JsonPropertyName("tx_domain_cpu_pct")] public double TxDomainCpuPct { get; init; }
    [JsonPropertyName("rx_domain_cpu_pct")] public double RxDomainCpuPct { get; init; }
    /// <summary>Process domains: the program's own threads, and the daemon's host threads serving its syncs.</summary>
    [JsonPropertyName("tx_program_cpu_pct")] public double TxProgramCpuPct { get; init; }
    [JsonPropertyName("tx_host_thread_cpu_pct")] public double TxHostThreadCpuPct { get; init; }
    [JsonPropertyName("rx_program_cpu_pct")] public double RxProgramCpuPct { get; init; }
    [JsonPropertyName("rx_host_thread_cpu_pct")] public double RxHostThreadCpuPct { get; init; }
    /// <summary>split/merge backend threads (billed to the host).</summary>
    [JsonPropertyName("backend_cpu_pct")] public double BackendCpuPct { get; init; }
    /// <summary>Sender syncs per second in the window, and the sender's CPU per sync.</summary>
    [JsonPropertyName("tx_syncs_per_s")] public double TxSyncsPerSecond { get; init; }
    /// <summary>CPU ns the sender domain spent per frame it sent, and the receiver domain per frame it received (load-independent cost).</summary>
    [JsonPropertyName("tx_cpu_ns_per_frame")] public double TxCpuNsPerFrame { get; init; }
    [JsonPropertyName("rx_cpu_ns_per_frame")] public double RxCpuNsPerFrame { get; init; }
    [JsonPropertyName("latency_p50_us")] public double LatencyP50Us { get; init; }
    [JsonPropertyName("latency_p99_us")] public double LatencyP99Us { get; init; }
    [JsonPropertyName("latency_p999_us")] public double LatencyP999Us { get; init; }
    /// <summary>Set when the point is not trustworthy (a program ended inside the window).</summary>
    [JsonPropertyName("note")] public string? Note { get; init; }
}

/// <summary>The cost of one sync with nothing to do: a process domain's hand-off, a thread domain's call.</summary>
public sealed record HandOffResult(
    [property: JsonPropertyName("io_model")] string IoModel,
    [property: JsonPropertyName("process_ns_per_sync")] double ProcessNsPerSync,
    [property: JsonPropertyName("thread_ns_per_sync")] double ThreadNsPerSync);

public sealed record ProcessBenchmarkReport
{
    [JsonPropertyName("points")] public List<ProcessBenchmarkPoint> Points { get; init; } = new();
    [JsonPropertyName("hand_off")] public List<HandOffResult> HandOff { get; init; } = new();
    /// <summary>Kernel VALE's published figure (../shared/reference/anchors.md): about 20 Mpps per core, 64 B, batch 256+.</summary>
    [JsonPropertyName("kernel_vale_mpps_per_core")] public double KernelValeMpps { get; init; } = 20;
    [JsonPropertyName("load_average")] public double LoadAverage { get; init; }
    [JsonPropertyName("cpus")] public int Cpus { get; init; } = Environment.ProcessorCount;
    [JsonPropertyName("cgroups")] public bool Cgroups { get; init; }
}

/// <summary>
/// `hypernf bench process` (docs/performance.md): 64 B frames between two netmap programs in
/// separate processes (nm-pktgen, src/netmap-tools, with libhypernf-netmap.so preloaded), each
/// a process domain of an in-process daemon on a private socket, per I/O model and batch; the
/// same pair as thread domains (C# pkt-gen) in the same run; and the bare cost of one sync.
/// The sender runs on <see cref="ProcessBenchmarkOptions.SenderCpu"/>, the receiver on
/// <see cref="ProcessBenchmarkOptions.ReceiverCpu"/> (split backends on the sender's core:
/// on 2 CPUs there is no other). Rates come from the programs' 100 ms reports over the
/// harness's window; CPU from schedstat of every thread involved; drops from the bridge.
/// </summary>
public static class ProcessBenchmark
{
    public static ProcessBenchmarkReport Run(ProcessBenchmarkOptions o)
    {
        if (!File.Exists(o.Tool)) throw new FileNotFoundException($"nm-pktgen not found at {o.Tool} (built by ./hypernf or dotnet build)");
        if (!File.Exists(o.Library)) throw new FileNotFoundException($"libhypernf-netmap.so not found at {o.Library}");
        if (o.FrameSize is < 60 or > 2048) throw new ArgumentOutOfRangeException(nameof(o), o.FrameSize, "frame size must be 60..2048");
        foreach (int b in o.Batches)
            if (b is < 1 or > 1024) throw new ArgumentOutOfRangeException(nameof(o), b, "batches must be 1..1024");
        var policy = o.CpuPolicy?.Invoke();
        var report = new ProcessBenchmarkReport { LoadAverage = LoadAverage(), Cgroups = policy is not null };
        string dir = Path.Combine(Path.GetTempPath(), $"hypernf-pbench-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        var host = new Host { BackendCpus = [o.SenderCpu], CpuPolicy = policy };
        var daemon = new ControlDaemon(host, new ControlDaemonOptions { SocketPath = Path.Combine(dir, "d.sock"), Log = l => { if (l.Contains("fail", StringComparison.OrdinalIgnoreCase)) o.Log?.Invoke(l); } });
        try
        {
            daemon.Start();
            int n = 0;
            foreach (var model in o.Models)
            {
                host.DefaultIoModel = model;
                if (o.HandOff)
                {
                    var h = new HandOffResult(model.Key(), Math.Round(ProcessHandOff(o, daemon.SocketPath, model), 1), Math.Round(ThreadHandOff(host, model, o.SenderCpu), 1));
                    report.HandOff.Add(h);
                    o.Log?.Invoke($"hand-off {model.Key(),-9}: process {h.ProcessNsPerSync,9:F0} ns/sync   thread {h.ThreadNsPerSync,7:F0} ns/sync");
                }
                foreach (int batch in o.Batches)
                {
                    string bridge = $"valepb{n++}";
                    var p = RunProcessPair(o, host, daemon.SocketPath, model, batch, bridge);
                    report.Points.Add(p);
                    o.Log?.Invoke(Line(p));
                    if (o.ThreadDomains)
                    {
                        var t = RunThreadPair(o, host, model, batch, $"valepb{n++}");
                        report.Points.Add(t);
                        o.Log?.Invoke(Line(t));
                    }
                }
            }
        }
        finally
        {
            daemon.Dispose();
            host.Dispose();
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
        return report;
    }

    private static string Line(ProcessBenchmarkPoint p) =>
        $"{p.Domains,-7} {p.IoModel,-9} batch {p.Batch,4}: rx {p.RxMpps,6:F3} Mpps (tx {p.TxMpps,6:F3})  CPU tx {p.TxDomainCpuPct,3:F0}% ({p.TxCpuNsPerFrame:F0} ns/frame) rx {p.RxDomainCpuPct,3:F0}% ({p.RxCpuNsPerFrame:F0} ns/frame) backends {p.BackendCpuPct,3:F0}%  drops {p.Dropped}  p50 {p.LatencyP50Us:F1} us p99 {p.LatencyP99Us:F1} us  unaccounted {p.Unaccounted}{(p.Note is null ? "" : "  NOTE: " + p.Note)}";

    public static double LoadAverage()
    {
        try { return double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture); }
        catch (IOException) { return -1; }
    }

    // ------------------------------------------------------------------ process domains

    private sealed class NetmapTool : IDisposable
    {
        private readonly List<(long T, long Frames, long Syncs)> _reports = new();
        private readonly Dictionary<string, string> _values = new();
        private readonly ManualResetEventSlim _ready = new();
        private readonly System.Text.StringBuilder _err = new();
        public Process Process { get; }

        public NetmapTool(ProcessBenchmarkOptions o, string socket, IoModel model, int cpu, params string[] args)
        {
            var psi = new ProcessStartInfo(o.Tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            psi.ArgumentList.Add("-a");
            psi.ArgumentList.Add(cpu.ToString(CultureInfo.InvariantCulture));
            psi.Environment["LD_PRELOAD"] = o.Library;
            psi.Environment[ControlProtocol.SocketEnvironmentVariable] = socket;
            psi.Environment["HYPERNF_IO_MODEL"] = model.Key();
            psi.Environment["HYPERNF_CPUS"] = cpu.ToString(CultureInfo.InvariantCulture);
            psi.Environment["HYPERNF_NETMAP_QUIET"] = "1";
            Process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {o.Tool}");
            Process.OutputDataReceived += (_, e) => OnLine(e.Data);
            Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        private void OnLine(string? line)
        {
            if (line is null) return;
            if (line == "ready=1") { _ready.Set(); return; }
            if (line.StartsWith("report ", StringComparison.Ordinal))
            {
                long t = 0, f = 0, s = 0;
                foreach (var kv in line[7..].Split(' '))
                {
                    int eq = kv.IndexOf('=');
                    if (eq < 0) continue;
                    long v = long.Parse(kv[(eq + 1)..], CultureInfo.InvariantCulture);
                    switch (kv[..eq]) { case "t_ns": t = v; break; case "frames": f = v; break; case "syncs": s = v; break; }
                }
                lock (_reports) _reports.Add((t, f, s));
                return;
            }
            int i = line.IndexOf('=');
            if (i > 0) lock (_values) _values[line[..i]] = line[(i + 1)..];
        }

        public void WaitReady()
        {
            if (!_ready.Wait(30_000)) throw new TimeoutException($"nm-pktgen (pid {Process.Id}) did not register: {Errors}");
        }

        public string Errors { get { lock (_err) return _err.ToString().Trim(); } }

        /// <summary>SIGTERM: the program finishes its run (pushes what is queued, prints its totals).</summary>
        public void Terminate()
        {
            if (!Process.HasExited) Native.Kill(Process.Id, 15 /* SIGTERM */);
        }

        public void WaitExit(int ms)
        {
            if (!Process.WaitForExit(ms)) throw new TimeoutException($"nm-pktgen (pid {Process.Id}) did not finish: {Errors}");
            Process.WaitForExit();
            if (Process.ExitCode != 0) throw new InvalidOperationException($"nm-pktgen (pid {Process.Id}) exited {Process.ExitCode}: {Errors}");
        }

        public long Long(string key) { lock (_values) return _values.TryGetValue(key, out var v) ? long.Parse(v, CultureInfo.InvariantCulture) : 0; }
        public double Double(string key) { lock (_values) return _values.TryGetValue(key, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : 0; }

        /// <summary>Frames (or syncs) per second between the reports nearest to [t0, t1] (CLOCK_MONOTONIC ns, the harness's Stopwatch).</summary>
        public double Rate(long t0, long t1, bool syncs = false)
        {
            List<(long T, long Frames, long Syncs)> r;
            lock (_reports) r = _reports.ToList();
            var inside = r.Where(x => x.T >= t0 && x.T <= t1).ToList();
            if (inside.Count < 2) return 0;
            var a = inside[0];
            var b = inside[^1];
            return (syncs ? b.Syncs - a.Syncs : b.Frames - a.Frames) / ((b.T - a.T) / 1e9);
        }

        /// <summary>CPU ns of all the program's threads (schedstat).</summary>
        public long CpuNs()
        {
            long sum = 0;
            try
            {
                foreach (var t in Directory.GetDirectories($"/proc/{Process.Id}/task"))
                {
                    try { sum += long.Parse(File.ReadAllText(Path.Combine(t, "schedstat")).Split(' ')[0], CultureInfo.InvariantCulture); }
                    catch (IOException) { }
                }
            }
            catch (IOException) { }
            return sum;
        }

        public void Dispose()
        {
            try { if (!Process.HasExited) Process.Kill(); } catch (InvalidOperationException) { }
            Process.Dispose();
        }
    }

    private static long NowNs() => Stopwatch.GetTimestamp() * (1_000_000_000 / Stopwatch.Frequency);

    private static Domain? DomainOf(Host host, NetmapTool p) =>
        host.Domains.FirstOrDefault(d => d.ProcessId == p.Process.Id && d.State == DomainState.Running);

    private static (long Host, long Backend) HostThreadNs(Domain? d)
    {
        if (d is null) return (0, 0);
        long backend = 0;
        foreach (var pp in d.ProcessPorts)
            if (pp.Backend is { Tid: > 0 } b) backend += Math.Max(0, CpuTime.ThreadNs(b.Tid));
        return (d.VCpuTimeNs(), backend);
    }

    private static ProcessBenchmarkPoint RunProcessPair(ProcessBenchmarkOptions o, Host host, string socket, IoModel model, int batch, string bridge)
    {
        string F(double x) => x.ToString("0.###", CultureInfo.InvariantCulture);
        double run = o.WarmupSeconds + o.Seconds + 0.3;
        using var rx = new NetmapTool(o, socket, model, o.ReceiverCpu, "-i", $"{bridge}:rx", "-f", "rx", "-T", F(run + 90), "-I", IdleMs.ToString(CultureInfo.InvariantCulture),
            "-W", ((int)(o.WarmupSeconds * 1000)).ToString(CultureInfo.InvariantCulture));
        rx.WaitReady();
        // The sender runs until the harness stops it (SIGTERM) after the window: under load the
        // harness may see its "ready" late, so a fixed duration could end inside the window.
        using var tx = new NetmapTool(o, socket, model, o.SenderCpu, "-i", $"{bridge}:tx", "-f", "tx", "-l", o.FrameSize.ToString(CultureInfo.InvariantCulture),
            "-b", batch.ToString(CultureInfo.InvariantCulture), "-T", F(run + 60));
        tx.WaitReady();
        Thread.Sleep(TimeSpan.FromSeconds(o.WarmupSeconds));
        Domain? txd = DomainOf(host, tx), rxd = DomainOf(host, rx);
        long t0 = NowNs();
        long txp0 = tx.CpuNs(), rxp0 = rx.CpuNs();
        var (txh0, txb0) = HostThreadNs(txd);
        var (rxh0, rxb0) = HostThreadNs(rxd);
        Thread.Sleep(TimeSpan.FromSeconds(o.Seconds));
        long t1 = NowNs();
        long txp1 = tx.CpuNs(), rxp1 = rx.CpuNs();
        string? note = tx.Process.HasExited || rx.Process.HasExited
            ? $"the {(tx.Process.HasExited ? "sender" : "receiver")} ended inside the measured window (stalled for over {IdleMs} ms under load?): CPU figures are not valid"
            : null;
        var (txh1, txb1) = HostThreadNs(txd);
        var (rxh1, rxb1) = HostThreadNs(rxd);
        tx.Terminate();
        tx.WaitExit(30_000);
        rx.WaitExit(30_000);
        // Both programs exited: their domains go with their last descriptors.
        var until = Environment.TickCount64 + 10_000;
        while (host.Domains.Any(d => d.Kind == DomainKind.Process && d.State != DomainState.Destroyed) && Environment.TickCount64 < until) Thread.Sleep(20);
        var st = host.Switch.FindBridge(bridge)?.GetStatistics();
        double el = (t1 - t0) / 1e9;
        double Pct(long ns) => Math.Round(100.0 * ns / (t1 - t0), 1);
        return new ProcessBenchmarkPoint
        {
            Domains = "process", IoModel = model.Key(), Batch = batch, FrameSize = o.FrameSize,
            RxMpps = Math.Round(rx.Rate(t0, t1) / 1e6, 3), TxMpps = Math.Round(tx.Rate(t0, t1) / 1e6, 3),
            Sent = tx.Long("sent"), Received = rx.Long("received"),
            Dropped = st?.Dropped ?? 0, Drops = Drops(st), Unaccounted = st?.Unaccounted ?? 0, Lost = rx.Long("lost"),
            TxProgramCpuPct = Pct(txp1 - txp0), TxHostThreadCpuPct = Pct(txh1 - txh0),
            RxProgramCpuPct = Pct(rxp1 - rxp0), RxHostThreadCpuPct = Pct(rxh1 - rxh0),
            TxDomainCpuPct = Pct(txp1 - txp0 + txh1 - txh0), RxDomainCpuPct = Pct(rxp1 - rxp0 + rxh1 - rxh0),
            BackendCpuPct = Pct(txb1 - txb0 + rxb1 - rxb0),
            TxSyncsPerSecond = Math.Round(tx.Rate(t0, t1, syncs: true)),
            TxCpuNsPerFrame = PerFrame(txp1 - txp0 + txh1 - txh0, tx.Rate(t0, t1) * el),
            RxCpuNsPerFrame = PerFrame(rxp1 - rxp0 + rxh1 - rxh0, rx.Rate(t0, t1) * el),
            Note = note,
            LatencyP50Us = rx.Long("lat_p50_ns") / 1000.0, LatencyP99Us = rx.Long("lat_p99_ns") / 1000.0, LatencyP999Us = rx.Long("lat_p999_ns") / 1000.0,
        };
    }

    private static double PerFrame(long cpuNs, double frames) => frames > 0 ? Math.Round(cpuNs / frames, 1) : 0;

    /// <summary>The receiver ends after this long without a frame (once traffic began).</summary>
    private const int IdleMs = 3000;

    private static Dictionary<string, long> Drops(BridgeStatistics? st)
    {
        var d = new Dictionary<string, long>();
        if (st is null) return d;
        foreach (var r in DropReasons.All)
            if (st.Drops[(int)r] != 0) d[r.Key()] = st.Drops[(int)r];
        return d;
    }

    /// <summary>nm-pktgen -f nop: NIOCTXSYNC with nothing queued, one second; ns per sync.</summary>
    private static double ProcessHandOff(ProcessBenchmarkOptions o, string socket, IoModel model)
    {
        using var p = new NetmapTool(o, socket, model, o.SenderCpu, "-i", $"valepbnop:{model.Key()}", "-f", "nop", "-T", "1", "-R", "0");
        p.WaitExit(60_000);
        return p.Double("ns_per_sync");
    }

    /// <summary>A thread domain's TxSync with nothing queued, on its vCPU, for the same time.</summary>
    private static double ThreadHandOff(Host host, IoModel model, int cpu)
    {
        double result = 0;
        var d = host.Create(new DomainSpec
        {
            Name = $"pbench-nop-{model.Key()}", Vifs = [new VifSpec($"valepbnop:t{model.Key()}")], Cpus = [[cpu]], IoModel = model,
            Guest = () => new DelegateGuest(ctx =>
            {
                var port = ctx.Ports[0];
                long n = 0, t0 = Stopwatch.GetTimestamp(), end = t0 + Stopwatch.Frequency;
                while (Stopwatch.GetTimestamp() < end)
                {
                    for (int i = 0; i < 256; i++) port.TxSync();
                    n += 256;
                    ctx.Checkpoint();
                }
                Volatile.Write(ref result, Stopwatch.GetElapsedTime(t0).TotalNanoseconds / n);
                while (!ctx.Stopping) { ctx.Checkpoint(); ctx.Cancellation.WaitHandle.WaitOne(50); }
            }),
        });
        var until = Environment.TickCount64 + 30_000;
        while (Volatile.Read(ref result) == 0 && Environment.TickCount64 < until) Thread.Sleep(20);
        host.Destroy(d);
        return result;
    }

    private sealed class DelegateGuest(Action<GuestContext> run) : IGuest
    {
        public string Name => "bench";
        public void Run(GuestContext context) { if (context.VCpu == 0) run(context); }
        public IReadOnlyList<KeyValuePair<string, long>> Counters => [];
        public int MinimumPorts => 1;
    }

    // ------------------------------------------------------------------ thread domains

    private static ProcessBenchmarkPoint RunThreadPair(ProcessBenchmarkOptions o, Host host, IoModel model, int batch, string bridge)
    {
        var rxGuest = new PacketGenGuest(new PacketGeneratorOptions { Function = PacketGenFunction.Rx, Batch = 512 });
        var rxd = host.Create(new DomainSpec { Name = "pbench-rx", Vifs = [new VifSpec($"{bridge}:rx")], Cpus = [[o.ReceiverCpu]], Guest = () => rxGuest, IoModel = model });
        var txGuest = new PacketGenGuest(new PacketGeneratorOptions { Function = PacketGenFunction.Tx, FrameLength = o.FrameSize, Batch = batch });
        var txd = host.Create(new DomainSpec { Name = "pbench-tx", Vifs = [new VifSpec($"{bridge}:tx")], Cpus = [[o.SenderCpu]], Guest = () => txGuest, IoModel = model });
        Thread.Sleep(TimeSpan.FromSeconds(o.WarmupSeconds));
        var c0 = CpuAccounting.Sample([txd, rxd]);
        long rx0 = rxGuest.Frames, tx0 = txGuest.Frames;
        long t0 = NowNs();
        Thread.Sleep(TimeSpan.FromSeconds(o.Seconds));
        long rx1 = rxGuest.Frames, tx1 = txGuest.Frames;
        long t1 = NowNs();
        var c1 = CpuAccounting.Sample([txd, rxd]);
        host.Destroy(txd);
        Thread.Sleep(300);
        host.Destroy(rxd);
        var st = host.Switch.FindBridge(bridge)?.GetStatistics();
        var cpu = CpuAccounting.Between(c0, c1);
        double el = (t1 - t0) / 1e9;
        var rxSum = rxGuest.Summary;
        var txc = cpu.First(c => c.Domain == "pbench-tx");
        var rxc = cpu.First(c => c.Domain == "pbench-rx");
        return new ProcessBenchmarkPoint
        {
            Domains = "thread", IoModel = model.Key(), Batch = batch, FrameSize = o.FrameSize,
            RxMpps = Math.Round((rx1 - rx0) / el / 1e6, 3), TxMpps = Math.Round((tx1 - tx0) / el / 1e6, 3),
            Sent = txGuest.Summary?.Sent ?? tx1, Received = rxSum?.Received ?? rx1,
            Dropped = st?.Dropped ?? 0, Drops = Drops(st), Unaccounted = st?.Unaccounted ?? 0, Lost = rxSum?.Lost ?? 0,
            TxDomainCpuPct = txc.VCpuPct, RxDomainCpuPct = rxc.VCpuPct, BackendCpuPct = txc.BackendPct + rxc.BackendPct,
            TxProgramCpuPct = txc.VCpuPct, RxProgramCpuPct = rxc.VCpuPct,
            TxCpuNsPerFrame = PerFrame((long)(txc.VCpuPct / 100 * (t1 - t0)), tx1 - tx0),
            RxCpuNsPerFrame = PerFrame((long)(rxc.VCpuPct / 100 * (t1 - t0)), rx1 - rx0),
            TxSyncsPerSecond = txGuest.Summary is { Elapsed.TotalSeconds: > 0 } ts ? Math.Round(ts.Syncs / ts.Elapsed.TotalSeconds) : 0,
            LatencyP50Us = rxSum?.Latency?.P50Us ?? 0, LatencyP99Us = rxSum?.Latency?.P99Us ?? 0, LatencyP999Us = rxSum?.Latency?.P999Us ?? 0,
        };
    }
}
