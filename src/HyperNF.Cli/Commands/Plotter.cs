using HyperNF.Bench.Experiments;

namespace HyperNF.Cli.Commands;

/// <summary>Renders a <see cref="PlotSpec"/> to PNG with ScottPlot.</summary>
internal static class Plotter
{
    public static void Save(IReadOnlyList<PlotSpec> specs, string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        for (int k = 0; k < specs.Count; k++)
        {
            string file = k == 0 ? path : Path.Combine(dir ?? ".", $"{Path.GetFileNameWithoutExtension(path)}-{k + 1}{Path.GetExtension(path)}");
            Render(specs[k]).SavePng(file, 900, 500);
            Console.Error.WriteLine($"wrote {file}");
        }
    }

    private static ScottPlot.Plot Render(PlotSpec spec)
    {
        var plt = new ScottPlot.Plot();
        plt.Title(spec.Title);
        plt.XLabel(spec.XLabel);
        plt.YLabel(spec.YLabel);
        var palette = new ScottPlot.Palettes.Category10();
        if (spec.Bars && spec.Categories is { } cats)
        {
            int n = spec.Series.Count;
            double width = 0.8 / n;
            for (int s = 0; s < n; s++)
            {
                var series = spec.Series[s];
                var bars = series.X.Select((x, i) => new ScottPlot.Bar
                {
                    Position = x - 0.4 + width * (s + 0.5),
                    Value = series.Y[i],
                    Size = width * 0.95,
                    FillColor = palette.GetColor(s),
                }).ToList();
                var bp = plt.Add.Bars(bars);
                bp.LegendText = series.Name;
            }
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                cats.Select((c, i) => (double)i).ToArray(), cats.ToArray());
            plt.Axes.Margins(bottom: 0);
        }
        else
        {
            for (int s = 0; s < spec.Series.Count; s++)
            {
                var series = spec.Series[s];
                var sc = plt.Add.Scatter(series.X, series.Y);
                sc.LegendText = series.Name;
                sc.Color = palette.GetColor(s);
                sc.LineWidth = 2;
                sc.MarkerSize = 5;
            }
        }
        plt.ShowLegend();
        return plt;
    }
}
