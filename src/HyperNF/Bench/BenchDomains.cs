using System.Globalization;
using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Tools;
using HyperNF.Vmm;

namespace HyperNF.Bench;

/// <summary>What runs the experiments' domains: NF code on host threads, or KVM virtual machines.</summary>
public enum BenchDomainKind
{
    Thread,
    Vm,
}

/// <summary>
/// A running traffic generator or sink of an experiment, whatever kind of domain it is:
/// frames so far (a thread pkt-gen's own count; a VM's from its port, what the switch took
/// from or delivered to its rings) and, once it has stopped, its latency and loss.
/// </summary>
public sealed class TrafficEndpoint(Domain domain, Func<long> frames, Func<PacketGenSummary?>? summary = null)
{
    public Domain Domain { get; } = domain;
    public long Frames => frames();
    /// <summary>A thread pkt-gen's summary; null for a VM (read <see cref="BenchDomains.Latency"/> after it exits).</summary>
    public PacketGenSummary? Summary => summary?.Invoke();
}

/// <summary>
/// The domain factory of the experiments, one per kind, so each experiment is written once:
/// senders, sinks and NF domains as thread domains (built-in NFs, the C# pkt-gen) or as VM
/// domains (the guest SDK's images: pkt-gen, l2fwd, cost, router). The generators always use
/// the hypercall model (dom0's pkt-gen transmits in its own context); the NF domains get the
/// model under test.
/// </summary>
public abstract class BenchDomains
{
    public static BenchDomains For(BenchDomainKind kind) => kind == BenchDomainKind.Vm ? new VmDomains() : new ThreadDomains();

    public static BenchDomainKind ParseKind(string text) => text.Trim().ToLowerInvariant() switch
    {
        "thread" or "threads" => BenchDomainKind.Thread,
        "vm" or "vms" => BenchDomainKind.Vm,
        _ => throw new ArgumentException($"--domains must be thread or vm, not '{text}'"),
    };

    public abstract BenchDomainKind Kind { get; }
    public string KindKey => Kind == BenchDomainKind.Vm ? "vm" : "thread";
    /// <summary>"pvm" or "hardware" for VM domains; null for threads.</summary>
    public virtual string? KvmKind => null;
    /// <summary>The KVM in words, for table headers; null for threads.</summary>
    public virtual string? KvmDescription => null;
    /// <summary>What kind of domain, in every output: "thread" or "vm (pvm)".</summary>
    public string Label => KvmKind is { } k ? $"vm ({k})" : "thread";

    /// <summary>Whether this kind has the NF <paramref name="nf"/> (VMs: the guest images).</summary>
    public abstract bool Supports(string nf);

    /// <summary>Throws when this kind cannot run here (no KVM, images missing).</summary>
    public virtual void Check() { }

    public abstract DomainSpec Sender(string name, string vif, IReadOnlyList<int> cpus, int frameSize, long ratePps, int batch);

    /// <summary>A sink: it runs until <see cref="StopSink"/> (then a VM sink prints its latency) or until destroyed.</summary>
    public abstract DomainSpec Receiver(string name, string vif, IReadOnlyList<int> cpus);

    public abstract DomainSpec Nf(string name, IReadOnlyList<string> vifs, IReadOnlyList<int> cpus, string nf, string? nfArgs, IoModel model,
        int weight = 256, int cap = 0, int slots = Memory.RegionLayout.DefaultSlots);

    /// <summary>The endpoint view of a created sender or sink.</summary>
    public abstract TrafficEndpoint Endpoint(Domain d, bool sender);

    /// <summary>
    /// Frames an NF domain dropped itself (its verdicts, no room to reflect), read once traffic
    /// has drained: the NF's own counters (threads), or what entered its first port and did not
    /// leave its second (VMs).
    /// </summary>
    public abstract long NfDrops(Domain nf);

    /// <summary>Counters of an NF domain for the JSON.</summary>
    public virtual Dictionary<string, long> NfCounters(Domain nf) => nf.Guest!.Counters.ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>
    /// Stops a sink in order once the traffic has drained, so it reports what it received: a VM
    /// sink is asked to shut down (the guest ABI's shutdown word) and waited for; a thread
    /// sink's summary is read as it is. Never on a timer started at creation: how long the
    /// other domains take to start must not cut the sink's run short.
    /// </summary>
    public virtual void StopSink(TrafficEndpoint rx, TimeSpan wait) { }

    /// <summary>Latency p50/p99 (µs), lost and received frames of a stopped sink.</summary>
    public abstract (double P50Us, double P99Us, long Lost, long? Received) Latency(TrafficEndpoint rx);

    private sealed class ThreadDomains : BenchDomains
    {
        public override BenchDomainKind Kind => BenchDomainKind.Thread;
        public override bool Supports(string nf) => true;

        public override DomainSpec Sender(string name, string vif, IReadOnlyList<int> cpus, int frameSize, long ratePps, int batch)
        {
            var g = new PacketGenGuest(new PacketGeneratorOptions { Function = PacketGenFunction.Tx, FrameLength = frameSize, RatePps = ratePps, Batch = batch });
            return new DomainSpec { Name = name, Vifs = [new VifSpec(vif)], Cpus = [cpus], Guest = () => g, IoModel = IoModel.Hypercall };
        }

        public override DomainSpec Receiver(string name, string vif, IReadOnlyList<int> cpus)
        {
            var g = new PacketGenGuest(new PacketGeneratorOptions { Function = PacketGenFunction.Rx, Batch = 512 });
            return new DomainSpec { Name = name, Vifs = [new VifSpec(vif)], Cpus = [cpus], Guest = () => g, IoModel = IoModel.Hypercall };
        }

