using System.Diagnostics;
using System.Globalization;
using System.Text;
using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Vmm;

namespace HyperNF.Bench;

public sealed record VmBenchOptions
{
    public double Seconds { get; init; } = 2;
    public double WarmupSeconds { get; init; } = 0.5;
    public IReadOnlyList<int> Batches { get; init; } = [1, 4, 16, 64, 256, 1024];
    public int FrameSize { get; init; } = 60;
    public int RoundTripCalls { get; init; } = 2000;
    /// <summary>Also measure the thread-domain baseline at each batch.</summary>
    public bool Threads { get; init; } = true;
    /// <summary>Also measure ring 0 (PIO) round trips where the machine runs guests at ring 3.</summary>
    public bool BothRings { get; init; } = true;
    public Action<string>? Log { get; init; }
}

/// <summary>One hypercall round trip: guest store or outl, exit, the VMM's handler, re-entry.</summary>
public sealed record HypercallRoundTrip(int Ring, string Transport, double Microseconds, int Calls, string Note);

/// <summary>Frames per second from a tx domain to an rx domain through one bridge.</summary>
public sealed record VmBenchPoint(string Domains, int Batch, double Mpps, double TxCpuPct, double RxCpuPct, long Sent, long Delivered, long Dropped, long Unaccounted);

public sealed record VmBenchReport(string Kvm, string KvmKind, int GuestRing, int Cpus, int FrameSize, double Seconds,
    IReadOnlyList<HypercallRoundTrip> RoundTrips, IReadOnlyList<VmBenchPoint> Points)
{
    public string Markdown()
    {
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"KVM: {Kvm}; {Cpus} CPUs; tx on CPU 0, rx on CPU 1.\n\n");
        b.Append("| hypercall round trip | µs | calls |\n|---|---:|---:|\n");
        foreach (var r in RoundTrips) b.Append(CultureInfo.InvariantCulture, $"| ring {r.Ring}, {r.Transport}{(r.Note.Length > 0 ? $" ({r.Note})" : "")} | {r.Microseconds:F2} | {r.Calls} |\n");
        var kinds = Points.Select(p => p.Domains).Distinct().ToArray();
        b.Append(CultureInfo.InvariantCulture, $"\n| batch | {string.Join(" | ", kinds.Select(k => $"{k} Mpps | {k} tx CPU %"))} |{(kinds.Length == 2 ? " vm/thread |" : "")}\n");
        b.Append("|---:|").Append(string.Concat(kinds.Select(_ => "---:|---:|"))).Append(kinds.Length == 2 ? "---:|" : "").Append('\n');
        foreach (int batch in Points.Select(p => p.Batch).Distinct())
        {
            b.Append(CultureInfo.InvariantCulture, $"| {batch} |");
            VmBenchPoint?[] row = kinds.Select(k => Points.FirstOrDefault(p => p.Domains == k && p.Batch == batch)).ToArray();
            foreach (var p in row) b.Append(p is null ? " - | - |" : string.Create(CultureInfo.InvariantCulture, $" {p.Mpps:F3} | {p.TxCpuPct:F0} |"));
            if (kinds.Length == 2) b.Append(row[0] is { } v && row[1] is { Mpps: > 0 } t ? string.Create(CultureInfo.InvariantCulture, $" {v.Mpps / t.Mpps:F3} |") : " - |");
            b.Append('\n');
        }
        return b.ToString();
    }
}

/// <summary>
/// <c>hypernf bench hypercall</c>: the round trip of one hypercall (a micro guest calling CLOCK
/// in a loop, timed against one that only exits), then 64 B frames per second from a tx VM to
/// an rx VM (the SDK's pkt-gen) against the sender's batch size, next to the same with thread
/// domains. Every figure is labelled with the machine's KVM kind.
/// </summary>
public static class VmBenchmark
{
    public static VmBenchReport Run(VmBenchOptions o)
    {
        var kvm = KvmPlatform.Current;
        if (!kvm.Available) throw new InvalidOperationException($"bench hypercall needs KVM: {kvm.Unavailable}");
        var log = o.Log ?? (_ => { });
        log($"KVM: {kvm.Describe()}");
        var trips = new List<HypercallRoundTrip>();
        foreach (int ring in o.BothRings && kvm.Ring == 3 ? new[] { 3, 0 } : [kvm.Ring])
        {
            int calls = ring == 0 && kvm.Kind == KvmKind.Pvm ? Math.Max(100, o.RoundTripCalls / 4) : o.RoundTripCalls;
            var t = RoundTrip(ring, calls);
            log($"round trip, ring {t.Ring} ({t.Transport}): {t.Microseconds:F2} µs");
            trips.Add(t);
        }
        var points = new List<VmBenchPoint>();
        foreach (int batch in o.Batches)
        {
            var v = Stream("vm", batch, o);
            log($"vm     batch {batch,4}: {v.Mpps:F3} Mpps, tx CPU {v.TxCpuPct:F0} %, unaccounted {v.Unaccounted}");
            points.Add(v);
            if (o.Threads)
            {
                var th = Stream("thread", batch, o);
                log($"thread batch {batch,4}: {th.Mpps:F3} Mpps, tx CPU {th.TxCpuPct:F0} %, unaccounted {th.Unaccounted}");
                points.Add(th);
            }
        }
        return new VmBenchReport(kvm.Describe(), kvm.KindName, kvm.Ring, Environment.ProcessorCount, o.FrameSize, o.Seconds, trips, points);
    }

