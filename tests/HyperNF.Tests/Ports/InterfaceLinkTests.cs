using HyperNF.Ports;
using Xunit;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The link check the driver threads run every 100 ms per port, on a real veth: up, down, MTU,
/// removed, and a name taken by a new interface; all through the one socket the query keeps
/// (no socket per ioctl, no descriptor left behind). Skipped, with the reason, without root or netns.
/// </summary>
public class InterfaceLinkTests
{
    private static int OpenDescriptors() => Directory.GetFiles("/proc/self/fd").Length;

    [NetnsFact]
    public void TheQueryFollowsTheInterfaceThroughOneKeptSocket()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.13.1/24", mtu: 9000);
        int ifIndex = int.Parse(File.ReadAllText($"/sys/class/net/{a.Outer}/ifindex").Trim());
        using var link = new InterfaceLink();
        Assert.Equal(LinkState.Up, link.Query(a.Outer, ifIndex, out int mtu));
        Assert.Equal(9000, mtu);

        int fds = OpenDescriptors();
        for (int i = 0; i < 200; i++) Assert.Equal(LinkState.Up, link.Query(a.Outer, ifIndex, out _));
        Assert.True(OpenDescriptors() <= fds + 2, "no descriptor per query"); // + 2: the runtime's own may come and go

        NetLab.Must("ip", "link", "set", a.Outer, "mtu", "1500");
        Assert.Equal(LinkState.Up, link.Query(a.Outer, ifIndex, out mtu));
        Assert.Equal(1500, mtu);
        NetLab.Must("ip", "link", "set", a.Outer, "down");
        Assert.Equal(LinkState.Down, link.Query(a.Outer, ifIndex, out _));
        NetLab.Must("ip", "link", "set", a.Outer, "up");
        Assert.Equal(LinkState.Up, link.Query(a.Outer, ifIndex, out _));
        Assert.Equal(LinkState.Removed, link.Query(a.Outer, ifIndex + 100_000, out _)); // the name now belongs to another interface
        Assert.Equal(LinkState.Removed, link.Query("hnf-no-such-if", ifIndex, out _));
        Assert.Equal(LinkState.Removed, link.Query("a-name-longer-than-ifnamsiz", ifIndex, out _));

        link.Dispose();
        link.Dispose(); // twice is harmless
    }
}
