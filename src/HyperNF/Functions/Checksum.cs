using System.Buffers.Binary;

namespace HyperNF.Functions;

/// <summary>
/// The Internet checksum (RFC 1071): full computation, and the incremental update of RFC 1624
/// so that an NF rewriting a few header fields never has to re-read the payload.
/// </summary>
/// <remarks>
/// Sums are carried unfolded in a <see cref="ulong"/>: folding happens once at the end, and
/// 32-bit words can be added directly because 2^16 ≡ 1 (mod 2^16 − 1), which halves the loop count.
/// </remarks>
public static class Checksum
{
    /// <summary>Adds <paramref name="data"/> as big-endian 16-bit words (odd tail padded with zero) to <paramref name="sum"/>.</summary>
    public static ulong Add(ReadOnlySpan<byte> data, ulong sum = 0)
    {
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            ulong w = BinaryPrimitives.ReadUInt64BigEndian(data[i..]);
            sum += (w >> 32) + (w & 0xffff_ffff);
        }
        for (; i + 2 <= data.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if (i < data.Length) sum += (ulong)data[i] << 8;
        return sum;
    }

    /// <summary>Folds a running sum to 16 bits with end-around carry.</summary>
    public static ushort Fold(ulong sum)
    {
        while ((sum >> 16) != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>The checksum to store for <paramref name="data"/> (whose checksum field must be zero).</summary>
    public static ushort Compute(ReadOnlySpan<byte> data, ulong initial = 0) => (ushort)~Fold(Add(data, initial));

    /// <summary>True if <paramref name="data"/>, checksum field included, sums to all ones.</summary>
    public static bool IsValid(ReadOnlySpan<byte> data, ulong initial = 0) => Fold(Add(data, initial)) == 0xffff;

    /// <summary>The TCP/UDP pseudo-header (RFC 793 / RFC 768) as a running sum.</summary>
    public static ulong PseudoHeader(uint src, uint dst, byte protocol, int l4Length) =>
        (ulong)(src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + protocol + (uint)l4Length;

    /// <summary>
    /// TCP or UDP checksum of <paramref name="segment"/> (header + payload, checksum field zeroed).
    /// A UDP result of zero is returned as 0xFFFF because zero on the wire means "no checksum".
    /// </summary>
    public static ushort ComputeL4(uint src, uint dst, byte protocol, ReadOnlySpan<byte> segment)
    {
        ushort c = Compute(segment, PseudoHeader(src, dst, protocol, segment.Length));
        return c == 0 && protocol == Ipv4.ProtocolUdp ? (ushort)0xffff : c;
    }

    /// <summary>True if a TCP/UDP segment's checksum (in place) is right; a UDP checksum of zero (absent) counts as right.</summary>
    public static bool IsL4Valid(uint src, uint dst, byte protocol, ReadOnlySpan<byte> segment)
    {
        if (protocol == Ipv4.ProtocolUdp && segment.Length >= Udp.HeaderLength && Udp.GetChecksum(segment) == 0) return true;
        return IsValid(segment, PseudoHeader(src, dst, protocol, segment.Length));
    }

    /// <summary>RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit field changing from m to m'.</summary>
    public static ushort Update16(ushort checksum, ushort oldValue, ushort newValue)
    {
        uint s = (uint)(ushort)~checksum + (ushort)~oldValue + newValue;
        return (ushort)~Fold(s);
    }

    /// <summary>RFC 1624 update for a 32-bit field (an IPv4 address) changing, as two 16-bit halves.</summary>
    public static ushort Update32(ushort checksum, uint oldValue, uint newValue)
    {
        ulong s = (ulong)(ushort)~checksum
                  + (ushort)~(oldValue >> 16) + (ushort)~(oldValue & 0xffff)
                  + (newValue >> 16) + (newValue & 0xffff);
        return (ushort)~Fold(s);
    }

    /// <summary>
    /// Same as <see cref="Update16"/> for a UDP checksum: zero (checksum absent) stays zero, and a
    /// zero result is sent as 0xFFFF so the receiver does not mistake it for "absent".
    /// </summary>
    public static ushort UpdateUdp16(ushort checksum, ushort oldValue, ushort newValue)
    {
        if (checksum == 0) return 0;
        ushort c = Update16(checksum, oldValue, newValue);
        return c == 0 ? (ushort)0xffff : c;
    }

    /// <summary>Same as <see cref="Update32"/> with the UDP zero rules of <see cref="UpdateUdp16"/>.</summary>
    public static ushort UpdateUdp32(ushort checksum, uint oldValue, uint newValue)
    {
        if (checksum == 0) return 0;
        ushort c = Update32(checksum, oldValue, newValue);
        return c == 0 ? (ushort)0xffff : c;
    }
}
