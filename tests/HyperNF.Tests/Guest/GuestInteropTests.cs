using System.Buffers.Binary;
using System.Globalization;
using HyperNF.Functions;
using HyperNF.Memory;
using HyperNF.Switch;
using HyperNF.Tests.Functions;
using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Guest;

/// <summary>
/// The guest SDK's portable C code, run on the host (guest/test/hosttest.c), against the
/// C# code it mirrors: pkt-gen frames byte for byte in both directions, loss/reordering and
/// latency figures, the router NF frame for frame, and the small parsers and formatter.
/// This is what lets a C# pkt-gen domain and a guest pkt-gen talk to each other and what
/// makes the guest router comparable with the C# one.
/// </summary>
public sealed class GuestInteropTests
{
    private static HostTest H => HostTest.Shared;

    private static string Mac(ulong tableForm)
    {
        Span<byte> b = stackalloc byte[6];
        PacketFormat.WriteMac(b, tableForm);
        return Addresses.FormatMac(b.ToArray());
    }

    private static byte[] CSharpFrame(int len, ulong dmac, ulong smac, string sip, ushort sport, string dip, ushort dport, ulong seq, long ts)
    {
        var buf = new byte[Math.Min(len, RegionLayout.DefaultBufferSize)];
        buf.AsSpan().Fill(0xEE);
        PacketFormat.WriteFrame(buf, len, dmac, smac, Pkt.Ip(sip), sport, Pkt.Ip(dip), dport);
        PacketFormat.Stamp(buf, seq, ts);
        return buf;
    }

    public static TheoryData<int, string, string, ulong, long> Frames => new()
    {
        { 60, "10.0.0.1", "10.1.0.1", 0, 0 },
        { 64, "192.168.7.9", "10.1.0.200", 12345, 987654321012 },
        { 1514, "172.16.0.1", "172.16.255.254", ulong.MaxValue, long.MaxValue },
        { 3000, "10.0.0.1", "10.1.0.1", 1UL << 40, 1 },   // a MOREFRAG chain: the first 2048 bytes
        { 9014, "1.2.3.4", "5.6.7.8", 77, 123 },
    };

    [GuestToolchainTheory]
    [MemberData(nameof(Frames))]
    public void Guest_frames_are_byte_for_byte_the_csharp_frames(int len, string sip, string dip, ulong seq, long ts)
    {
        ulong smac = 0x0100_0000_0002UL, dmac = 0xffff_ffff_ffffUL; // 02:00:00:00:00:01, broadcast
        ushort sport = (ushort)(1000 + len), dport = 4321;
        string hex = H.Ask(string.Join('|', "frame", len, Mac(dmac), Mac(smac), sip, sport, dip, dport, seq, ts));
        var expected = CSharpFrame(len, dmac, smac, sip, sport, dip, dport, seq, ts);
        Assert.Equal(HostTest.Hex(expected), hex);
        // and the C# receiver accepts the guest's frame
        Assert.True(PacketFormat.TryRead(HostTest.Bytes(hex), out ulong s, out long t));
        Assert.Equal(seq, s);
        Assert.Equal(ts, t);
    }

    private static (int Status, ulong Seq, long Ts) Check(byte[] firstFragment, int frameLength)
    {
        var p = H.Ask($"check|{frameLength}|{HostTest.Hex(firstFragment)}").Split(' ');
        return (int.Parse(p[0], CultureInfo.InvariantCulture), ulong.Parse(p[1], CultureInfo.InvariantCulture), long.Parse(p[2], CultureInfo.InvariantCulture));
    }

