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
}
