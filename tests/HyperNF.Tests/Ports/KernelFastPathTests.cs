using HyperNF.Hypervisor;
using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The kernel fast path of af_packet ports (docs/ports.md, "Kernel fast path"): real veth pairs
/// in namespaces, the BPF programs on the real interfaces. What is asserted: unicast frames
/// between two attached interfaces are forwarded by the kernel once the switch has learned both
/// hosts, and only then; the kernel's copy of the learning table follows moves, aging, detach and
/// re-binds; a capture takes its port off the fast path and sees every frame; detaching leaves no
/// program or link behind; the counters add up.
/// </summary>
public class KernelFastPathTests(ITestOutputHelper output)
{
    private static void WaitFor(Func<bool> cond, int ms, string what)
    {
        var until = DateTime.UtcNow.AddMilliseconds(ms);
        while (!cond())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(20);
        }
    }

    private void Ping(NetLab lab, LabHost from, string toIp, int count = 5)
    {
        int rc = lab.Exec(from, ["ping", "-c", count.ToString(), "-i", "0.05", "-W", "2", toIp], 20_000, out string text);
        output.WriteLine(text.Trim().Split('\n')[^2]);
        Assert.True(rc == 0, $"ping {from.Ip} -> {toIp} failed ({rc}): {text}");
    }

    /// <summary>
    /// tcx links this process holds on interface <paramref name="ifIndex"/>: /proc/self/fd
    /// entries that are BPF links whose fdinfo names that interface (other tests in the process
    /// hold links of their own).
    /// </summary>
    private static int TcxLinks(int ifIndex) =>
        Directory.GetFiles("/proc/self/fd").Count(f =>
        {
            try
            {
                if (new FileInfo(f).LinkTarget != "anon_inode:bpf_link") return false;
                var info = File.ReadAllLines($"/proc/self/fdinfo/{Path.GetFileName(f)}");
                return info.Contains("link_type:\ttcx") && info.Contains($"ifindex:\t{ifIndex}");
            }
            catch (IOException) { return false; }
        });

    private static int TcxLinks(params LabHost[] hosts) =>
        hosts.Sum(h => TcxLinks(int.Parse(File.ReadAllText($"/sys/class/net/{h.Outer}/ifindex").Trim(), System.Globalization.CultureInfo.InvariantCulture)));

    private static ulong Mac(LabHost h) => ForwardingTable.ParseMac(h.Mac);

    private void Dump(PhysicalPorts ports)
    {
        foreach (var p in ports.List())
        {
            var s = p.GetStatistics();
            output.WriteLine($"{s.Name} kernel path {s.KernelPath}: kernel rx {s.KernelRxPackets} tx {s.KernelTxPackets}; switch rx {s.RxPackets} tx {s.TxPackets}");
        }
    }

    [NetnsFact]
    public void PingsTakeTheKernelPathOnceTheSwitchHasLearnedBothHostsAndDetachRemovesEveryLink()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.1.1/24");
        var b = lab.Add("b", "10.229.1.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        Assert.Equal(0, TcxLinks(a, b));
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Assert.Equal(1, TcxLinks(a));  // one tcx ingress link per interface
        Assert.Equal(1, TcxLinks(b));
        Assert.Equal("on", pa.GetStatistics().KernelPath);
        Assert.Equal("on", pb.GetStatistics().KernelPath);
        var fp = ports.FastPathOf("valex")!;
        Assert.Empty(fp.KernelMacs()); // nothing learned yet: every frame is the switch's

        Ping(lab, a, b.Ip, count: 20);
        Dump(ports);
        var macs = fp.KernelMacs();
        Assert.Equal(pa.Backend.InterfaceIndex, macs[Mac(a)]);
        Assert.Equal(pb.Backend.InterfaceIndex, macs[Mac(b)]);
        var sa = pa.GetStatistics();
        var sb = pb.GetStatistics();
        // The ARP exchange (and at most the first echo) went through the switch; the echoes after it through the kernel.
        Assert.True(sa.KernelRxPackets >= 18, $"requests on the kernel path: {sa.KernelRxPackets}");
        Assert.True(sb.KernelRxPackets >= 18, $"replies on the kernel path: {sb.KernelRxPackets}");
        Assert.Equal(sa.KernelRxPackets, sb.KernelTxPackets);
        Assert.Equal(sb.KernelRxPackets, sa.KernelTxPackets);
        Assert.True(sa.KernelRxBytes == 98 * sa.KernelRxPackets, $"{sa.KernelRxBytes} bytes: 98-byte echo frames");
        Assert.True(sa.RxPackets + sb.RxPackets <= 8, $"the switch took {sa.RxPackets} + {sb.RxPackets} frames");
        Assert.True(sa.RxPackets >= 1 && sb.RxPackets >= 1, "the ARP exchange went through the switch (it learned both hosts there)");
        Assert.Equal(0, fp.Mismatches);
        StatsAssert.BalancedWhenQuiet(host.Switch, "valex");

        Assert.True(ports.Detach(pb.Name));
        Assert.Equal(0, TcxLinks(b));
        Assert.Equal(1, TcxLinks(a));
        Assert.DoesNotContain(fp.KernelMacs(), kv => kv.Value == sb.InterfaceIndex);
        Assert.True(ports.Detach(pa.Name));
        Assert.Equal(0, TcxLinks(a));
        Assert.Null(ports.FastPathOf("valex")); // the bridge's maps and programs went with its last port
        // What the port counted on the kernel path stays in its statistics after the detach.
        Assert.Equal(sa.KernelRxPackets, pa.GetStatistics().KernelRxPackets);
    }

    [NetnsFact]
    public void ACapturedPortLeavesTheKernelPathAndItsCaptureSeesEveryFrame()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.2.1/24");
        var b = lab.Add("b", "10.229.2.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Ping(lab, a, b.Ip, count: 3);
        long before = pb.GetStatistics().KernelTxPackets;
        Assert.True(before > 0);

        var tap = pb.SwitchPort.OpenCapture(CaptureDirection.In);
        Assert.Equal("off", pb.GetStatistics().KernelPath);
        Ping(lab, a, b.Ip, count: 10);
        Assert.Equal(before, pb.GetStatistics().KernelTxPackets); // not one frame to b past the capture
        int echoes = 0;
        tap.Drain(f =>
        {
            if (f.OriginalLength >= 98) echoes++; // ARP frames are 42 bytes, echo requests 98
            return true;
        });
        Assert.True(echoes >= 10, $"the capture saw {echoes} echo requests");
        pb.SwitchPort.CloseCapture(tap);
        Assert.Equal("on", pb.GetStatistics().KernelPath);

        Ping(lab, a, b.Ip, count: 5);
        Assert.True(pb.GetStatistics().KernelTxPackets >= before + 5, "back on the kernel path after the capture");
        Dump(ports);
        Assert.Equal(0, ports.FastPathOf("valex")!.Mismatches);
        StatsAssert.BalancedWhenQuiet(host.Switch, "valex");
    }

    [NetnsFact]
    public void AHostThatMovesToAnotherPortIsFollowedAsSoonAsItSends()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.3.1/24");
        var b = lab.Add("b", "10.229.3.2/24");
        var c = lab.Add("c", "10.229.3.3/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        var pc = ports.Attach("valex", c.Outer);
        Ping(lab, a, b.Ip);
        var fp = ports.FastPathOf("valex")!;
        Assert.Equal(pb.Backend.InterfaceIndex, fp.KernelMacs()[Mac(b)]);

        // b's address and MAC move behind port c (a VM migrated, a container re-plugged).
        NetLab.Must("ip", "-n", b.Ns, "link", "set", b.Inner, "down");
        NetLab.Must("ip", "-n", c.Ns, "link", "set", c.Inner, "down");
        NetLab.Must("ip", "-n", c.Ns, "link", "set", c.Inner, "address", b.Mac);
        NetLab.Must("ip", "-n", c.Ns, "addr", "flush", "dev", c.Inner);
        NetLab.Must("ip", "-n", c.Ns, "addr", "add", b.Cidr, "dev", c.Inner);
        NetLab.Must("ip", "-n", c.Ns, "link", "set", c.Inner, "up");
        // Its first frames come from port c with a source the kernel's copy places on port b:
        // they take the switch, which learns the move and updates the copy.
        Ping(lab, c, a.Ip, count: 3);
        Assert.Equal(pc.Backend.InterfaceIndex, fp.KernelMacs()[Mac(b)]);
        long toC = pc.GetStatistics().KernelTxPackets;
        Ping(lab, a, b.Ip, count: 5); // a's ARP entry is unchanged: same MAC, now behind c
        Assert.True(pc.GetStatistics().KernelTxPackets >= toC + 5, "a's requests reach the moved host on the kernel path");
        Dump(ports);
        Assert.Equal(0, fp.Mismatches);
    }

    [NetnsFact]
    public void AddressesThatAgeOutLeaveTheKernelCopyAndComeBackWithTraffic()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.4.1/24");
        var b = lab.Add("b", "10.229.4.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { IdleTimeoutMs = 20 });
        var pa = ports.Attach("valex", a.Outer);
        ports.Attach("valex", b.Outer);
        host.Switch.FindBridge("valex")!.Forwarding.AgingSeconds = 1;
        Ping(lab, a, b.Ip, count: 3);
        var fp = ports.FastPathOf("valex")!;
        Assert.Equal(2, fp.KernelMacs().Count);
        // Silence: the switch's entries age out, and the copy follows within its period.
        WaitFor(() => fp.KernelMacs().Count == 0, 6000, "the aged addresses to leave the kernel copy");
        long kernel = pa.GetStatistics().KernelRxPackets;
        Ping(lab, a, b.Ip, count: 5);
        Assert.Equal(2, fp.KernelMacs().Count);
        Assert.True(pa.GetStatistics().KernelRxPackets > kernel, "back on the kernel path once relearned");
    }

    [NetnsFact]
    public void DetachingAPortUnderAKernelPathFloodStopsItsFramesAtOnce()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.5.1/24");
        var b = lab.Add("b", "10.229.5.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Ping(lab, a, b.Ip, count: 2);
        lab.Start(a, "ping", "-f", "-w", "30", "-s", "200", b.Ip); // killed by the lab
        WaitFor(() => pa.GetStatistics().KernelRxPackets > 2000, 10_000, "a flood on the kernel path");
        int bIndex = pb.Backend.InterfaceIndex;
        Assert.True(ports.Detach(pb.Name));
        Assert.Equal(0, TcxLinks(b));
        Assert.DoesNotContain(ports.FastPathOf("valex")!.KernelMacs(), kv => kv.Value == bIndex);
        // Nothing reaches b's wire any more: no stale redirect to the detached interface.
        long sent = NetLab.Counter(b.Outer, "tx_packets");
        Thread.Sleep(300);
        Assert.Equal(sent, NetLab.Counter(b.Outer, "tx_packets"));
        // a's port is still on the kernel path, and its flood to a MAC the switch forgot is the switch's (flooded to no one).
        Assert.Equal("on", pa.GetStatistics().KernelPath);
        long kernel = pa.GetStatistics().KernelRxPackets;
        long switched = pa.GetStatistics().RxPackets;
        Thread.Sleep(300);
        Assert.Equal(kernel, pa.GetStatistics().KernelRxPackets);
        Assert.True(pa.GetStatistics().RxPackets > switched, "the flood now enters the switch");
        Assert.Equal(0, ports.FastPathOf("valex")!.Mismatches);
        Assert.True(ports.Detach(pa.Name));
        Assert.Equal(0, TcxLinks(a));
    }

    [NetnsFact]
    public void ARecreatedInterfaceRejoinsTheKernelPathUnderItsNewIndex()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.6.1/24");
        var b = lab.Add("b", "10.229.6.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { IdleTimeoutMs = 20 });
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Ping(lab, a, b.Ip, count: 3);
        long before = pb.GetStatistics().KernelTxPackets;
        Assert.True(before > 0);

        NetLab.Must("ip", "link", "del", b.Outer);
        WaitFor(() => pb.Link == LinkState.Removed, 5000, "the port to notice the removal");
        int newIndex = lab.Recreate(b);
        WaitFor(() => pb.GetStatistics().Rebinds == 1, 5000, "the port to re-bind");
        Assert.Equal("on", pb.GetStatistics().KernelPath);
        Assert.Equal(1, TcxLinks(newIndex)); // and the old link went with the old interface's registration
        Ping(lab, a, b.Ip, count: 5);
        var fp = ports.FastPathOf("valex")!;
        Assert.Equal(newIndex, fp.KernelMacs()[Mac(b)]);
        Assert.True(pb.GetStatistics().KernelTxPackets >= before + 4, "counted across the re-bind, and growing");
        Dump(ports);
        Assert.Equal(0, fp.Mismatches);
    }

    /// <summary>
    /// af_xdp ports stay on the switch path and say so: their frames reach the switch through
    /// the XDP program, before any packet socket, and with generic XDP this kernel hands tc an
    /// skb whose MAC header length is 0 (seen: tc's length 14 short of XDP's), which a redirect
    /// would send without its Ethernet header (docs/ports.md, Kernel fast path).
    /// </summary>
    [NetnsFact]
    public void AfXdpPortsSayWhyTheyStayOnTheSwitchPath()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.229.7.1/24");
        var b = lab.Add("b", "10.229.7.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { Backend = "af_xdp" });
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Assert.StartsWith("unavailable (", pa.GetStatistics().KernelPath);
        Assert.Equal(0, TcxLinks(a, b));
        Assert.Null(ports.FastPathOf("valex"));
        Ping(lab, a, b.Ip, count: 5);
        Assert.True(pb.GetStatistics().TxPackets >= 5);
        Assert.Equal(0, pb.GetStatistics().KernelTxPackets);
    }
}