    /// <summary>Per-call time: a loop of <paramref name="calls"/> CLOCK hypercalls, minus a guest that only exits (boot and EXIT), best of three.</summary>
    public static HypercallRoundTrip RoundTrip(int ring, int calls)
    {
        double best = double.MaxValue;
        for (int rep = 0; rep < 3; rep++)
        {
            double loop = TimeGuest(ring, g => g.Loop((uint)calls, x => x.Hypercall(GuestAbi.OpClock, (uint)MicroGuest.Data)).Exit(0, 0x100));
            double empty = TimeGuest(ring, g => g.Exit(0, 0x100));
            best = Math.Min(best, (loop - empty) / calls);
        }
        string note = KvmPlatform.Current.Kind == KvmKind.Pvm && ring == 0 ? "PVM emulates ring-0 guest code" : "";
        return new HypercallRoundTrip(ring, ring == 0 ? "PIO" : "MMIO doorbell", Math.Round(best * 1e6, 3), calls, note);
    }

    private static double TimeGuest(int ring, Action<MicroGuest> build)
    {
        var g = new MicroGuest(ring);
        build(g);
        var image = ElfImage.Parse(g.Build(), "micro-guest");
        double seconds = 0;
        Exception? error = null;
        var th = new Thread(() =>
        {
            try
            {
                using var vm = new VirtualMachine(new VmConfig { Image = image, MemoryMb = 4, Ring = ring });
                var loop = new VCpuLoop(vm, 0, [], new Netmap.WakeWord(), new GuestConsole());
                var sw = Stopwatch.StartNew();
                var stop = loop.Run(static () => false);
                seconds = sw.Elapsed.TotalSeconds;
                if (stop != VCpuStop.Exited) throw new InvalidOperationException("micro guest did not exit");
            }
            catch (Exception e) { error = e; }
        }) { IsBackground = true, Name = "bench-roundtrip" };
        th.Start();
        if (!th.Join(TimeSpan.FromSeconds(60))) throw new TimeoutException("round-trip guest did not finish in 60 s");
        if (error is not null) throw new InvalidOperationException($"round-trip guest (ring {ring}): {error.Message}", error);
        return seconds;
    }

    private static VmBenchPoint Stream(string kind, int batch, VmBenchOptions o)
    {
        var place = Placement.For(Environment.ProcessorCount);
        using var host = new Host();
        string args(string f) => $"-f {f} -l {o.FrameSize} -b {batch}";
        DomainSpec Spec(string name, string f, int cpu) => kind == "vm"
            ? new DomainSpec { Name = name, Kernel = GuestImages.Path("pkt-gen"), CommandLine = args(f), Vifs = [new VifSpec($"valeb:{f}")], Cpus = [[cpu]] }
            : new DomainSpec { Name = name, Nf = "pkt-gen", NfArgs = args(f), Vifs = [new VifSpec($"valeb:{f}")], Cpus = [[cpu]] };
        var rx = host.Create(Spec("bench-rx", "rx", place.RxCpu));
        var tx = host.Create(Spec("bench-tx", "tx", place.TxCpu));
        var rxPort = (ValePort)rx.Ports[0].Origin;
        Thread.Sleep(TimeSpan.FromSeconds(o.WarmupSeconds));
        long r0 = rxPort.GetStatistics().RxPackets, tx0 = tx.VCpuTimeNs(), rxc0 = rx.VCpuTimeNs();
        var sw = Stopwatch.StartNew();
        Thread.Sleep(TimeSpan.FromSeconds(o.Seconds));
        long r1 = rxPort.GetStatistics().RxPackets, tx1 = tx.VCpuTimeNs(), rxc1 = rx.VCpuTimeNs();
        double el = sw.Elapsed.TotalSeconds;
        if (tx.State != DomainState.Running || rx.State != DomainState.Running)
            throw new InvalidOperationException($"{kind} point batch {batch}: tx {tx.State} {tx.CrashReason}, rx {rx.State} {rx.CrashReason}");
        host.Destroy(tx);
        Thread.Sleep(50);
        var b = host.Switch.FindBridge("valeb")!.GetStatistics();
        host.Destroy(rx);
        return new VmBenchPoint(kind, batch, Math.Round((r1 - r0) / el / 1e6, 4), Math.Round(100.0 * (tx1 - tx0) / 1e9 / el, 1),
            Math.Round(100.0 * (rxc1 - rxc0) / 1e9 / el, 1), b.Sent, b.Delivered, b.Dropped, b.Unaccounted);
    }
}