    [GuestToolchainFact]
    public void The_guest_receiver_accepts_csharp_frames_and_tells_bad_from_foreign()
    {
        const int Ok = 0, Foreign = 1, Bad = 2;
        var f = CSharpFrame(128, 0x0200_0000_0002UL, 0x0100_0000_0002UL, "10.0.0.1", 1234, "10.1.0.1", 1234, 42, 1_000_000_007);
        Assert.Equal((Ok, 42UL, 1_000_000_007L), Check(f, 128));

        // a router on the way: TTL decremented, checksum updated incrementally, still intact
        var routed = (byte[])f.Clone();
        Ipv4.DecrementTtl(routed.AsSpan(14));
        Assert.Equal(Ok, Check(routed, 128).Status);
        // a jumbo chain: the first fragment is checked, the frame length comes from the chain
        var jumbo = CSharpFrame(4000, 0x0200_0000_0002UL, 0x0100_0000_0002UL, "10.0.0.1", 1234, "10.1.0.1", 1234, 7, 9);
        Assert.Equal((Ok, 7UL, 9L), Check(jumbo, 4000));

        var badSum = (byte[])f.Clone();
        badSum[14 + 8]--; // TTL changed without the checksum
        Assert.Equal(Bad, Check(badSum, 128).Status);
        Assert.Equal(Bad, Check(f, 127).Status);     // lengths in the headers disagree with the frame
        Assert.Equal(Bad, Check(jumbo, 4001).Status);
        var pad = (byte[])f.Clone();
        pad[100] = 1;                                  // the payload after the header is zero
        Assert.Equal(Bad, Check(pad, 128).Status);

        var magic = (byte[])f.Clone();
        magic[PacketFormat.MagicOffset] ^= 1;
        Assert.Equal(Foreign, Check(magic, 128).Status);
        Assert.False(PacketFormat.TryRead(magic, out _, out _)); // the C# receiver agrees it is not ours
        Assert.Equal(Foreign, Check(Pkt.Tcp("10.0.0.1", 1, "10.0.0.2", 2), 86).Status);
        Assert.Equal(Foreign, Check(Pkt.Arp(), 42).Status);
        Assert.Equal(Foreign, Check(f[..59], 59).Status); // a runt
    }

    [GuestToolchainFact]
    public void Default_source_mac_is_the_csharp_generators()
    {
        var sw = new ValeSwitch();
        foreach (string name in new[] { "valex:vtx", "valey:g1", "valeq:abcdefghi" })
        {
            using var mem = new DomainMemory(new RegionLayout { MaxPorts = 1 }, "guest-sdk-mac");
            using var port = sw.OpenPort(name, mem);
            var gen = new PacketGenerator(port, new PacketGeneratorOptions());
            Assert.Equal(Mac(gen.SourceMac), H.Ask($"mac|{name}"));
        }
    }

