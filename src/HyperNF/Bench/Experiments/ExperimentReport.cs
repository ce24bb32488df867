namespace HyperNF.Bench.Experiments;

/// <summary>One line of a plot.</summary>
public sealed record PlotSeries(string Name, double[] X, double[] Y);

/// <summary>
/// What to draw, without a drawing library: the CLI renders it (ScottPlot) to PNG.
/// <see cref="Categories"/> set: X values are indices into it (bar-like categorical axis).
/// </summary>
public sealed record PlotSpec(string Title, string XLabel, string YLabel, IReadOnlyList<PlotSeries> Series, IReadOnlyList<string>? Categories = null, bool Bars = false);

/// <summary>The output of one experiment: JSON data, a markdown table and a plot.</summary>
public sealed record ExperimentReport(string Name, object Data, string Markdown, IReadOnlyList<PlotSpec> Plots);

public sealed record ExperimentOptions
{
    /// <summary>Fewer points and shorter runs: each experiment under 2 minutes on 2 cores.</summary>
    public bool Quick { get; init; }
    public Action<string>? Log { get; init; }
    /// <summary>Installs kernel CPU enforcement on each host the experiment creates (cgroups); null = accounting only.</summary>
    public Func<Hypervisor.IDomainCpuPolicy?>? CpuPolicy { get; init; }
    public IReadOnlyList<Hypervisor.IoModel> Models { get; init; } = [Hypervisor.IoModel.Hypercall, Hypervisor.IoModel.Split, Hypervisor.IoModel.Merge];
}

internal static class Md
{
    public static string Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append("| ").Append(string.Join(" | ", header)).Append(" |\n");
        sb.Append('|').Append(string.Concat(header.Select(_ => "---|"))).Append('\n');
        foreach (var r in rows) sb.Append("| ").Append(string.Join(" | ", r)).Append(" |\n");
        return sb.ToString();
    }

    public static string F(double v, int digits = 2) => v.ToString("F" + digits, System.Globalization.CultureInfo.InvariantCulture);
}