/// <summary>
/// The demo with VM domains (<c>hypernf demo --domains vm</c>): a pkt-gen tx VM on valex, an
/// l2fwd VM between valex and valey, a pkt-gen rx VM on valey (the SDK's images), hypercall
/// model, the demo's placement. Figures come from the bridges' counters and the vCPU threads'
/// CPU time; latency from the rx guest's summary.
/// </summary>
public static class VmDemo
{
    public static ChainResult Run(double seconds, int frameSize, Placement place, Action<double>? progress = null)
    {
        using var host = new Host();
        DomainSpec Vm(string name, string image, string args, int cpu, params string[] ports) => new()
        {
            Name = name, Kernel = GuestImages.Path(image), CommandLine = args, Cpus = [[cpu]], Vifs = ports.Select(p => new VifSpec(p)).ToArray(),
        };
        const double Warmup = 0.5;
        var rx = host.Create(Vm("pktgen-rx", "pkt-gen", $"-f rx -t {Warmup + seconds + 1:F1}", place.RxCpu, "valey:rx"));
        var nf = host.Create(Vm("l2fwd", "l2fwd", "", place.NfCpu(0), "valex:nf0", "valey:nf1"));
        var tx = host.Create(Vm("pktgen-tx", "pkt-gen", $"-f tx -l {frameSize} -b 256", place.TxCpu, "valex:tx"));
        var rxPort = (ValePort)rx.Ports[0].Origin;
        Thread.Sleep(TimeSpan.FromSeconds(Warmup));
        var doms = new[] { tx, nf, rx };
        var c0 = CpuAccounting.Sample(doms);
        long r0 = rxPort.GetStatistics().RxPackets;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            Thread.Sleep(100);
            progress?.Invoke(Math.Min(1, sw.Elapsed.TotalSeconds / seconds));
        }
        long r1 = rxPort.GetStatistics().RxPackets;
        var c1 = CpuAccounting.Sample(doms);
        double el = sw.Elapsed.TotalSeconds;
        foreach (var d in doms)
            if (d.State is not (DomainState.Running or DomainState.Exited))
                throw new InvalidOperationException($"demo VM {d.Name} is {d.State}: {d.CrashReason}");
        long sent = ((ValePort)tx.Ports[0].Origin).GetStatistics().TxPackets;
        host.Destroy(tx);
        Thread.Sleep(200);
        var nfCounters = nf.Guest!.Counters.ToDictionary(kv => kv.Key, kv => kv.Value);
        host.Destroy(nf);
        VmKitWait(() => rx.State == DomainState.Exited, TimeSpan.FromSeconds(seconds + 3));
        string console = rx.Vm!.Console.Read().Text;
        long received = rxPort.GetStatistics().RxPackets;
        host.Destroy(rx);
        var bridges = new[] { "valex", "valey" }.Select(n => host.Switch.FindBridge(n)!.GetStatistics()).ToArray();
        var drops = new Dictionary<string, long>();
        foreach (var b in bridges)
            foreach (var r in DropReasons.All)
                if (b.Drops[(int)r] > 0) drops[r.Key()] = drops.GetValueOrDefault(r.Key()) + b.Drops[(int)r];
        var cpu = CpuAccounting.Between(c0, c1);
        double mpps = (r1 - r0) / el / 1e6;
        double nfCpu = cpu.First(c => c.Domain == "l2fwd").VCpuPct;
        return new ChainResult
        {
            IoModel = "hypercall (VMs)", Nf = "l2fwd (VM)", Length = 1, Bridges = ["valex", "valey"], FrameSize = frameSize,
            Mpps = Math.Round(mpps, 4), Gbps = Math.Round(mpps * 1e6 * (frameSize + 24) * 8 / 1e9, 3),
            Sent = sent, Received = received, Dropped = drops.Values.Sum(), Drops = drops,
            Unaccounted = bridges.Sum(b => b.Unaccounted),
            Cpu = cpu.Select(c => new DomainCpuResult(c.Domain, c.VCpuPct, c.BackendPct)).ToList(),
            NfCpuPerMpps = mpps > 0 ? Math.Round(nfCpu / mpps, 1) : 0,
            LatencyP50Us = Field(console, "p50_ns") / 1000.0, LatencyP99Us = Field(console, "p99_ns") / 1000.0,
            NfCounters = new() { ["l2fwd"] = nfCounters },
        };
    }

    private static void VmKitWait(Func<bool> cond, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (!cond() && DateTime.UtcNow < until) Thread.Sleep(20);
    }

    private static long Field(string console, string key)
    {
        string? line = console.Split('\n').LastOrDefault(l => l.StartsWith("pktgen-rx: received=", StringComparison.Ordinal));
        if (line is null) return 0;
        int i = line.IndexOf($" {key}=", StringComparison.Ordinal);
        if (i < 0) return 0;
        string v = line[(i + key.Length + 2)..];
        int end = v.IndexOf(' ');
        return long.TryParse(end < 0 ? v : v[..end], NumberStyles.Integer, CultureInfo.InvariantCulture, out long x) ? x : 0;
    }
}
