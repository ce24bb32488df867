using System.Diagnostics;
using HyperNF.Functions;
using Xunit;

namespace HyperNF.Tests.Functions;

public class CostFunctionTests
{
    [Fact]
    public void CalibrationIsSane()
    {
        var c = CostFunction.Calibrate();
        // A dependent multiply-add costs a few cycles on any x86/ARM core of the last decade.
        Assert.InRange(c.CyclesPerIteration, 0.5, 50);
        Assert.InRange(c.TscHz, 1e8, 1e10);
        Assert.False(string.IsNullOrEmpty(c.TscSource));
        Assert.Contains("cycles per iteration", c.ToString());
    }

    [Fact]
    public void ForwardsAndTakesLongerWithMoreCycles()
    {
        var cheap = (CostFunction)NetworkFunctions.Create("cost", "cycles=0");
        var dear = (CostFunction)NetworkFunctions.Create("cost", "cycles=1000000");
        Assert.True(dear.IterationsPerPacket > 0);
        var frames = Enumerable.Range(0, 16).Select(i => Pkt.Udp("10.0.0.1", (ushort)i, "10.0.0.2", 2)).ToArray();

        // The fastest of three runs: being preempted only ever adds time, so a cheap run that
        // lost the CPU for a few ms on a busy machine cannot look dearer than 16 M cycles.
        const int Runs = 3;
        double Time(CostFunction nf)
        {
            Pkt.Run(nf, 0, frames); // warm-up
            double best = double.MaxValue;
            for (int r = 0; r < Runs; r++)
            {
                var sw = Stopwatch.StartNew();
                var (f, v) = Pkt.Run(nf, 0, frames);
                sw.Stop();
                Assert.All(v, x => Assert.Equal(Verdict.Forward, x));
                for (int i = 0; i < frames.Length; i++) Assert.Equal(frames[i], f[i]);
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
            }
            return best;
        }

        double tCheap = Time(cheap), tDear = Time(dear);
        // 16 M cycles is several ms at any clock rate; only a coarse sanity check.
        Assert.True(tDear > tCheap, $"cycles=1e6: {tDear} ms, cycles=0: {tCheap} ms");
        Assert.True(tDear > 1, $"16 packets x 1e6 cycles took only {tDear} ms");
        Assert.Equal(16 * (1 + Runs), Pkt.Counter(dear, "packets"));
        Assert.Equal(1_000_000, Pkt.Counter(dear, "cycles_per_packet"));
    }

    [Fact]
    public void TscOverrideScalesIterations()
    {
        var a = new CostFunction(1_000_000, tscHz: 1e9);
        var b = new CostFunction(1_000_000, tscHz: 4e9);
        // A faster TSC means each iteration spans more TSC cycles, so fewer iterations per packet.
        Assert.InRange((double)a.IterationsPerPacket / b.IterationsPerPacket, 3.9, 4.1);
        Assert.Equal("tsc_hz argument", b.Calibration.TscSource);
        Assert.Equal(4_000_000, Pkt.Counter(b, "tsc_khz"));
    }

    [Theory]
    [InlineData("cycles=-1", "cycles=-1")]
    [InlineData("cycles=lots", "cycles=lots")]
    [InlineData("tsc_hz=fast", "tsc_hz=fast")]
    [InlineData("cycle=5", "'cycle'")]
    public void BadArgumentsAreExplained(string args, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => NetworkFunctions.Create("cost", args));
        Assert.Contains("cost", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
