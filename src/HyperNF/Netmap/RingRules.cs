using System.Runtime.CompilerServices;

namespace HyperNF.Netmap;

/// <summary>
/// netmap's ownership rules for head/cur/tail, as pure functions so they can be tested on
/// their own. A ring of <c>n</c> slots is split into two windows: the user owns
/// [head, tail), the host owns [tail, head). The host's view of a ring is
/// (hwcur, rtail): hwcur is where the host will consume next, rtail the tail it last
/// published. A domain can write any value into head and cur; these checks decide whether
/// what it wrote is a legal move.
/// </summary>
public static class RingRules
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Next(uint i, uint n) => i + 1 == n ? 0 : i + 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Prev(uint i, uint n) => i == 0 ? n - 1 : i - 1;

    /// <summary>Slots from <paramref name="from"/> up to (not including) <paramref name="to"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Distance(uint from, uint to, uint n) => to >= from ? to - from : to + n - from;

    /// <summary>
    /// A sync may move head and cur only forward inside the window [hwcur, rtail], and cur
    /// must not be behind head. Both TX and RX use the same rule: on TX rtail is the last
    /// slot the host gave the user, on RX the last slot it published as received.
    /// </summary>
    public static bool IsLegalMove(uint head, uint cur, uint hwcur, uint rtail, uint n)
    {
        if (head >= n || cur >= n) return false;
        if (rtail >= hwcur)
        {
            // window does not wrap: hwcur <= head <= cur <= rtail
            if (head < hwcur || head > rtail) return false;
            if (cur < head || cur > rtail) return false;
        }
        else
        {
            // window wraps: head must be outside (rtail, hwcur)
            if (head > rtail && head < hwcur) return false;
            if (head <= rtail)
            {
                if (cur < head || cur > rtail) return false;
            }
            else if (cur > rtail && cur < head)
            {
                return false;
            }
        }
        return true;
    }
}
