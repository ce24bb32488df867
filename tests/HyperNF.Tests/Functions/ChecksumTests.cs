using System.Buffers.Binary;
using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class ChecksumTests
{
    [Fact]
    public void Ipv4HeaderExampleMatchesTheKnownValue()
    {
        // A widely quoted worked example: 192.168.0.1 -> 192.168.0.199, UDP, checksum 0xb861.
        byte[] h = Convert.FromHexString("450000730000400040110000c0a80001c0a800c7");
        Assert.Equal(0xb861, Checksum.Compute(h));
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(10), 0xb861);
        Assert.True(Checksum.IsValid(h));
        Assert.True(Ipv4.IsChecksumValid(h));
    }

    [Fact]
    public void FullSumMatchesReferenceForAllLengthsAndOffsets()
    {
        var rng = new Random(7);
        for (int len = 0; len < 200; len++)
        {
            var data = new byte[len];
            rng.NextBytes(data);
            uint initial = (uint)rng.Next(0, 1 << 20);
            Assert.Equal(Pkt.RefSum(data, initial), Checksum.Fold(Checksum.Add(data, initial)));
        }
    }

    [Fact]
    public void IncrementalUpdatesAgreeWithRecomputation()
    {
        var rng = new Random(11);
        for (int trial = 0; trial < 2000; trial++)
        {
            var data = new byte[40];
            rng.NextBytes(data);
            data[10] = data[11] = 0;
            ushort c = Checksum.Compute(data);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(10), c);

            // 16-bit field at an even offset.
            int at = 2 * rng.Next(0, 20);
            if (at == 10) at = 12;
            ushort old16 = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at)), new16 = (ushort)rng.Next(0, 65536);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(at), new16);
            c = Checksum.Update16(c, old16, new16);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(10), c);
            Assert.True(Checksum.IsValid(data));

            // 32-bit field.
            uint old32 = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(12)), new32 = (uint)rng.NextInt64(0, 1L << 32);
            BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(12), new32);
            c = Checksum.Update32(c, old32, new32);
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(10), c);
            Assert.True(Checksum.IsValid(data));
        }
    }

    [Fact]
    public void UdpZeroChecksumStaysAbsentAndZeroResultBecomesAllOnes()
    {
        Assert.Equal(0, Checksum.UpdateUdp16(0, 1234, 4321));
        Assert.Equal(0, Checksum.UpdateUdp32(0, 0x0a000001, 0xc0000201));
        // ~(~0x0001 + ~0xffff + 0x0001) = ~0xffff = 0: fine for TCP, but UDP must send 0xffff.
        Assert.Equal(0, Checksum.Update16(0x0001, 0xffff, 0x0001));
        Assert.Equal(0xffff, Checksum.UpdateUdp16(0x0001, 0xffff, 0x0001));
    }

    [Fact]
    public void L4ChecksumsOfBuiltFramesVerify()
    {
        foreach (var f in new[] { Pkt.Udp("10.0.0.1", 1, "10.0.0.2", 2, payload: 33), Pkt.Tcp("10.0.0.1", 1, "10.0.0.2", 2, payload: 7) })
        {
            Assert.Equal(ParseStatus.Ipv4, PacketInfo.Parse(f, out var p));
            Assert.True(Checksum.IsL4Valid(p.Source, p.Destination, p.Protocol, f.AsSpan(p.L4Offset, p.L4Length)));
            var seg = f.AsSpan(p.L4Offset, p.L4Length).ToArray();
            int off = p.Protocol == 6 ? 16 : 6;
            ushort stored = BinaryPrimitives.ReadUInt16BigEndian(seg.AsSpan(off));
            seg[off] = seg[off + 1] = 0;
            Assert.Equal(stored, Checksum.ComputeL4(p.Source, p.Destination, p.Protocol, seg));
        }
    }

    [Fact]
    public void TtlDecrementKeepsHeaderChecksumValid()
    {
        var f = Pkt.Udp("10.0.0.1", 1, "10.0.0.2", 2, ttl: 200, ipOptions: 8);
        for (int i = 0; i < 199; i++)
        {
            Ipv4.DecrementTtl(f.AsSpan(14));
            Pkt.AssertChecksums(f);
        }
        Assert.Equal(1, Pkt.Ttl(f));
    }
}

