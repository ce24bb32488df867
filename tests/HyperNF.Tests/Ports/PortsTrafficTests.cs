using HyperNF.Bench;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The comparison paths of `bench ports` carry what they are compared on: TCP with the veths'
/// offloads as Linux sets them, and pings. A path that moves no TCP byte (OVS's userspace
/// datapath drops a veth peer's TSO super-frames unless userspace TSO is enabled) would make
/// the table's "vs" columns meaningless, so each one is run briefly here and must move data.
/// </summary>
public class PortsTrafficTests(ITestOutputHelper output)
{
    [NetnsFact]
    public void OvsUserspaceAndTheLinuxBridgeCarryTcpWithOffloadsAndPings()
    {
        var paths = new List<PortsBenchmarkPath> { PortsBenchmarkPath.LinuxBridge };
        string? noOvs = OvsUserspace.Unavailable();
        if (noOvs is null) paths.Add(PortsBenchmarkPath.OvsUserspace);
        else output.WriteLine($"OVS path not checked: {noOvs}");
        var results = PortsTraffic.Run(paths, tcpSeconds: 1, pings: 5, progress: output.WriteLine);
        Assert.Equal(paths.Count, results.Count);
        foreach (var r in results)
        {
            output.WriteLine($"{r.Path}: {r.TcpGbps:F2} Gbit/s, {r.TcpRetransmits} retransmits, ping p50 {r.PingP50Us} us, lost {r.PingLost}/{r.PingCount}{(r.Error is null ? "" : ", error " + r.Error)}");
            Assert.Null(r.Error);
            Assert.True(r.TcpGbps > 0.05, $"{r.Path}: TCP moved {r.TcpGbps} Gbit/s");
            Assert.Equal(5, r.PingCount);
            Assert.True(r.PingLost <= 1, $"{r.Path}: {r.PingLost} of 5 pings lost");
        }
    }

    /// <summary>
    /// With rounds, a path is compared with the bridge of its own round: here the bridge doubles
    /// its TCP between rounds and the path stays at half of it, so every ratio is 0.5 although
    /// the path's own figures vary 2x; a failed round is left out and counted.
    /// </summary>
    [Fact]
    public void RoundsAreComparedWithTheBridgeOfTheSameRound()
    {
        PortsTrafficResult R(string path, int round, double tcp, double p50, double p99, string? error = null) => new()
        {
            Path = path, Round = round, TcpGbps = tcp, PingP50Us = p50, PingP99Us = p99, PingCount = 100, PingLost = round == 2 ? 1 : 0, Error = error,
        };
        var results = new[]
        {
            R("linux-bridge", 1, 10, 50, 100), R("hypernf", 1, 5, 100, 150),
            R("hypernf", 2, 10, 120, 600), R("linux-bridge", 2, 20, 60, 120), // the order rotates
            R("linux-bridge", 3, 40, 80, 100), R("hypernf", 3, 20, 200, 300),
            R("hypernf", 4, 0, 0, 0, error: "iperf3 failed"), R("linux-bridge", 4, 30, 70, 90),
            R("ovs-netdev", 1, 4, 200, 400),
        };
        var s = PortsTraffic.Summarize(results).ToDictionary(x => x.Path);
        var h = s["hypernf"];
        Assert.Equal((3, 1), (h.Rounds, h.Failed));
        Assert.Equal(10, h.TcpGbps);            // median of 5, 10, 20
        Assert.Equal(120, h.PingP50Us);
        Assert.Equal(new RatioRange(0.5, 0.5, 0.5), h.TcpVsBridge);
        Assert.Equal(new RatioRange(2, 2, 2.5), h.P50VsBridge);    // 100/50, 120/60, 200/80
        Assert.Equal(new RatioRange(3, 1.5, 5), h.P99VsBridge);    // 150/100, 600/120, 300/100
        Assert.Equal((1, 300), (h.PingLost, h.PingCount));
        var b = s["linux-bridge"];
        Assert.Equal(4, b.Rounds);
        Assert.Equal(new RatioRange(1, 1, 1), b.TcpVsBridge);
        Assert.Equal(new RatioRange(0.4, 0.4, 0.4), s["ovs-netdev"].TcpVsBridge); // only round 1 had it
        var alone = PortsTraffic.Summarize([R("hypernf", 1, 5, 100, 150)]).Single();
        Assert.Null(alone.TcpVsBridge); // no bridge measured: no ratio, not a made-up one
        var failed = PortsTraffic.Summarize([R("hypernf", 1, 0, 0, 0, error: "no iperf3")]).Single();
        Assert.Equal("no iperf3", failed.Error);
    }
}
