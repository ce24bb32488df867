using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// Traffic between network namespaces whose veths keep the offloads Linux gives them (checksum
/// offload, TSO/GSO): iperf3 TCP both ways over IPv4 and IPv6 with each backend, a VLAN-tagged
/// path, UDP whose checksums are verified by the receiver (the test's own code, or the
/// receiving kernel), and mixed ports (a port with a virtio-net header and one without) both
/// ways. Before issue 14, TCP moved 0 bytes here. Skipped, with the reason, without root or netns.
/// </summary>
public class OffloadPathTests(ITestOutputHelper output)
{
    /// <summary>
    /// Far below what a working path moves in 2 s even on a loaded 2-core machine (hundreds of
    /// MB), far above what a broken one moves (0: the handshake's checksums are partial).
    /// </summary>
    private const long MinTcpBytes = 5_000_000;

    private void Dump(PhysicalPorts ports)
    {
        foreach (var p in ports.List())
        {
            var s = p.GetStatistics();
            output.WriteLine($"{s.Name} hdr={p.SwitchPort.VirtioHeaderLength} link={s.Link} rx={s.RxPackets}/{s.RxBytes}B tx={s.TxPackets}/{s.TxBytes}B " +
                             $"rxdrops=[{string.Join(',', s.RxDrops)}] txdrops=[{string.Join(',', s.TxDrops)}] err={p.LastError}");
        }
    }

    /// <summary>No frame was lost to a cause a user can fix: oversize or a header that does not match.</summary>
    private static void AssertNoUserDrops(PhysicalPorts ports)
    {
        foreach (var p in ports.List())
        {
            var s = p.GetStatistics();
            foreach (var r in new[] { PortDropReason.Oversize, PortDropReason.BadOffload, PortDropReason.SendError })
                Assert.True(s.RxDrop(r) + s.TxDrop(r) == 0, $"{p.Name}: {r.Key()} drops rx {s.RxDrop(r)} tx {s.TxDrop(r)} ({p.LastError})");
        }
    }

