using System.Buffers.Binary;
using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Tools;

public class PacketFormatTests
{
    private const ulong Dst = 0x0000_0200_0000_0002UL, Src = 0x0000_0100_0000_0002UL;

    [Theory]
    [InlineData(60)]
    [InlineData(1514)]
    [InlineData(2048)]
    public void Frame_is_ethernet_ipv4_udp_with_a_valid_checksum(int length)
    {
        var buf = new byte[2048];
        buf.AsSpan().Fill(0xEE);
        PacketFormat.WriteFrame(buf, length, Dst, Src, 0x0A000001, 1234, 0x0A010001, 4321);
        Assert.Equal(new byte[] { 0x02, 0, 0, 0, 0, 0x02 }, buf[..6]);
        Assert.Equal(new byte[] { 0x02, 0, 0, 0, 0, 0x01 }, buf[6..12]);
        Assert.Equal(0x0800, BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(12)));
        Assert.Equal(0x45, buf[14]);
        Assert.Equal(length - 14, BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(16)));
        Assert.Equal(17, buf[23]);
        Assert.Equal(0, PacketFormat.IpChecksum(buf.AsSpan(14, 20))); // a valid header sums to 0xffff
        Assert.NotEqual(0, BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(24)));
        Assert.Equal(length - 34, BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(38)));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(40))); // UDP checksum 0: none
        Assert.Equal(0x0A000001u, PacketFormat.SourceAddress(buf));
        Assert.Equal(0x0A010001u, PacketFormat.DestinationAddress(buf));
        Assert.Equal(1234, PacketFormat.SourcePort(buf));
        Assert.Equal(4321, PacketFormat.DestinationPort(buf));
        Assert.All(buf[60..length], b => Assert.Equal(0, b));
        if (length < 2048) Assert.Equal(0xEE, buf[length]);
    }

    [Fact]
    public void Stamp_and_read_round_trip_and_endpoints_keep_the_checksum_valid()
    {
        var buf = new byte[60];
        PacketFormat.WriteFrame(buf, 60, Dst, Src, 1, 2, 3, 4);
        PacketFormat.Stamp(buf, 0x0102030405060708UL, 1234567890123L);
        Assert.True(PacketFormat.TryRead(buf, out ulong seq, out long ts));
        Assert.Equal(0x0102030405060708UL, seq);
        Assert.Equal(1234567890123L, ts);
        PacketFormat.SetEndpoints(buf, 0xC0A80101, 65535, 0xFFFFFFFF, 0);
        Assert.Equal(0, PacketFormat.IpChecksum(buf.AsSpan(14, 20)));
        Assert.True(PacketFormat.TryRead(buf, out seq, out _));
        Assert.Equal(0x0102030405060708UL, seq);
    }

    [Fact]
    public void Foreign_frames_are_not_read()
    {
        var buf = new byte[60];
        PacketFormat.WriteFrame(buf, 60, Dst, Src, 1, 2, 3, 4);
        Assert.False(PacketFormat.TryRead(buf.AsSpan(0, 59), out _, out _));
        var c = (byte[])buf.Clone(); c[42] ^= 1; Assert.False(PacketFormat.TryRead(c, out _, out _)); // magic
        c = (byte[])buf.Clone(); c[23] = 6; Assert.False(PacketFormat.TryRead(c, out _, out _));      // TCP
        c = (byte[])buf.Clone(); c[12] = 0x86; c[13] = 0xdd; Assert.False(PacketFormat.TryRead(c, out _, out _)); // IPv6
        c = (byte[])buf.Clone(); c[14] = 0x46; Assert.False(PacketFormat.TryRead(c, out _, out _));   // IP options
    }

    [Fact]
    public void Bad_lengths_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketFormat.WriteFrame(new byte[64], 59, Dst, Src, 1, 2, 3, 4));
        Assert.Throws<ArgumentException>(() => PacketFormat.WriteFrame(new byte[59], 60, Dst, Src, 1, 2, 3, 4));
    }
}
