using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Tools;

public class LatencyHistogramTests
{
    [Fact]
    public void Buckets_are_contiguous_and_within_one_percent()
    {
        Assert.Equal(0, LatencyHistogram.IndexOf(0));
        Assert.Equal(255, LatencyHistogram.IndexOf(255));
        Assert.Equal(LatencyHistogram.BucketCount - 1, LatencyHistogram.IndexOf(long.MaxValue));
        Assert.Equal(long.MaxValue, LatencyHistogram.HighestOf(LatencyHistogram.BucketCount - 1));
        for (int i = 1; i < LatencyHistogram.BucketCount; i++)
        {
            long lo = LatencyHistogram.HighestOf(i - 1) + 1, hi = LatencyHistogram.HighestOf(i);
            Assert.Equal(i, LatencyHistogram.IndexOf(lo));
            Assert.Equal(i, LatencyHistogram.IndexOf(hi));
            Assert.True(hi - lo <= Math.Max(0, lo / 128), $"bucket {i} [{lo},{hi}] is wider than 1/128");
        }
    }

    [Fact]
    public void Percentiles_of_a_uniform_spread()
    {
        var h = new LatencyHistogram();
        for (long v = 1; v <= 100_000; v++) h.Record(v * 10); // 10 ns .. 1 ms
        Assert.Equal(100_000, h.Count);
        Assert.Equal(10, h.Min);
        Assert.Equal(1_000_000, h.Max);
        Assert.InRange(h.Mean, 500_004, 500_006);
        Assert.InRange(h.ValueAtPercentile(50), 500_000, 500_000 * 1.01);
        Assert.InRange(h.ValueAtPercentile(90), 900_000, 900_000 * 1.01);
        Assert.InRange(h.ValueAtPercentile(99.9), 999_000, 1_000_000);
        Assert.Equal(1_000_000, h.ValueAtPercentile(100));
        Assert.Equal(10, h.ValueAtPercentile(0));
        var s = h.Summarize()!;
        Assert.Equal(1000.0, s.MaxUs);
        Assert.InRange(s.P50Us, 500, 505);
    }

    [Fact]
    public void Empty_negative_and_reset()
    {
        var h = new LatencyHistogram();
        Assert.Null(h.Summarize());
        Assert.Equal(0, h.ValueAtPercentile(99));
        h.Record(-5);
        Assert.Equal(0, h.Max);
        Assert.Equal(1, h.Count);
        h.Reset();
        Assert.Equal(0, h.Count);
        h.Record(300);
        Assert.Equal(300, h.Min);
        Assert.InRange(h.ValueAtPercentile(50), 300, 300);
        Assert.Throws<ArgumentOutOfRangeException>(() => h.ValueAtPercentile(101));
    }

    [Fact]
    public void Recording_does_not_allocate()
    {
        var h = new LatencyHistogram();
        h.Record(1);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (long v = 0; v < 100_000; v++) h.Record(v * 997);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }
}
