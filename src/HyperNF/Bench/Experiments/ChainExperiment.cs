using System.Text.Json.Serialization;

namespace HyperNF.Bench.Experiments;

public sealed record ChainPoint(
    [property: JsonPropertyName("io_model")] string IoModel,
    [property: JsonPropertyName("length")] int Length,
    [property: JsonPropertyName("mpps")] double Mpps,
    [property: JsonPropertyName("latency_p50_us")] double P50,
    [property: JsonPropertyName("latency_p99_us")] double P99,
    [property: JsonPropertyName("host_cpu_pct")] double HostCpuPct,
    [property: JsonPropertyName("unaccounted")] long Unaccounted);

/// <summary>
/// Service chains of 1..8 l2fwd NFs across bridges (vale0 -> nf1 -> vale1 -> ... -> rx):
/// throughput and latency per length and model. The paper: HyperNF better at every length,
/// degrading gracefully. All NF domains share the NF cores, as many NFs share a server.
/// </summary>
public static class ChainExperiment
{
    public static ExperimentReport Run(ExperimentOptions o)
    {
        int[] lengths = o.Quick ? [1, 2, 4, 8] : [1, 2, 3, 4, 5, 6, 7, 8];
        double secs = o.Quick ? 1.0 : 3.0;
        var kind = o.Kind;
        var points = new List<ChainPoint>();
        foreach (int len in lengths)
            foreach (var m in o.Models)
            {
                var r = ChainScenario.Run(new ChainOptions { IoModel = m, Length = len, Seconds = secs, WarmupSeconds = o.Quick ? 0.3 : 0.5, CpuPolicy = o.CpuPolicy, Domains = o.Domains });
                points.Add(new ChainPoint(m.ToString().ToLowerInvariant(), len, r.Mpps, r.LatencyP50Us, r.LatencyP99Us, r.HostCpuPct, r.Unaccounted));
                o.Log?.Invoke($"chain {kind.Label} length {len} {m,-9} {r.Mpps,7:F3} Mpps  p50 {r.LatencyP50Us:F0} us  p99 {r.LatencyP99Us:F0} us  unaccounted {r.Unaccounted}");
            }
        var models = o.Models.Select(m => m.ToString().ToLowerInvariant()).ToArray();
        var md = Md.Table(["length", .. models.Select(m => $"{m} Mpps"), .. models.Select(m => $"{m} p50/p99 µs")],
            lengths.Select(l => (IReadOnlyList<string>)[l.ToString(),
                .. models.Select(m => Md.F(points.First(p => p.Length == l && p.IoModel == m).Mpps, kind.Kind == BenchDomainKind.Vm ? 4 : 2)),
                .. models.Select(m => { var p = points.First(x => x.Length == l && x.IoModel == m); return $"{p.P50:F0} / {p.P99:F0}"; })]));
        md = Md.DomainsLine(kind) + md;
        var tput = new PlotSpec($"Service chain throughput ({kind.Label} domains)", "NFs in the chain", "Mpps",
            models.Select(m => new PlotSeries(m, lengths.Select(l => (double)l).ToArray(), lengths.Select(l => points.First(p => p.Length == l && p.IoModel == m).Mpps).ToArray())).ToArray());
        var lat = new PlotSpec($"Service chain latency (p99, {kind.Label} domains)", "NFs in the chain", "µs",
            models.Select(m => new PlotSeries(m, lengths.Select(l => (double)l).ToArray(), lengths.Select(l => points.First(p => p.Length == l && p.IoModel == m).P99).ToArray())).ToArray());
        return new ExperimentReport("chain", new { points, cpus = Environment.ProcessorCount, seconds_per_point = secs, domains = kind.KindKey, kvm_kind = kind.KvmKind }, md, [tput, lat]);
    }
}
