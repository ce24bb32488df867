using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;
using HyperNF.Tools;

namespace HyperNF.Bench;

/// <summary>One NF with its own traffic: sender -> valeaN -> NF -> valebN -> receiver.</summary>
public sealed record Lane
{
    public required string Name { get; init; }
    public int FrameSize { get; init; } = 60;
    public long RatePps { get; init; }
    public int Weight { get; init; } = 256;
    public int Cap { get; init; }
    public string Nf { get; init; } = "cost";
    public string? NfArgs { get; init; } = "cycles=1000";
    /// <summary>
    /// Slots per ring of the NF domain: deep enough to ride out the milliseconds its sender
    /// may be descheduled on a shared generator core, so an NF that should be busy stays busy.
    /// </summary>
    public int NfSlots { get; init; } = 4096;
}

/// <summary>
/// Several NFs side by side, each with its own sender and receiver, all NF domains pinned to
/// the same NF core(s) so they compete for it under their weights and caps. Generators and
/// receivers live on the other core(s) (the receivers with priority) so that the NF core
/// holds only NF work and, in merge, the backends.
/// </summary>
public sealed class LanesScenario : IDisposable
{
    public sealed record LaneDomains(Lane Lane, Domain Tx, Domain Nf, Domain Rx, PacketGenGuest TxGen, PacketGenGuest RxGen);

    public Host Host { get; }
    public IReadOnlyList<LaneDomains> Lanes { get; }
    public Placement Placement { get; }

    private LanesScenario(Host host, List<LaneDomains> lanes, Placement placement)
    {
        Host = host;
        Lanes = lanes;
        Placement = placement;
    }

    public static LanesScenario Start(IReadOnlyList<Lane> lanes, IoModel model, IDomainCpuPolicy? policy, Placement? placement = null)
    {
        var place = placement ?? Placement.For(Environment.ProcessorCount);
        var genCpus = Enumerable.Range(0, Environment.ProcessorCount).Where(c => !place.NfCpus.Contains(c)).DefaultIfEmpty(0).ToArray();
        var host = new Host(new ValeSwitch { BridgeBatch = 256 }) { BackendCpus = genCpus, CpuPolicy = policy };
        var list = new List<LaneDomains>();
        try
        {
            for (int i = 0; i < lanes.Count; i++)
            {
                var l = lanes[i];
                var rxg = new PacketGenGuest(new PacketGeneratorOptions { Function = PacketGenFunction.Rx, Batch = 512 });
                var rx = host.Create(new DomainSpec { Name = $"{l.Name}-rx", Vifs = [new VifSpec($"valeb{i}:rx")], Cpus = [genCpus], Guest = () => rxg });
                var nf = host.Create(new DomainSpec
                {
                    Name = l.Name, Vifs = [new VifSpec($"valea{i}:in"), new VifSpec($"valeb{i}:out")], Cpus = [place.NfCpus.ToArray()],
                    Nf = l.Nf, NfArgs = l.NfArgs, Weight = l.Weight, Cap = l.Cap, IoModel = model, SlotsPerRing = l.NfSlots,
                });
                var txg = new PacketGenGuest(new PacketGeneratorOptions { Function = PacketGenFunction.Tx, FrameLength = l.FrameSize, RatePps = l.RatePps, Batch = 256 });
                var tx = host.Create(new DomainSpec { Name = $"{l.Name}-tx", Vifs = [new VifSpec($"valea{i}:tx")], Cpus = [genCpus], Guest = () => txg });
                foreach (int tid in rx.VCpuTids) Native.SetNice(tid, -10);
                foreach (int tid in tx.VCpuTids) Native.SetNice(tid, 5);
                list.Add(new LaneDomains(l, tx, nf, rx, txg, rxg));
            }
        }
        catch
        {
            host.Dispose();
            throw;
        }
        return new LanesScenario(host, list, place);
    }

    public void Dispose() => Host.Dispose();

    /// <summary>
    /// What each NF should get of the NF cores: capacity shared in proportion to weight, caps
    /// honoured, and what a capped domain cannot use shared again among the others (water-filling).
    /// </summary>
    public static double[] Allocations(IReadOnlyList<Lane> lanes, double capacityPct)
    {
        var alloc = new double[lanes.Count];
        var open = Enumerable.Range(0, lanes.Count).ToHashSet();
        double left = capacityPct;
        while (open.Count > 0)
        {
            double w = open.Sum(i => (double)lanes[i].Weight);
            var capped = open.Where(i => lanes[i].Cap > 0 && lanes[i].Cap < left * lanes[i].Weight / w).ToList();
            if (capped.Count == 0)
            {
                foreach (int i in open) alloc[i] = left * lanes[i].Weight / w;
                break;
            }
            foreach (int i in capped)
            {
                alloc[i] = lanes[i].Cap;
                left -= lanes[i].Cap;
                open.Remove(i);
            }
        }
        return alloc;
    }
}
