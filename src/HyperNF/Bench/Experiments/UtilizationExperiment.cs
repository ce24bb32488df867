using System.Text.Json.Serialization;

namespace HyperNF.Bench.Experiments;

public sealed record UtilizationPoint(
    [property: JsonPropertyName("io_model")] string IoModel,
    [property: JsonPropertyName("nf")] string Nf,
    [property: JsonPropertyName("offered_mpps")] double OfferedMpps,
    [property: JsonPropertyName("mpps")] double Mpps,
    [property: JsonPropertyName("nf_vcpu_pct")] double NfVCpuPct,
    [property: JsonPropertyName("backend_pct")] double BackendPct,
    [property: JsonPropertyName("cpu_pct_per_mpps")] double CpuPctPerMpps);

/// <summary>
/// CPU spent per Mpps forwarded (NF domain plus the backend working for it) by model, at a
/// fixed offered load that every model can carry, so the figure compares the cost of the same
/// work: the paper's utilization claim (no cores reserved for backends; I/O work scales with
/// traffic).
/// </summary>
public static class UtilizationExperiment
{
    /// <summary>Offered load of the VM run (quick), frames per second.</summary>
    public const long VmUtilizationRate = 50_000;

    public static ExperimentReport Run(ExperimentOptions o)
    {
        var kind = o.Kind;
        bool vm = kind.Kind == BenchDomainKind.Vm;
        // VM domains: the real NF is the router (no firewall image), and the offered loads are
        // what every model carries through VMs (each exit costs ~100 µs on PVM).
        (string Label, string Nf, string? Args)[] nfs = [("l2fwd", "l2fwd", null), ("cost-300", "cost", "cycles=300"),
            vm ? ("router", "router", ChainScenario.DefaultNfArgs("router")) : ("firewall", "firewall", ChainScenario.DefaultNfArgs("firewall"))];
        long[] rates = vm ? (o.Quick ? [VmUtilizationRate] : [VmUtilizationRate / 2, VmUtilizationRate, VmUtilizationRate * 2])
            : o.Quick ? [1_000_000] : [500_000, 1_000_000, 2_000_000];
        double secs = o.Quick ? 1.5 : 3.0;
        var points = new List<UtilizationPoint>();
        foreach (var (label, nf, args) in nfs)
            foreach (long rate in rates)
                foreach (var m in o.Models)
                {
                    var r = ChainScenario.Run(new ChainOptions { IoModel = m, Nf = nf, NfArgs = args, RatePps = rate, Seconds = secs, WarmupSeconds = 0.3, CpuPolicy = o.CpuPolicy, Domains = o.Domains });
                    var nfCpu = r.Cpu.Where(c => c.Domain.StartsWith("nf", StringComparison.Ordinal)).ToArray();
                    double v = nfCpu.Sum(c => c.VCpuPct), b = nfCpu.Sum(c => c.BackendPct);
                    var p = new UtilizationPoint(m.ToString().ToLowerInvariant(), label, Math.Round(rate / 1e6, 3), r.Mpps, v, b, r.Mpps > 0 ? Math.Round((v + b) / r.Mpps, 1) : 0);
                    points.Add(p);
                    o.Log?.Invoke($"utilization {kind.Label} {label,-9} {rate / 1e6:F3} Mpps offered {m,-9} got {r.Mpps:F3}  NF {v:F0}% + backend {b:F0}% = {p.CpuPctPerMpps} %CPU/Mpps");
                }
        var models = o.Models.Select(m => m.ToString().ToLowerInvariant()).ToArray();
        var keys = points.Select(p => (p.Nf, p.OfferedMpps)).Distinct().ToArray();
        var md = Md.Table(["NF", "offered Mpps", .. models.Select(m => $"{m} %CPU/Mpps (NF+backend)")],
            keys.Select(k => (IReadOnlyList<string>)[k.Nf, Md.F(k.OfferedMpps, 3), .. models.Select(m =>
            {
                var p = points.First(x => x.Nf == k.Nf && x.OfferedMpps == k.OfferedMpps && x.IoModel == m);
                return $"{p.CpuPctPerMpps:F1} ({p.NfVCpuPct:F0}+{p.BackendPct:F0}% at {p.Mpps:F3} Mpps)";
            })]));
        md = Md.DomainsLine(kind) + md;
        var cats = keys.Select(k => $"{k.Nf}@{k.OfferedMpps}").ToArray();
        var plot = new PlotSpec($"CPU per Mpps (NF + backend), {kind.Label} domains", "NF @ offered Mpps", "% of a CPU per Mpps",
            models.Select(m => new PlotSeries(m, cats.Select((_, i) => (double)i).ToArray(),
                keys.Select(k => points.First(x => x.Nf == k.Nf && x.OfferedMpps == k.OfferedMpps && x.IoModel == m).CpuPctPerMpps).ToArray())).ToArray(), cats, Bars: true);
        return new ExperimentReport("utilization", new { points, cpus = Environment.ProcessorCount, domains = kind.KindKey, kvm_kind = kind.KvmKind }, md, [plot]);
    }
}
