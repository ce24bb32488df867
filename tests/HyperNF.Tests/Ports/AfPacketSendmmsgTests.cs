using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The AF_PACKET backend with TxRing = false (frames in our own memory, one sendmmsg() per
/// flush): ping and iperf3 TCP cross, in both the sender's context and the driver thread
/// (drvdom_txsync), and every frame the switch delivered is sent or counted.
/// </summary>
public class AfPacketSendmmsgTests(ITestOutputHelper output)
{
    [NetnsTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void PingAndIperf3CrossWithSendmmsgTransmission(bool driverDomainTxSync)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.233.1.1/24");
        var b = lab.Add("b", "10.233.1.2/24");
        using var ports = new PhysicalPorts(new ValeSwitch(), new PhysicalPortOptions { TxRing = false, TxBatchFrames = 64, KernelFastPath = false /* frames through our transmit path */ })
        {
            DriverDomainTxSync = driverDomainTxSync,
        };
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Assert.Contains("tx sendmmsg", pa.Backend.Description);

        int rc = lab.Exec(a, ["ping", "-c", "3", "-i", "0.2", "-W", "2", b.Ip], 15_000, out string ping);
        Assert.True(rc == 0, ping);

        long bytes = lab.IperfTcpBytes(a, b, port: 5401);
        output.WriteLine($"iperf3: {bytes} bytes");
        Assert.True(bytes > 1_000_000, $"iperf3 moved {bytes} bytes");

        foreach (var p in new[] { pa, pb })
        {
            // Batches of 64 frames: a TCP window is many flushes, each one sendmmsg() call.
            PhysicalPortStatistics s = p.GetStatistics();
            long delivered = 0;
            for (int i = 0; i < 40; i++)
            {
                s = p.GetStatistics();
                delivered = p.SwitchPort.GetStatistics().RxPackets;
                if (delivered == s.TxPackets + s.TotalTxDrops) break;
                Thread.Sleep(50);
            }
            Assert.True(delivered == s.TxPackets + s.TotalTxDrops, $"{p.Name}: delivered {delivered}, sent {s.TxPackets} + dropped {s.TotalTxDrops}");
            Assert.True(s.TxPackets > 100, $"{p.Name} sent {s.TxPackets}");
        }
    }
}
