using System.Text.Json;
using HyperNF.Hypervisor;
using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// Physical ports end to end: veth pairs whose namespace ends talk through HyperNF bridges
/// (ping, ARP, learning, iperf3, jumbo frames, an NF domain in the path, detach and removal
/// under load). Skipped, with the reason, without root or 'ip netns'.
/// </summary>
public class PhysicalPortTests
{
    /// <summary>Frames between the two interfaces through the switch (the kernel fast path has its own tests: KernelFastPathTests).</summary>
    private static readonly PhysicalPortOptions SwitchPathOnly = new() { KernelFastPath = false };
    private readonly ITestOutputHelper _out;

    public PhysicalPortTests(ITestOutputHelper output) => _out = output;

    private static void WaitFor(Func<bool> cond, int ms, string what)
    {
        var until = Environment.TickCount64 + ms;
        while (!cond())
        {
            if (Environment.TickCount64 > until) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(10);
        }
    }

    private void Ping(NetLab lab, LabHost from, LabHost to, int count = 3, int size = 56, bool dontFragment = false)
    {
        string[] args = ["ping", "-c", count.ToString(), "-i", "0.2", "-W", "2", "-s", size.ToString(), .. (dontFragment ? new[] { "-M", "do" } : []), to.Ip];
        int rc = lab.Exec(from, args, 15_000, out string output);
        _out.WriteLine(output);
        Assert.True(rc == 0, $"ping {from.Ip} -> {to.Ip} (size {size}) failed ({rc}): {output}");
    }

    /// <summary>Runs an iperf3 client (retrying while the server starts); returns (bytes, bits/s) from its JSON report.</summary>
    private (long Bytes, double Bps) Iperf(NetLab lab, LabHost client, LabHost server, bool udp, int seconds = 2, string? bandwidth = null, int port = 5201)
    {
        string output = "";
        for (int attempt = 0; attempt < 20; attempt++)
        {
            var args = new List<string> { "iperf3", "-c", server.Ip, "-p", port.ToString(), "-t", seconds.ToString(), "-J", "--connect-timeout", "1000" };
            if (udp) args.AddRange(["-u", "-b", bandwidth ?? "200M"]);
            else if (bandwidth is not null) args.AddRange(["-b", bandwidth]);
            int rc = lab.Exec(client, args.ToArray(), (seconds + 10) * 1000, out output);
            // iperf3 -J can exit 0 with {"error": ...} when the server was not ready yet: retry that too
            if (rc == 0 && !output.Contains("\"error\"", StringComparison.Ordinal)) break;
            if (rc == 0 && attempt < 19) { Thread.Sleep(200); continue; }
            if (!output.Contains("unable to", StringComparison.OrdinalIgnoreCase) && !output.Contains("refused", StringComparison.OrdinalIgnoreCase))
                throw new InvalidOperationException($"iperf3 failed ({rc}): {output}");
            Thread.Sleep(200);
        }
        int start = output.IndexOf('{');
        Assert.True(start >= 0, $"no JSON from iperf3: {output}");
        using var doc = JsonDocument.Parse(output[start..]);
        var end = doc.RootElement.GetProperty("end");
        var sum = udp ? end.GetProperty("sum") : end.GetProperty("sum_received");
        long bytes = sum.GetProperty("bytes").GetInt64();
        double bps = sum.GetProperty("bits_per_second").GetDouble();
        _out.WriteLine($"iperf3 {(udp ? "udp" : "tcp")} {client.Ip} -> {server.Ip}: {bytes} bytes, {bps / 1e6:F1} Mbit/s" +
                       (udp ? $", lost {sum.GetProperty("lost_percent").GetDouble():F1}%" : ""));
        return (bytes, bps);
    }

    private void StartIperfServer(NetLab lab, LabHost server, int port = 5201) => lab.Start(server, "iperf3", "-s", "-B", server.Ip, "-p", port.ToString());

    private void Dump(PhysicalPorts ports)
    {
        foreach (var p in ports.List())
        {
            var s = p.GetStatistics();
            _out.WriteLine($"{s.Name} ifindex={s.InterfaceIndex} rebinds={s.Rebinds} link={s.Link} mtu={s.Mtu} rx={s.RxPackets}/{s.RxBytes}B tx={s.TxPackets}/{s.TxBytes}B " +
                           $"rxdrops=[{string.Join(',', s.RxDrops)}] txdrops=[{string.Join(',', s.TxDrops)}] kicks={s.TxKicks} " +
                           $"sender={s.TxRoundsInSender} driver={s.TxRoundsInDriver} wakeups={s.DriverWakeups} err={p.LastError}");
        }
    }

