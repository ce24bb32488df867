using System.Text.Json.Serialization;
using HyperNF.Hypervisor;

namespace HyperNF.Bench.Experiments;

public sealed record ThroughputPoint(
    [property: JsonPropertyName("io_model")] string IoModel,
    [property: JsonPropertyName("nf")] string Nf,
    [property: JsonPropertyName("mpps")] double Mpps,
    [property: JsonPropertyName("nf_vcpu_pct")] double NfVCpuPct,
    [property: JsonPropertyName("backend_pct")] double BackendPct,
    [property: JsonPropertyName("cpu_pct_per_mpps")] double CpuPctPerMpps,
    [property: JsonPropertyName("total_cpu_pct")] double TotalCpuPct,
    [property: JsonPropertyName("latency_p50_us")] double P50,
    [property: JsonPropertyName("latency_p99_us")] double P99,
    [property: JsonPropertyName("unaccounted")] long Unaccounted);

public sealed record ThroughputGain(
    [property: JsonPropertyName("nf")] string Nf,
    [property: JsonPropertyName("vs_split_pct")] double VsSplitPct,
    [property: JsonPropertyName("vs_merge_pct")] double VsMergePct);

public sealed record ThroughputData(
    [property: JsonPropertyName("points")] List<ThroughputPoint> Points,
    [property: JsonPropertyName("gains")] List<ThroughputGain> Gains,
    [property: JsonPropertyName("cpus")] int Cpus,
    [property: JsonPropertyName("seconds_per_point")] double Seconds,
    [property: JsonPropertyName("domains")] string Domains,
    [property: JsonPropertyName("kvm_kind")] string? KvmKind);

/// <summary>
/// The paper's throughput figure: one NF domain between a sender and a receiver, NF cost
/// swept (the cost NF at 0..3000 cycles per packet, plus the real NFs), under each I/O model.
/// The paper reports HyperNF ahead by 10% to 73%, more for light NFs.
/// </summary>
public static class ThroughputExperiment
{
    /// <summary>The sweep for a kind of domain: VM domains run the guest images (cost, l2fwd, router).</summary>
    public static IReadOnlyList<(string Label, string Nf, string? Args)> Functions(bool quick, BenchDomains kind) =>
        Functions(quick).Where(f => kind.Supports(f.Nf)).ToArray();

    public static IReadOnlyList<(string Label, string Nf, string? Args)> Functions(bool quick) =>
    [
        ("cost-0", "cost", "cycles=0"),
        ("cost-100", "cost", "cycles=100"),
        ("cost-300", "cost", "cycles=300"),
        ("cost-1000", "cost", "cycles=1000"),
        ("cost-3000", "cost", "cycles=3000"),
        ("l2fwd", "l2fwd", null),
        ("firewall", "firewall", ChainScenario.DefaultNfArgs("firewall")),
        ("router", "router", ChainScenario.DefaultNfArgs("router")),
        ("nat", "nat", ChainScenario.DefaultNfArgs("nat")),
    ];

    public static ExperimentReport Run(ExperimentOptions o)
    {
        double secs = o.Quick ? 1.0 : 3.0;
        var kind = o.Kind;
        var functions = Functions(o.Quick, kind);
        var points = new List<ThroughputPoint>();
        foreach (var (label, nf, args) in functions)
        {
            foreach (var m in o.Models)
            {
                var r = ChainScenario.Run(new ChainOptions { IoModel = m, Nf = nf, NfArgs = args, Seconds = secs, WarmupSeconds = o.Quick ? 0.3 : 0.5, CpuPolicy = o.CpuPolicy, Domains = o.Domains });
                var nfCpu = r.Cpu.Where(c => c.Domain.StartsWith("nf", StringComparison.Ordinal)).ToArray();
                double v = nfCpu.Sum(c => c.VCpuPct), b = nfCpu.Sum(c => c.BackendPct);
                double total = r.Cpu.Sum(c => c.VCpuPct + c.BackendPct);
                points.Add(new ThroughputPoint(m.Key(), label, r.Mpps, v, b, r.Mpps > 0 ? Math.Round((v + b) / r.Mpps, 1) : 0, Math.Round(total, 1), r.LatencyP50Us, r.LatencyP99Us, r.Unaccounted));
                o.Log?.Invoke($"throughput {kind.Label} {label,-9} {m.Key(),-9} {r.Mpps,7:F3} Mpps  NF CPU {v:F0}% + backend {b:F0}%  unaccounted {r.Unaccounted}");
            }
        }
        var gains = new List<ThroughputGain>();
        foreach (var (label, _, _) in functions)
        {
            double Get(string m) => points.FirstOrDefault(p => p.Nf == label && p.IoModel == m)?.Mpps ?? 0;
            double h = Get("hypercall"), s = Get("split"), mg = Get("merge");
            gains.Add(new ThroughputGain(label, s > 0 ? Math.Round(100 * (h / s - 1), 1) : 0, mg > 0 ? Math.Round(100 * (h / mg - 1), 1) : 0));
        }
        var data = new ThroughputData(points, gains, Environment.ProcessorCount, secs, kind.KindKey, kind.KvmKind);
        var labels = functions.Select(f => f.Label).ToArray();
        var md = Md.Table(["NF", .. o.Models.Select(m => $"{m.Key()} Mpps"), "hypercall vs split", "hypercall vs merge"],
            labels.Select(l => (IReadOnlyList<string>)[l, .. o.Models.Select(m => Md.F(points.First(p => p.Nf == l && p.IoModel == m.Key()).Mpps, kind.Kind == BenchDomainKind.Vm ? 4 : 2)),
                $"{gains.First(g => g.Nf == l).VsSplitPct:+0.0;-0.0;0.0}%", $"{gains.First(g => g.Nf == l).VsMergePct:+0.0;-0.0;0.0}%"]));
        md = Md.DomainsLine(kind) + md;
        var plot = new PlotSpec($"Throughput by NF and I/O model ({kind.Label} domains)", "network function", "Mpps",
            o.Models.Select(m => new PlotSeries(m.Key(), labels.Select((_, i) => (double)i).ToArray(),
                labels.Select(l => points.First(p => p.Nf == l && p.IoModel == m.Key()).Mpps).ToArray())).ToArray(), labels, Bars: true);
        return new ExperimentReport("throughput", data, md, [plot]);
    }
}
