using System.Buffers.Binary;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>
/// The offloading datapath between in-process ports with and without a virtio-net header:
/// GSO super-frames (TCP and UDP, IPv4 and IPv6, with and without VLAN tags) segmented for a
/// port without a header, partial checksums completed, headers added, kept or converted, and
/// hostile headers counted as drops. Checksums are verified with the test's own code.
/// </summary>
public class OffloadTests
{
    private static readonly byte[] SrcIp4 = [10, 9, 8, 7], DstIp4 = [10, 9, 8, 6];
    private static readonly byte[] SrcIp6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    private static readonly byte[] DstIp6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// <summary>A TCP or UDP frame over IPv4/IPv6 with <paramref name="vlans"/> 802.1Q tags, its transport checksum left partial (pseudo-header sum only), as a sender with checksum offload hands it to its device.</summary>
    internal static byte[] Frame(byte[] dst, byte[] src, bool ipv6, bool tcp, int payload, int vlans = 0, byte tcpFlags = 0x18, uint seq = 1000, ushort ipId = 77, int tcpOptions = 12)
    {
        int l2 = 14 + 4 * vlans;
        int l3len = ipv6 ? 40 : 20;
        int l4len = tcp ? 20 + tcpOptions : 8;
        var f = new byte[l2 + l3len + l4len + payload];
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        int off = 12;
        for (int v = 0; v < vlans; v++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(off), (ushort)(v == 0 && vlans == 2 ? 0x88A8 : 0x8100));
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(off + 2), (ushort)(100 + v));
            off += 4;
        }
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(off), (ushort)(ipv6 ? 0x86DD : 0x0800));
        int l3 = l2, l4 = l2 + l3len;
        if (ipv6)
        {
            f[l3] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l3 + 4), (ushort)(l4len + payload));
            f[l3 + 6] = (byte)(tcp ? 6 : 17);
            f[l3 + 7] = 64;
            SrcIp6.CopyTo(f, l3 + 8);
            DstIp6.CopyTo(f, l3 + 24);
        }
        else
        {
            f[l3] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l3 + 2), (ushort)(l3len + l4len + payload));
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l3 + 4), ipId);
            f[l3 + 6] = 0x40; // DF
            f[l3 + 8] = 64;
            f[l3 + 9] = (byte)(tcp ? 6 : 17);
            SrcIp4.CopyTo(f, l3 + 12);
            DstIp4.CopyTo(f, l3 + 16);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l3 + 10), Complement(Sum(f.AsSpan(l3, 20), 0)));
        }
        if (tcp)
        {
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4), 40000);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4 + 2), 5201);
            BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(l4 + 4), seq);
            BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(l4 + 8), 555);
            f[l4 + 12] = (byte)((20 + tcpOptions) / 4 << 4);
            f[l4 + 13] = tcpFlags;
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4 + 14), 500);
            for (int i = 0; i < tcpOptions; i++) f[l4 + 20 + i] = 1; // NOPs
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4), 40000);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4 + 2), 5201);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4 + 4), (ushort)(8 + payload));
        }
        for (int i = 0; i < payload; i++) f[l4 + l4len + i] = (byte)(i * 7 + i / 251);
        // The partial checksum: the folded pseudo-header sum, not complemented.
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(l4 + (tcp ? 16 : 6)), Fold(PseudoSum(f, l3, ipv6, tcp, l4len + payload)));
        return f;
    }

    internal static byte[] Header(byte flags, byte gsoType, int hdrLen, int gsoSize, int csumStart, int csumOffset, int length = 10)
    {
        var h = new byte[length];
        h[0] = flags;
        h[1] = gsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(2), (ushort)hdrLen);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), (ushort)gsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), (ushort)csumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(8), (ushort)csumOffset);
        return h;
    }

    // ---- the test's own checksum code (big-endian words, RFC 1071)

    private static ulong Sum(ReadOnlySpan<byte> b, ulong sum)
    {
        int i = 0;
        for (; i + 1 < b.Length; i += 2) sum += (ulong)(b[i] << 8 | b[i + 1]);
        if (i < b.Length) sum += (ulong)(b[i] << 8);
        return sum;
    }

    private static ushort Fold(ulong s)
    {
        while (s >> 16 != 0) s = (s & 0xFFFF) + (s >> 16);
        return (ushort)s;
    }

    private static ushort Complement(ulong s) => (ushort)~Fold(s);

    private static ulong PseudoSum(byte[] f, int l3, bool ipv6, bool tcp, int l4Len)
    {
        ulong s = ipv6 ? Sum(f.AsSpan(l3 + 8, 32), 0) : Sum(f.AsSpan(l3 + 12, 8), 0);
        return s + (ulong)(tcp ? 6 : 17) + (ulong)l4Len;
    }

    /// <summary>Layout of a frame the test built: (l3, l4, payload offset).</summary>
    private static (int L3, int L4, int Payload) Layout(byte[] f)
    {
        int off = 12;
        while (BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(off)) is 0x8100 or 0x88A8) off += 4;
        bool v6 = BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(off)) == 0x86DD;
        int l3 = off + 2, l4 = l3 + (v6 ? 40 : (f[l3] & 15) * 4);
        int proto = v6 ? f[l3 + 6] : f[l3 + 9];
        return (l3, l4, l4 + (proto == 6 ? (f[l4 + 12] >> 4) * 4 : 8));
    }

    /// <summary>Every checksum of <paramref name="f"/> (IPv4 header, TCP or UDP) is complete and right.</summary>
    private static void AssertChecksums(byte[] f)
    {
        var (l3, l4, _) = Layout(f);
        bool v6 = f[l3] >> 4 == 6;
        if (!v6)
        {
            Assert.Equal(0xFFFF, Fold(Sum(f.AsSpan(l3, (f[l3] & 15) * 4), 0)));
            Assert.Equal(f.Length - l3, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(l3 + 2)));
        }
        else
        {
            Assert.Equal(f.Length - l3 - 40, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(l3 + 4)));
        }
        bool tcp = (v6 ? f[l3 + 6] : f[l3 + 9]) == 6;
        int l4Len = f.Length - l4;
        if (!tcp) Assert.Equal(l4Len, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(l4 + 4)));
        Assert.True(Fold(Sum(f.AsSpan(l4), PseudoSum(f, l3, v6, tcp, l4Len))) == 0xFFFF, $"transport checksum of a {f.Length}-byte frame");
    }

    private sealed class Pair : IDisposable
    {
        public readonly ValeSwitch Sw = new();
        public readonly Node A, B;

        public Pair(int hdrA, int hdrB)
        {
            A = new Node(Sw, "valeo:a", Macs.Unicast(1));
            B = new Node(Sw, "valeo:b", Macs.Unicast(2));
            A.Port.VirtioHeaderLength = hdrA;
            B.Port.VirtioHeaderLength = hdrB;
        }

        public void Dispose()
        {
            A.Dispose();
            B.Dispose();
        }
    }

    [Theory]
    [InlineData(false, true, 0)]
    [InlineData(false, true, 1)]
    [InlineData(false, true, 2)]
    [InlineData(true, true, 0)]
    [InlineData(true, true, 1)]
    [InlineData(false, false, 0)]
    [InlineData(true, false, 1)]
    public void GsoSuperFramesAreSegmentedWithCompleteChecksumsForAPortWithoutHeader(bool ipv6, bool tcp, int vlans)
    {
        using var p = new Pair(10, 0);
        const int mss = 1448, payload = 20000;
        var frame = Frame(p.B.Mac, p.A.Mac, ipv6, tcp, payload, vlans, tcpFlags: 0x19 /* FIN PSH ACK */);
        var (l3, l4, pay) = Layout(frame);
        byte gso = tcp ? (ipv6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4) : VirtioNetHeader.GsoUdpL4;
        var hdr = Header(VirtioNetHeader.FlagNeedsCsum, gso, pay, mss, l4, tcp ? 16 : 6);
        p.A.Send([.. hdr, .. frame]);

        var got = p.B.Receive();
        int segments = (payload + mss - 1) / mss;
        Assert.Equal(segments, got.Count);
        var joined = new List<byte>();
        for (int k = 0; k < segments; k++)
        {
            var s = got[k].Bytes;
            Assert.Equal(pay + Math.Min(mss, payload - k * mss), s.Length);
            Assert.Equal(frame.AsSpan(0, l3).ToArray(), s.AsSpan(0, l3).ToArray()); // MACs, tags, ethertype
            AssertChecksums(s);
            if (!ipv6) Assert.Equal(77 + k, BinaryPrimitives.ReadUInt16BigEndian(s.AsSpan(l3 + 4)));
            if (tcp)
            {
                Assert.Equal(1000u + (uint)(k * mss), BinaryPrimitives.ReadUInt32BigEndian(s.AsSpan(l4 + 4)));
                Assert.Equal(k == segments - 1 ? 0x19 : 0x10, s[l4 + 13]);
            }
            joined.AddRange(s.AsSpan(pay).ToArray());
        }
        Assert.Equal(frame.AsSpan(pay).ToArray(), joined.ToArray());
        var bs = StatsAssert.Balanced(p.Sw, "valeo");
        Assert.Equal(segments - 1, bs.SegmentCopies);
        Assert.Equal(segments, bs.Delivered);
    }

    [Fact]
    public void JumboSegmentsBecomeMoreFragChainsAndOneSegmentFramesOnlyGetTheirChecksum()
    {
        using var p = new Pair(12, 0);
        var frame = Frame(p.B.Mac, p.A.Mac, ipv6: false, tcp: true, payload: 30000);
        var (_, l4, pay) = Layout(frame);
        p.A.Send([.. Header(1, VirtioNetHeader.GsoTcpV4, pay, 8948, l4, 16, length: 12), .. frame]);
        var got = p.B.Receive();
        Assert.Equal(4, got.Count);
        Assert.Equal(5, got[0].Slots.Length); // 8948 + 66 bytes in 2048-byte buffers
        Assert.All(got, r => AssertChecksums(r.Bytes));

        // gso_size larger than the payload: not a super-frame, only the checksum is completed.
        var small = Frame(p.B.Mac, p.A.Mac, ipv6: true, tcp: true, payload: 1000);
        var (_, l4s, pays) = Layout(small);
        p.A.Send([.. Header(1, VirtioNetHeader.GsoTcpV6, pays, 1440, l4s, 16, length: 12), .. small]);
        var one = Assert.Single(p.B.Receive());
        AssertChecksums(one.Bytes);
        Assert.Equal(small.Length, one.Bytes.Length);
        StatsAssert.Balanced(p.Sw, "valeo");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void APartialChecksumIsCompletedAndAPlainFrameLosesOnlyItsHeader(bool tcp)
    {
        using var p = new Pair(10, 0);
        var frame = Frame(p.B.Mac, p.A.Mac, ipv6: false, tcp, payload: 3000, vlans: 1);
        var (_, l4, _) = Layout(frame);
        p.A.Send([.. Header(VirtioNetHeader.FlagNeedsCsum, 0, 0, 0, l4, tcp ? 16 : 6), .. frame]);
        var got = Assert.Single(p.B.Receive());
        Assert.Equal(frame.Length, got.Bytes.Length);
        AssertChecksums(got.Bytes);

        var plain = TestFrames.Make(p.B.Mac, p.A.Mac, 100, 5);
        p.A.Send([.. new byte[10], .. plain]);
        Assert.Equal(plain, Assert.Single(p.B.Receive()).Bytes);
        StatsAssert.Balanced(p.Sw, "valeo");
    }

    [Fact]
    public void HeadersAreAddedKeptOrConvertedBetweenPortsThatHaveThem()
    {
        var sw = new ValeSwitch();
        using var none = new Node(sw, "valeh:n", Macs.Unicast(1));
        using var ten = new Node(sw, "valeh:t", Macs.Unicast(2));
        using var twelve = new Node(sw, "valeh:w", Macs.Unicast(3));
        ten.Port.VirtioHeaderLength = 10;
        twelve.Port.VirtioHeaderLength = 12;
        // Every MAC learned first, so that nothing below is flooded.
        none.Announce();
        ten.Send([.. new byte[10], .. ten.FrameTo(Macs.Broadcast)]);
        twelve.Send([.. new byte[12], .. twelve.FrameTo(Macs.Broadcast)]);
        foreach (var n in new[] { none, ten, twelve }) n.Drain();
        var frame = Frame(ten.Mac, none.Mac, false, true, 500);

        // none -> 10: a zeroed header in front.
        none.Send(frame);
        Assert.Equal([.. new byte[10], .. frame], Assert.Single(ten.Receive()).Bytes);

        // 10 -> 10 would be a plain copy; 10 -> 12: the 10 bytes kept, num_buffers 0. The offload
        // is not performed (the receiver can take it), so the partial checksum stays partial.
        var (_, l4, pay) = Layout(frame);
        var hdr = Header(1, VirtioNetHeader.GsoTcpV4, pay, 100, l4, 16);
        var toTwelve = Frame(twelve.Mac, ten.Mac, false, true, 500);
        ten.Send([.. hdr, .. toTwelve]);
        Assert.Equal([.. hdr, 0, 0, .. toTwelve], Assert.Single(twelve.Receive()).Bytes);

        // 12 -> 10: num_buffers dropped.
        var back = Frame(ten.Mac, twelve.Mac, false, true, 500);
        twelve.Send([.. hdr, 1, 0, .. back]);
        Assert.Equal([.. hdr, .. back], Assert.Single(ten.Receive()).Bytes);

        // 10 -> 10 (a second port of length 10): byte for byte, header included.
        using var ten2 = new Node(sw, "valeh:t2", Macs.Unicast(4));
        ten2.Port.VirtioHeaderLength = 10;
        var direct = Frame(ten2.Mac, ten.Mac, false, true, 500);
        ten.Send([.. hdr, .. direct]);
        Assert.Equal([.. hdr, .. direct], Assert.Single(ten2.Receive()).Bytes);
        StatsAssert.Balanced(sw, "valeh");
    }

    [Fact]
    public void HostileHeadersAreCountedDropsAndNothingIsDelivered()
    {
        using var p = new Pair(10, 0);
        var frame = Frame(p.B.Mac, p.A.Mac, false, true, 5000);
        var (_, l4, pay) = Layout(frame);
        byte[][] bad =
        [
            Header(1, VirtioNetHeader.GsoTcpV4, pay, 0, l4, 16),                  // gso_size 0
            Header(1, 0, 0, 0, frame.Length - 1, 0),                              // csum_start: field past the end
            Header(1, 0, 0, 0, l4, 65000),                                         // csum_offset far outside
            Header(1, 0, 0, 0, 3, 0),                                              // csum_start inside the MAC header
            Header(1, VirtioNetHeader.GsoTcpV4, 65535, 1448, l4, 16),              // hdr_len past the frame
            Header(1, VirtioNetHeader.GsoTcpV6, pay, 1448, l4, 16),                // GSO type does not match IPv4
            Header(1, VirtioNetHeader.GsoUdpL4, pay, 1448, l4, 6),                 // UDP GSO on a TCP frame
            Header(1, VirtioNetHeader.GsoUdp, pay, 1448, l4, 16),                  // UFO: not supported
            Header(1, 9, pay, 1448, l4, 16),                                       // unknown GSO type
            Header(0x40, 0, 0, 0, 0, 0),                                           // unknown flag
            Header(1, VirtioNetHeader.GsoTcpV4, pay, 1448, l4 + 2, 16),            // checksum not the TCP one
            Header(0, VirtioNetHeader.GsoEcn, 0, 0, 0, 0),                         // ECN without a GSO type
        ];
        foreach (var h in bad) p.A.Send([.. h, .. frame]);
        // A frame whose IP length disagrees with the frame cannot be segmented either.
        var lying = (byte[])frame.Clone();
        BinaryPrimitives.WriteUInt16BigEndian(lying.AsSpan(16), 60000);
        p.A.Send([.. Header(1, VirtioNetHeader.GsoTcpV4, pay, 1448, l4, 16), .. lying]);
        // Cut short: the TCP header claims 60 bytes that are not there.
        var cut = frame.AsSpan(0, l4 + 20).ToArray();
        cut[l4 + 12] = 0xF0;
        BinaryPrimitives.WriteUInt16BigEndian(cut.AsSpan(16), (ushort)(cut.Length - 14));
        p.A.Send([.. Header(1, VirtioNetHeader.GsoTcpV4, 0, 100, l4, 16), .. cut]);

        Assert.Empty(p.B.Receive());
        var s = StatsAssert.Balanced(p.Sw, "valeo");
        StatsAssert.OnlyDrops(s.Drops, (DropReason.BadOffload, bad.Length + 2));

        // The same port still forwards a good frame.
        p.A.Send([.. Header(1, VirtioNetHeader.GsoTcpV4, pay, 1448, l4, 16), .. frame]);
        Assert.Equal(4, p.B.Receive().Count);
    }

    [Fact]
    public void HeaderLengthIsValidatedAndTheFirstSlotMustHoldTheHeaderAndTheEthernetHeader()
    {
        using var p = new Pair(0, 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.A.Port.VirtioHeaderLength = 11);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.A.Port.VirtioHeaderLength = -1);
        Assert.Equal(0, p.A.Port.VirtioHeaderLength);
        p.A.Port.VirtioHeaderLength = 12;
        // 12 + 13 bytes in the first slot: a runt.
        p.A.Queue([new byte[25]]);
        p.A.Port.TxSync();
        Assert.Equal(1, p.A.Stats.Drop(DropReason.Runt));
        // A header alone in the first slot is a runt as well, even if the chain goes on.
        p.A.Queue([[.. new byte[12], .. TestFrames.Make(p.B.Mac, p.A.Mac, 60, 1)]], fragmentSize: 12);
        p.A.Port.TxSync();
        Assert.Equal(2, p.A.Stats.Drop(DropReason.Runt));
        StatsAssert.Balanced(p.Sw, "valeo");
    }

    [Fact]
    public void ASegmentedFrameThatCannotFitIsOneRingFullDrop()
    {
        using var p = new Pair(10, 0);
        var frame = Frame(p.B.Mac, p.A.Mac, false, true, 60000);
        var (_, l4, pay) = Layout(frame);
        // 60000 / 50 = 1200 segments: more than a 1024-slot ring can ever hold.
        p.A.Send([.. Header(1, VirtioNetHeader.GsoTcpV4, pay, 50, l4, 16), .. frame]);
        Assert.Empty(p.B.Receive());
        var s = StatsAssert.Balanced(p.Sw, "valeo");
        StatsAssert.OnlyDrops(s.Drops, (DropReason.RingFull, 1));
        Assert.Equal(0, s.SegmentCopies);
    }
}
