using System.Text.Json;
using System.Text.Json.Nodes;

namespace HyperNF.Bench.Experiments;

/// <summary>One line of a plot.</summary>
public sealed record PlotSeries(string Name, double[] X, double[] Y);

/// <summary>
/// What to draw, without a drawing library: the CLI renders it (ScottPlot) to PNG.
/// <see cref="Categories"/> set: X values are indices into it (bar-like categorical axis).
/// </summary>
public sealed record PlotSpec(string Title, string XLabel, string YLabel, IReadOnlyList<PlotSeries> Series, IReadOnlyList<string>? Categories = null, bool Bars = false);

/// <summary>The output of one experiment: JSON data, a markdown table and a plot.</summary>
public sealed record ExperimentReport(string Name, object Data, string Markdown, IReadOnlyList<PlotSpec> Plots)
{
    /// <summary>How the experiments' data is written: snake_case names, indented.</summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    /// <summary>
    /// The JSON file of <c>hypernf bench NAME</c>: <c>experiment</c>, <c>date</c>, <c>quick</c>,
    /// <c>elapsed_s</c>, then the experiment's own fields at the top level (throughput:
    /// <c>points: [{io_model, nf, mpps, ...}]</c>; fairness: <c>models: [{io_model,
    /// deviation_pct, domains}]</c> ...).
    /// </summary>
    public JsonObject ToJson(DateTime started, bool quick, double elapsedSeconds)
    {
        var doc = new JsonObject
        {
            ["experiment"] = Name,
            ["date"] = started,
            ["quick"] = quick,
            ["elapsed_s"] = Math.Round(elapsedSeconds, 1),
        };
        if (JsonSerializer.SerializeToNode(Data, Data.GetType(), JsonOptions) is not JsonObject data)
            throw new InvalidOperationException($"experiment '{Name}': its data must serialise to a JSON object");
        foreach (var (key, value) in data.ToList())
        {
            if (doc.ContainsKey(key)) throw new InvalidOperationException($"experiment '{Name}': data field '{key}' clashes with the file's own");
            data.Remove(key);
            doc[key] = value;
        }
        return doc;
    }
}

public sealed record ExperimentOptions
{
    /// <summary>Fewer points and shorter runs: each experiment under 2 minutes on 2 cores.</summary>
    public bool Quick { get; init; }
    public Action<string>? Log { get; init; }
    /// <summary>Installs kernel CPU enforcement on each host the experiment creates (cgroups); null = accounting only.</summary>
    public Func<Hypervisor.IDomainCpuPolicy?>? CpuPolicy { get; init; }
    public IReadOnlyList<Hypervisor.IoModel> Models { get; init; } = [Hypervisor.IoModel.Hypercall, Hypervisor.IoModel.Split, Hypervisor.IoModel.Merge];
    /// <summary>Thread domains (built-in NFs) or VM domains (guest images; the KVM kind goes into every output).</summary>
    public BenchDomainKind Domains { get; init; } = BenchDomainKind.Thread;
    public BenchDomains Kind => BenchDomains.For(Domains);
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

    /// <summary>The first line of every experiment's table: which domains, and the KVM for VMs.</summary>
    public static string DomainsLine(BenchDomains k) =>
        k.KvmDescription is { } kvm ? $"Domains: VM ({kvm}; KVM kind {k.KvmKind}).\n\n" : "Domains: threads of the host process.\n\n";

    public static string F(double v, int digits = 2) => v.ToString("F" + digits, System.Globalization.CultureInfo.InvariantCulture);
}
