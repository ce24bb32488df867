using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;

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
    /// <summary>One lane's domains; <see cref="TxGen"/> and <see cref="RxGen"/> count its frames whatever the domains' kind.</summary>
    public sealed record LaneDomains(Lane Lane, Domain Tx, Domain Nf, Domain Rx, TrafficEndpoint TxGen, TrafficEndpoint RxGen);

    public Host Host { get; }
    public IReadOnlyList<LaneDomains> Lanes { get; }
    public Placement Placement { get; }
    public BenchDomains Kind { get; }

    private LanesScenario(Host host, List<LaneDomains> lanes, Placement placement, BenchDomains kind)
    {
        Host = host;
        Lanes = lanes;
        Placement = placement;
        Kind = kind;
    }

    public static LanesScenario Start(IReadOnlyList<Lane> lanes, IoModel model, IDomainCpuPolicy? policy, Placement? placement = null,
        BenchDomainKind domains = BenchDomainKind.Thread)
    {
        var kind = BenchDomains.For(domains);
        kind.Check();
        var place = placement ?? Placement.For(Environment.ProcessorCount);
        var genCpus = Enumerable.Range(0, Environment.ProcessorCount).Where(c => !place.NfCpus.Contains(c)).DefaultIfEmpty(0).ToArray();
        var host = new Host(new ValeSwitch { BridgeBatch = 256 }) { BackendCpus = genCpus, CpuPolicy = policy };
        var list = new List<LaneDomains>();
        try
        {
            for (int i = 0; i < lanes.Count; i++)
            {
                var l = lanes[i];
                if (!kind.Supports(l.Nf)) throw new ArgumentException($"lane {l.Name}: {kind.Label} domains have no nf '{l.Nf}'");
                var rx = host.Create(kind.Receiver($"{l.Name}-rx", $"valeb{i}:rx", genCpus));
                var nf = host.Create(kind.Nf(l.Name, [$"valea{i}:in", $"valeb{i}:out"], place.NfCpus, l.Nf, l.NfArgs, model, l.Weight, l.Cap, l.NfSlots));
                var tx = host.Create(kind.Sender($"{l.Name}-tx", $"valea{i}:tx", genCpus, l.FrameSize, l.RatePps, 256));
                foreach (int tid in rx.VCpuTids) Native.SetNice(tid, -10);
                foreach (int tid in tx.VCpuTids) Native.SetNice(tid, 5);
                list.Add(new LaneDomains(l, tx, nf, rx, kind.Endpoint(tx, sender: true), kind.Endpoint(rx, sender: false)));
            }
        }
        catch
        {
            host.Dispose();
            throw;
        }
        return new LanesScenario(host, list, place, kind);
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
