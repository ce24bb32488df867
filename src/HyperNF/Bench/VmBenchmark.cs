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
