using System.Diagnostics;
using HyperNF.Ports;
using HyperNF.Switch;
using HyperNF.Tests.Control;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The AF_XDP backend on real veth pairs: an XDP program is attached while the port is
/// attached and is gone after detach (and after the host is killed), frames cross in both
/// directions with ping and iperf3, a multi-queue veth gets a socket per queue, and what the
/// backend cannot do (frames over one chunk, an interface that already has an XDP program)
/// is refused with an error that says what to do.
/// </summary>
public class AfXdpBackendTests(ITestOutputHelper output)
{
    private static readonly PhysicalPortOptions Xdp = new() { Backend = "af_xdp" };

    private static bool HasXdpProgram(string ifName) =>
        NetLab.Must("ip", "link", "show", "dev", ifName).Contains("prog/xdp", StringComparison.Ordinal);

    /// <summary>
    /// The program is gone once the last reference to its link fd is: a process another test
    /// forks at that moment holds a copy until its exec closes it (O_CLOEXEC), so allow a moment.
    /// </summary>
    private static bool XdpProgramGone(string ifName)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (HasXdpProgram(ifName))
        {
            if (DateTime.UtcNow > until) return false;
            Thread.Sleep(20);
        }
        return true;
    }

    private void Ping(NetLab lab, LabHost from, LabHost to, int count = 3, int size = 56)
    {
        int rc = lab.Exec(from, ["ping", "-c", count.ToString(), "-i", "0.2", "-W", "2", "-s", size.ToString(), to.Ip], 15_000, out string text);
        output.WriteLine(text);
        Assert.True(rc == 0, $"ping {from.Ip} -> {to.Ip} failed ({rc}): {text}");
    }

    private long IperfTcp(NetLab lab, LabHost client, LabHost server, int streams = 1, int port = 5301)
    {
        long bytes = lab.IperfTcpBytes(client, server, streams, port);
        output.WriteLine($"iperf3 tcp x{streams}: {bytes} bytes");
        return bytes;
    }

    /// <summary>Every frame the switch delivered to the port was sent by the backend or counted as a drop.</summary>
    private static void AssertAddsUp(PhysicalPort p)
    {
        long delivered = 0;
        PhysicalPortStatistics s = p.GetStatistics();
        for (int i = 0; i < 40; i++)
        {
            s = p.GetStatistics();
            delivered = p.SwitchPort.GetStatistics().RxPackets;
            if (delivered == s.TxPackets + s.TotalTxDrops) return;
            Thread.Sleep(50);
        }
        Assert.Fail($"{p.Name}: switch delivered {delivered}, port sent {s.TxPackets} + dropped {s.TotalTxDrops}");
    }

    private static bool PeerTso(LabHost h) =>
        NetLab.Must("ip", "netns", "exec", h.Ns, "ethtool", "-k", h.Inner).Contains("tcp-segmentation-offload: on", StringComparison.Ordinal);

    /// <summary>
    /// On a veth, auto means generic XDP with the super-frame socket: the peer keeps its TSO
    /// (this kernel turns it off for any native XDP program on the other end, multi-buffer or
    /// not), the port gets a virtio-net header, and a TCP stream's super-frames arrive through
    /// the socket with their GSO size. Native mode, asked for, is the old behaviour: no header,
    /// every frame through AF_XDP, and the peer's TSO goes off while attached (and comes back).
    /// </summary>
    [NetnsFact]
    public void OnAVethAutoIsGenericXdpAndThePeerKeepsItsTso()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.7.1/24");
        var b = lab.Add("b", "10.232.7.2/24");
        Assert.True(PeerTso(a));
        var sw = new ValeSwitch();
        using (var ports = new PhysicalPorts(sw, Xdp))
        {
            var pa = ports.Attach("valex", a.Outer);
            ports.Attach("valex", b.Outer);
            var xa = Assert.IsType<AfXdpBackend>(pa.Backend);
            output.WriteLine(xa.Description);
            Assert.Equal("generic", xa.XdpMode);
            Assert.True(xa.SuperFrames);
            Assert.Equal(10, pa.SwitchPort.VirtioHeaderLength);
            Assert.True(PeerTso(a) && PeerTso(b), "the peers' TSO stays on with generic XDP");
            Assert.True(IperfTcp(lab, a, b) > 1_000_000);
            Assert.True(xa.SuperFramesReceived > 0, "TCP super-frames came through the packet socket");
            AssertAddsUp(pa);
        }
        using (var ports = new PhysicalPorts(sw, new PhysicalPortOptions { Backend = "af_xdp", XdpMode = "native" }))
        {
            var pa = ports.Attach("valex", a.Outer);
            var xa = Assert.IsType<AfXdpBackend>(pa.Backend);
            Assert.Equal("native", xa.XdpMode);
            Assert.False(xa.SuperFrames);
            Assert.Equal(0, pa.SwitchPort.VirtioHeaderLength);
            output.WriteLine($"native XDP on {a.Outer}: peer TSO {(PeerTso(a) ? "on" : "off")} (Linux 6.18 turns it off)");
        }
        Assert.True(PeerTso(a), "the peer's TSO is back after detach");
    }

    [NetnsFact]
    public void PingAndIperf3CrossValexOnAfXdpPortsAndDetachRemovesTheProgram()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.1.1/24");
        var b = lab.Add("b", "10.232.1.2/24");
        var sw = new ValeSwitch();
        using (var ports = new PhysicalPorts(sw, Xdp))
        {
            var pa = ports.Attach("valex", a.Outer);
            var pb = ports.Attach("valex", b.Outer);
            output.WriteLine(pa.Backend.Description);
            var backend = Assert.IsType<AfXdpBackend>(pa.Backend);
            Assert.Contains("af_xdp", pa.Backend.Description);
            Assert.Contains(backend.XdpMode, new[] { "native", "generic" });
            Assert.True(HasXdpProgram(a.Outer), "the XDP program is attached while the port is");
            Assert.True(HasXdpProgram(b.Outer));

            Ping(lab, a, b);
            var entries = sw.FindBridge("valex")!.Forwarding.Entries();
            Assert.Contains(entries, e => ForwardingTable.FormatMac(e.Mac) == a.Mac && e.Port == pa.SwitchPort.BridgeIndex);
            Assert.Contains(entries, e => ForwardingTable.FormatMac(e.Mac) == b.Mac && e.Port == pb.SwitchPort.BridgeIndex);

            Assert.True(IperfTcp(lab, a, b) > 1_000_000, "iperf3 TCP moves data through AF_XDP ports");
            AssertAddsUp(pa);
            AssertAddsUp(pb);
            var sa = pa.GetStatistics();
            Assert.True(sa.RxPackets > 1000 && sa.TxPackets > 100, $"both directions crossed port a: rx {sa.RxPackets} tx {sa.TxPackets}");
            Assert.True(ports.Detach(pa.Name));
            Assert.True(XdpProgramGone(a.Outer), "detach removes the XDP program");
            Assert.True(HasXdpProgram(b.Outer));
        }
        Assert.True(XdpProgramGone(b.Outer), "disposing the ports removes every program");
        Assert.DoesNotContain("PROMISC", NetLab.Must("ip", "link", "show", "dev", b.Outer));
    }

    [NetnsFact]
    public void AMultiQueueVethGetsOneSocketPerQueueAndEveryQueueForwards()
    {
        using var lab = new NetLab();
        // tx off: the streams arrive as MTU frames, all through the per-queue AF_XDP sockets.
        // With TSO on, generic XDP passes the super-frames to the side packet socket and
        // only the odd small frame reaches a queue, too few to judge the spread by.
        var a = lab.Add("a", "10.232.2.1/24", queues: 4, txOffloads: false);
        var b = lab.Add("b", "10.232.2.2/24", queues: 4, txOffloads: false);
        using var ports = new PhysicalPorts(new ValeSwitch(), Xdp);
        var pa = ports.Attach("valex", a.Outer);
        ports.Attach("valex", b.Outer);
        Assert.Equal(4, Assert.IsType<AfXdpBackend>(pa.Backend).QueueCount);
        Ping(lab, a, b);
        // Eight TCP streams hash onto the four queues of the sending veth, which become the RX
        // queues here; a queue without a socket would pass its frames to the host stack, where
        // they die, and its streams would stall.
        // Each stream's queue is its random flow hash over four queues; once in a CI run all eight
        // landed on one (seen under load), so another run of eight new streams is allowed.
        long[] perQueue = [];
        for (int run = 0; run < 3 && perQueue.Count(n => n > 100) < 2; run++)
        {
            Assert.True(IperfTcp(lab, a, b, streams: 8, port: 5301 + run) > 1_000_000);
            perQueue = ((AfXdpBackend)pa.Backend).QueueRxPackets;
            output.WriteLine($"frames per RX queue after run {run + 1}: {string.Join(", ", perQueue)}");
        }
        AssertAddsUp(pa);
        Assert.True(perQueue.Count(n => n > 100) >= 2, $"the streams spread over several queues and each was read: {string.Join(", ", perQueue)}");
    }

    /// <summary>
    /// Generic mode has two receive paths: small frames through the AF_XDP ring, super-frames
    /// through the packet socket. A small frame that arrives after a super-frame (a TCP stream's
    /// last short segment after a TSO burst) must not reach the switch before it, or the
    /// receiver sees reordering. Frames are injected with nobody reading, then read in one go:
    /// the order must be the wire's. Once the socket is drained, small frames take the AF_XDP
    /// ring again.
    /// </summary>
    [NetnsFact]
    public void FramesKeepTheirWireOrderAcrossTheAfXdpRingAndTheSuperFrameSocket()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.6.1/24");
        using var backend = AfXdpBackend.Open(a.Outer, new PhysicalPortOptions { Backend = "af_xdp", XdpMode = "generic", DriverFollowsTraffic = false });
        Assert.True(backend.SuperFrames, "generic mode takes super-frames through a packet socket");
        var wire = lab.Wire(a, vnetHeader: true);
        byte[] dst = [0x02, 0, 0, 0, 0x66, 0x01];
        const int mss = 1448, big = 8000, small = 100;
        int l4 = 14 + 20, pay = l4 + 32;
        var sent = new List<ushort>();
        for (ushort k = 1; k <= 4; k++)
        {
            ushort bigId = (ushort)(1000 + k), smallId = (ushort)(2000 + k);
            var superFrame = HyperNF.Tests.Switch.OffloadTests.Frame(dst, a.MacBytes, ipv6: false, tcp: true, big, ipId: bigId);
            wire.Send([.. HyperNF.Tests.Switch.OffloadTests.Header(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, pay, mss, l4, 16), .. superFrame]);
            var frame = HyperNF.Tests.Switch.OffloadTests.Frame(dst, a.MacBytes, ipv6: false, tcp: true, small, ipId: smallId);
            wire.Send([.. new byte[10], .. frame]);
            sent.Add(bigId);
            sent.Add(smallId);
        }
        var got = new Recorder(backend.VirtioHeaderLength);
        var until = Environment.TickCount64 + 5000;
        Thread.Sleep(50); // all eight on their paths before the first read
        while (got.Ids.Count < sent.Count && Environment.TickCount64 < until)
            if (backend.Receive(got, 64) == 0) Thread.Sleep(5);
        output.WriteLine($"order: {string.Join(", ", got.Ids)}; kept in order {backend.FramesKeptInOrder}, super-frames {backend.SuperFramesReceived}, ring {backend.QueueRxPackets.Sum()}");
        Assert.Equal(sent, got.Ids);
        Assert.True(backend.FramesKeptInOrder >= 4, $"the small frames followed the super-frames through the socket: {backend.FramesKeptInOrder}");

        // Drained: the next small frame takes the AF_XDP ring.
        ASmallFrameTakesTheRing(backend, wire, dst, a.MacBytes, got, 3000, "with the socket drained, a small frame takes the AF_XDP ring");
    }

    /// <summary>Sends a small TCP frame with IPv4 identification <paramref name="id"/>; it must arrive through the AF_XDP ring, and no order gap may have been healed.</summary>
    private static void ASmallFrameTakesTheRing(AfXdpBackend backend, WireSocket wire, byte[] dst, byte[] src, Recorder got, ushort id, string because)
    {
        long ring = backend.QueueRxPackets.Sum();
        wire.Send([.. new byte[10], .. HyperNF.Tests.Switch.OffloadTests.Frame(dst, src, ipv6: false, tcp: true, 100, ipId: id)]);
        for (long until = Environment.TickCount64 + 5000; !got.Ids.Contains(id) && Environment.TickCount64 < until;)
            if (backend.Receive(got, 64) == 0) Thread.Sleep(5);
        Assert.Contains(id, got.Ids);
        Assert.True(backend.QueueRxPackets.Sum() > ring, because);
        Assert.Equal(0, backend.OrderHeals);
    }

    /// <summary>
    /// Frames the super-frame socket drops (its receive buffer full) were counted as passed by the
    /// program and will never be read: the drops read from PACKET_STATISTICS settle the account,
    /// so once the socket is drained small frames take the AF_XDP ring again (otherwise every
    /// frame would stay on the slow path for good).
    /// </summary>
    [NetnsFact]
    public void FramesTheSuperFrameSocketDroppedDoNotKeepTheSlowPathOn()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.8.1/24");
        using var backend = AfXdpBackend.Open(a.Outer, new PhysicalPortOptions { Backend = "af_xdp", XdpMode = "generic", DriverFollowsTraffic = false });
        var wire = lab.Wire(a, vnetHeader: true);
        byte[] dst = [0x02, 0, 0, 0, 0x66, 0x03];
        const int mss = 1448;
        int l4 = 14 + 20, pay = l4 + 32;
        byte[] hdr = HyperNF.Tests.Switch.OffloadTests.Header(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, pay, mss, l4, 16);
        var superFrame = HyperNF.Tests.Switch.OffloadTests.Frame(dst, a.MacBytes, ipv6: false, tcp: true, 60000, ipId: 1);
        // Far more than the socket's receive buffer holds (64 super-frames' worth), nobody reading.
        for (int i = 0; i < 400; i++) wire.Send([.. hdr, .. superFrame]);
        Thread.Sleep(50);
        long drops = backend.TakeKernelDrops();
        var got = new Recorder(backend.VirtioHeaderLength);
        while (backend.Receive(got, 64) > 0) { }
        output.WriteLine($"dropped {drops}, read {backend.SuperFramesReceived}");
        Assert.True(drops > 0, "the socket's receive buffer overflowed");
        Assert.Equal(400, drops + backend.SuperFramesReceived);

        ASmallFrameTakesTheRing(backend, wire, dst, a.MacBytes, got, 5000, "with the drops accounted for, a small frame takes the AF_XDP ring");
    }

    /// <summary>
    /// The program's threshold follows the MTU: attached at MTU 3000, then lowered to 1500, a
    /// two-segment GSO frame of about 2.9 KB must still take the packet socket with its GSO
    /// metadata (through AF_XDP it would arrive as a plain frame over the MTU, an oversize drop).
    /// </summary>
    [NetnsFact]
    public void TheSuperFrameThresholdFollowsTheMtuWhileAttached()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.7.1/24", mtu: 3000);
        using var backend = AfXdpBackend.Open(a.Outer, new PhysicalPortOptions { Backend = "af_xdp", XdpMode = "generic", DriverFollowsTraffic = false });
        Assert.True(backend.SuperFrames);
        NetLab.Must("ip", "link", "set", "dev", a.Outer, "mtu", "1500");
        NetLab.Must("ip", "netns", "exec", a.Ns, "ip", "link", "set", "dev", a.Inner, "mtu", "1500");
        Assert.Equal(LinkState.Up, backend.QueryLink());
        Assert.Equal(1500, backend.Mtu);
        AssertGsoFrameArrivesWithItsMetadata(lab, a, backend, payload: 2 * 1448, ipId: 4242);
    }

    /// <summary>
    /// A GSO super-frame only a few bytes over the MTU (two segments, 1448 + 4 bytes of payload:
    /// a 1518-byte frame at MTU 1500) still takes the packet socket with its GSO metadata. With
    /// room for VLAN tags in the threshold it took the AF_XDP ring and arrived as a plain frame over
    /// the MTU: the switch dropped it as oversize (seen as "rx oversize 2" in a bench ports run).
    /// </summary>
    [NetnsFact]
    public void ASuperFrameJustOverTheMtuKeepsItsGsoMetadata()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.9.1/24");
        using var backend = AfXdpBackend.Open(a.Outer, new PhysicalPortOptions { Backend = "af_xdp", XdpMode = "generic", DriverFollowsTraffic = false });
        int length = AssertGsoFrameArrivesWithItsMetadata(lab, a, backend, payload: 1448 + 4, ipId: 4343);
        Assert.Equal(1518, length);
    }

    /// <summary>
    /// Sends a TCP/IPv4 GSO frame (MSS 1448, <paramref name="payload"/> bytes) from the namespace
    /// end and asserts the backend hands it over whole with its GSO type; returns its length.
    /// </summary>
    private static int AssertGsoFrameArrivesWithItsMetadata(NetLab lab, LabHost a, AfXdpBackend backend, int payload, ushort ipId)
    {
        var wire = lab.Wire(a, vnetHeader: true);
        byte[] dst = [0x02, 0, 0, 0, 0x66, 0x02];
        const int mss = 1448;
        int l4 = 14 + 20, pay = l4 + 32;
        var frame = HyperNF.Tests.Switch.OffloadTests.Frame(dst, a.MacBytes, ipv6: false, tcp: true, payload, ipId: ipId);
        wire.Send([.. HyperNF.Tests.Switch.OffloadTests.Header(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, pay, mss, l4, 16), .. frame]);
        var got = new Recorder(backend.VirtioHeaderLength);
        for (long until = Environment.TickCount64 + 5000; !got.Ids.Contains(ipId) && Environment.TickCount64 < until;)
            if (backend.Receive(got, 64) == 0) Thread.Sleep(5);
        int k = got.Ids.IndexOf(ipId);
        Assert.True(k >= 0, "the frame arrived");
        Assert.Equal(VirtioNetHeader.GsoTcpV4, got.GsoTypes[k]);
        Assert.Equal(frame.Length, got.Lengths[k]);
        return frame.Length;
    }

    /// <summary>
    /// Records, in order, the IPv4 identification of every TCP frame the backend hands over, with
    /// its virtio-net header's GSO type (when the port has a header) and the frame's length.
    /// </summary>
    private sealed class Recorder(int header) : IFrameReceiver
    {
        public List<ushort> Ids { get; } = [];
        public List<int> GsoTypes { get; } = [];
        public List<int> Lengths { get; } = [];

        public void OnFrame(ReadOnlySpan<byte> frame, int wireLength, uint vlanTag)
        {
            var f = frame[header..];
            if (f.Length < 34 || f[12] != 0x08 || f[13] != 0 || f[23] != 6) return;
            Ids.Add(System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(f[18..]));
            GsoTypes.Add(header > 0 ? frame[1] & 0x7F : 0);
            Lengths.Add(f.Length);
        }
    }

    [NetnsFact]
    public void AKilledHostLeavesNoXdpProgramBehind()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.3.1/24");
        var b = lab.Add("b", "10.232.3.2/24");
        using var dir = new TempDir();
        var psi = Cli.Start(dir.File("unused.sock"), "run", "--interval", "0", "--port-backend", "af_xdp", "-a", $"valex:{a.Outer}", "-a", $"valex:{b.Outer}");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            int rc = 1;
            string text = "";
            for (int i = 0; i < 60 && rc != 0; i++)
            {
                Thread.Sleep(250);
                rc = lab.Exec(a, ["ping", "-c", "1", "-W", "1", b.Ip], 10_000, out text);
            }
            Assert.True(rc == 0, $"ping through `hypernf run --port-backend af_xdp` failed: {text}");
            Assert.True(HasXdpProgram(a.Outer));
        }
        finally
        {
            p.Kill(); // SIGKILL: no clean-up code runs in the host
            Assert.True(p.WaitForExit(20_000));
        }
        output.WriteLine(stdout.Result + stderr.Result);
        Assert.Contains("af_xdp", stdout.Result);
        // The program hangs on a BPF link owned by the dead process: the kernel detached it.
        var until = Environment.TickCount64 + 10_000;
        while (HasXdpProgram(a.Outer) || HasXdpProgram(b.Outer))
        {
            Assert.True(Environment.TickCount64 < until, "the XDP programs are still attached 10 s after the host was killed");
            Thread.Sleep(100);
        }
    }

    [NetnsFact]
    public void AnMtuOverOneChunkIsRefusedAndPointsToAfPacket()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.4.1/24", mtu: 9000);
        using var ports = new PhysicalPorts(new ValeSwitch(), Xdp);
        var e = Assert.Throws<ArgumentException>(() => ports.Attach("valex", a.Outer));
        output.WriteLine(e.Message);
        Assert.Contains(a.Outer, e.Message);
        Assert.Contains("9000", e.Message);
        Assert.Contains("af_packet", e.Message);
        Assert.Empty(ports.List());
        Assert.True(XdpProgramGone(a.Outer));
    }

    [NetnsFact]
    public void AnInterfaceThatAlreadyHasAnXdpProgramIsRefusedAndTheFirstPortKeepsForwarding()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.5.1/24");
        var b = lab.Add("b", "10.232.5.2/24");
        using var first = new PhysicalPorts(new ValeSwitch(), Xdp);
        first.Attach("valex", a.Outer);
        first.Attach("valex", b.Outer);
        using var second = new PhysicalPorts(new ValeSwitch(), Xdp);
        var e = Assert.ThrowsAny<IOException>(() => second.Attach("valey", a.Outer));
        output.WriteLine(e.Message);
        Assert.Contains("already", e.Message);
        Assert.Contains(a.Outer, e.Message);
        Assert.Empty(second.List());
        Ping(lab, a, b);
    }

    [NetnsFact]
    public void DeletingTheVethUnderLoadTakesThePortDownAndTheHostKeepsForwarding()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.232.6.1/24");
        var b = lab.Add("b", "10.232.6.2/24");
        var c = lab.Add("c", "10.232.6.3/24");
        using var ports = new PhysicalPorts(new ValeSwitch(), Xdp);
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        ports.Attach("valex", c.Outer);
        Ping(lab, a, b);
        // a floods b with UDP while b's veth is deleted
        var flood = lab.Start(a, "ping", "-f", "-s", "1000", "-w", "4", b.Ip);
        Thread.Sleep(500);
        NetLab.Must("ip", "netns", "del", b.Ns);
        var until = Environment.TickCount64 + 10_000;
        while (pb.Link != LinkState.Removed)
        {
            Assert.True(Environment.TickCount64 < until, $"port b still {pb.Link} 10 s after its veth was deleted");
            Thread.Sleep(50);
        }
        Assert.Contains("removed", pb.LastError);
        flood.WaitForExit(10_000);
        Ping(lab, a, c);
        Assert.True(ports.Detach(pb.Name));
        AssertAddsUp(pa);
    }
}
