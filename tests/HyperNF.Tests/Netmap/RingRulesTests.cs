using CsCheck;
using HyperNF.Netmap;
using Xunit;

namespace HyperNF.Tests.Netmap;

/// <summary>
/// <see cref="RingRules"/> against a deliberately naive model of netmap's ownership rules:
/// count forward from hwcur; head and cur must both be reached no later than rtail, and
/// head no later than cur. Nothing else is legal.
/// </summary>
public class RingRulesTests
{
    /// <summary>How many forward steps lead from <paramref name="from"/> to <paramref name="i"/> on a ring of <paramref name="n"/>.</summary>
    internal static long Steps(uint from, uint i, uint n) => ((long)i - from + n) % n;

    internal static bool Model(uint head, uint cur, uint hwcur, uint rtail, uint n)
    {
        if (head >= n || cur >= n) return false;
        long h = Steps(hwcur, head, n), c = Steps(hwcur, cur, n), t = Steps(hwcur, rtail, n);
        return h <= t && c <= t && h <= c;
    }

    [Fact]
    public void IsLegalMove_matches_model_exhaustively_on_small_rings()
    {
        for (uint n = 1; n <= 9; n++)
            for (uint hwcur = 0; hwcur < n; hwcur++)
                for (uint rtail = 0; rtail < n; rtail++)
                    for (uint head = 0; head <= n + 1; head++)
                        for (uint cur = 0; cur <= n + 1; cur++)
                        {
                            bool want = Model(head, cur, hwcur, rtail, n);
                            bool got = RingRules.IsLegalMove(head, cur, hwcur, rtail, n);
                            if (want != got)
                                Assert.Fail($"n={n} hwcur={hwcur} rtail={rtail} head={head} cur={cur}: model {want}, RingRules {got}");
                        }
    }

    private static readonly Gen<uint> GenN = Gen.OneOf(Gen.UInt[1, 40], Gen.Const(1024u), Gen.Const(4096u), Gen.UInt[1, 5000]);

    /// <summary>(n, hwcur, rtail, head, cur), with head/cur often inside or at the edges of the window.</summary>
    internal static readonly Gen<(uint N, uint HwCur, uint RTail, uint Head, uint Cur)> GenMove =
        from n in GenN
        from hwcur in Gen.UInt[0, n - 1]
        from rtail in Gen.UInt[0, n - 1]
        from head in Index(n, hwcur, rtail)
        from cur in Index(n, hwcur, rtail)
        select (n, hwcur, rtail, head, cur);

    private static Gen<uint> Index(uint n, uint hwcur, uint rtail) => Gen.Frequency(
        (3, Gen.UInt[0, n - 1]),
        (3, Gen.UInt[0, (uint)Math.Min(n - 1, Steps(hwcur, rtail, n))].Select(d => (hwcur + d) % n)), // inside the window
        (1, Gen.OneOf(Gen.Const(hwcur), Gen.Const(rtail), Gen.Const((rtail + 1) % n), Gen.Const((hwcur + n - 1) % n))),
        (1, Gen.OneOf(Gen.Const(n), Gen.Const(n + 1), Gen.Const(uint.MaxValue), Gen.UInt)));

    [Fact]
    public void IsLegalMove_matches_model_on_random_rings()
    {
        GenMove.Sample(m =>
        {
            bool want = Model(m.Head, m.Cur, m.HwCur, m.RTail, m.N);
            Assert.Equal(want, RingRules.IsLegalMove(m.Head, m.Cur, m.HwCur, m.RTail, m.N));
        }, iter: 20_000, threads: 1);
    }

    [Fact]
    public void A_legal_move_never_leaves_the_window()
    {
        // The property that protects the host: whatever the user wrote, an accepted head is
        // within rtail's reach, so the host never consumes slots it did not hand out.
        GenMove.Sample(m =>
        {
            if (!RingRules.IsLegalMove(m.Head, m.Cur, m.HwCur, m.RTail, m.N)) return;
            Assert.True(RingRules.Distance(m.HwCur, m.Head, m.N) <= RingRules.Distance(m.HwCur, m.RTail, m.N));
            Assert.True(RingRules.Distance(m.HwCur, m.Cur, m.N) <= RingRules.Distance(m.HwCur, m.RTail, m.N));
            Assert.True(RingRules.Distance(m.Head, m.Cur, m.N) <= RingRules.Distance(m.Head, m.RTail, m.N));
        }, iter: 20_000, threads: 1);
    }

    [Fact]
    public void Not_moving_is_always_legal_and_the_full_window_is_legal()
    {
        (from n in GenN from hwcur in Gen.UInt[0, n - 1] from rtail in Gen.UInt[0, n - 1] select (n, hwcur, rtail)).Sample(t =>
        {
            var (n, hwcur, rtail) = t;
            Assert.True(RingRules.IsLegalMove(hwcur, hwcur, hwcur, rtail, n));
            Assert.True(RingRules.IsLegalMove(rtail, rtail, hwcur, rtail, n));
            Assert.True(RingRules.IsLegalMove(hwcur, rtail, hwcur, rtail, n));
            // one step past rtail is never legal, unless that wraps back onto the window start
            uint past = (rtail + 1) % n;
            if (past != hwcur) Assert.False(RingRules.IsLegalMove(past, past, hwcur, rtail, n));
            // going backwards from hwcur is never legal when the window does not cover the whole ring
            uint back = (hwcur + n - 1) % n;
            if (RingRules.Distance(hwcur, rtail, n) < n - 1 && back != rtail)
                Assert.False(RingRules.IsLegalMove(back, back, hwcur, rtail, n));
        }, iter: 5_000, threads: 1);
    }

    [Fact]
    public void Next_Prev_Distance_match_modular_arithmetic()
    {
        (from n in GenN from i in Gen.UInt[0, n - 1] from j in Gen.UInt[0, n - 1] select (n, i, j)).Sample(t =>
        {
            var (n, i, j) = t;
            Assert.Equal((i + 1) % n, RingRules.Next(i, n));
            Assert.Equal((i + n - 1) % n, RingRules.Prev(i, n));
            Assert.Equal(i, RingRules.Prev(RingRules.Next(i, n), n));
            Assert.Equal(i, RingRules.Next(RingRules.Prev(i, n), n));
            Assert.Equal((uint)Steps(i, j, n), RingRules.Distance(i, j, n));
            Assert.Equal(0u, RingRules.Distance(i, i, n));
            if (i != j) Assert.Equal(n, RingRules.Distance(i, j, n) + RingRules.Distance(j, i, n));
            Assert.Equal(RingRules.Distance(i, j, n) + 1 == n ? 0 : RingRules.Distance(i, j, n) + 1, RingRules.Distance(i, RingRules.Next(j, n), n));
        }, iter: 20_000, threads: 1);
    }
}
