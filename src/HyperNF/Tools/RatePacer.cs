using System.Diagnostics;

namespace HyperNF.Tools;

/// <summary>
/// Token bucket for <c>-R</c>. Tokens (frames) accrue at the rate; a sender takes what is
/// there, up to a batch. Below about one batch per millisecond the sender sleeps until
/// enough tokens for a worthwhile burst (at least one frame, at most a batch, about 1 ms
/// of traffic) have accrued, so a slow rate costs a few wake-ups per millisecond, not a
/// core. Sleeps overshoot (Thread.Sleep(1) is ~1.1 ms on Linux); the bucket holds 4 ms of
/// tokens so the overshoot is caught up instead of lost, which keeps the long-run rate honest.
/// </summary>
internal struct RatePacer
{
    private readonly double _ticksPerFrame;
    private readonly double _capacity;
    private readonly long _minBurst;
    private double _tokens;
    private long _last;

    public RatePacer(long ratePps, int batch, long now)
    {
        if (ratePps <= 0) throw new ArgumentOutOfRangeException(nameof(ratePps), ratePps, "a paced rate is at least 1 pps");
        _ticksPerFrame = (double)Stopwatch.Frequency / ratePps;
        _minBurst = Math.Clamp(ratePps / 1000, 1, batch);
        _capacity = Math.Max(batch, ratePps * 0.004);
        _tokens = _minBurst; // the first burst goes out at once
        _last = now;
    }

    public readonly long MinBurst => _minBurst;

    /// <summary>Takes up to <paramref name="max"/> frames' worth of tokens; 0 means wait (see <see cref="TicksToWait"/>).</summary>
    public long Take(long now, long max)
    {
        Refill(now);
        long have = (long)_tokens;
        if (have < Math.Min(_minBurst, max)) return 0;
        long n = Math.Min(have, max);
        _tokens -= n;
        return n;
    }

    /// <summary>Gives back tokens taken for frames that found no room in the ring.</summary>
    public void Refund(long frames) => _tokens = Math.Min(_capacity, _tokens + frames);

    /// <summary>Stopwatch ticks until a <see cref="Take"/> of <paramref name="max"/> would return frames.</summary>
    public readonly long TicksToWait(long max)
    {
        double need = Math.Min(_minBurst, max) - _tokens;
        return need <= 0 ? 0 : (long)Math.Ceiling(need * _ticksPerFrame);
    }

    private void Refill(long now)
    {
        long dt = now - _last;
        if (dt <= 0) return;
        _last = now;
        _tokens = Math.Min(_capacity, _tokens + dt / _ticksPerFrame);
    }
}
