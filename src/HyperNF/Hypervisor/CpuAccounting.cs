namespace HyperNF.Hypervisor;

/// <summary>CPU use of one domain over an interval, in % of one CPU.</summary>
public sealed record DomainCpu
{
    public required string Domain { get; init; }
    public IoModel IoModel { get; init; }
    /// <summary>The domain's vCPU threads (in the hypercall model this includes all switching it caused).</summary>
    public double VCpuPct { get; init; }
    /// <summary>The backend thread working for this domain (split/merge); 0 in the hypercall model.</summary>
    public double BackendPct { get; init; }
    /// <summary>What the domain's allocation pays for: its vCPUs only. Backend time is billed to the host.</summary>
    public double ChargedToDomainPct => VCpuPct;
    public double ChargedToHostPct => BackendPct;
    public double TotalPct => VCpuPct + BackendPct;
}

/// <summary>
/// Samples per-thread CPU time (schedstat, nanoseconds) of every domain's vCPUs and backend
/// thread, per interval, never per packet. Call <see cref="Sample"/> at the start and end of
/// an interval and diff the two with <see cref="Between"/>.
/// </summary>
public static class CpuAccounting
{
    public sealed record Snapshot(long AtNs, IReadOnlyDictionary<int, (string Name, IoModel Model, long VCpuNs, long BackendNs)> Domains);

    public static Snapshot Sample(IEnumerable<Domain> domains)
    {
        var map = new Dictionary<int, (string, IoModel, long, long)>();
        foreach (var d in domains) map[d.Id] = (d.Name, d.IoModel, d.VCpuTimeNs(), d.BackendTimeNs());
        return new Snapshot(System.Diagnostics.Stopwatch.GetTimestamp() * (1_000_000_000 / System.Diagnostics.Stopwatch.Frequency), map);
    }

    public static IReadOnlyList<DomainCpu> Between(Snapshot a, Snapshot b)
    {
        double el = Math.Max(1, b.AtNs - a.AtNs);
        var list = new List<DomainCpu>();
        foreach (var (id, end) in b.Domains)
        {
            if (!a.Domains.TryGetValue(id, out var start)) continue;
            list.Add(new DomainCpu
            {
                Domain = end.Name,
                IoModel = end.Model,
                VCpuPct = Math.Round(100.0 * (end.VCpuNs - start.VCpuNs) / el, 1),
                BackendPct = Math.Round(100.0 * (end.BackendNs - start.BackendNs) / el, 1),
            });
        }
        return list;
    }
}
