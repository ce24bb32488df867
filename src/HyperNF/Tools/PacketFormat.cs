using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace HyperNF.Tools;

/// <summary>
/// The frames pkt-gen sends: Ethernet, IPv4 (no options, DF, TTL 64), UDP with checksum 0
/// (legal over IPv4), and an 18-byte payload header: a 16-bit magic, a 64-bit sequence
/// number and a 64-bit send timestamp (<see cref="System.Diagnostics.Stopwatch.GetTimestamp"/>
/// ticks), all big-endian. 14 + 20 + 8 + 18 is exactly 60 bytes, pkt-gen's minimum frame, so
/// every frame carries the header. The magic is short to fit that budget; a receiver also
/// checks the IPv4/UDP shape before trusting it.
/// </summary>
public static class PacketFormat
{
    public const int MinFrameLength = 60;
    public const int EthernetHeader = 14;
    public const int IpOffset = 14;
    public const int UdpOffset = 34;
    public const int PayloadOffset = 42;
    public const int MagicOffset = 42;
    public const int SequenceOffset = 44;
    public const int TimestampOffset = 52;
    public const ushort Magic = 0x4847; // "HG": HyperNF generator
    public const ushort EtherTypeIpv4 = 0x0800;

    /// <summary>
    /// Writes a whole frame's headers and zeroes the rest of <paramref name="buffer"/> up to
    /// <paramref name="frameLength"/> (or the buffer's end, for the first fragment of a jumbo
    /// frame). Lengths in the IP and UDP headers are those of the whole frame. Sequence and
    /// timestamp are 0 until <see cref="Stamp"/>.
    /// </summary>
    public static void WriteFrame(Span<byte> buffer, int frameLength, ulong dstMac, ulong srcMac,
        uint srcIp, ushort srcPort, uint dstIp, ushort dstPort)
    {
        if (frameLength < MinFrameLength || frameLength - EthernetHeader > ushort.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(frameLength), frameLength, $"frames are {MinFrameLength}..{ushort.MaxValue + EthernetHeader} bytes");
        if (buffer.Length < MinFrameLength)
            throw new ArgumentException($"a buffer of {buffer.Length} bytes cannot hold the {MinFrameLength}-byte headers", nameof(buffer));
        buffer[..Math.Min(frameLength, buffer.Length)].Clear();
        WriteMac(buffer, dstMac);
        WriteMac(buffer[6..], srcMac);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[12..], EtherTypeIpv4);
        var ip = buffer[IpOffset..];
        ip[0] = 0x45; // version 4, 20-byte header
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(frameLength - EthernetHeader));
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000); // DF: never fragmented on the way
        ip[8] = 64;
        ip[9] = 17; // UDP
        BinaryPrimitives.WriteUInt16BigEndian(buffer[(UdpOffset + 4)..], (ushort)(frameLength - UdpOffset));
        BinaryPrimitives.WriteUInt16BigEndian(buffer[MagicOffset..], Magic);
        SetEndpoints(buffer, srcIp, srcPort, dstIp, dstPort);
    }

    /// <summary>Writes a MAC held as the forwarding table holds it (first octet in the low byte).</summary>
    public static void WriteMac(Span<byte> destination, ulong mac)
    {
        for (int i = 0; i < 6; i++) destination[i] = (byte)(mac >> (8 * i));
    }

    /// <summary>Sets addresses and ports and recomputes the IPv4 header checksum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetEndpoints(Span<byte> frame, uint srcIp, ushort srcPort, uint dstIp, ushort dstPort)
    {
        var ip = frame.Slice(IpOffset, 20);
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], srcIp);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], dstIp);
        BinaryPrimitives.WriteUInt16BigEndian(frame[UdpOffset..], srcPort);
        BinaryPrimitives.WriteUInt16BigEndian(frame[(UdpOffset + 2)..], dstPort);
        ip[10] = 0;
        ip[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], IpChecksum(ip));
    }

    /// <summary>Writes the per-frame fields: the only bytes a sender changes once its buffers are prefilled.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Stamp(Span<byte> frame, ulong sequence, long timestamp)
    {
        BinaryPrimitives.WriteUInt64BigEndian(frame.Slice(SequenceOffset, 8), sequence);
        BinaryPrimitives.WriteInt64BigEndian(frame.Slice(TimestampOffset, 8), timestamp);
    }

    /// <summary>
    /// True when <paramref name="frame"/> (the first fragment is enough) is one of ours:
    /// IPv4 without options, UDP, and the magic; then the sequence and timestamp are returned.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryRead(ReadOnlySpan<byte> frame, out ulong sequence, out long timestamp)
    {
        if (frame.Length < MinFrameLength
            || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != EtherTypeIpv4
            || frame[IpOffset] != 0x45 || frame[IpOffset + 9] != 17
            || BinaryPrimitives.ReadUInt16BigEndian(frame[MagicOffset..]) != Magic)
        {
            sequence = 0;
            timestamp = 0;
            return false;
        }
        sequence = BinaryPrimitives.ReadUInt64BigEndian(frame.Slice(SequenceOffset, 8));
        timestamp = BinaryPrimitives.ReadInt64BigEndian(frame.Slice(TimestampOffset, 8));
        return true;
    }

    /// <summary>RFC 1071 checksum of an IPv4 header (with its checksum field as it stands: zero it to compute, keep it to verify, where 0 means valid).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort IpChecksum(ReadOnlySpan<byte> header)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < header.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(header[i..]);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    /// <summary>Source IPv4 address (host order) of a frame written by <see cref="WriteFrame"/>.</summary>
    public static uint SourceAddress(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt32BigEndian(frame[(IpOffset + 12)..]);
    public static uint DestinationAddress(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt32BigEndian(frame[(IpOffset + 16)..]);
    public static ushort SourcePort(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt16BigEndian(frame[UdpOffset..]);
    public static ushort DestinationPort(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt16BigEndian(frame[(UdpOffset + 2)..]);
}
