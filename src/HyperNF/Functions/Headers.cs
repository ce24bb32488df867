using System.Buffers.Binary;

namespace HyperNF.Functions;

// Header layouts as offset constants plus span accessors. Each accessor takes the span starting
// at its own header, so NFs slice once (frame[l3..], ip[ihl..]) and never copy a header out.

/// <summary>Ethernet II, with at most one 802.1Q tag.</summary>
public static class Ethernet
{
    public const int HeaderLength = 14;
    public const int VlanTagLength = 4;
    /// <summary>Shortest frame on the wire without FCS; shorter frames are padded up to it.</summary>
    public const int MinFrameLength = 60;
    public const ushort TypeIpv4 = 0x0800;
    public const ushort TypeArp = 0x0806;
    public const ushort TypeVlan = 0x8100;

    public static Span<byte> Destination(Span<byte> frame) => frame[..6];
    public static Span<byte> Source(Span<byte> frame) => frame.Slice(6, 6);

    /// <summary>
    /// Finds the network header: its EtherType and offset, skipping one 802.1Q tag.
    /// False if the frame is too short to hold the Ethernet header (and tag).
    /// </summary>
    public static bool TryGetNetworkHeader(ReadOnlySpan<byte> frame, out ushort etherType, out int offset)
    {
        offset = HeaderLength;
        etherType = 0;
        if (frame.Length < HeaderLength) return false;
        etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == TypeVlan)
        {
            if (frame.Length < HeaderLength + VlanTagLength) return false;
            etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            offset = HeaderLength + VlanTagLength;
        }
        return true;
    }
}

/// <summary>IPv4 header (RFC 791); options are skipped via IHL, never interpreted.</summary>
public static class Ipv4
{
    public const int MinHeaderLength = 20;
    public const byte ProtocolIcmp = 1;
    public const byte ProtocolTcp = 6;
    public const byte ProtocolUdp = 17;
    public const int TotalLengthOffset = 2;
    public const int TtlOffset = 8;
    public const int ProtocolOffset = 9;
    public const int ChecksumOffset = 10;
    public const int SourceOffset = 12;
    public const int DestinationOffset = 16;

