using System.Diagnostics;
using System.Text.Json.Serialization;
using HyperNF.Hypervisor;

namespace HyperNF.Bench.Experiments;

public sealed record AdaptPhase(
    [property: JsonPropertyName("phase")] int Phase,
    [property: JsonPropertyName("active")] string Active,
    [property: JsonPropertyName("offered_mpps")] double OfferedMpps,
    [property: JsonPropertyName("nf_a_mpps")] double A,
    [property: JsonPropertyName("nf_b_mpps")] double B,
    [property: JsonPropertyName("total_mpps")] double Total);

public sealed record AdaptModel(
    [property: JsonPropertyName("io_model")] string IoModel,
    /// <summary>Lowest phase total over highest: 1.0 means capacity followed the load perfectly.</summary>
    [property: JsonPropertyName("follow_ratio")] double FollowRatio,
    [property: JsonPropertyName("phases")] List<AdaptPhase> Phases,
    [property: JsonPropertyName("series_t")] double[] T,
    [property: JsonPropertyName("series_a")] double[] SeriesA,
    [property: JsonPropertyName("series_b")] double[] SeriesB);

/// <summary>
/// Load shifts between two NFs that share the NF core: only A has traffic, then only B, then
/// both, then A again (senders paused and resumed). A throughput time series per NF and the
/// total per model show how quickly and how fully capacity follows the offered load; in the
/// hypercall model the CPU goes wherever the traffic is, without re-pinning anything.
/// </summary>
public static class AdaptExperiment
{
    public static ExperimentReport Run(ExperimentOptions o)
    {
        double phaseSecs = o.Quick ? 1.5 : 4;
        string[] pattern = ["A", "B", "AB", "A"];
        Lane[] lanes = [new Lane { Name = "nfA", NfArgs = "cycles=300" }, new Lane { Name = "nfB", NfArgs = "cycles=300" }];
        var kind = o.Kind;
        var models = new List<AdaptModel>();
        foreach (var m in o.Models)
        {
            using var sc = LanesScenario.Start(lanes, m, o.CpuPolicy?.Invoke(), domains: o.Domains);
            var a = sc.Lanes[0];
            var b = sc.Lanes[1];
            b.Tx.Pause();
            Thread.Sleep(500);
            var ts = new List<double>();
            var sa = new List<double>();
            var sb = new List<double>();
            var phases = new List<AdaptPhase>();
            var clock = Stopwatch.StartNew();
            for (int p = 0; p < pattern.Length; p++)
            {
                SetActive(a.Tx, pattern[p].Contains('A'));
                SetActive(b.Tx, pattern[p].Contains('B'));
                Thread.Sleep(200); // settle before measuring the phase
                long a0 = a.RxGen.Frames, b0 = b.RxGen.Frames, ta0 = a.TxGen.Frames, tb0 = b.TxGen.Frames;
                var pt = Stopwatch.GetTimestamp();
                int steps = (int)(phaseSecs / 0.25);
                long la = a0, lb = b0;
                for (int s = 0; s < steps; s++)
                {
                    Thread.Sleep(250);
                    long fa = a.RxGen.Frames, fb = b.RxGen.Frames;
                    ts.Add(Math.Round(clock.Elapsed.TotalSeconds, 2));
                    sa.Add(Math.Round((fa - la) / 0.25 / 1e6, 3));
                    sb.Add(Math.Round((fb - lb) / 0.25 / 1e6, 3));
                    la = fa;
                    lb = fb;
                }
                double el = Stopwatch.GetElapsedTime(pt).TotalSeconds;
                double ma = (a.RxGen.Frames - a0) / el / 1e6, mb = (b.RxGen.Frames - b0) / el / 1e6;
                double offered = (a.TxGen.Frames - ta0 + b.TxGen.Frames - tb0) / el / 1e6;
                phases.Add(new AdaptPhase(p + 1, pattern[p], Math.Round(offered, 2), Math.Round(ma, 3), Math.Round(mb, 3), Math.Round(ma + mb, 3)));
            }
            double follow = phases.Max(x => x.Total) > 0 ? Math.Round(phases.Min(x => x.Total) / phases.Max(x => x.Total), 3) : 0;
            models.Add(new AdaptModel(m.Key(), follow, phases, ts.ToArray(), sa.ToArray(), sb.ToArray()));
            o.Log?.Invoke($"adapt {kind.Label} {m.Key(),-9} follow {follow:F2}  " + string.Join("  ", phases.Select(x => $"[{x.Active}] A {x.A:F2} B {x.B:F2} = {x.Total:F2}")));
        }
        var md = Md.Table(["model", "follow ratio", .. pattern.Select((x, i) => $"phase {i + 1} ({x}) A / B / total Mpps")],
            models.Select(mm => (IReadOnlyList<string>)[mm.IoModel, Md.F(mm.FollowRatio), .. mm.Phases.Select(x => $"{x.A:F2} / {x.B:F2} / {x.Total:F2}")]));
        md = Md.DomainsLine(kind) + md;
        var plots = models.Select(mm => new PlotSpec($"Load shifting between two NFs ({mm.IoModel}, {kind.Label} domains)", "seconds", "Mpps",
            [new PlotSeries("nfA", mm.T, mm.SeriesA), new PlotSeries("nfB", mm.T, mm.SeriesB),
             new PlotSeries("total", mm.T, mm.SeriesA.Zip(mm.SeriesB, (x, y) => x + y).ToArray())])).ToList();
        return new ExperimentReport("adapt", new { models, phase_seconds = phaseSecs, pattern, domains = kind.KindKey, kvm_kind = kind.KvmKind }, md, plots);
    }

    private static void SetActive(Domain tx, bool active)
    {
        if (active && tx.State == DomainState.Paused) tx.Unpause();
        else if (!active && tx.State == DomainState.Running) tx.Pause();
    }
}
