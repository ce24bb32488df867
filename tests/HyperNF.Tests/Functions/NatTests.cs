using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class NatTests
{
    /// <summary>A clock the test moves by hand, so timeouts are tested without sleeping.</summary>
    private sealed class ManualClock : TimeProvider
    {
        public long Now = 1_000_000;
        public override long TimestampFrequency => 1_000; // milliseconds
        public override long GetTimestamp() => Now;
        public void Advance(TimeSpan t) => Now += (long)t.TotalMilliseconds;
    }

    private const string Public = "192.0.2.1";
    private const string Remote = "198.51.100.7";

    private static Nat Make(string args = "public=192.0.2.1,ports=20000-29999", ManualClock? clock = null) =>
        Nat.FromArgs(args, clock ?? new ManualClock());

    [Fact]
    public void OutboundUdpIsTranslatedWithValidChecksums()
    {
        var nat = Make();
        var orig = Pkt.Udp("10.0.0.5", 5353, Remote, 53, payload: 41);
        var (f, v) = Pkt.Run(nat, 0, orig);
        Assert.Equal(Verdict.Forward, v[0]);
        Assert.Equal(Pkt.Ip(Public), Pkt.SrcIp(f[0]));
        Assert.Equal(20000, Pkt.SrcPort(f[0]));
        Assert.Equal(Pkt.Ip(Remote), Pkt.DstIp(f[0]));
        Assert.Equal(53, Pkt.DstPort(f[0]));
        Pkt.AssertChecksums(f[0]);
        Assert.Equal(orig[42..], f[0][42..]); // payload untouched
        Assert.Equal(1, Pkt.Counter(nat, "new_mappings"));
    }

    [Fact]
    public void PortsAreAllocatedPerFlowAndReused()
    {
        var nat = Make();
        var (f, _) = Pkt.Run(nat, 0,
            Pkt.Udp("10.0.0.5", 1000, Remote, 53),
            Pkt.Udp("10.0.0.5", 1001, Remote, 53),
            Pkt.Udp("10.0.0.6", 1000, Remote, 53),
            Pkt.Udp("10.0.0.5", 1000, Remote, 53),   // same flow as the first
            Pkt.Udp("10.0.0.5", 1000, Remote, 54),   // other remote port: a new flow
            Pkt.Tcp("10.0.0.5", 1000, Remote, 53));  // TCP has its own pool
        Assert.Equal(new ushort[] { 20000, 20001, 20002, 20000, 20003, 20000 }, f.Select(Pkt.SrcPort));
        foreach (var x in f) Pkt.AssertChecksums(x);
        Assert.Equal(5, Pkt.Counter(nat, "new_mappings"));
        Assert.Equal(5, nat.ActiveMappings);
    }

    [Fact]
    public void ReturnTrafficIsTranslatedBack()
    {
        var nat = Make();
        var (o, _) = Pkt.Run(nat, 0, Pkt.Tcp("10.0.0.5", 43000, Remote, 443), Pkt.Udp("10.0.0.9", 5000, Remote, 4500, vlan: 3));
        ushort tcpPort = Pkt.SrcPort(o[0]), udpPort = Pkt.SrcPort(o[1]);

        var tcpReply = Pkt.Tcp(Remote, 443, Public, tcpPort, payload: 100, seed: 9);
        var udpReply = Pkt.Udp(Remote, 4500, Public, udpPort, vlan: 3, seed: 10);
        var (f, v) = Pkt.Run(nat, 1, tcpReply, udpReply);
        Assert.Equal([Verdict.Forward, Verdict.Forward], v);
        Assert.Equal(Pkt.Ip("10.0.0.5"), Pkt.DstIp(f[0]));
        Assert.Equal(43000, Pkt.DstPort(f[0]));
        Assert.Equal(Pkt.Ip(Remote), Pkt.SrcIp(f[0]));
        Assert.Equal(Pkt.Ip("10.0.0.9"), Pkt.DstIp(f[1]));
        Assert.Equal(5000, Pkt.DstPort(f[1]));
        Pkt.AssertChecksums(f[0]);
        Pkt.AssertChecksums(f[1]);
        Assert.Equal(2, Pkt.Counter(nat, "translated_in"));
    }

    [Fact]
    public void IcmpEchoIsMappedByIdentifier()
    {
        var nat = Make();
        var (o, _) = Pkt.Run(nat, 0, Pkt.IcmpEcho("10.0.0.5", Remote, 0x1234, 1), Pkt.IcmpEcho("10.0.0.6", Remote, 0x1234, 1));
        Assert.Equal(new ushort[] { 20000, 20001 }, o.Select(Pkt.IcmpId));
        Assert.All(o, x => Assert.Equal(Pkt.Ip(Public), Pkt.SrcIp(x)));
        foreach (var x in o) Pkt.AssertChecksums(x);

        var (f, v) = Pkt.Run(nat, 1, Pkt.IcmpEcho(Remote, Public, 20001, 1, request: false));
        Assert.Equal(Verdict.Forward, v[0]);
        Assert.Equal(Pkt.Ip("10.0.0.6"), Pkt.DstIp(f[0]));
        Assert.Equal(0x1234, Pkt.IcmpId(f[0]));
        Pkt.AssertChecksums(f[0]);
    }

    [Fact]
    public void UnknownInboundIsDroppedAndCounted()
    {
        var nat = Make();
        Pkt.Run(nat, 0, Pkt.Udp("10.0.0.5", 1000, Remote, 53));
        var (_, v) = Pkt.Run(nat, 1,
            Pkt.Udp(Remote, 53, Public, 20001),            // no mapping on that port
            Pkt.Udp("203.0.113.1", 53, Public, 20000),     // mapped port, other remote host
            Pkt.Udp(Remote, 54, Public, 20000),            // mapped port, other remote port
            Pkt.Tcp(Remote, 53, Public, 20000),            // other protocol
            Pkt.Udp(Remote, 53, "192.0.2.2", 20000),       // not our public address
            Pkt.Udp(Remote, 53, Public, 80),               // outside the range
            Pkt.Udp(Remote, 53, Public, 20000));           // the real reply
        Assert.Equal([Verdict.Drop, Verdict.Drop, Verdict.Drop, Verdict.Drop, Verdict.Drop, Verdict.Drop, Verdict.Forward], v);
        Assert.Equal(6, Pkt.Counter(nat, "unknown_inbound"));
    }

    [Fact]
    public void ExhaustionDropsNewFlowsUntilAMappingTimesOut()
    {
        var clock = new ManualClock();
        var nat = Make("public=192.0.2.1,ports=20000-20001,timeout=30s", clock);
        var (f, v) = Pkt.Run(nat, 0,
            Pkt.Udp("10.0.0.1", 1, Remote, 53),
            Pkt.Udp("10.0.0.2", 1, Remote, 53),
            Pkt.Udp("10.0.0.3", 1, Remote, 53));
        Assert.Equal([Verdict.Forward, Verdict.Forward, Verdict.Drop], v);
        Assert.Equal(1, Pkt.Counter(nat, "exhausted"));

        // Keep the second flow alive; let the first go idle past the timeout.
        clock.Advance(TimeSpan.FromSeconds(20));
        Pkt.Run(nat, 0, Pkt.Udp("10.0.0.2", 1, Remote, 53));
        clock.Advance(TimeSpan.FromSeconds(15));
        (f, v) = Pkt.Run(nat, 0, Pkt.Udp("10.0.0.3", 1, Remote, 53), Pkt.Udp("10.0.0.4", 1, Remote, 53));
        Assert.Equal([Verdict.Forward, Verdict.Drop], v);
        Assert.Equal(20000, Pkt.SrcPort(f[0])); // the first flow's port, reused
        Assert.Equal(1, Pkt.Counter(nat, "expired"));

        // A late reply for the first flow must not reach the new owner of its port.
        var (_, back) = Pkt.Run(nat, 1, Pkt.Udp(Remote, 53, Public, 20000), Pkt.Udp(Remote, 53, Public, 20001));
        Assert.Equal(Verdict.Forward, back[0]); // to 10.0.0.3 now
        Assert.Equal(Verdict.Forward, back[1]); // 10.0.0.2 still alive
    }

    [Fact]
    public void IdleMappingsExpireAndTheirRepliesAreDropped()
    {
        var clock = new ManualClock();
        var nat = Make("public=192.0.2.1,ports=20000-29999,timeout=500ms", clock);
        Pkt.Run(nat, 0, Pkt.Udp("10.0.0.1", 1, Remote, 53));
        clock.Advance(TimeSpan.FromMilliseconds(400));
        Assert.Equal(Verdict.Forward, Pkt.Run(nat, 1, Pkt.Udp(Remote, 53, Public, 20000)).Verdicts[0]);
        clock.Advance(TimeSpan.FromMilliseconds(499)); // the reply refreshed it
        Assert.Equal(Verdict.Forward, Pkt.Run(nat, 1, Pkt.Udp(Remote, 53, Public, 20000)).Verdicts[0]);
        clock.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(Verdict.Drop, Pkt.Run(nat, 1, Pkt.Udp(Remote, 53, Public, 20000)).Verdicts[0]);
        Assert.Equal(0, nat.ActiveMappings);
    }

    [Fact]
    public void ManyFlowsChurnWithoutLosingTrack()
    {
        var clock = new ManualClock();
        var nat = Make("public=192.0.2.1,ports=30000-30099,timeout=1s", clock);
        var rng = new Random(3);
        for (int round = 0; round < 50; round++)
        {
            var frames = Enumerable.Range(0, 64).Select(_ => Pkt.Udp($"10.0.{rng.Next(4)}.{rng.Next(1, 40)}", (ushort)rng.Next(1000, 1010), Remote, 53)).ToArray();
            var (f, v) = Pkt.Run(nat, 0, frames);
            for (int i = 0; i < frames.Length; i++)
            {
                if (v[i] != Verdict.Forward) continue;
                Pkt.AssertChecksums(f[i]);
                // Every translated flow's reply must map back to exactly that flow.
                var (back, bv) = Pkt.Run(nat, 1, Pkt.Udp(Remote, 53, Public, Pkt.SrcPort(f[i])));
                Assert.Equal(Verdict.Forward, bv[0]);
                Assert.Equal(Pkt.SrcIp(frames[i]), Pkt.DstIp(back[0]));
                Assert.Equal(Pkt.SrcPort(frames[i]), Pkt.DstPort(back[0]));
            }
            clock.Advance(TimeSpan.FromMilliseconds(300));
        }
        Assert.True(Pkt.Counter(nat, "expired") > 0);
        Assert.True(nat.ActiveMappings <= 100);
    }

    [Fact]
    public void UdpWithoutChecksumStaysWithout()
    {
        var nat = Make();
        var (f, _) = Pkt.Run(nat, 0, Pkt.Udp("10.0.0.5", 1000, Remote, 53, withChecksum: false));
        Assert.Equal(20000, Pkt.SrcPort(f[0]));
        Pkt.AssertChecksums(f[0], udpMayBeAbsent: true);
        Assert.Equal(0, f[0][14 + 20 + 6] | f[0][14 + 20 + 7]);
    }

    [Fact]
    public void FragmentsUnsupportedAndNonIpAreHandled()
    {
        var nat = Make();
        var (_, v) = Pkt.Run(nat, 0,
            Pkt.Build(17, "10.0.0.1", Remote, Pkt.Payload(16), fragment: 0x2000),   // first fragment (MF)
            Pkt.Build(47, "10.0.0.1", Remote, Pkt.Payload(16)),                      // GRE
            Pkt.IcmpEcho("10.0.0.1", Remote, 1, 1, request: false),                   // echo reply from inside
            Pkt.Arp());
        Assert.Equal([Verdict.Drop, Verdict.Drop, Verdict.Drop, Verdict.Forward], v);
        Assert.Equal(1, Pkt.Counter(nat, "fragments"));
        Assert.Equal(2, Pkt.Counter(nat, "unsupported"));
    }

    [Theory]
    [InlineData("ports=1-2", "public=")]
    [InlineData("public=192.0.2", "public=192.0.2")]
    [InlineData("public=192.0.2.1,ports=30000-20000", "20000-30000")]
    [InlineData("public=192.0.2.1,ports=0-10", "ports=0-10")]
    [InlineData("public=192.0.2.1,timeout=soon", "timeout=soon")]
    [InlineData("public=192.0.2.1,port=1-2", "'port'")]
    public void BadArgumentsAreExplained(string args, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("nat", args));
        Assert.Contains("nat", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
