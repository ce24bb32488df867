using System.Text.Json;
using HyperNF.Bench.Experiments;
using Xunit;

namespace HyperNF.Tests.Experiments;

/// <summary>The shape of <c>hypernf bench NAME --json</c>: the experiment's fields at the top level, as the issue specifies.</summary>
public class ExperimentJsonTests
{
    private static JsonElement Parse(ExperimentReport r) =>
        JsonDocument.Parse(r.ToJson(new DateTime(2026, 11, 25, 6, 0, 0, DateTimeKind.Utc), quick: true, 61.26).ToJsonString()).RootElement.Clone();

    [Fact]
    public void Throughput_points_are_at_the_top_level()
    {
        var data = new ThroughputData(
            [new ThroughputPoint("hypercall", "l2fwd", 14.66, 60, 0, 4.1, 200, 50, 170, 0), new ThroughputPoint("split", "l2fwd", 6.39, 30, 40, 10.9, 190, 80, 3000, 0)],
            [new ThroughputGain("l2fwd", 129.4, 0)], 2, 1.0, "vm", "pvm");
        var doc = Parse(new ExperimentReport("throughput", data, "", []));
        Assert.Equal("throughput", doc.GetProperty("experiment").GetString());
        Assert.True(doc.GetProperty("quick").GetBoolean());
        Assert.Equal(61.3, doc.GetProperty("elapsed_s").GetDouble());
        Assert.Equal(new DateTime(2026, 11, 25, 6, 0, 0, DateTimeKind.Utc), doc.GetProperty("date").GetDateTime().ToUniversalTime());
        Assert.False(doc.TryGetProperty("data", out _));
        var points = doc.GetProperty("points").EnumerateArray().ToArray();
        Assert.Equal(2, points.Length);
        Assert.Equal("split", points[1].GetProperty("io_model").GetString());
        Assert.Equal("l2fwd", points[1].GetProperty("nf").GetString());
        Assert.Equal(6.39, points[1].GetProperty("mpps").GetDouble());
        Assert.Equal(129.4, doc.GetProperty("gains")[0].GetProperty("vs_split_pct").GetDouble());
        Assert.Equal(1.0, doc.GetProperty("seconds_per_point").GetDouble());
        Assert.Equal("vm", doc.GetProperty("domains").GetString());
        Assert.Equal("pvm", doc.GetProperty("kvm_kind").GetString());
    }

    [Fact]
    public void Fairness_models_are_at_the_top_level_and_anonymous_data_is_snake_case()
    {
        var domain = new FairnessDomain("nfA", 512, 0, 60, 0, 56.7, 56, 0, 56, 1.2, 0.445);
        var models = new List<FairnessModel> { new("hypercall", 0.8, 1.2, [domain]) };
        var doc = Parse(new ExperimentReport("fairness", new { models, cpuEnforcement = "cgroup v1", seconds = 4.0 }, "", []));
        var m = Assert.Single(doc.GetProperty("models").EnumerateArray());
        Assert.Equal("hypercall", m.GetProperty("io_model").GetString());
        Assert.Equal(0.8, m.GetProperty("deviation_pct").GetDouble());
        Assert.Equal("nfA", m.GetProperty("domains")[0].GetProperty("domain").GetString());
        Assert.Equal("cgroup v1", doc.GetProperty("cpu_enforcement").GetString());
        Assert.Equal(4.0, doc.GetProperty("seconds").GetDouble());
    }

    [Fact]
    public void A_data_field_that_clashes_with_the_files_own_is_refused()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new ExperimentReport("x", new { quick = 1 }, "", []).ToJson(DateTime.UtcNow, false, 1));
        Assert.Contains("'quick'", e.Message);
        Assert.Throws<InvalidOperationException>(() => new ExperimentReport("x", new[] { 1, 2 }, "", []).ToJson(DateTime.UtcNow, false, 1));
    }
}
