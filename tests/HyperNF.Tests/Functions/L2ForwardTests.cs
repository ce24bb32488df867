using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class L2ForwardTests
{
    [Fact]
    public void ForwardsEverythingUnchanged()
    {
        var nf = NetworkFunctions.Create("l2fwd", null);
        byte[][] frames = [Pkt.Udp("10.0.0.1", 1, "10.0.0.2", 2), Pkt.Arp(), new byte[] { 1, 2, 3 }, Pkt.Tcp("1.1.1.1", 1, "2.2.2.2", 2)];
        foreach (int port in new[] { 0, 1 })
        {
            var (outFrames, verdicts) = Pkt.Run(nf, port, frames);
            Assert.All(verdicts, v => Assert.Equal(Verdict.Forward, v));
            for (int i = 0; i < frames.Length; i++) Assert.Equal(frames[i], outFrames[i]);
        }
        Assert.Equal(8, Pkt.Counter(nf, "packets"));
        Assert.Equal(2 * frames.Sum(f => f.Length), Pkt.Counter(nf, "bytes"));
    }

    [Fact]
    public void RejectsArguments()
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("l2fwd", "x=1"));
        Assert.Contains("l2fwd", e.Message);
        Assert.Contains("'x'", e.Message);
    }
}
