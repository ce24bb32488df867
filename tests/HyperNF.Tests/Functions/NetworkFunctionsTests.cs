using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class NetworkFunctionsTests
{
    [Theory]
    [InlineData("l2fwd", null)]
    [InlineData("firewall", "rule=allow any any -> any,default=deny")]
    [InlineData("router", "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,route=0.0.0.0/0 via 02:00:00:00:00:03 port 1")]
    [InlineData("nat", "public=192.0.2.1,ports=20000-20099,timeout=2m")]
    [InlineData("cost", "cycles=100")]
    [InlineData("encrypt", "passphrase=x")]
    [InlineData("L2FWD", "")]
    public void CreatesEveryBuiltIn(string name, string? args)
    {
        var nf = NetworkFunctions.Create(name, args);
        Assert.Equal(name.ToLowerInvariant(), nf.Name);
        Assert.NotEmpty(nf.Counters);
        (nf as IDisposable)?.Dispose();
    }

    [Fact]
    public void UnknownNameListsTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("ids", null));
        Assert.Contains("'ids'", e.Message);
        foreach (var n in NetworkFunctions.Names) Assert.Contains(n, e.Message);
    }

    [Fact]
    public void ArgumentSyntaxErrorsAreExplained()
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("nat", "public"));
        Assert.Contains("not key=value", e.Message);
        e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("nat", "public=192.0.2.1,public=192.0.2.2"));
        Assert.Contains("twice", e.Message);
        e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("nat", "publik=192.0.2.1"));
        Assert.Contains("'publik'", e.Message);
        Assert.Contains("public, ports, timeout, nonip", e.Message);
    }
}

/// <summary>
/// Steady-state NF processing must not allocate: at millions of packets per second any per-packet
/// garbage turns into GC pauses on the data path.
/// </summary>
public class AllocationTests
{
    private static long AllocatedWhileProcessing(INetworkFunction nf, int port, byte[][] frames, Action<FrameBatchStorage>? reset = null)
    {
        var s = FrameBatchStorage.FromFrames(frames);
        for (int warm = 0; warm < 50; warm++)
        {
            reset?.Invoke(s);
            var b = s.AsBatch(port);
            nf.Process(ref b);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int n = 0; n < 200; n++)
        {
            reset?.Invoke(s);
            var b = s.AsBatch(port);
            nf.Process(ref b);
        }
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private static byte[][] Mix() =>
    [
        .. Enumerable.Range(0, 30).Select(i => Pkt.Udp($"10.0.0.{i + 1}", (ushort)(1000 + i), "10.0.1.5", 53)),
        .. Enumerable.Range(0, 30).Select(i => Pkt.Tcp($"10.0.0.{i + 1}", (ushort)(2000 + i), "10.0.1.5", 80)),
        Pkt.IcmpEcho("10.0.0.1", "10.0.1.5", 9, 9),
        Pkt.Arp(),
    ];

    [Fact]
    public void L2ForwardDoesNotAllocate() => Assert.Equal(0, AllocatedWhileProcessing(new L2Forward(), 0, Mix()));

    [Fact]
    public void FirewallDoesNotAllocate()
    {
        var fw = NetworkFunctions.Create("firewall", "rule=deny udp any any -> any 5353;allow tcp 10.0.0.0/24 any -> any 80;allow udp any -> 10.0.1.0/24 53;default deny");
        Assert.Equal(0, AllocatedWhileProcessing(fw, 0, Mix()));
    }

    [Fact]
    public void RouterDoesNotAllocate()
    {
        var r = NetworkFunctions.Create("router", "mac0=02:00:00:00:00:01,mac1=02:00:00:00:00:02,route=10.0.0.0/8 via 02:00:00:00:00:03 port 1;10.0.1.0/24 via 02:00:00:00:00:04 port 1");
        var frames = Mix();
        // The router decrements TTL in place, so restore it before every batch.
        Assert.Equal(0, AllocatedWhileProcessing(r, 0, frames, s =>
        {
            var b = s.AsBatch(0);
            for (int i = 0; i < frames.Length; i++) frames[i].CopyTo(b.Buffer(i));
        }));
    }

    [Fact]
    public void NatDoesNotAllocateForOutboundOrReturnTraffic()
    {
        var nat = NetworkFunctions.Create("nat", "public=192.0.2.1,ports=20000-29999");
        var frames = Mix();
        Assert.Equal(0, AllocatedWhileProcessing(nat, 0, frames, s =>
        {
            var b = s.AsBatch(0);
            for (int i = 0; i < frames.Length; i++) frames[i].CopyTo(b.Buffer(i));
        }));
        var replies = Enumerable.Range(0, 30).Select(i => Pkt.Udp("10.0.1.5", 53, "192.0.2.1", (ushort)(20000 + i))).ToArray();
        Assert.Equal(0, AllocatedWhileProcessing(nat, 1, replies, s =>
        {
            var b = s.AsBatch(1);
            for (int i = 0; i < replies.Length; i++) replies[i].CopyTo(b.Buffer(i));
        }));
        Assert.Equal(30 * 250, Pkt.Counter(nat, "translated_in"));
    }

    [Fact]
    public void EncryptDoesNotAllocate()
    {
        using var enc = (EncryptFunction)NetworkFunctions.Create("encrypt", null);
        var frames = Mix();
        Assert.Equal(0, AllocatedWhileProcessing(enc, 0, frames, s =>
        {
            var b = s.AsBatch(0);
            for (int i = 0; i < frames.Length; i++) { frames[i].CopyTo(b.Buffer(i)); b.SetLength(i, frames[i].Length); }
        }));
    }
}
