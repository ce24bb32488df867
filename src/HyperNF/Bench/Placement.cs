namespace HyperNF.Bench;

/// <summary>
/// Where experiment threads go. On 2 cores the sender has core 0 to itself, so it can always
/// outpace the NFs (the NF, not the generator, must be the bottleneck); the NF domains and the
/// light receiver share core 1; split backends, needing "other cores", land on core 0 next to
/// the sender, as they would on a host with no core to spare. With 3 cores the NFs get core 2
/// to themselves and split backends share core 1 with the light receiver. With 4+ cores the
/// generators, NFs and backends each get their own cores (NFs from core 2 on, at least one
/// core left for backends). Every core of the machine is used.
/// </summary>
public sealed record Placement(int TxCpu, int RxCpu, IReadOnlyList<int> NfCpus, IReadOnlyList<int> BackendCpus)
{
    public static Placement For(int cpus, int nfs = 1)
    {
        if (cpus <= 1) return new Placement(0, 0, [0], [0]);
        if (cpus == 2) return new Placement(0, 1, [1], [0]);
        if (cpus == 3) return new Placement(0, 1, [2], [1]);
        int nfCount = Math.Max(1, Math.Min(nfs, cpus - 3));
        var nf = Enumerable.Range(2, nfCount).ToArray();
        var rest = Enumerable.Range(2 + nfCount, cpus - 2 - nfCount).ToArray();
        return new Placement(0, 1, nf, rest.Length > 0 ? rest : [0]);
    }

    public int NfCpu(int i) => NfCpus[i % NfCpus.Count];
}