    /// <summary>Every frame the switch delivered to a port was transmitted or counted as a drop.</summary>
    private static void AssertAddsUp(PhysicalPort p)
    {
        // Quiescent point first: a sender counts a delivery a moment before its sink transmits,
        // and the last TCP segments of a run may still be on their way.
        var s = p.GetStatistics();
        long delivered = p.SwitchPort.GetStatistics().RxPackets;
        for (int i = 0; i < 40 && delivered != s.TxPackets + s.TotalTxDrops; i++)
        {
            Thread.Sleep(50);
            s = p.GetStatistics();
            delivered = p.SwitchPort.GetStatistics().RxPackets;
        }
        Assert.True(delivered == s.TxPackets + s.TotalTxDrops,
            $"{p.Name}: switch delivered {delivered}, port sent {s.TxPackets} + dropped {s.TotalTxDrops}");
    }

    [NetnsTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void PingCrossesValexAndTheBridgeLearnsBothMacs(bool driverDomainTxSync)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.1.1/24");
        var b = lab.Add("b", "10.231.1.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, SwitchPathOnly) { DriverDomainTxSync = driverDomainTxSync };
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Assert.Equal(LinkState.Up, pa.Link);
        Assert.Equal([pa, pb], ports.List().OrderBy(p => p.SwitchPort.BridgeIndex));

        Ping(lab, a, b);
        lab.Exec(a, ["ip", "neigh", "show", b.Ip], 5000, out string neigh);
        Assert.Contains(b.Mac, neigh); // ARP went through (broadcast request, unicast reply)

        var entries = host.Switch.FindBridge("valex")!.Forwarding.Entries();
        Assert.Contains(entries, e => ForwardingTable.FormatMac(e.Mac) == a.Mac && e.Port == pa.SwitchPort.BridgeIndex);
        Assert.Contains(entries, e => ForwardingTable.FormatMac(e.Mac) == b.Mac && e.Port == pb.SwitchPort.BridgeIndex);

        Dump(ports);
        var sa = pa.GetStatistics();
        var sb = pb.GetStatistics();
        Assert.True(sa.RxPackets >= 4 && sb.RxPackets >= 4, "both ports took frames from the wire");
        Assert.True(sa.TxPackets >= 4 && sb.TxPackets >= 4, "both ports sent frames to the wire");
        if (driverDomainTxSync)
        {
            Assert.Equal(0, sa.TxRoundsInSender + sb.TxRoundsInSender);
            Assert.True(sb.TxRoundsInDriver > 0);
        }
        else
        {
            Assert.True(sb.TxRoundsInSender > 0, "TX ran in the sender's context");
        }
        Assert.All(ports.List(), p => Assert.Null(p.LastError));
    }

    [NetnsFact]
    public void Iperf3TcpAndUdpRunThroughTheSwitch()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.2.1/24");
        var b = lab.Add("b", "10.231.2.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        ports.Attach("valex", a.Outer);
        ports.Attach("valex", b.Outer);
        StartIperfServer(lab, b);

        var tcp = Iperf(lab, a, b, udp: false);
        Assert.True(tcp.Bytes > 1_000_000 && tcp.Bps > 1e6, $"TCP moved {tcp.Bytes} bytes at {tcp.Bps} bit/s");
        var udp = Iperf(lab, a, b, udp: true, bandwidth: "100M");
        Assert.True(udp.Bytes > 1_000_000 && udp.Bps > 1e6, $"UDP moved {udp.Bytes} bytes at {udp.Bps} bit/s");
        Dump(ports);
        Assert.All(ports.List(), p => Assert.Equal(0, p.GetStatistics().TxDrop(PortDropReason.Oversize)));
    }

    [NetnsTheory]
    [InlineData("af_packet")]
    [InlineData("af_xdp")]
    public void PingAndIperf3CrossAnNfDomainBetweenTwoBridges(string backend)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.3.1/24");
        var b = lab.Add("b", "10.231.3.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { Backend = backend });
        ports.Attach("valex", a.Outer);
        ports.Attach("valey", b.Outer);
        var nf = host.Create(new DomainSpec { Name = "nf", Vifs = [new VifSpec("valex:nf0"), new VifSpec("valey:nf1")], Nf = "l2fwd" });

        Ping(lab, a, b);
        StartIperfServer(lab, b);
        var tcp = Iperf(lab, a, b, udp: false);
        Assert.True(tcp.Bytes > 1_000_000, $"TCP through the NF moved {tcp.Bytes} bytes");
        Dump(ports);
        Assert.Equal(DomainState.Running, nf.State);
    }

    [NetnsFact]
    public void AFirewallDomainBlocksOneTcpPortWhileAnotherPasses()
    {
        using var host = new Host();
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.4.1/24");
        var b = lab.Add("b", "10.231.4.2/24");
        using var ports = new PhysicalPorts(host);
        ports.Attach("valex", a.Outer);
        ports.Attach("valey", b.Outer);
        var fw = host.Create(new DomainSpec
        {
            Name = "fw", Vifs = [new VifSpec("valex:fw0"), new VifSpec("valey:fw1")],
            Nf = "firewall", NfArgs = "rule=deny tcp any -> 10.231.4.2 5202,default=allow",
        });
        Ping(lab, a, b);
        StartIperfServer(lab, b, 5201);
        StartIperfServer(lab, b, 5202);
        Assert.True(Iperf(lab, a, b, udp: false, port: 5201).Bytes > 1_000_000, "TCP to the allowed port passes");
        int rc = lab.Exec(a, ["iperf3", "-c", b.Ip, "-p", "5202", "-t", "1", "--connect-timeout", "1500"], 10_000, out string output);
        _out.WriteLine($"iperf3 to the blocked port: rc {rc}: {output}");
        Assert.NotEqual(0, rc);
        long hits = fw.Guest!.Counters.Where(kv => kv.Key.StartsWith("rule", StringComparison.Ordinal) && kv.Key.Contains("5202")).Sum(kv => kv.Value);
        Assert.True(hits > 0, "the deny rule counted the blocked SYNs: " + string.Join(", ", fw.Guest.Counters.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.Equal(DomainState.Running, fw.State);
    }

    [NetnsFact]
    public void JumboFramesOfMtu9000CrossAsMoreFragChains()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.5.1/24", mtu: 9000);
        var b = lab.Add("b", "10.231.5.2/24", mtu: 9000);
        using var host = new Host();
        using var ports = new PhysicalPorts(host, SwitchPathOnly);
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Assert.Equal(9000, pa.Backend.Mtu);

        Ping(lab, a, b, count: 3, size: 8000, dontFragment: true);
        StartIperfServer(lab, b);
        var tcp = Iperf(lab, a, b, udp: false);
        Assert.True(tcp.Bytes > 1_000_000, $"TCP with 9000-byte MTU moved {tcp.Bytes} bytes");
        Dump(ports);
        var sa = pa.GetStatistics();
        Assert.True(sa.RxBytes / Math.Max(1, sa.RxPackets) > 2048, "frames larger than one buffer came from the wire");
        // Kernel ring-full drops under a TCP blast are load, not a fault; nothing may be oversize.
        Assert.Equal(0, sa.RxDrop(PortDropReason.Oversize) + sa.TxDrop(PortDropReason.Oversize) + pb.GetStatistics().TxDrop(PortDropReason.Oversize));
        AssertAddsUp(pa);
        AssertAddsUp(pb);
    }

    [NetnsFact]
    public void FramesOverTheMtuAreCountedAsOversizeDrops()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.6.1/24", mtu: 9000);
        var b = lab.Add("b", "10.231.6.2/24", mtu: 1500);
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Ping(lab, a, b, count: 1); // small frames pass
        int rc = lab.Exec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "3000", "-M", "do", b.Ip], 10_000, out _);
        Assert.NotEqual(0, rc); // 3042-byte frames cannot go out of a 1500-byte interface
        Dump(ports);
        WaitFor(() => pb.GetStatistics().TxDrop(PortDropReason.Oversize) >= 2, 2000, "oversize drops on the 1500-byte port");
        AssertAddsUp(pb);
    }

    [NetnsFact]
    public void DetachingAndDeletingInterfacesUnderLoadLeaveTheHostRunning()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.7.1/24");
        var b = lab.Add("b", "10.231.7.2/24");
        var c = lab.Add("c", "10.231.7.3/24");
        var d = lab.Add("d", "10.231.7.4/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { DriverPerBridge = false, KernelFastPath = false }); // a thread per port: c's own thread must end with it
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        var pc = ports.Attach("valex", c.Outer);
        var pd = ports.Attach("valex", d.Outer);
        using var h = new Node(host.Switch, "valex:h0", Macs.Unicast(0x100));
        Ping(lab, a, b, count: 1);
        Ping(lab, a, c, count: 1); // the bridge learns c's MAC

        // 1. Detach b while a floods it.
        var flood = lab.Start(a, "ping", "-f", "-w", "3", "-s", "1000", b.Ip);
        WaitFor(() => pb.GetStatistics().TxPackets > 200, 5000, "load towards b");
        var detachB = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(ports.Detach("valex", b.Outer));
        _out.WriteLine($"detach under load took {detachB.ElapsedMilliseconds} ms");
        Assert.True(pb.IsDetached);
        Assert.Null(pb.LastError);
        AssertAddsUp(pb);
        Assert.DoesNotContain(pb, ports.List());
        Ping(lab, a, c, count: 2); // the others still work
        flood.WaitForExit(5000);

        // 2. Delete c's veth while a floods it.
        flood = lab.Start(a, "ping", "-f", "-w", "3", "-s", "1000", c.Ip);
        WaitFor(() => pc.GetStatistics().TxPackets > 200, 5000, "load towards c");
        NetLab.Must("ip", "link", "del", c.Outer);
        WaitFor(() => pc.Link == LinkState.Removed, 3000, "the port to notice the removal");
        Assert.Contains($"interface '{c.Outer}' was removed", pc.LastError);
        Assert.False(pc.SwitchPort.Up);
        // The switch no longer delivers to it: frames for it are port-down drops, counted at the sender.
        h.Send(h.FrameTo(c.MacBytes, 100, 1), h.FrameTo(c.MacBytes, 100, 2), h.FrameTo(c.MacBytes, 100, 3));
        Assert.Equal(3, h.Stats.Drop(DropReason.PortDown));
        Ping(lab, a, d, count: 2);
        int driverTid = pc.DriverTid; // c's own driver thread (DriverThreadTests: one per bridge)
        Assert.True(Directory.Exists($"/proc/self/task/{driverTid}"));
        Assert.True(ports.Detach("valex", c.Outer));
        Assert.True(pc.IsDetached);
        for (long until = Environment.TickCount64 + 2000; Directory.Exists($"/proc/self/task/{driverTid}") && Environment.TickCount64 < until;)
            Thread.Sleep(10); // a joined thread's task may linger in /proc for a moment
        Assert.False(Directory.Exists($"/proc/self/task/{driverTid}"), "the driver thread of a detached port has ended");
        Assert.Equal(-1, pc.GetStatistics().DriverCpuNs);
        AssertAddsUp(pc);
        flood.WaitForExit(5000);

        Dump(ports);
        Assert.Equal([pa, pd], ports.List().OrderBy(p => p.InterfaceName == a.Outer ? 0 : 1));
        Assert.All(ports.List(), p => Assert.Null(p.LastError));
        var bridge = host.Switch.FindBridge("valex")!;
        Assert.Equal(3, bridge.Ports.Count); // a, d and the host port
        Assert.Equal(0, bridge.GetStatistics().Unaccounted);
    }

    [NetnsTheory]
    [InlineData(false, "af_packet")]
    [InlineData(true, "af_packet")]
    [InlineData(false, "af_xdp")]
    public void AnInterfaceDeletedUnderLoadAndCreatedAgainIsReboundAndTrafficResumes(bool driverDomainTxSync, string backend)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.13.1/24");
        var b = lab.Add("b", "10.231.13.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { IdleTimeoutMs = 20, Backend = backend, KernelFastPath = false }) { DriverDomainTxSync = driverDomainTxSync };
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        var first = pb.GetStatistics();
        Assert.Equal(0, first.Rebinds);
        Ping(lab, a, b, count: 2);

        // a floods b for the whole removal, re-creation and re-bind.
        var flood = lab.Start(a, "ping", "-f", "-w", "120", "-s", "1000", b.Ip); // stopped below, once traffic has resumed
        WaitFor(() => pb.GetStatistics().TxPackets > first.TxPackets + 200, 10_000, "load towards b");
        NetLab.Must("ip", "link", "del", b.Outer);
        WaitFor(() => pb.Link == LinkState.Removed, 5000, "the port to notice the removal");
        Assert.False(pb.SwitchPort.Up);
        Assert.Contains($"interface '{b.Outer}' was removed", pb.LastError);
        AssertAddsUp(pb); // the switch port is down: nothing more is delivered
        Thread.Sleep(200); // several idle timeouts: nothing to re-bind to, it stays removed
        Assert.Equal(LinkState.Removed, pb.Link);
        Assert.Equal(0, pb.GetStatistics().Rebinds);

        // The veth comes back under the same name (GRO on, as a fresh veth may have it).
        int newIndex = lab.Recreate(b, groOn: true);
        Assert.NotEqual(first.InterfaceIndex, newIndex);
        WaitFor(() => pb.GetStatistics().Rebinds == 1, 5000, "the port to re-bind");
        WaitFor(() => pb.Link == LinkState.Up, 5000, "the re-bound link to be up");
        var rebound = pb.GetStatistics();
        Assert.Equal(newIndex, rebound.InterfaceIndex);
        Assert.Equal(newIndex, pb.Backend.InterfaceIndex);
        Assert.Equal("up", rebound.Link);
        Assert.True(pb.SwitchPort.Up);
        Assert.Null(pb.LastError);
        Assert.Same(pb, ports.Find($"valex:{b.Outer}")); // the same attached port
        // Set up as at attach: promiscuous, GRO off.
        Assert.DoesNotContain("promiscuity 0 ", NetLab.Must("ip", "-d", "link", "show", "dev", b.Outer));
        Assert.Contains("generic-receive-offload: off", NetLab.Must("ethtool", "-k", b.Outer));

        // Traffic resumes through the same port: the flood's frames go out again, then ping.
        long txAtRebind = rebound.TxPackets;
        WaitFor(() => pb.GetStatistics().TxPackets > txAtRebind + 50, 10_000, "the flood to reach b again");
        flood.Kill(); // the ping we started, by its process
        Assert.True(flood.WaitForExit(10_000), "the flood ping ends");
        Ping(lab, a, b, count: 3);
        Ping(lab, b, a, count: 2);
        Dump(ports);
        AssertAddsUp(pb);
        AssertAddsUp(pa);
        var end = pb.GetStatistics();
        Assert.Equal(1, end.Rebinds);
        Assert.Equal(0, end.TxDrop(PortDropReason.Oversize) + end.TxDrop(PortDropReason.SendError));
        Assert.Equal(0, host.Switch.FindBridge("valex")!.GetStatistics().Unaccounted);

        // Detach undoes what the re-bind set up on the new interface.
        Assert.True(ports.Detach("valex", b.Outer));
        Assert.Contains("promiscuity 0 ", NetLab.Must("ip", "-d", "link", "show", "dev", b.Outer));
        Assert.Contains("generic-receive-offload: on", NetLab.Must("ethtool", "-k", b.Outer));
    }

    [NetnsTheory]
    [InlineData("af_packet")]
    [InlineData("af_xdp")]
    public void FramesToALinkThatIsDownAreCountedAndTrafficResumesWhenItComesBack(string backend)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.9.1/24");
        var b = lab.Add("b", "10.231.9.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { IdleTimeoutMs = 20, Backend = backend });
        ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        using var h = new Node(host.Switch, "valex:h0", Macs.Unicast(0x100));
        var wireB = lab.Wire(b);
        byte[] bMac = b.MacBytes;
        Ping(lab, a, b, count: 1);

        // Carrier loss: the peer (inside the namespace) goes down.
        NetLab.Must("ip", "-n", b.Ns, "link", "set", b.Inner, "down");
        WaitFor(() => pb.Link == LinkState.Down, 2000, "the port to see the carrier loss");
        // Exactly what a host port sends to it is counted (a's ARP entry for b is fresh: a sends nothing now).
        var before = pb.GetStatistics();
        h.Send([.. Enumerable.Range(0, 5).Select(i => h.FrameTo(bMac, 100, (uint)i))]);
        var after = pb.GetStatistics();
        Assert.Equal(5, after.TxDrop(PortDropReason.LinkDown) - before.TxDrop(PortDropReason.LinkDown));
        Assert.Equal(before.TxPackets, after.TxPackets);
        lab.Exec(a, ["ping", "-c", "3", "-i", "0.2", "-W", "1", b.Ip], 10_000, out _);
        WaitFor(() => pb.GetStatistics().TxDrop(PortDropReason.LinkDown) >= 5 + 3, 2000, "link-down drops");
        NetLab.Must("ip", "-n", b.Ns, "link", "set", b.Inner, "up");
        WaitFor(() => pb.Link == LinkState.Up, 3000, "the carrier to come back");
        Ping(lab, a, b, count: 1);
        // The host port's frames reach the wire again.
        var again = h.FrameTo(bMac, 100, 99);
        h.Send(again);
        Assert.Equal(again, wireB.NextTestFrame(5000));

        // Administratively down: the attached interface itself.
        NetLab.Must("ip", "link", "set", b.Outer, "down");
        WaitFor(() => pb.Link == LinkState.Down, 2000, "the port to see the interface down");
        lab.Exec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "1", b.Ip], 10_000, out _);
        NetLab.Must("ip", "link", "set", b.Outer, "up");
        WaitFor(() => pb.Link == LinkState.Up, 3000, "the interface to come back up");
        Ping(lab, a, b, count: 2);
        Dump(ports);
        Assert.Null(pb.LastError);
        AssertAddsUp(pb);
    }

    [NetnsFact]
    public void AttachSetsPromiscuousAndGroOffAndDetachRestoresThem()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.8.1/24");
        NetLab.Must("ethtool", "-K", a.Outer, "gro", "on");
        // A packet socket's promiscuous membership shows as the device's promiscuity count, not as the PROMISC flag.
        static bool Promisc(string dev) => !NetLab.Must("ip", "-d", "link", "show", "dev", dev).Contains("promiscuity 0 ");
        static bool Gro(string dev) => NetLab.Must("ethtool", "-k", dev).Contains("generic-receive-offload: on");
        Assert.False(Promisc(a.Outer));
        Assert.True(Gro(a.Outer));
        using var ports = new PhysicalPorts(new ValeSwitch());
        var p = ports.Attach("valex:" + a.Outer);
        Assert.True(Promisc(a.Outer));
        Assert.False(Gro(a.Outer));
        Assert.Contains("gro off", p.Backend.Description);
        Assert.Same(p, ports.Find($"valex:{a.Outer}"));
        Assert.Throws<InvalidOperationException>(() => ports.Attach("valey", a.Outer)); // one bridge per interface
        Assert.True(ports.Detach("valex:" + a.Outer));
        Assert.False(ports.Detach("valex:" + a.Outer));
        Assert.False(Promisc(a.Outer));
        Assert.True(Gro(a.Outer));
        Assert.Empty(ports.Switch.FindBridge("valex")!.Ports);
    }

    [Fact]
    public void AttachingAnInterfaceThatDoesNotExistNamesIt()
    {
        using var ports = new PhysicalPorts(new ValeSwitch());
        var e = Assert.Throws<ArgumentException>(() => ports.Attach("valex", "nosuch9z"));
        Assert.Contains("interface 'nosuch9z' does not exist", e.Message);
        var bad = Assert.Throws<ArgumentException>(() => ports.Attach("valex:"));
        Assert.Contains("BRIDGE:IFNAME", bad.Message);
        var longName = Assert.Throws<ArgumentException>(() => ports.Attach("valex", "averyveryverylongname0"));
        Assert.Contains("not an interface name", longName.Message);
        Assert.Empty(ports.List());
        Assert.Null(ports.Switch.FindBridge("valex")?.Ports.FirstOrDefault());
    }

    [Fact]
    public void CtlOp5SwitchesDriverDomainTxSync()
    {
        using var ports = new PhysicalPorts(new ValeSwitch());
        Assert.False(ports.DriverDomainTxSync);
        Assert.True(ports.TryApplyCtl(5, 1));
        Assert.True(ports.DriverDomainTxSync);
        Assert.True(ports.TryApplyCtl(5, 0));
        Assert.False(ports.DriverDomainTxSync);
        Assert.False(ports.TryApplyCtl(1, 100));
        Assert.Throws<ArgumentOutOfRangeException>(() => ports.TryApplyCtl(5, 2));
    }
}