    [GuestToolchainFact]
    public void Latency_percentiles_are_the_csharp_histograms()
    {
        var rnd = new Random(11);
        foreach (int n in new[] { 1, 2, 7, 100, 1000, 5000 })
        {
            var values = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? rnd.NextInt64(0, 300) : rnd.NextInt64(0, 5_000_000_000)).ToArray();
            if (n > 10) values[3] = -5; // a clock that went backwards counts as 0
            var h = new LatencyHistogram();
            foreach (long v in values) h.Record(v);
            string expected = string.Join(' ', h.Count, h.Min, h.Max, h.ValueAtPercentile(50), h.ValueAtPercentile(90), h.ValueAtPercentile(99), h.ValueAtPercentile(99.9));
            Assert.Equal(expected, H.Ask("hist|" + string.Join(' ', values)));
        }
    }

    [GuestToolchainFact]
    public void Loss_reordering_and_duplicates_are_the_csharp_trackers()
    {
        ulong[][] cases =
        [
            [0, 1, 2, 3, 4],
            [0, 1, 3, 4, 2],                       // late
            [5, 6, 9, 10],                         // lost 7, 8
            [1, 2, 2, 3, 1],                       // duplicates
            [100, 200_000, 150, 70_000, 100],      // beyond the window
            [.. Enumerable.Range(0, 3000).Select(i => (ulong)(i % 7 == 0 ? i + 5 : i))],
        ];
        foreach (var seqs in cases)
        {
            var t = new SequenceTracker();
            foreach (ulong s in seqs) t.Add(s);
            Assert.Equal($"{t.Lost} {t.Reordered} {t.Duplicates} {t.Distinct}", H.Ask("seq|" + string.Join(' ', seqs)));
        }
    }

    private const string RouterArgs =
        "mac0=02:00:00:00:00:01, mac1=02:00:00:00:00:02, route=10.0.1.0/24 via 00:16:3e:00:00:02 port 1;10.0.0.0/8 via 00:16:3e:00:00:01 port 0, route=0.0.0.0/0 via 00:16:3e:00:00:09 port 1";

    public static IEnumerable<(string Name, byte[] Frame, int InPort)> RouterFrames()
    {
        yield return ("udp to 10.0.1.5 from port 0", Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53), 0);
        yield return ("tcp to 10.0.1.5 from port 1 (reflect)", Pkt.Tcp("10.0.0.1", 1000, "10.0.1.5", 80), 1);
        yield return ("tcp to 10.9.9.9 from port 1 (port 0)", Pkt.Tcp("10.0.1.7", 1000, "10.9.9.9", 80), 1);
        yield return ("icmp default route", Pkt.IcmpEcho("10.0.0.1", "8.8.8.8", 7, 1), 0);
        yield return ("ttl 1", Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53, ttl: 1), 0);
        yield return ("ttl 0", Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53, ttl: 0), 0);
        yield return ("ttl 2", Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53, ttl: 2), 0);
        yield return ("vlan", Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53, vlan: 12), 0);
        yield return ("ip options", Pkt.Tcp("10.0.0.1", 1000, "10.0.1.5", 80, ipOptions: 8), 0);
        yield return ("arp", Pkt.Arp(), 0);
        yield return ("pkt-gen frame", CSharpFrame(60, 0xffff_ffff_ffffUL, 0x0100_0000_0002UL, "10.0.0.1", 1234, "10.0.1.1", 1234, 1, 2), 0);
        var badSum = Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53);
        badSum[14 + 10] ^= 0x40;
        yield return ("bad checksum", badSum, 0);
        var shortIp = Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53);
        yield return ("truncated", shortIp[..30], 0);
        var longTotal = Pkt.Udp("10.0.0.1", 1000, "10.0.1.5", 53);
        BinaryPrimitives.WriteUInt16BigEndian(longTotal.AsSpan(16), 1500);
        Ipv4.UpdateChecksum(longTotal.AsSpan(14));
        yield return ("total length beyond the frame", longTotal, 0);
        yield return ("runt", new byte[10], 0);
        // the checksum edge: a header whose update crosses 0x0000/0xffff
        for (byte ttl = 2; ttl < 255; ttl += 17)
            yield return ($"ttl {ttl}", Pkt.Tcp("10.0.0.1", 1000, "10.0.1.5", 80, ttl: ttl, seed: ttl), 0);
    }

    [GuestToolchainFact]
    public void The_guest_router_routes_every_frame_as_the_csharp_router()
    {
        foreach (string args in new[] { RouterArgs, RouterArgs.Replace("route=0.0.0.0/0 via 00:16:3e:00:00:09 port 1", "nonip=pass", StringComparison.Ordinal) })
        {
            foreach (var (name, frame, inPort) in RouterFrames())
            {
                var router = Router.FromArgs(args);
                var (frames, verdicts) = Pkt.Run(router, inPort, frame);
                var counters = router.Counters.ToDictionary(c => c.Key, c => c.Value);
                long nonIp = counters.TryGetValue("non_ipv4", out long a) ? a : counters["non_ipv4_passed"];
                string expected = $"{(int)verdicts[0]} {HostTest.Hex(frames[0])} {counters["routed"]} {counters["no_route"]} {counters["ttl_expired"]} {counters["bad_header"]} {nonIp}";
                string got = H.Ask($"router|{args}|{inPort}|{HostTest.Hex(frame)}");
                Assert.True(expected == got, $"{name} ({args}):\n C#: {expected}\n C:  {got}");
                if (verdicts[0] != Verdict.Drop && frames[0].Length > 34 && BinaryPrimitives.ReadUInt16BigEndian(frames[0].AsSpan(12)) == 0x0800)
                    Pkt.AssertChecksums(frames[0], udpMayBeAbsent: true);
            }
        }
    }

    [GuestToolchainFact]
    public void The_guest_router_refuses_what_the_csharp_router_refuses()
    {
        string[] bad =
        [
            "mac1=02:00:00:00:00:02",                                            // mac0 missing
            "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,route=10.0.0.1/8 via 00:16:3e:00:00:01 port 0", // host bits
            "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,route=10.0.0.0/8 via 00:16:3e:00:00:01 port 2",
            "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,route=10.0.0.0/8 to 00:16:3e:00:00:01 port 0",
            "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,route=10.0.0.0/8 via 00:16:3e:00:00:01 port 0;10.0.0.0/8 via 00:16:3e:00:00:02 port 1",
            "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,nonip=maybe",
            "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,colour=blue",
            "mac0=02:00:00:00:00:01,mac0=02:00:00:00:00:03,mac1=02:00:00:00:00:02",
            "mac0=zz:00:00:00:00:01,mac1=02:00:00:00:00:02",
        ];
        foreach (string args in bad)
        {
            Assert.ThrowsAny<ArgumentException>(() => Router.FromArgs(args));
            string got = H.Ask($"router|{args}|0|{HostTest.Hex(Pkt.Arp())}");
            Assert.StartsWith("error: ", got);
        }
    }

    [GuestToolchainFact]
    public void Incremental_checksum_update_is_the_csharp_one()
    {
        var rnd = new Random(3);
        for (int i = 0; i < 200; i++)
        {
            ushort c = (ushort)rnd.Next(65536), o = (ushort)rnd.Next(65536), n = (ushort)rnd.Next(65536);
            if (i < 4) (c, o, n) = ((ushort)(i * 0x5555), (ushort)(0xffff - i), (ushort)i);
            Assert.Equal(Checksum.Update16(c, o, n).ToString(CultureInfo.InvariantCulture), H.Ask($"csum16|{c}|{o}|{n}"));
        }
    }

    [GuestToolchainFact]
    public void Parsers_accept_and_refuse_what_the_csharp_parsers_do()
    {
        foreach (string s in new[] { "10.0.0.1", "255.255.255.255", "0.0.0.0", "010.0.0.1", "10.0.1", "10.0.0.256", "1.2.3.4.5", "a.b.c.d", "", "10..0.1", "10.0.0.1x" })
        {
            // pkt-gen's -s/-d syntax (EndpointRange) is the strict one: no leading zeros
            EndpointRange r = default;
            bool ok = !s.Contains(':', StringComparison.Ordinal) && !s.Contains('-', StringComparison.Ordinal) && EndpointRange.TryParse(s, out r, out _);
            Assert.True((ok ? $"ok {r.FirstAddress}" : "err") == H.Ask($"parse|ipv4|{s}"), $"ipv4 '{s}'");
        }
        foreach (string s in new[] { "10.0.0.0/8", "10.0.0.1/8", "0.0.0.0/0", "10.0.0.1", "10.0.0.0/33", "10.0.0.0/", "192.168.1.0/24", "010.0.0.0/8", "10.0.0.0/008" })
        {
            bool ok = Addresses.TryParsePrefix(s, out uint p, out int l, out _);
            Assert.True((ok ? $"ok {p}/{l}" : "err") == H.Ask($"parse|prefix|{s}"), $"prefix '{s}'");
        }
        foreach (string s in new[] { "02:00:00:00:00:01", "ff:FF:ff:ff:ff:ff", "02:00:00:00:00", "02-00-00-00-00-01", "02:00:00:00:00:0g" })
        {
            var mac = new byte[6];
            bool ok = Addresses.TryParseMac(s, mac) && s.Contains(':', StringComparison.Ordinal);
            Assert.True((ok ? $"ok {Addresses.FormatMac(mac)}" : "err") == H.Ask($"parse|mac|{s}"), $"mac '{s}'");
        }
        Assert.Equal("ok 1500000", H.Ask("parse|rate|1500K"));
        Assert.Equal("ok 2000000", H.Ask("parse|rate|2M"));
        Assert.Equal("err", H.Ask("parse|rate|2.5M")); // fractions are refused, not truncated
        Assert.Equal("ok 18446744073709551615", H.Ask("parse|u64|18446744073709551615"));
        Assert.Equal("err", H.Ask("parse|u64|18446744073709551616"));
        Assert.Equal("ok 255", H.Ask("parse|u64|0xff"));
        Assert.Equal("err", H.Ask("parse|u64|-1"));
        Assert.Equal("ok -9223372036854775808", H.Ask("parse|i64|-9223372036854775808"));
        Assert.Equal("err", H.Ask("parse|i64|9223372036854775808"));
        // pkt-gen's split: spaces, tabs and commas, as PacketGenArgs.Split
        string line = "-f tx,-n  1000\t-l 60,,-w";
        Assert.Equal(string.Join('|', [PacketGenArgs.Split(line).Length.ToString(CultureInfo.InvariantCulture), .. PacketGenArgs.Split(line)]),
            H.Ask($"split| \t,|{line}"));
    }

    [GuestToolchainFact]
    public void The_formatter_prints_as_printf()
    {
        string[] expected =
        [
            "-42 7 4000000000",
            "-9223372036854775808 18446744073709551615 deadbeef ABC",
            "[   42][42   ][-0042][0a:ff]",
            "[abc][     abc][abc     ][abc][z]",
            "0x1000 % 12 (null)",
            "truncat|14",
        ];
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], H.Ask($"fmt|{i}"));
    }
}
