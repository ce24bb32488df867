using System.Numerics;
using System.Runtime.CompilerServices;

namespace HyperNF.Tools;

/// <summary>
/// An HdrHistogram-style log-linear histogram of nanosecond values, allocation-free after
/// construction so a receiver can record every frame. Values below 256 ns are counted
/// exactly; above, each power of two is split into 128 buckets, so any reported value is
/// within 1/128 (0.8 %) of the true one. Covers 0..<see cref="long.MaxValue"/> in 7296
/// counters (58 KB). Not thread-safe: one recording thread.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 7;                 // 128 buckets per power of two
    private const int LinearLimit = 2 << SubBits;  // 256: exact below
    public const int BucketCount = ((62 - SubBits + 1) << SubBits) + (1 << SubBits);

    private readonly long[] _counts = new long[BucketCount];
    private long _count;
    private long _min = long.MaxValue;
    private long _max;
    private double _sum;

    public long Count => _count;
    public long Min => _count == 0 ? 0 : _min;
    public long Max => _max;
    public double Mean => _count == 0 ? 0 : _sum / _count;

    /// <summary>Records one value; negative values (a clock that went backwards) count as 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Record(long valueNs)
    {
        if (valueNs < 0) valueNs = 0;
        _counts[IndexOf(valueNs)]++;
        _count++;
        _sum += valueNs;
        if (valueNs < _min) _min = valueNs;
        if (valueNs > _max) _max = valueNs;
    }

    public void Reset()
    {
        Array.Clear(_counts);
        _count = 0;
        _min = long.MaxValue;
        _max = 0;
        _sum = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int IndexOf(long v)
    {
        if (v < LinearLimit) return (int)v;
        int e = BitOperations.Log2((ulong)v);      // >= 8
        int shift = e - SubBits;
        // (e - 6) << 7 places power 2^e right after 2^(e-1); the top 8 bits of v pick the sub-bucket.
        return ((e - SubBits + 1) << SubBits) + (int)((v >> shift) - (1L << SubBits));
    }

    /// <summary>Largest value that lands in bucket <paramref name="index"/> (HdrHistogram's highest equivalent value).</summary>
    internal static long HighestOf(int index)
    {
        if (index < LinearLimit) return index;
        int e = (index >> SubBits) + SubBits - 1;
        ulong sub = (ulong)(index & ((1 << SubBits) - 1)) + (1UL << SubBits);
        return (long)(((sub + 1) << (e - SubBits)) - 1);
    }

    /// <summary>
    /// The value at or below which <paramref name="percentile"/> % of the recorded values lie
    /// (rounded up to its bucket's top, never above <see cref="Max"/>); 0 when empty.
    /// </summary>
    public long ValueAtPercentile(double percentile)
    {
        if (percentile is < 0 or > 100 || double.IsNaN(percentile))
            throw new ArgumentOutOfRangeException(nameof(percentile), percentile, "a percentile is 0..100");
        if (_count == 0) return 0;
        long target = Math.Max(1, (long)Math.Ceiling(percentile / 100 * _count));
        long seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= target) return Math.Clamp(HighestOf(i), Min, _max);
        }
        return _max;
    }

    /// <summary>The usual percentiles in microseconds; null when nothing was recorded.</summary>
    public LatencySummary? Summarize()
    {
        if (_count == 0) return null;
        static double Us(long ns) => ns / 1000.0;
        return new LatencySummary(_count, Us(Min), Mean / 1000.0, Us(ValueAtPercentile(50)), Us(ValueAtPercentile(90)),
            Us(ValueAtPercentile(99)), Us(ValueAtPercentile(99.9)), Us(_max));
    }
}

/// <summary>Latency percentiles in microseconds, from a <see cref="LatencyHistogram"/>.</summary>
public sealed record LatencySummary(long Count, double MinUs, double MeanUs, double P50Us, double P90Us, double P99Us, double P999Us, double MaxUs);