public class PacketInfoTests
{
    [Fact]
    public void ParsesUdpWithVlanAndOptions()
    {
        var f = Pkt.Udp("10.1.2.3", 1111, "10.4.5.6", 2222, vlan: 0x0064, ipOptions: 12);
        Assert.Equal(ParseStatus.Ipv4, PacketInfo.Parse(f, out var p));
        Assert.True(p.HasVlan);
        Assert.Equal(18, p.L3Offset);
        Assert.Equal(32, p.IpHeaderLength);
        Assert.Equal(18 + 32, p.L4Offset);
        Assert.Equal(Pkt.Ip("10.1.2.3"), p.Source);
        Assert.Equal(Pkt.Ip("10.4.5.6"), p.Destination);
        Assert.True(p.HasPorts);
        Assert.Equal(1111, p.SourcePort);
        Assert.Equal(2222, p.DestinationPort);
        Pkt.AssertChecksums(f);
    }

    [Fact]
    public void ParsesTcpAndIcmpEcho()
    {
        Assert.Equal(ParseStatus.Ipv4, PacketInfo.Parse(Pkt.Tcp("1.2.3.4", 5, "5.6.7.8", 80), out var t));
        Assert.Equal((6, 5, 80), (t.Protocol, t.SourcePort, t.DestinationPort));
        Assert.Equal(ParseStatus.Ipv4, PacketInfo.Parse(Pkt.IcmpEcho("1.2.3.4", "5.6.7.8", 0x4242, 1), out var i));
        Assert.True(i.IsIcmpEcho);
        Assert.False(i.HasPorts);
        Assert.Equal(0x4242, i.IcmpIdentifier);
    }

    [Fact]
    public void ArpIsNotIpv4AndBrokenLengthsAreMalformed()
    {
        Assert.Equal(ParseStatus.NotIpv4, PacketInfo.Parse(Pkt.Arp(), out _));
        Assert.Equal(ParseStatus.Malformed, PacketInfo.Parse(new byte[10], out _));

        var f = Pkt.Udp("10.0.0.1", 1, "10.0.0.2", 2, payload: 100);
        Assert.Equal(ParseStatus.Malformed, PacketInfo.Parse(f.AsSpan(0, 60), out _)); // truncated below total length
        var badIhl = (byte[])f.Clone();
        badIhl[14] = 0x44;
        Assert.Equal(ParseStatus.Malformed, PacketInfo.Parse(badIhl, out _));
        var shortTcp = Pkt.Build(6, "10.0.0.1", "10.0.0.2", new byte[12]);
        Assert.Equal(ParseStatus.Malformed, PacketInfo.Parse(shortTcp, out _));
    }

    [Fact]
    public void NonFirstFragmentHasNoPorts()
    {
        var f = Pkt.Build(17, "10.0.0.1", "10.0.0.2", Pkt.Payload(16), fragment: 0x0003);
        Assert.Equal(ParseStatus.Ipv4, PacketInfo.Parse(f, out var p));
        Assert.True(p.IsFragment);
        Assert.True(p.IsNonFirstFragment);
        Assert.False(p.HasPorts);
    }

    [Fact]
    public void AddressParsingIsStrict()
    {
        Assert.True(Addresses.TryParseIpv4("192.0.2.1", out uint a));
        Assert.Equal(0xc0000201u, a);
        foreach (var bad in new[] { "10.1", "1.2.3.4.5", "256.0.0.1", "1..2.3", "a.b.c.d", "", "1.2.3.4 " })
            Assert.False(Addresses.TryParseIpv4(bad, out _), bad);
        Assert.False(Addresses.TryParsePrefix("10.0.0.1/24", out _, out _, out var err));
        Assert.Contains("10.0.0.0/24", err);
        Assert.True(Addresses.TryParsePrefix("0.0.0.0/0", out _, out int len, out _));
        Assert.Equal(0, len);
        var mac = new byte[6];
        Assert.True(Addresses.TryParseMac("00:16:3e:00:00:02", mac));
        Assert.Equal("00:16:3e:00:00:02", Addresses.FormatMac(mac));
        Assert.False(Addresses.TryParseMac("00:16:3e:00:00", mac));
    }
}
