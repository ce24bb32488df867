using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class RouterTests
{
    private static readonly byte[] Mac0 = [0x02, 0, 0, 0, 0x10, 0x00];
    private static readonly byte[] Mac1 = [0x02, 0, 0, 0, 0x10, 0x01];
    private const string Args = "mac0=02:00:00:00:10:00,mac1=02:00:00:00:10:01";

    private const string Routes = """
        # overlapping prefixes
        10.0.0.0/8       via 00:16:3e:00:00:08 port 1
        10.0.1.0/24      via 00:16:3e:00:00:18 port 1
        10.0.1.128/25    via 00:16:3e:00:00:19 port 0
        10.0.1.200/32    via 00:16:3e:00:00:20 port 1
        0.0.0.0/0        via 00:16:3e:00:00:00 port 1
        """;

    private static Router Make(string routes = Routes, string extra = "")
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, routes);
        try { return (Router)NetworkFunctions.Create("router", $"{Args},routes={path}{extra}"); }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("10.2.3.4", "00:16:3e:00:00:08")]
    [InlineData("10.0.1.5", "00:16:3e:00:00:18")]
    [InlineData("10.0.1.127", "00:16:3e:00:00:18")]
    [InlineData("10.0.1.128", "00:16:3e:00:00:19")]
    [InlineData("10.0.1.199", "00:16:3e:00:00:19")]
    [InlineData("10.0.1.200", "00:16:3e:00:00:20")]
    [InlineData("10.0.1.201", "00:16:3e:00:00:19")]
    [InlineData("11.0.0.1", "00:16:3e:00:00:00")]
    [InlineData("255.255.255.255", "00:16:3e:00:00:00")]
    public void LongestPrefixWins(string dst, string nextHop)
    {
        Assert.Equal(nextHop, Addresses.FormatMac(Make().Lookup(Pkt.Ip(dst))!.NextHop));
        // Insertion order must not matter: the same routes reversed.
        var reversed = string.Join('\n', Routes.Split('\n').Reverse());
        Assert.Equal(nextHop, Addresses.FormatMac(Make(reversed).Lookup(Pkt.Ip(dst))!.NextHop));
    }

    [Fact]
    public void LpmTableAgreesWithLinearScanOnRandomTables()
    {
        var rng = new Random(5);
        for (int table = 0; table < 20; table++)
        {
            var lpm = new LpmTable();
            var routes = new Dictionary<(uint, int), int>();
            int n = rng.Next(1, 300);
            for (int r = 0; r < n; r++)
            {
                // Cluster prefixes under few /8s so they overlap a lot.
                int len = rng.Next(0, 33);
                uint addr = (uint)(rng.Next(10, 13) << 24) | (uint)rng.Next(0, 1 << 24);
                if (rng.Next(4) == 0) addr &= 0xffff00ff;
                uint prefix = addr & Addresses.Mask(len);
                routes[(prefix, len)] = r;
                lpm.Add(prefix, len, r);
            }
            for (int q = 0; q < 3000; q++)
            {
                uint a = (uint)(rng.Next(9, 14) << 24) | (uint)rng.Next(0, 1 << 24);
                if (q % 3 == 0)
                {
                    var pick = routes.Keys.ElementAt(rng.Next(routes.Count));
                    a = pick.Item1 | ((uint)rng.Next() & ~Addresses.Mask(pick.Item2));
                }
                int expected = -1, bestLen = -1;
                foreach (var ((p, l), v) in routes)
                    if ((a & Addresses.Mask(l)) == p && l > bestLen) { bestLen = l; expected = v; }
                bool found = lpm.TryLookup(a, out int got);
                Assert.Equal(expected >= 0, found);
                if (found) Assert.Equal(expected, got);
            }
        }
    }

    [Fact]
    public void RoutesRewriteMacsDecrementTtlAndKeepChecksumsValid()
    {
        var router = Make();
        var udp = Pkt.Udp("192.168.1.1", 1000, "10.0.1.5", 2000, ttl: 64);
        var tcp = Pkt.Tcp("192.168.1.1", 1000, "10.0.1.130", 80, ttl: 2, ipOptions: 4, vlan: 5);
        var (f, v) = Pkt.Run(router, 0, udp, tcp);

        Assert.Equal(Verdict.Forward, v[0]);          // route port 1, arrived on 0
        Assert.Equal("00:16:3e:00:00:18", Addresses.FormatMac(f[0].AsSpan(0, 6)));
        Assert.Equal(Mac1, f[0][6..12]);
        Assert.Equal(63, Pkt.Ttl(f[0]));
        Pkt.AssertChecksums(f[0]);
        // Nothing but MACs, TTL and IP checksum changed.
        Assert.Equal(udp[12..22], f[0][12..22]);
        Assert.Equal(udp[26..], f[0][26..]);

        Assert.Equal(Verdict.Reflect, v[1]);          // route port 0, arrived on 0
        Assert.Equal("00:16:3e:00:00:19", Addresses.FormatMac(f[1].AsSpan(0, 6)));
        Assert.Equal(Mac0, f[1][6..12]);
        Assert.Equal(1, Pkt.Ttl(f[1]));
        Pkt.AssertChecksums(f[1]);
        Assert.Equal(2, Pkt.Counter(router, "routed"));
    }

    [Fact]
    public void ExpiringTtlIsDroppedAndCounted()
    {
        var router = Make();
        var (_, v) = Pkt.Run(router, 1, Pkt.Udp("1.1.1.1", 1, "10.0.1.5", 2, ttl: 1), Pkt.Udp("1.1.1.1", 1, "10.0.1.5", 2, ttl: 0));
        Assert.Equal([Verdict.Drop, Verdict.Drop], v);
        Assert.Equal(2, Pkt.Counter(router, "ttl_expired"));
        Assert.Equal(0, Pkt.Counter(router, "routed"));
    }

    [Fact]
    public void NoRouteIsDroppedAndCounted()
    {
        var router = Make("10.0.0.0/8 via 00:16:3e:00:00:08 port 1");
        var (_, v) = Pkt.Run(router, 0, Pkt.Udp("1.1.1.1", 1, "11.0.0.1", 2));
        Assert.Equal(Verdict.Drop, v[0]);
        Assert.Equal(1, Pkt.Counter(router, "no_route"));
    }

    [Fact]
    public void BadHeaderChecksumIsDropped()
    {
        var router = Make();
        var f = Pkt.Udp("1.1.1.1", 1, "10.0.1.5", 2);
        f[14 + 10] ^= 0x40;
        Assert.Equal(Verdict.Drop, Pkt.Run(router, 0, f).Verdicts[0]);
        Assert.Equal(1, Pkt.Counter(router, "bad_header"));
    }

    [Fact]
    public void NonIpv4IsDroppedUnlessPassed()
    {
        Assert.Equal(Verdict.Drop, Pkt.Run(Make(), 0, Pkt.Arp()).Verdicts[0]);
        var pass = Make(extra: ",nonip=pass");
        var (f, v) = Pkt.Run(pass, 0, Pkt.Arp());
        Assert.Equal(Verdict.Forward, v[0]);
        Assert.Equal(Pkt.Arp(), f[0]);
    }

    [Fact]
    public void InlineRoutes()
    {
        var r = (Router)NetworkFunctions.Create("router", $"{Args},route=10.0.0.0/8 via 00:16:3e:00:00:08 port 1;10.1.0.0/16 via 00:16:3e:00:00:09 port 0");
        Assert.Equal(1, r.Lookup(Pkt.Ip("10.2.0.1"))!.Port);
        Assert.Equal(0, r.Lookup(Pkt.Ip("10.1.0.1"))!.Port);
        Assert.Null(r.Lookup(Pkt.Ip("11.0.0.1")));
    }

    [Theory]
    [InlineData("10.0.1.1/24 via 00:16:3e:00:00:02 port 1", "'10.0.1.1/24'")]
    [InlineData("10.0.1.0/24 via 00:16:3e:00:02 port 1", "'00:16:3e:00:02'")]
    [InlineData("10.0.1.0/24 to 00:16:3e:00:00:02 port 1", "'to'")]
    [InlineData("10.0.1.0/24 via 00:16:3e:00:00:02 port 2", "'2'")]
    [InlineData("10.0.0.0/8 via 00:16:3e:00:00:02 port 1", "already exists")]
    public void RouteErrorsNameLineAndToken(string bad, string token)
    {
        var e = Assert.Throws<ArgumentException>(() => Make($"10.0.0.0/8 via 00:16:3e:00:00:08 port 1\n\n{bad}"));
        Assert.Contains("line 3", e.Message);
        Assert.Contains(token, e.Message);
    }

    [Fact]
    public void PortMacsAreRequired()
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("router", "mac0=02:00:00:00:10:00"));
        Assert.Contains("mac1", e.Message);
        e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("router", "mac0=02:00:00:00:10:00,mac1=xx"));
        Assert.Contains("mac1=xx", e.Message);
    }
}