        public override DomainSpec Nf(string name, IReadOnlyList<string> vifs, IReadOnlyList<int> cpus, string nf, string? nfArgs, IoModel model,
            int weight = 256, int cap = 0, int slots = Memory.RegionLayout.DefaultSlots) => new()
        {
            Name = name, Vifs = vifs.Select(v => new VifSpec(v)).ToArray(), Cpus = [cpus], Nf = nf, NfArgs = nfArgs,
            IoModel = model, Weight = weight, Cap = cap, SlotsPerRing = slots,
        };

        public override TrafficEndpoint Endpoint(Domain d, bool sender)
        {
            var g = (PacketGenGuest)d.Guest!;
            return new TrafficEndpoint(d, () => g.Frames, () => g.Summary);
        }

        public override long NfDrops(Domain nf) =>
            nf.Guest!.Counters.Where(kv => kv.Key is "nf_dropped" or "reflect_no_room").Sum(kv => kv.Value);

        public override (double P50Us, double P99Us, long Lost, long? Received) Latency(TrafficEndpoint rx)
        {
            var s = rx.Summary;
            return (s?.Latency?.P50Us ?? 0, s?.Latency?.P99Us ?? 0, s?.Lost ?? 0, s?.Received);
        }
    }

    private sealed class VmDomains : BenchDomains
    {
        private static readonly string[] Images = ["l2fwd", "cost", "router"];
        public override BenchDomainKind Kind => BenchDomainKind.Vm;
        public override string? KvmKind => KvmPlatform.Current.KindName;
        public override string? KvmDescription => KvmPlatform.Current.Describe();
        public override bool Supports(string nf) => Images.Contains(nf);

        public override void Check()
        {
            if (KvmPlatform.Current.Unavailable is { } why) throw new InvalidOperationException($"VM domains need KVM: {why}");
            GuestImages.Path("pkt-gen");
        }

        private static DomainSpec Vm(string name, string image, string args, IReadOnlyList<string> vifs, IReadOnlyList<int> cpus, IoModel model) => new()
        {
            Name = name, Kernel = GuestImages.Path(image), CommandLine = args, Vifs = vifs.Select(v => new VifSpec(v)).ToArray(),
            Cpus = [cpus], IoModel = model,
        };

        public override DomainSpec Sender(string name, string vif, IReadOnlyList<int> cpus, int frameSize, long ratePps, int batch) =>
            Vm(name, "pkt-gen", $"-f tx -l {frameSize} -b {batch}{(ratePps > 0 ? $" -R {ratePps}" : "")}", [vif], cpus, IoModel.Hypercall);

        public override DomainSpec Receiver(string name, string vif, IReadOnlyList<int> cpus) =>
            Vm(name, "pkt-gen", "-f rx -b 512", [vif], cpus, IoModel.Hypercall);

        public override DomainSpec Nf(string name, IReadOnlyList<string> vifs, IReadOnlyList<int> cpus, string nf, string? nfArgs, IoModel model,
            int weight = 256, int cap = 0, int slots = Memory.RegionLayout.DefaultSlots)
        {
            if (!Supports(nf)) throw new ArgumentException($"nf '{nf}' has no guest image; VM domains run {string.Join(", ", Images)}");
            return Vm(name, nf, nfArgs ?? "", vifs, cpus, model) with { Weight = weight, Cap = cap, SlotsPerRing = slots };
        }

        public override TrafficEndpoint Endpoint(Domain d, bool sender)
        {
            var port = (ValePort)d.Ports[0].Origin;
            return new TrafficEndpoint(d, sender ? () => port.GetStatistics().TxPackets : () => port.GetStatistics().RxPackets);
        }

        public override long NfDrops(Domain nf)
        {
            if (nf.Ports.Count < 2) return 0;
            long inbound = ((ValePort)nf.Ports[0].Origin).GetStatistics().RxPackets;
            long outbound = ((ValePort)nf.Ports[1].Origin).GetStatistics().TxPackets;
            return Math.Max(0, inbound - outbound);
        }

        public override Dictionary<string, long> NfCounters(Domain nf)
        {
            var c = base.NfCounters(nf);
            if (nf.Backend is { } b)
            {
                c["backend_rounds"] = b.Rounds;
                c["backend_kicks"] = b.VmKick?.Kicks ?? b.Kicks;
                c["backend_wakeups"] = b.Notifications;
            }
            return c;
        }

        public override void StopSink(TrafficEndpoint rx, TimeSpan wait)
        {
            if (!rx.Domain.RequestShutdown()) return;
            var until = DateTime.UtcNow + wait;
            while (rx.Domain.State is DomainState.Running or DomainState.Paused && DateTime.UtcNow < until) Thread.Sleep(5);
        }

        public override (double P50Us, double P99Us, long Lost, long? Received) Latency(TrafficEndpoint rx)
        {
            string text = rx.Domain.Vm?.Console.Read().Text ?? "";
            string? line = text.Split('\n').LastOrDefault(l => l.StartsWith("pktgen-rx: received=", StringComparison.Ordinal));
            if (line is null) return (0, 0, 0, null);
            return (Field(line, "p50_ns") / 1000.0, Field(line, "p99_ns") / 1000.0, Field(line, "lost"), Field(line, "received"));
        }

        private static long Field(string line, string key)
        {
            int i = line.IndexOf($" {key}=", StringComparison.Ordinal);
            if (i < 0) return 0;
            string v = line[(i + key.Length + 2)..];
            int end = v.IndexOf(' ');
            return long.TryParse(end < 0 ? v : v[..end], NumberStyles.Integer, CultureInfo.InvariantCulture, out long x) ? x : 0;
        }
    }
}