    public static int Version(ReadOnlySpan<byte> ip) => ip[0] >> 4;
    /// <summary>Header length in bytes (IHL × 4), options included.</summary>
    public static int HeaderLength(ReadOnlySpan<byte> ip) => (ip[0] & 0x0f) * 4;
    public static ushort TotalLength(ReadOnlySpan<byte> ip) => BinaryPrimitives.ReadUInt16BigEndian(ip[TotalLengthOffset..]);
    public static void SetTotalLength(Span<byte> ip, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(ip[TotalLengthOffset..], v);
    /// <summary>Fragment offset in 8-byte units (low 13 bits of flags/offset).</summary>
    public static int FragmentOffset(ReadOnlySpan<byte> ip) => BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x1fff;
    public static bool MoreFragments(ReadOnlySpan<byte> ip) => (ip[6] & 0x20) != 0;
    public static byte Ttl(ReadOnlySpan<byte> ip) => ip[TtlOffset];
    public static byte Protocol(ReadOnlySpan<byte> ip) => ip[ProtocolOffset];
    public static ushort GetChecksum(ReadOnlySpan<byte> ip) => BinaryPrimitives.ReadUInt16BigEndian(ip[ChecksumOffset..]);
    public static void SetChecksum(Span<byte> ip, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(ip[ChecksumOffset..], v);
    public static uint Source(ReadOnlySpan<byte> ip) => BinaryPrimitives.ReadUInt32BigEndian(ip[SourceOffset..]);
    public static uint Destination(ReadOnlySpan<byte> ip) => BinaryPrimitives.ReadUInt32BigEndian(ip[DestinationOffset..]);
    public static void SetSource(Span<byte> ip, uint v) => BinaryPrimitives.WriteUInt32BigEndian(ip[SourceOffset..], v);
    public static void SetDestination(Span<byte> ip, uint v) => BinaryPrimitives.WriteUInt32BigEndian(ip[DestinationOffset..], v);

    /// <summary>Recomputes and stores the header checksum over IHL × 4 bytes.</summary>
    public static void UpdateChecksum(Span<byte> ip)
    {
        int hl = HeaderLength(ip);
        SetChecksum(ip, 0);
        SetChecksum(ip, Checksum.Compute(ip[..hl]));
    }

    public static bool IsChecksumValid(ReadOnlySpan<byte> ip) => Checksum.IsValid(ip[..HeaderLength(ip)]);

    /// <summary>
    /// Decrements TTL and patches the checksum incrementally. TTL shares a 16-bit word with the
    /// protocol, so the update is done on that word rather than on the byte.
    /// </summary>
    public static void DecrementTtl(Span<byte> ip)
    {
        ushort oldWord = BinaryPrimitives.ReadUInt16BigEndian(ip[TtlOffset..]);
        ip[TtlOffset]--;
        ushort newWord = BinaryPrimitives.ReadUInt16BigEndian(ip[TtlOffset..]);
        SetChecksum(ip, Checksum.Update16(GetChecksum(ip), oldWord, newWord));
    }

    /// <summary>Replaces the source address, fixing the header checksum incrementally.</summary>
    public static void RewriteSource(Span<byte> ip, uint address)
    {
        uint old = Source(ip);
        SetSource(ip, address);
        SetChecksum(ip, Checksum.Update32(GetChecksum(ip), old, address));
    }

    /// <summary>Replaces the destination address, fixing the header checksum incrementally.</summary>
    public static void RewriteDestination(Span<byte> ip, uint address)
    {
        uint old = Destination(ip);
        SetDestination(ip, address);
        SetChecksum(ip, Checksum.Update32(GetChecksum(ip), old, address));
    }

    /// <summary>Replaces the total length, fixing the header checksum incrementally.</summary>
    public static void RewriteTotalLength(Span<byte> ip, ushort length)
    {
        ushort old = TotalLength(ip);
        SetTotalLength(ip, length);
        SetChecksum(ip, Checksum.Update16(GetChecksum(ip), old, length));
    }
}

/// <summary>UDP header (RFC 768).</summary>
public static class Udp
{
    public const int HeaderLength = 8;
    public const int ChecksumOffset = 6;
    public static ushort SourcePort(ReadOnlySpan<byte> udp) => BinaryPrimitives.ReadUInt16BigEndian(udp);
    public static ushort DestinationPort(ReadOnlySpan<byte> udp) => BinaryPrimitives.ReadUInt16BigEndian(udp[2..]);
    public static void SetSourcePort(Span<byte> udp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(udp, v);
    public static void SetDestinationPort(Span<byte> udp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(udp[2..], v);
    public static ushort Length(ReadOnlySpan<byte> udp) => BinaryPrimitives.ReadUInt16BigEndian(udp[4..]);
    public static ushort GetChecksum(ReadOnlySpan<byte> udp) => BinaryPrimitives.ReadUInt16BigEndian(udp[ChecksumOffset..]);
    public static void SetChecksum(Span<byte> udp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(udp[ChecksumOffset..], v);
}

/// <summary>TCP header (RFC 793); only the fields NFs rewrite or match on.</summary>
public static class Tcp
{
    public const int MinHeaderLength = 20;
    public const int ChecksumOffset = 16;
    public static ushort SourcePort(ReadOnlySpan<byte> tcp) => BinaryPrimitives.ReadUInt16BigEndian(tcp);
    public static ushort DestinationPort(ReadOnlySpan<byte> tcp) => BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]);
    public static void SetSourcePort(Span<byte> tcp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(tcp, v);
    public static void SetDestinationPort(Span<byte> tcp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], v);
    /// <summary>Header length in bytes (data offset × 4).</summary>
    public static int HeaderLength(ReadOnlySpan<byte> tcp) => (tcp[12] >> 4) * 4;
    public static byte Flags(ReadOnlySpan<byte> tcp) => tcp[13];
    public static ushort GetChecksum(ReadOnlySpan<byte> tcp) => BinaryPrimitives.ReadUInt16BigEndian(tcp[ChecksumOffset..]);
    public static void SetChecksum(Span<byte> tcp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(tcp[ChecksumOffset..], v);
}

/// <summary>ICMP (RFC 792); the echo identifier is what NAT uses in place of a port.</summary>
public static class Icmp
{
    public const int HeaderLength = 8;
    public const int ChecksumOffset = 2;
    public const byte TypeEchoReply = 0;
    public const byte TypeEchoRequest = 8;
    public static byte Type(ReadOnlySpan<byte> icmp) => icmp[0];
    public static byte Code(ReadOnlySpan<byte> icmp) => icmp[1];
    public static bool IsEcho(ReadOnlySpan<byte> icmp) => icmp[0] is TypeEchoRequest or TypeEchoReply;
    public static ushort Identifier(ReadOnlySpan<byte> icmp) => BinaryPrimitives.ReadUInt16BigEndian(icmp[4..]);
    public static void SetIdentifier(Span<byte> icmp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], v);
    public static ushort Sequence(ReadOnlySpan<byte> icmp) => BinaryPrimitives.ReadUInt16BigEndian(icmp[6..]);
    public static ushort GetChecksum(ReadOnlySpan<byte> icmp) => BinaryPrimitives.ReadUInt16BigEndian(icmp[ChecksumOffset..]);
    public static void SetChecksum(Span<byte> icmp, ushort v) => BinaryPrimitives.WriteUInt16BigEndian(icmp[ChecksumOffset..], v);
}