    [NetnsTheory]
    [InlineData("af_packet", false, false)]
    [InlineData("af_packet", true, false)]
    [InlineData("af_packet", false, true)]
    [InlineData("af_packet", true, true)]
    [InlineData("af_xdp", false, false)]
    [InlineData("af_xdp", true, false)]
    public void TcpCrossesBothWaysWithTheOffloadsLinuxSets(string backend, bool ipv6, bool kernelFastPath)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.235.1.1/24", ipv6: ipv6);
        var b = lab.Add("b", "10.235.1.2/24", ipv6: ipv6);
        Assert.Contains("tcp-segmentation-offload: on", NetLab.Must("ip", "netns", "exec", a.Ns, "ethtool", "-k", a.Inner));
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { Backend = backend, KernelFastPath = kernelFastPath });
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        Assert.Equal(kernelFastPath ? "on" : "off (turned off)", pa.GetStatistics().KernelPath);
        // af_xdp on a veth: generic XDP, super-frames through the packet socket, a header like af_packet's.
        Assert.Equal(10, pa.SwitchPort.VirtioHeaderLength);
        // The peers' offloads are as Linux set them, also after the attach (a native XDP program
        // on a veth turns its peer's TSO off: TCP then crawls in MTU-sized frames).
        foreach (var n in new[] { a, b })
            Assert.Contains("tcp-segmentation-offload: on", NetLab.Must("ip", "netns", "exec", n.Ns, "ethtool", "-k", n.Inner));

        long there = lab.IperfTcpBytes(a, b, ipv6: ipv6);
        long back = lab.IperfTcpBytes(a, b, port: 5302, reverse: true, ipv6: ipv6);
        output.WriteLine($"{backend} {(ipv6 ? "IPv6" : "IPv4")}: a->b {there * 8 / 2e6:F0} Mbit/s, b->a {back * 8 / 2e6:F0} Mbit/s");
        Dump(ports);
        Assert.True(there > MinTcpBytes, $"TCP a->b moved {there} bytes");
        Assert.True(back > MinTcpBytes, $"TCP b->a moved {back} bytes");
        AssertNoUserDrops(ports);
        if (kernelFastPath)
        {
            // The kernel forwarded the streams (super-frames whole: bpf_redirect keeps the skb's
            // GSO state); the switch saw the neighbour discovery and the first frames only.
            var sa = pa.GetStatistics();
            var sb = pb.GetStatistics();
            output.WriteLine($"kernel path: a rx {sa.KernelRxPackets}/{sa.KernelRxBytes}B tx {sa.KernelTxPackets}; b rx {sb.KernelRxPackets} tx {sb.KernelTxPackets}; switch rx a {sa.RxPackets} b {sb.RxPackets}");
            Assert.True(sa.KernelRxPackets > 1000 && sb.KernelRxPackets > 1000, "both directions took the kernel path");
            Assert.True(sa.KernelRxBytes / sa.KernelRxPackets > 1514, "GSO super-frames crossed whole");
            Assert.Equal(sa.KernelRxPackets, sb.KernelTxPackets);
            Assert.Equal(sb.KernelRxPackets, sa.KernelTxPackets);
            Assert.True(sa.RxPackets + sb.RxPackets < sa.KernelRxPackets / 10, "the switch carried little of it");
            Assert.Equal(0, ports.FastPathOf("valex")!.Mismatches);
            return;
        }
        Assert.True(pa.GetStatistics().RxBytes / Math.Max(1, pa.GetStatistics().RxPackets) > 1514, "GSO super-frames crossed whole");
        // and left b's port whole: larger than a TX ring frame, they take the super-frame socket
        Assert.Contains(backend == "af_packet" ? "send() for super-frames" : "super-frames via packet socket", pb.Backend.Description);
        Assert.True(pb.GetStatistics().TxBytes / Math.Max(1, pb.GetStatistics().TxPackets) > 1514, "GSO super-frames left whole");
        if (pb.Backend is AfPacketBackend pk) Assert.True(pk.SuperFramesGathered > 0, "super-frames went out straight from the switch's slots (sendmsg with an iovec)");
        Assert.True(pa.FramesReadIntoSlots > 0, "super-frames came in straight into the switch's slots (recvmsg with an iovec)");
        Assert.True(pb.GetStatistics().TxCutThrough > 0, "frames from a's port went out of b's straight from a's slots (cut-through)");
        if (pb.Backend is AfXdpBackend xb)
        {
            Assert.Equal("generic", xb.XdpMode);
            Assert.True(xb.SuperFramesReceived > 0 && xb.SuperFramesSent > 0, $"super-frames in {xb.SuperFramesReceived}, out {xb.SuperFramesSent}");
        }
        StatsAssert.BalancedWhenQuiet(host.Switch, "valex"); // TCP's last segments may still be in a flush
    }

    /// <summary>
    /// A VLAN-tagged TCP super-frame with a partial checksum, as a VM or container with VLAN
    /// offload hands it over (injected with a virtio-net header on the namespace end: this kernel
    /// has no 802.1Q interfaces). The attached veth takes the tag off on receive; the port puts
    /// it back and moves the header's offsets with it. Flooded to a port without a header
    /// (segmented, checksums complete, every segment tagged) and to an af_packet port, where it
    /// reaches the wire whole with the header the kernel needs.
    /// </summary>
    [NetnsFact]
    public void AVlanTaggedSuperFrameIsSegmentedForAPortWithoutHeaderAndCrossesWholeToOneWith()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.235.2.1/24");
        var b = lab.Add("b", "10.235.2.2/24");
        var sw = new ValeSwitch();
        using var ports = new PhysicalPorts(sw);
        ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        using var h = new Node(sw, "valex:h0", Macs.Unicast(0x60));
        var wireA = lab.Wire(a, vnetHeader: true);
        var wireB = lab.Wire(b, vnetHeader: true);

        const int payload = 20000, mss = 1448;
        byte[] unknown = [0x02, 0, 0, 0, 0x77, 0x01]; // flooded to h and b
        var frame = HyperNF.Tests.Switch.OffloadTests.Frame(unknown, a.MacBytes, ipv6: false, tcp: true, payload, vlans: 1);
        int l4 = 18 + 20, pay = l4 + 32;
        var hdr = HyperNF.Tests.Switch.OffloadTests.Header(VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, pay, mss, l4, 16);
        wireA.Send([.. hdr, .. frame]);

        // h: the segments, tagged, checksums complete.
        var got = new List<byte[]>();
        var until = Environment.TickCount64 + 5000;
        while (got.Count < (payload + mss - 1) / mss && Environment.TickCount64 < until)
        {
            got.AddRange(h.Receive().Select(r => r.Bytes).Where(f => f.Length > 18 && f[12] == 0x81 && f[13] == 0));
            Thread.Sleep(10);
        }
        Assert.Equal((payload + mss - 1) / mss, got.Count);
        for (int k = 0; k < got.Count; k++)
        {
            var sgm = got[k];
            Assert.Equal(100, BinaryPrimitives.ReadUInt16BigEndian(sgm.AsSpan(14)) & 0xFFF);
            Assert.True(Offload.TransportChecksumValid(sgm), $"segment {k}: TCP checksum");
            Assert.Equal(frame.AsSpan(pay + k * mss, Math.Min(mss, payload - k * mss)).ToArray(), sgm.AsSpan(pay).ToArray());
        }

        // b's wire: the super-frame whole, tag in place, the header's offsets counting the tag.
        byte[]? seen = null;
        for (int i = 0; i < 100 && seen is null; i++)
            if (wireB.Receive(50) is { } f && f.Length > 10 + 18 && f[10 + 12] == 0x81) seen = f;
        Assert.NotNull(seen);
        Assert.Equal(frame.Length, seen!.Length - 10);
        Assert.Equal(frame.AsSpan(0, 16).ToArray(), seen.AsSpan(10, 16).ToArray());
        Assert.Equal(frame.AsSpan(pay).ToArray(), seen.AsSpan(10 + pay).ToArray());
        Assert.Equal(VirtioNetHeader.GsoTcpV4, seen[1] & 0x7F);
        Assert.Equal(mss, BinaryPrimitives.ReadUInt16LittleEndian(seen.AsSpan(4)));
        Assert.Equal(l4, BinaryPrimitives.ReadUInt16LittleEndian(seen.AsSpan(6)));
        Assert.Equal(16, BinaryPrimitives.ReadUInt16LittleEndian(seen.AsSpan(8)));
        Dump(ports);
        AssertNoUserDrops(ports);
        Assert.Equal(1, pb.GetStatistics().TxPackets);
        StatsAssert.Balanced(sw, "valex");
    }

    [NetnsTheory]
    [InlineData("af_packet")]
    [InlineData("af_xdp")]
    public void MixedPortsCarryTcpBothWays(string backend)
    {
        // a (the backend under test) and b (the other one) on one bridge: one port with a
        // virtio-net header (af_packet) and one without (af_xdp in native mode: no super-frame
        // socket, so no header; its peer's TSO is off), in both directions.
        using var lab = new NetLab();
        var a = lab.Add("a", "10.235.3.1/24");
        var b = lab.Add("b", "10.235.3.2/24");
        using var host = new Host();
        using var portsA = new PhysicalPorts(host, new PhysicalPortOptions { Backend = backend, XdpMode = "native" });
        using var portsB = new PhysicalPorts(host, new PhysicalPortOptions { Backend = backend == "af_packet" ? "af_xdp" : "af_packet", XdpMode = "native" });
        var pa = portsA.Attach("valex", a.Outer);
        var pb = portsB.Attach("valex", b.Outer);
        Assert.NotEqual(pa.SwitchPort.VirtioHeaderLength, pb.SwitchPort.VirtioHeaderLength);
        long there = lab.IperfTcpBytes(a, b);
        long back = lab.IperfTcpBytes(a, b, port: 5302, reverse: true);
        Dump(portsA);
        Dump(portsB);
        Assert.True(there > MinTcpBytes && back > MinTcpBytes, $"TCP between a port with a header and one without moved {there} and {back} bytes");
        AssertNoUserDrops(portsA);
        AssertNoUserDrops(portsB);
        var bs = StatsAssert.BalancedWhenQuiet(host.Switch, "valex");
        Assert.True(bs.SegmentCopies > 0, "super-frames from the af_packet port were segmented for the af_xdp port");
    }

    [NetnsFact]
    public void TcpCrossesAnNfDomainWithoutHeaderBothWays()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.235.4.1/24");
        var b = lab.Add("b", "10.235.4.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host);
        ports.Attach("valex", a.Outer);
        ports.Attach("valey", b.Outer);
        host.Create(new DomainSpec { Name = "nf", Vifs = [new VifSpec("valex:nf0"), new VifSpec("valey:nf1")], Nf = "l2fwd" });
        long there = lab.IperfTcpBytes(a, b);
        long back = lab.IperfTcpBytes(a, b, port: 5302, reverse: true);
        Dump(ports);
        Assert.True(there > MinTcpBytes && back > MinTcpBytes, $"TCP through the l2fwd domain moved {there} and {back} bytes");
        AssertNoUserDrops(ports);
    }

    /// <summary>A UDP socket opened inside a namespace (it stays there).</summary>
    private static Socket UdpIn(string ns, IPEndPoint? bind = null)
    {
        Socket? s = null;
        var t = new Thread(() =>
        {
            using (NetNamespace.Enter(ns))
            {
                s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                if (bind is not null) s.Bind(bind);
            }
        });
        t.Start();
        t.Join();
        return s!;
    }

    private static bool UdpChecksumValid(byte[] f)
    {
        // The test's own check: IPv4 + UDP, pseudo-header, big-endian words.
        int l3 = 14, ihl = (f[l3] & 15) * 4, l4 = l3 + ihl, len = f.Length - l4;
        ulong sum = 0;
        for (int i = 0; i < 8; i += 2) sum += (ulong)(f[l3 + 12 + i] << 8 | f[l3 + 13 + i]);
        sum += 17 + (ulong)len;
        for (int i = 0; i + 1 < len; i += 2) sum += (ulong)(f[l4 + i] << 8 | f[l4 + i + 1]);
        if (len % 2 == 1) sum += (ulong)(f[l4 + len - 1] << 8);
        while (sum >> 16 != 0) sum = (sum & 0xFFFF) + (sum >> 16);
        return sum == 0xFFFF && BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(l4 + 6)) != 0;
    }

    /// <summary>
    /// With af_xdp (generic XDP on a veth, the peer's GSO on) the UDP GSO super-datagram is
    /// passed to the stack by the XDP program and taken with its GSO size by the packet socket:
    /// AF_XDP alone would hand over 4800 bytes with the datagram boundaries lost.
    /// </summary>
    [NetnsTheory]
    [InlineData("af_packet")]
    [InlineData("af_xdp")]
    public void UdpChecksumsAreCompleteAtReceiversWithoutOffloadsAndGsoDatagramsAreSegmented(string backend)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.235.5.1/24");
        var sw = new ValeSwitch();
        using var ports = new PhysicalPorts(sw, new PhysicalPortOptions { Backend = backend });
        var pa = ports.Attach("valex", a.Outer);
        using var h = new Node(sw, "valex:h0", Macs.Unicast(0x50)); // a receiver without a header: no offloads
        string hMac = string.Join(':', h.Mac.Select(x => x.ToString("x2")));
        NetLab.Must("ip", "-n", a.Ns, "neigh", "add", "10.235.5.9", "lladdr", hMac, "dev", a.Inner);

        // a -> h: plain datagrams (the namespace leaves their checksums partial) and one UDP GSO
        // super-datagram (UDP_SEGMENT 1000: 5 segments), all completed by the switch.
        using var tx = UdpIn(a.Ns);
        var to = new IPEndPoint(IPAddress.Parse("10.235.5.9"), 9999);
        int[] sizes = [1, 100, 999, 1472];
        foreach (int n in sizes) tx.SendTo(Enumerable.Range(0, n).Select(i => (byte)(i * 3 + n)).ToArray(), to);
        tx.SetRawSocketOption(17, 103, BitConverter.GetBytes(1000)); // SOL_UDP, UDP_SEGMENT
        tx.SendTo(Enumerable.Range(0, 4800).Select(i => (byte)i).ToArray(), to);
        var got = new List<byte[]>();
        var until = Environment.TickCount64 + 5000;
        while (got.Count < sizes.Length + 5 && Environment.TickCount64 < until)
        {
            got.AddRange(h.Receive().Select(r => r.Bytes).Where(f => f.Length > 42 && f[23] == 17));
            Thread.Sleep(10);
        }
        output.WriteLine($"{backend}: payloads at h: {string.Join(' ', got.Select(f => f.Length - 42))}");
        Assert.Equal(sizes.Length + 5, got.Count);
        Assert.All(got, f => Assert.True(UdpChecksumValid(f), $"UDP checksum of a {f.Length}-byte frame"));
        // The kernel keeps the order of one CPU's frames only: the sender may move between CPUs
        // (and their softirq backlogs) between two datagrams, so the plain ones are compared as
        // a set and the segments of the super-datagram in their own order.
        var segments = got.Where(f => !sizes.Contains(f.Length - 42)).ToArray();
        Assert.Equal(sizes, got.Select(f => f.Length - 42).Where(sizes.Contains).Order());
        Assert.Equal([1000, 1000, 1000, 1000, 800], segments.Select(f => f.Length - 42));
        var joined = segments.SelectMany(f => f.Skip(42)).ToArray();
        Assert.Equal(Enumerable.Range(0, 4800).Select(i => (byte)i).ToArray(), joined);
        Assert.True(sw.FindBridge("valex")!.GetStatistics().SegmentCopies >= 4);
        if (pa.Backend is AfXdpBackend xb) Assert.Equal(1, xb.SuperFramesReceived);

        // h -> a: the receiving kernel verifies the checksums (no offload metadata comes with
        // h's frames): good datagrams arrive, one with a wrong checksum does not.
        using var rx = UdpIn(a.Ns, new IPEndPoint(IPAddress.Any, 9998));
        rx.ReceiveTimeout = 3000;
        byte[] Udp(int payload, bool corrupt)
        {
            var f = new byte[42 + payload];
            a.MacBytes.CopyTo(f, 0);
            h.Mac.CopyTo(f, 6);
            f[12] = 0x08;
            f[14] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), (ushort)(28 + payload));
            f[22] = 64; f[23] = 17;
            new byte[] { 10, 235, 5, 9, 10, 235, 5, 1 }.CopyTo(f, 26);
            ulong s = 0;
            for (int i = 14; i < 34; i += 2) s += (ulong)(f[i] << 8 | f[i + 1]);
            while (s >> 16 != 0) s = (s & 0xFFFF) + (s >> 16);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(24), (ushort)~s);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(34), 9999);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(36), 9998);
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(38), (ushort)(8 + payload));
            for (int i = 0; i < payload; i++) f[42 + i] = (byte)(i + payload);
            ulong u = 0;
            for (int i = 26; i < 34; i += 2) u += (ulong)(f[i] << 8 | f[i + 1]);
            u += 17 + (ulong)(8 + payload);
            for (int i = 34; i + 1 < f.Length; i += 2) u += (ulong)(f[i] << 8 | f[i + 1]);
            if ((f.Length - 34) % 2 == 1) u += (ulong)(f[^1] << 8);
            while (u >> 16 != 0) u = (u & 0xFFFF) + (u >> 16);
            ushort c = (ushort)~u;
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(40), corrupt ? (ushort)(c ^ 0x5555) : c == 0 ? (ushort)0xFFFF : c);
            return f;
        }
        h.Send(Udp(300, corrupt: true), Udp(301, corrupt: false), Udp(1400, corrupt: false));
        var buf = new byte[2000];
        Assert.Equal(301, rx.Receive(buf));
        Assert.Equal(1400, rx.Receive(buf));
        Assert.Equal(Enumerable.Range(0, 1400).Select(i => (byte)(i + 1400)).ToArray(), buf[..1400]);
        var snmp = NetLab.Must("ip", "netns", "exec", a.Ns, "cat", "/proc/net/snmp");
        output.WriteLine(snmp);
        var udp = snmp.Split('\n').Where(l => l.StartsWith("Udp:", StringComparison.Ordinal)).ToArray();
        var names = udp[0].Split(' ');
        var values = udp[1].Split(' ');
        Assert.Equal("1", values[Array.IndexOf(names, "InCsumErrors")]); // the corrupted one, and only it
        Assert.Equal(0, pa.GetStatistics().TotalTxDrops);
        StatsAssert.Balanced(sw, "valex");
    }
}
