using System.Text.Json;
using HyperNF.Tests.Control;
using Xunit;

namespace HyperNF.Tests.Hypervisor;

/// <summary>
/// <c>hypernf demo</c> through the real CLI binary, shortened: a pkt-gen tx domain on valex, an
/// NF domain between valex and valey, a pkt-gen rx domain on valey, each I/O model in turn;
/// the table on stdout and the JSON (<c>models: [{io_model, mpps, sent, received, dropped,
/// unaccounted, ...}]</c>) with every frame accounted for. Figures are not checked, only that
/// traffic flowed and the books balance. The demo loads both cores, so it runs alone (the
/// "Threads" collection) instead of starving tests that measure CPU shares.
/// </summary>
[Collection("Threads")]
public class DemoCliTests
{
    private static JsonElement RunDemo(TempDir tmp, params string[] args)
    {
        string json = tmp.File("demo.json");
        var r = Cli.Run(tmp.File("unused.sock"), ["demo", "--seconds", "0.5", "--json", json, .. args]);
        Assert.True(r.Exit == 0, $"hypernf demo {string.Join(' ', args)}: {r}");
        Assert.Contains("valex", r.Out);
        Assert.Contains("valey", r.Out);
        Assert.Contains("unaccounted", r.Out);
        // The table explains itself: offered rate, where backend CPU is billed, a progress bar.
        Assert.Contains("offered Mpps", r.Out);
        Assert.Contains("billed to the host", r.Out);
        Assert.DoesNotContain("host CPU %", r.Out);
        Assert.Matches(@"(hypercall|split|merge) +\[#{20}\]", r.Out);
        Assert.DoesNotMatch(@"(?m)^(hypercall|split|merge): \d+%$", r.Out);
        return JsonDocument.Parse(File.ReadAllText(json)).RootElement.Clone();
    }

    private static void CheckModel(JsonElement m, string model, string nf)
    {
        Assert.Equal(model, m.GetProperty("io_model").GetString());
        Assert.Equal(nf, m.GetProperty("nf").GetString());
        Assert.Equal(["valex", "valey"], m.GetProperty("bridges").EnumerateArray().Select(b => b.GetString()!).ToArray());
        long sent = m.GetProperty("sent").GetInt64(), received = m.GetProperty("received").GetInt64(), dropped = m.GetProperty("dropped").GetInt64();
        Assert.True(received > 0, $"{model}: nothing arrived: {m.GetRawText()}");
        Assert.True(m.GetProperty("mpps").GetDouble() > 0, $"{model}: {m.GetRawText()}");
        Assert.Equal(0, m.GetProperty("unaccounted").GetInt64());
        Assert.Equal(sent, received + dropped);
        long byReason = m.GetProperty("drops").EnumerateObject().Sum(p => p.Value.GetInt64());
        Assert.Equal(dropped, byReason);
        // Window drops cover the measured window only: never more than the whole run's.
        long windowDropped = m.GetProperty("window_dropped").GetInt64();
        Assert.Equal(windowDropped, m.GetProperty("window_drops").EnumerateObject().Sum(p => p.Value.GetInt64()));
        Assert.InRange(windowDropped, 0, dropped);
        foreach (var d in m.GetProperty("window_drops").EnumerateObject())
            Assert.InRange(d.Value.GetInt64(), 1, m.GetProperty("drops").GetProperty(d.Name).GetInt64());
        Assert.True(m.GetProperty("window_seconds").GetDouble() > 0);
        Assert.True(m.GetProperty("offered_mpps").GetDouble() > 0, m.GetRawText());
        var cpu = m.GetProperty("cpu").EnumerateArray().ToDictionary(c => c.GetProperty("domain").GetString()!, c => c);
        Assert.Equal(["nf1", "pktgen-rx", "pktgen-tx"], cpu.Keys.Order(StringComparer.Ordinal).ToArray());
        Assert.True(cpu["pktgen-tx"].GetProperty("vcpu_pct").GetDouble() > 0);
        // Backend work is done for the NF and billed to the host only in split and merge.
        double backend = cpu["nf1"].GetProperty("backend_pct").GetDouble();
        if (model == "hypercall") Assert.Equal(0, backend);
        else Assert.True(backend > 0, $"{model}: the NF's backend did no work: {m.GetRawText()}");
        Assert.Equal(backend, m.GetProperty("host_cpu_pct").GetDouble(), 1);
        Assert.True(m.GetProperty("latency_p99_us").GetDouble() >= m.GetProperty("latency_p50_us").GetDouble());
    }

    [Fact]
    public void Demo_runs_every_io_model_and_accounts_for_every_frame()
    {
        using var tmp = new TempDir();
        var doc = RunDemo(tmp);
        Assert.Equal("l2fwd", doc.GetProperty("nf").GetString());
        var models = doc.GetProperty("models").EnumerateArray().ToArray();
        Assert.Equal(3, models.Length);
        CheckModel(models[0], "hypercall", "l2fwd");
        CheckModel(models[1], "split", "l2fwd");
        CheckModel(models[2], "merge", "l2fwd");
    }

    [Fact]
    public void Demo_runs_the_chosen_nf_and_refuses_an_unknown_one()
    {
        using var tmp = new TempDir();
        var doc = RunDemo(tmp, "--nf", "firewall", "--models", "split");
        var m = Assert.Single(doc.GetProperty("models").EnumerateArray());
        CheckModel(m, "split", "firewall");
        Assert.Contains(m.GetProperty("nf_counters").GetProperty("nf1").EnumerateObject(), c => c.Value.GetInt64() > 0);

        var bad = Cli.Run(tmp.File("unused.sock"), "demo", "--seconds", "0.5", "--nf", "nosuchnf");
        Assert.Equal(1, bad.Exit);
        Assert.Contains("unknown nf 'nosuchnf'", bad.Err);
        Assert.DoesNotContain("Unhandled", bad.Err);
    }
}
