using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class FirewallTests
{
    private const string Rules = """
        # web server reachable from the inside /24 only
        allow tcp 10.0.0.0/24 any -> 10.0.1.5/32 80
        deny  tcp any any -> 10.0.1.5 80        # everyone else
        deny  udp any any -> any 53
        allow udp any 1024-65535 -> 10.0.1.0/24 5000-5999
        allow icmp any -> any
        default deny
        """;

    private static Firewall Make(string rules, string extra = "")
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, rules);
        try { return (Firewall)NetworkFunctions.Create("firewall", $"rules={path}{extra}"); }
        finally { File.Delete(path); }
    }

    [Fact]
    public void FirstMatchWinsAndCountsPerRule()
    {
        var fw = Make(Rules);
        var (_, v) = Pkt.Run(fw, 0,
            Pkt.Tcp("10.0.0.7", 40000, "10.0.1.5", 80),    // rule 1: allow
            Pkt.Tcp("10.9.0.7", 40000, "10.0.1.5", 80),    // rule 2: deny
            Pkt.Udp("10.0.0.7", 40000, "10.0.1.9", 53),    // rule 3: deny
            Pkt.Udp("10.0.0.7", 40000, "10.0.1.9", 5500),  // rule 4: allow
            Pkt.Udp("10.0.0.7", 999, "10.0.1.9", 5500),    // sport out of range -> default deny
            Pkt.IcmpEcho("10.0.0.7", "8.8.8.8", 1, 1),     // rule 5: allow
            Pkt.Tcp("10.0.0.7", 40000, "10.0.1.5", 81),    // default deny
            Pkt.Tcp("10.0.0.8", 40001, "10.0.1.5", 80, vlan: 7)); // VLAN-tagged: rule 1
        Assert.Equal([Verdict.Forward, Verdict.Drop, Verdict.Drop, Verdict.Forward, Verdict.Drop, Verdict.Forward, Verdict.Drop, Verdict.Forward], v);
        Assert.Equal([2L, 1, 1, 1, 1], Enumerable.Range(0, 5).Select(fw.Hits));
        Assert.Equal(2, Pkt.Counter(fw, "default (deny)"));
        Assert.Equal(2, Pkt.Counter(fw, "rule 1: allow tcp 10.0.0.0/24 any -> 10.0.1.5/32 80"));
        Assert.Equal(4, Pkt.Counter(fw, "allowed"));
        Assert.Equal(4, Pkt.Counter(fw, "denied"));
    }

    [Fact]
    public void RuleOrderMatters()
    {
        var allowFirst = (Firewall)NetworkFunctions.Create("firewall", "rule=allow udp any -> any;deny udp any -> any");
        var denyFirst = (Firewall)NetworkFunctions.Create("firewall", "rule=deny udp any -> any,rule=allow udp any -> any");
        var f = Pkt.Udp("1.1.1.1", 1, "2.2.2.2", 2);
        Assert.Equal(Verdict.Forward, Pkt.Run(allowFirst, 0, f).Verdicts[0]);
        Assert.Equal(Verdict.Drop, Pkt.Run(denyFirst, 0, f).Verdicts[0]);
        Assert.Equal(1, allowFirst.Hits(0));
        Assert.Equal(0, allowFirst.Hits(1));
        Assert.Equal(1, denyFirst.Hits(0));
    }

    [Fact]
    public void AnyProtocolWithPortMatchesOnlyPortedProtocols()
    {
        var fw = (Firewall)NetworkFunctions.Create("firewall", "rule=deny any any -> any 7,default=allow");
        var (_, v) = Pkt.Run(fw, 0,
            Pkt.Udp("1.1.1.1", 1, "2.2.2.2", 7),
            Pkt.Tcp("1.1.1.1", 1, "2.2.2.2", 7),
            Pkt.IcmpEcho("1.1.1.1", "2.2.2.2", 7, 7),
            Pkt.Build(17, "1.1.1.1", "2.2.2.2", Pkt.Payload(16), fragment: 0x0010)); // non-first fragment: ports unknown
        Assert.Equal([Verdict.Drop, Verdict.Drop, Verdict.Forward, Verdict.Forward], v);
    }

    [Fact]
    public void NonIpv4PassesByDefaultAndCanBeDropped()
    {
        var pass = (Firewall)NetworkFunctions.Create("firewall", "default=deny");
        var drop = (Firewall)NetworkFunctions.Create("firewall", "default=deny,nonip=drop");
        Assert.Equal(Verdict.Forward, Pkt.Run(pass, 0, Pkt.Arp()).Verdicts[0]);
        Assert.Equal(Verdict.Drop, Pkt.Run(drop, 0, Pkt.Arp()).Verdicts[0]);
        Assert.Equal(1, Pkt.Counter(pass, "nonip (pass)"));
    }

    [Fact]
    public void MalformedIpv4IsDroppedEvenWhenDefaultAllows()
    {
        var fw = (Firewall)NetworkFunctions.Create("firewall", "default=allow");
        var f = Pkt.Udp("1.1.1.1", 1, "2.2.2.2", 2);
        f[14 + 3] = 0xff; // total length beyond the frame
        Assert.Equal(Verdict.Drop, Pkt.Run(fw, 0, f).Verdicts[0]);
        Assert.Equal(1, Pkt.Counter(fw, "malformed"));
    }

    [Fact]
    public void DefaultIsDenyWhenNotGiven()
    {
        var fw = (Firewall)NetworkFunctions.Create("firewall", null);
        Assert.False(fw.DefaultAllow);
        Assert.Equal(Verdict.Drop, Pkt.Run(fw, 1, Pkt.Udp("1.1.1.1", 1, "2.2.2.2", 2)).Verdicts[0]);
    }

    [Theory]
    [InlineData("allow tpc any any -> any 80", "line 3", "'tpc'")]
    [InlineData("permit tcp any any -> any 80", "line 3", "'permit'")]
    [InlineData("allow tcp 10.0.0.1/24 any -> any 80", "line 3", "10.0.0.0/24")]
    [InlineData("allow tcp any any -> any 90-80", "line 3", "80-90")]
    [InlineData("allow tcp any any -> any 70000", "line 3", "'70000'")]
    [InlineData("allow icmp any 5 -> any", "line 3", "icmp has no ports")]
    [InlineData("allow tcp any any any", "line 3", "'->'")]
    [InlineData("allow tcp any any -> any 80 extra", "line 3", "'extra'")]
    [InlineData("default maybe", "line 3", "'maybe'")]
    public void ParseErrorsNameLineAndToken(string badLine, string line, string token)
    {
        string text = $"# header\nallow tcp any any -> any 22\n{badLine}\n";
        var e = Assert.Throws<ArgumentException>(() => Make(text));
        Assert.Contains(line, e.Message);
        Assert.Contains(token, e.Message);
    }

    [Fact]
    public void InlineRuleErrorsNameTheInlineLine()
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("firewall", "rule=allow udp any -> any;allow udp any -> 1.2.3"));
        Assert.Contains("rule= line 2", e.Message);
        Assert.Contains("'1.2.3'", e.Message);
    }

    [Fact]
    public void BadArgumentsAreExplained()
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("firewall", "default=maybe"));
        Assert.Contains("default=maybe", e.Message);
        Assert.Contains("allow, deny", e.Message);
        e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("firewall", "rules=/nonexistent/fw.rules"));
        Assert.Contains("/nonexistent/fw.rules", e.Message);
        e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("firewall", "rule=default allow,default=deny"));
        Assert.Contains("default", e.Message);
    }
}
