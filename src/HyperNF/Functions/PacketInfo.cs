namespace HyperNF.Functions;

/// <summary>Outcome of <see cref="PacketInfo.Parse"/>.</summary>
public enum ParseStatus : byte
{
    /// <summary>A well-formed IPv4 packet; every field of <see cref="PacketInfo"/> is valid.</summary>
    Ipv4 = 0,
    /// <summary>Not IPv4 (ARP, IPv6, ...); only <see cref="PacketInfo.EtherType"/> and <see cref="PacketInfo.L3Offset"/> are set.</summary>
    NotIpv4 = 1,
    /// <summary>Claims to be IPv4 but its lengths do not add up (truncated, bad IHL, short L4 header).</summary>
    Malformed = 2,
}

/// <summary>
/// Where the headers of one frame are and the fields NFs match on, read in a single pass.
/// A plain struct on the stack: parsing allocates nothing. Offsets are from the frame start.
/// </summary>
public struct PacketInfo
{
    public ushort EtherType;
    public bool HasVlan;
    public int L3Offset;
    public int IpHeaderLength;
    public int IpTotalLength;
    public byte Protocol;
    public byte Ttl;
    public uint Source;
    public uint Destination;
    /// <summary>Part of a fragmented datagram (MF set or non-zero offset).</summary>
    public bool IsFragment;
    /// <summary>A fragment other than the first: it carries no L4 header, so ports are unknown.</summary>
    public bool IsNonFirstFragment;
    public int L4Offset;
    public int L4Length;
    /// <summary>TCP or UDP with its header present: <see cref="SourcePort"/>/<see cref="DestinationPort"/> are valid.</summary>
    public bool HasPorts;
    public ushort SourcePort;
    public ushort DestinationPort;
    /// <summary>ICMP header present: <see cref="IcmpType"/> is valid.</summary>
    public bool HasIcmp;
    public byte IcmpType;
    /// <summary>Echo request/reply identifier (valid when <see cref="IsIcmpEcho"/>).</summary>
    public ushort IcmpIdentifier;

    public readonly bool IsIcmpEcho => HasIcmp && IcmpType is Icmp.TypeEchoRequest or Icmp.TypeEchoReply;

    /// <summary>
    /// Parses Ethernet (one optional 802.1Q tag), IPv4 (options skipped via IHL) and the TCP, UDP
    /// or ICMP header. The IP header checksum is not verified here (callers that care do it).
    /// Trailing Ethernet padding beyond the IP total length is tolerated.
    /// </summary>
    public static ParseStatus Parse(ReadOnlySpan<byte> frame, out PacketInfo p)
    {
        p = default;
        if (!Ethernet.TryGetNetworkHeader(frame, out p.EtherType, out p.L3Offset))
            return ParseStatus.Malformed;
        p.HasVlan = p.L3Offset != Ethernet.HeaderLength;
        if (p.EtherType != Ethernet.TypeIpv4) return ParseStatus.NotIpv4;

        var ip = frame[p.L3Offset..];
        if (ip.Length < Ipv4.MinHeaderLength || Ipv4.Version(ip) != 4) return ParseStatus.Malformed;
        p.IpHeaderLength = Ipv4.HeaderLength(ip);
        p.IpTotalLength = Ipv4.TotalLength(ip);
        if (p.IpHeaderLength < Ipv4.MinHeaderLength || p.IpTotalLength < p.IpHeaderLength || p.IpTotalLength > ip.Length)
            return ParseStatus.Malformed;
        p.Protocol = Ipv4.Protocol(ip);
        p.Ttl = Ipv4.Ttl(ip);
        p.Source = Ipv4.Source(ip);
        p.Destination = Ipv4.Destination(ip);
        int fragOffset = Ipv4.FragmentOffset(ip);
        p.IsNonFirstFragment = fragOffset != 0;
        p.IsFragment = p.IsNonFirstFragment || Ipv4.MoreFragments(ip);
        p.L4Offset = p.L3Offset + p.IpHeaderLength;
        p.L4Length = p.IpTotalLength - p.IpHeaderLength;
        if (p.IsNonFirstFragment) return ParseStatus.Ipv4;

        var l4 = frame.Slice(p.L4Offset, p.L4Length);
        switch (p.Protocol)
        {
            case Ipv4.ProtocolTcp:
                if (l4.Length < Tcp.MinHeaderLength) return ParseStatus.Malformed;
                int thl = Tcp.HeaderLength(l4);
                if (thl < Tcp.MinHeaderLength || thl > l4.Length) return ParseStatus.Malformed;
                p.HasPorts = true;
                p.SourcePort = Tcp.SourcePort(l4);
                p.DestinationPort = Tcp.DestinationPort(l4);
                break;
            case Ipv4.ProtocolUdp:
                if (l4.Length < Udp.HeaderLength) return ParseStatus.Malformed;
                // A first fragment carries only part of the datagram, so the UDP length may exceed it.
                if (!p.IsFragment && (Udp.Length(l4) < Udp.HeaderLength || Udp.Length(l4) > l4.Length)) return ParseStatus.Malformed;
                p.HasPorts = true;
                p.SourcePort = Udp.SourcePort(l4);
                p.DestinationPort = Udp.DestinationPort(l4);
                break;
            case Ipv4.ProtocolIcmp:
                if (l4.Length < Icmp.HeaderLength) return ParseStatus.Malformed;
                p.HasIcmp = true;
                p.IcmpType = Icmp.Type(l4);
                if (Icmp.IsEcho(l4)) p.IcmpIdentifier = Icmp.Identifier(l4);
                break;
        }
        return ParseStatus.Ipv4;
    }
}
