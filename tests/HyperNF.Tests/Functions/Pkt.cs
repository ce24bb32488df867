using System.Buffers.Binary;
using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

/// <summary>
/// Builds real Ethernet/IPv4 frames for NF tests and checks their checksums. The checksum code
/// here is a deliberately naive RFC 1071 loop, independent of <see cref="Checksum"/>, so a bug
/// there cannot hide itself.
/// </summary>
internal static class Pkt
{
    public static readonly byte[] MacA = [0x02, 0, 0, 0, 0, 0xaa];
    public static readonly byte[] MacB = [0x02, 0, 0, 0, 0, 0xbb];

    public static uint Ip(string s) => Addresses.TryParseIpv4(s, out uint a) ? a : throw new ArgumentException(s);

    public static byte[] Payload(int n, int seed = 1)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static byte[] Udp(string src, ushort sport, string dst, ushort dport, int payload = 18, byte ttl = 64,
        ushort? vlan = null, int ipOptions = 0, bool withChecksum = true, int seed = 1)
    {
        var l4 = new byte[8 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(l4, sport);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(4), (ushort)l4.Length);
        Payload(payload, seed).CopyTo(l4, 8);
        if (withChecksum)
        {
            ushort c = RefL4(Ip(src), Ip(dst), 17, l4);
            BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(6), c == 0 ? (ushort)0xffff : c);
        }
        return Build(17, src, dst, l4, ttl, vlan, ipOptions);
    }

    public static byte[] Tcp(string src, ushort sport, string dst, ushort dport, int payload = 32, byte ttl = 64,
        ushort? vlan = null, int ipOptions = 0, int seed = 2)
    {
        var l4 = new byte[20 + payload];
        BinaryPrimitives.WriteUInt16BigEndian(l4, sport);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(2), dport);
        BinaryPrimitives.WriteUInt32BigEndian(l4.AsSpan(4), 0x01020304); // seq
        BinaryPrimitives.WriteUInt32BigEndian(l4.AsSpan(8), 0x0a0b0c0d); // ack
        l4[12] = 5 << 4;
        l4[13] = 0x18; // PSH|ACK
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(14), 65535);
        Payload(payload, seed).CopyTo(l4, 20);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(16), RefL4(Ip(src), Ip(dst), 6, l4));
        return Build(6, src, dst, l4, ttl, vlan, ipOptions);
    }

    public static byte[] IcmpEcho(string src, string dst, ushort id, ushort seq, bool request = true, int payload = 24, byte ttl = 64)
    {
        var l4 = new byte[8 + payload];
        l4[0] = request ? (byte)8 : (byte)0;
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(6), seq);
        Payload(payload, 3).CopyTo(l4, 8);
        BinaryPrimitives.WriteUInt16BigEndian(l4.AsSpan(2), (ushort)~RefSum(l4, 0));
        return Build(1, src, dst, l4, ttl, null, 0);
    }

    /// <summary>An IPv4 packet of protocol <paramref name="proto"/> carrying <paramref name="l4"/>, padded to 60 bytes.</summary>
    public static byte[] Build(byte proto, string src, string dst, byte[] l4, byte ttl = 64, ushort? vlan = null, int ipOptions = 0,
        ushort fragment = 0x4000)
    {
        int l2 = vlan is null ? 14 : 18;
        int ihl = 20 + ipOptions;
        if (ipOptions % 4 != 0) throw new ArgumentException("options are whole words");
        int total = ihl + l4.Length;
        var f = new byte[Math.Max(60, l2 + total)];
        MacB.CopyTo(f, 0);
        MacA.CopyTo(f, 6);
        if (vlan is ushort tci)
        {
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x8100);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(14), tci);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), 0x0800);
        }
        else BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0800);
        var ip = f.AsSpan(l2);
        ip[0] = (byte)(0x40 | (ihl / 4));
        ip[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)total);
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x1234);
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], fragment);
        ip[8] = ttl;
        ip[9] = proto;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], Ip(src));
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], Ip(dst));
        for (int i = 0; i < ipOptions; i++) ip[20 + i] = i == ipOptions - 1 ? (byte)0 : (byte)1; // NOPs then EOL
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~RefSum(f.AsSpan(l2, ihl).ToArray(), 0));
        l4.CopyTo(f, l2 + ihl);
        return f;
    }

    public static byte[] Arp()
    {
        var f = new byte[60];
        f.AsSpan(0, 6).Fill(0xff);
        MacA.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0806);
        f[14] = 0; f[15] = 1; f[16] = 8; f[17] = 0; f[18] = 6; f[19] = 4; f[21] = 1;
        return f;
    }

    /// <summary>RFC 1071, word by word, no tricks: the unfolded-then-folded ones'-complement sum.</summary>
    public static ushort RefSum(byte[] data, uint initial)
    {
        uint sum = initial;
        for (int i = 0; i < data.Length; i += 2)
        {
            sum += (uint)(data[i] << 8 | (i + 1 < data.Length ? data[i + 1] : 0));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)sum;
    }

    public static ushort RefL4(uint src, uint dst, byte proto, byte[] segment)
    {
        uint pseudo = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + (uint)segment.Length;
        return (ushort)~RefSum(segment, pseudo);
    }

    public static int L3(byte[] f) => BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12)) == 0x8100 ? 18 : 14;

    /// <summary>
    /// Recomputes the IP header checksum and the TCP/UDP/ICMP checksum from scratch (field zeroed)
    /// and asserts the frame carries exactly those values. A UDP checksum of 0 (absent) is accepted
    /// only if <paramref name="udpMayBeAbsent"/>.
    /// </summary>
    public static void AssertChecksums(byte[] f, bool udpMayBeAbsent = false)
    {
        int l3 = L3(f);
        int ihl = (f[l3] & 0xf) * 4;
        int total = BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(l3 + 2));
        var hdr = f.AsSpan(l3, ihl).ToArray();
        ushort stored = BinaryPrimitives.ReadUInt16BigEndian(hdr.AsSpan(10));
        hdr[10] = hdr[11] = 0;
        Assert.Equal((ushort)~RefSum(hdr, 0), stored);

        byte proto = f[l3 + 9];
        uint src = BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(l3 + 12)), dst = BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(l3 + 16));
        var seg = f.AsSpan(l3 + ihl, total - ihl).ToArray();
        switch (proto)
        {
            case 6:
                stored = BinaryPrimitives.ReadUInt16BigEndian(seg.AsSpan(16));
                seg[16] = seg[17] = 0;
                Assert.Equal(RefL4(src, dst, 6, seg), stored);
                break;
            case 17:
                stored = BinaryPrimitives.ReadUInt16BigEndian(seg.AsSpan(6));
                if (stored == 0) { Assert.True(udpMayBeAbsent, "UDP checksum is 0 (absent)"); break; }
                seg[6] = seg[7] = 0;
                ushort c = RefL4(src, dst, 17, seg);
                Assert.Equal(c == 0 ? (ushort)0xffff : c, stored);
                break;
            case 1:
                stored = BinaryPrimitives.ReadUInt16BigEndian(seg.AsSpan(2));
                seg[2] = seg[3] = 0;
                Assert.Equal((ushort)~RefSum(seg, 0), stored);
                break;
        }
    }

    // Field readers for assertions.
    public static uint SrcIp(byte[] f) => BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(L3(f) + 12));
    public static uint DstIp(byte[] f) => BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(L3(f) + 16));
    public static byte Ttl(byte[] f) => f[L3(f) + 8];
    public static int L4(byte[] f) => L3(f) + (f[L3(f)] & 0xf) * 4;
    public static ushort SrcPort(byte[] f) => BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(L4(f)));
    public static ushort DstPort(byte[] f) => BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(L4(f) + 2));
    public static ushort IcmpId(byte[] f) => BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(L4(f) + 4));

    /// <summary>Runs one batch of <paramref name="frames"/> through <paramref name="nf"/> as arrived on <paramref name="port"/>.</summary>
    public static (byte[][] Frames, Verdict[] Verdicts) Run(INetworkFunction nf, int port, params byte[][] frames)
    {
        var s = FrameBatchStorage.FromFrames(frames);
        var b = s.AsBatch(port);
        nf.Process(ref b);
        var outFrames = new byte[frames.Length][];
        var verdicts = new Verdict[frames.Length];
        for (int i = 0; i < frames.Length; i++)
        {
            outFrames[i] = s.FrameAt(i);
            verdicts[i] = s.VerdictAt(i);
        }
        return (outFrames, verdicts);
    }

    public static long Counter(INetworkFunction nf, string name) =>
        nf.Counters.Single(kv => kv.Key == name).Value;
}
