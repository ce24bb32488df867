using System.Buffers.Binary;
using System.Collections;
using HyperNF.Netmap;
using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The physical port's data path on real veth pairs with the real AF_PACKET backend: frames are
/// injected onto and captured from the wire with packet sockets inside the lab namespace
/// (<see cref="WireSocket"/>), and sent or received by in-process ports on the same bridge.
/// Concurrent senders in the sender-context TX path, MOREFRAG assembly and splitting, size
/// limits both ways. Skipped, with the reason, without root or 'ip netns'. In the "Threads"
/// collection: the concurrent senders want the two cores to themselves (and would skew the
/// CPU-share tests running beside them).
/// </summary>
[Collection("Threads")]
public class PhysicalPortDataPathTests(ITestOutputHelper output)
{
    private static void WaitFor(Func<bool> cond, int ms, string what)
    {
        var until = Environment.TickCount64 + ms;
        while (!cond())
        {
            if (Environment.TickCount64 > until) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(5);
        }
    }

    /// <summary>A frame whose payload starts with <paramref name="tag"/> and continues with bytes derived from it.</summary>
    private static byte[] Tagged(byte[] dst, byte[] src, int length, uint tag)
    {
        var f = TestFrames.Make(dst, src, length, tag);
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(14), tag);
        return f;
    }

    /// <summary>The same frame with an 802.1Q tag (VID <paramref name="vid"/>) after the MAC addresses.</summary>
    private static byte[] WithVlan(byte[] frame, ushort vid)
    {
        var f = new byte[frame.Length + 4];
        frame.AsSpan(0, 12).CopyTo(f);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x8100);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(14), vid);
        frame.AsSpan(12).CopyTo(f.AsSpan(16));
        return f;
    }

    [NetnsTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void ConcurrentSendersNeverLeaveADeliveredFrameBehind(bool drvdom)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.10.1/24");
        byte[] wireMac = a.MacBytes;
        var sw = new ValeSwitch();
        // The driver thread checks the link only every 10 s and otherwise wakes for frames from
        // the wire (none come during the run) or, with drvdom_txsync, for the senders' kicks. In
        // the hypercall model only the senders' own try-lock protocol can have transmitted what
        // they delivered by the time they return.
        using var ports = new PhysicalPorts(sw, new PhysicalPortOptions { IdleTimeoutMs = 10_000 }) { DriverDomainTxSync = drvdom };
        var port = ports.Attach("valex", a.Outer);
        var wire = lab.Wire(a);
        // Let the bridge learn the wire end's MAC, so the senders' frames go to this port only.
        wire.Send(TestFrames.Make(Macs.Broadcast, wireMac, 60, 0));
        WaitFor(() => sw.FindBridge("valex")!.Forwarding.Entries().Any(e => ForwardingTable.FormatMac(e.Mac) == a.Mac), 5000, "the bridge to learn the wire end's MAC");

        const int senders = 4, rounds = 5000, burst = 1, perSender = rounds * burst;
        var nodes = Enumerable.Range(0, senders).Select(i => new Node(sw, $"valex:s{i}", Macs.Unicast(i + 1))).ToArray();
        long vethDroppedBefore = NetLab.Counter(a.Outer, "tx_dropped");
        long txBefore = port.GetStatistics().TxPackets;

        // The capture checks every frame of ours byte for byte and remembers which ones came.
        var seen = Enumerable.Range(0, senders).Select(_ => new BitArray(perSender)).ToArray();
        long captured = 0, duplicates = 0, corrupt = 0;
        string? firstCorrupt = null;
        Exception? captureError = null;
        var stopCapture = new ManualResetEventSlim();
        var capture = new Thread(() =>
        {
            try
            {
                var buf = new byte[65540];
                while (!stopCapture.IsSet)
                {
                    int n = wire.ReceiveInto(buf, 50);
                    if (n < 0 || !WireSocket.IsTestFrame(buf.AsSpan(0, n))) continue;
                    var f = buf.AsSpan(0, n);
                    uint tag = n >= 18 ? BinaryPrimitives.ReadUInt32BigEndian(f[14..]) : uint.MaxValue;
                    int sender = (int)(tag >> 24), k = (int)(tag & 0xFFFFFF);
                    bool ok = sender < senders && k < perSender && n == 60 + k % 200 &&
                              f.SequenceEqual(Tagged(wireMac, Macs.Unicast(sender + 1), n, tag));
                    if (!ok)
                    {
                        firstCorrupt ??= Convert.ToHexString(f[..Math.Min(n, 32)]);
                        Interlocked.Increment(ref corrupt);
                        continue;
                    }
                    if (seen[sender][k]) Interlocked.Increment(ref duplicates);
                    seen[sender][k] = true;
                    Interlocked.Increment(ref captured);
                }
            }
            catch (Exception e)
            {
                captureError = e;
            }
        }) { IsBackground = true, Name = "wire-capture" };
        capture.Start();
        int go = -1, done = 0;
        bool abort = false;
        Exception? senderError = null;
        var senderThreads = new List<Thread>();
        try
        {
            // Rounds: the senders start a burst together (so they contend for the transmit lock
            // and finish close together), then the check runs while they wait for the next one.
            // A delivered frame left behind at the end of any round fails it.
            var threads = nodes.Select((node, i) => new Thread(() =>
            {
                try
                {
                    for (int r = 0; r < rounds; r++)
                    {
                        // Spin (not block) so that every sender starts the round at once.
                        while (Volatile.Read(ref go) < r)
                        {
                            if (Volatile.Read(ref abort)) return;
                            Thread.Yield();
                        }
                        for (int j = 0; j < burst; j++)
                        {
                            int k = r * burst + j;
                            node.Send(Tagged(wireMac, node.Mac, 60 + k % 200, (uint)(i << 24 | k)));
                        }
                        Interlocked.Increment(ref done);
                    }
                }
                catch (Exception e)
                {
                    senderError = e;
                    Volatile.Write(ref abort, true);
                }
            }) { IsBackground = true, Name = $"sender-{i}" }).ToList();
            senderThreads.AddRange(threads);
            foreach (var t in threads) t.Start();
            long delivered = 0;
            PhysicalPortStatistics s = port.GetStatistics();
            for (int r = 0; r < rounds; r++)
            {
                Volatile.Write(ref go, r);
                while (Volatile.Read(ref done) < (r + 1) * senders && !Volatile.Read(ref abort)) Thread.Yield();
                Assert.Null(senderError);
                delivered = port.SwitchPort.GetStatistics().RxPackets;
                s = port.GetStatistics();
                if (drvdom && s.TxPackets + s.TotalTxDrops != delivered)
                {
                    // Woken by the senders, not by its 10 s timer.
                    long d = delivered;
                    WaitFor(() => port.GetStatistics() is var x && x.TxPackets + x.TotalTxDrops == d, 5000, $"the driver thread to transmit round {r}");
                    s = port.GetStatistics();
                }
                // Hypercall model: every sender's TxSync has returned, so every delivered frame has
                // been handed to the kernel or counted already: no waiting.
                Assert.True(delivered == s.TxPackets + s.TotalTxDrops,
                    $"round {r}: the switch delivered {delivered} frames, the port sent {s.TxPackets} and dropped {s.TotalTxDrops} [{string.Join(", ", PortDropReasons.All.Select(x => $"{x.Key()}={s.TxDrop(x)}"))}]");
            }
            foreach (var t in threads) t.Join();
            // The link was up and every frame fitted: the only acceptable loss is a full kernel ring.
            Assert.Equal(0, s.TotalTxDrops - s.TxDrop(PortDropReason.KernelRingFull));
            long ringFull = port.SwitchPort.GetStatistics().Drop(DropReason.RingFull);
            Assert.Equal(senders * perSender, delivered + ringFull);
            Assert.True(delivered > 0, "no frame reached the port");
            StatsAssert.Balanced(sw, "valex");
            if (drvdom) Assert.Equal(0, s.TxRoundsInSender);
            else Assert.True(s.TxRoundsInSender > 0);

            // On the wire: every frame handed to the kernel arrived intact and once, or the kernel
            // counted it (veth drop, or the capture socket's buffer full).
            long sent = s.TxPackets - txBefore;
            long Accounted() => Interlocked.Read(ref captured) + wire.KernelDrops + (NetLab.Counter(a.Outer, "tx_dropped") - vethDroppedBefore);
            WaitFor(() => captureError is not null || Accounted() >= sent, 60_000, "the capture to see every transmitted frame");
            Thread.Sleep(200); // anything extra (a duplicate) would come now
            output.WriteLine($"delivered {delivered}, ring full {ringFull}, sent {sent}, captured {captured}, capture drops {wire.KernelDrops}, " +
                             $"veth drops {NetLab.Counter(a.Outer, "tx_dropped") - vethDroppedBefore}, kernel ring full {s.TxDrop(PortDropReason.KernelRingFull)}, " +
                             $"rounds in sender {s.TxRoundsInSender}, in driver {s.TxRoundsInDriver}, kicks {s.TxKicks}");
            Assert.Null(captureError);
            Assert.True(corrupt == 0, $"{corrupt} frames arrived corrupted (first: {firstCorrupt})");
            Assert.Equal(0, duplicates);
            Assert.Equal(sent, Accounted());
        }
        finally
        {
            Volatile.Write(ref abort, true);
            foreach (var t in senderThreads) t.Join();
            stopCapture.Set();
            capture.Join();
            foreach (var n in nodes) n.Dispose();
        }
    }

    [NetnsFact]
    public void ChainsAreJoinedOnTransmitSplitOnReceiveAndFramesOverTheMtuAreDropped()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.11.1/24", mtu: 9000);
        byte[] wireMac = a.MacBytes;
        var sw = new ValeSwitch();
        using var ports = new PhysicalPorts(sw, new PhysicalPortOptions { IdleTimeoutMs = 20 });
        var port = ports.Attach("valex", a.Outer);
        Assert.Equal(9000, port.Backend.Mtu);
        var wire = lab.Wire(a);
        using var h = new Node(sw, "valex:h0", Macs.Unicast(0x100));
        h.Announce();
        Assert.True(wire.NextTestFrame(5000) is { } announce && announce.AsSpan(0, 6).SequenceEqual(Macs.Broadcast), "the announcement reaches the wire");
        wire.Send(TestFrames.Make(Macs.Broadcast, wireMac, 60, 1));
        WaitFor(() => h.Receive().Count > 0, 5000, "the wire end's announcement at the host port");

        // TX: a 9014-byte frame leaves the host port as a 5-slot chain and goes out whole.
        var jumbo = TestFrames.Make(wireMac, h.Mac, 9014, 3);
        long txBefore = port.GetStatistics().TxPackets;
        h.Send(jumbo);
        Assert.Equal(txBefore + 1, port.GetStatistics().TxPackets); // sent in the sender's TxSync
        Assert.Equal(jumbo, wire.NextTestFrame(5000));

        // RX: a 6000-byte frame from the wire reaches the host port as a 3-slot chain.
        var fromWire = TestFrames.Make(h.Mac, wireMac, 6000, 5);
        wire.Send(fromWire);
        List<Received> got = [];
        WaitFor(() => (got = h.Receive()).Count > 0, 5000, "the chain at the host port");
        var chain = Assert.Single(got);
        Assert.Equal(3, chain.Slots.Length);
        Assert.Equal([2048, 2048, 1904], chain.Slots.Select(x => (int)x.Len));
        Assert.Equal(fromWire, chain.Bytes);

        // The attached end's MTU drops to 1500 while attached (the namespace end keeps 9000):
        // over the MTU is now a counted drop both ways; a VLAN tag may add 4 bytes.
        NetLab.Must("ip", "link", "set", a.Outer, "mtu", "1500");
        WaitFor(() => port.Backend.Mtu == 1500, 5000, "the port to read the new MTU");
        var s0 = port.GetStatistics();
        var untagged = TestFrames.Make(wireMac, h.Mac, 1515, 7);
        var tagged = WithVlan(TestFrames.Make(wireMac, h.Mac, 1514, 8), vid: 5);
        h.Send(untagged, tagged);
        var s1 = port.GetStatistics();
        Assert.Equal(1, s1.TxDrop(PortDropReason.Oversize) - s0.TxDrop(PortDropReason.Oversize));
        Assert.Equal(1, s1.TxPackets - s0.TxPackets);
        Assert.Equal(tagged, wire.NextTestFrame(5000)); // the first of ours on the wire: the 1515-byte one never went

        // From the wire: the kernel lets in up to MTU + 18 bytes whatever the frame; the port
        // drops an untagged 1515-byte frame and passes a tagged 1518-byte one (tag put back).
        wire.Send(TestFrames.Make(h.Mac, wireMac, 1515, 9));
        var taggedIn = WithVlan(TestFrames.Make(h.Mac, wireMac, 1514, 10), vid: 6);
        wire.Send(taggedIn);
        WaitFor(() => (got = h.Receive()).Count > 0, 5000, "the tagged frame at the host port");
        Assert.Equal(taggedIn, Assert.Single(got).Bytes);
        var s2 = port.GetStatistics();
        Assert.Equal(1, s2.RxDrop(PortDropReason.Oversize) - s0.RxDrop(PortDropReason.Oversize));
        Assert.Contains($"ip link set {a.Outer} mtu", port.LastError); // the fix: the MTUs must agree

        // Every frame the switch delivered to the port was sent or counted.
        long delivered = port.SwitchPort.GetStatistics().RxPackets;
        Assert.Equal(delivered, s2.TxPackets + s2.TotalTxDrops);
        StatsAssert.Balanced(sw, "valex");
    }

    /// <summary>
    /// Cut-through: frames from one physical port to another go to the kernel straight from the
    /// receiving port's slots (one copy fewer), a domain's frames never do, and when the two
    /// paths mix (a domain sends to the same port at the same time, so the transmit lock is
    /// contended and frames wait in the port's RX ring) the frames of the wire-to-wire stream
    /// still leave in the order they came, intact, and every delivered frame is sent or counted.
    /// </summary>
    [NetnsFact]
    public void FramesBetweenPhysicalPortsCutThroughInOrderWhileADomainSendsToTheSamePort()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.12.1/24");
        var b = lab.Add("b", "10.231.12.2/24");
        var sw = new ValeSwitch();
        // A thread per port: b's can be kept out of its rounds while a's delivers.
        using var ports = new PhysicalPorts(sw, new PhysicalPortOptions { IdleTimeoutMs = 10_000, DriverPerBridge = false, KernelFastPath = false });
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        var wireA = lab.Wire(a);
        var wireB = lab.Wire(b);
        using var h = new Node(sw, "valex:h0", Macs.Unicast(0x200));
        wireB.Send(TestFrames.Make(Macs.Broadcast, b.MacBytes, 60, 0)); // the bridge learns b's end
        WaitFor(() => sw.FindBridge("valex")!.Forwarding.Entries().Any(e => ForwardingTable.FormatMac(e.Mac) == b.Mac), 5000, "the bridge to learn b's MAC");

        // A domain's frames are copied into the port's ring, never taken in place.
        for (int k = 0; k < 100; k++) h.Send(Tagged(b.MacBytes, h.Mac, 60 + k, 0x0100_0000u | (uint)k));
        var s0 = pb.GetStatistics();
        Assert.True(s0.TxPackets >= 100, $"the domain's frames were sent ({s0.TxPackets})");
        Assert.Equal(0, s0.TxCutThrough);
        for (int k = 0; k < 100; k++) Assert.True(wireB.NextTestFrame(5000) is { } f && f.AsSpan(6, 6).SequenceEqual(h.Mac), $"the domain's frame {k} at b's end");

        // Frames of the stream wait in b's RX ring (its transmit lock held, as a re-bind holds it,
        // and b's driver thread kept out of its rounds); the next frames of the stream, which find
        // the lock free, must not overtake them.
        Assert.NotSame(pa.Driver, pb.Driver);
        pb.Driver.HoldRounds();
        try
        {
            pb.AcquireTransmitLock();
            long delivered0 = pb.SwitchPort.GetStatistics().RxPackets;
            for (uint k = 0; k < 10; k++) wireA.Send(Tagged(b.MacBytes, a.MacBytes, 100, 0x0300_0000u | k));
            WaitFor(() => pb.SwitchPort.GetStatistics().RxPackets >= delivered0 + 10, 5000, "the held frames in b's RX ring");
            Assert.Equal(s0.TxPackets, pb.GetStatistics().TxPackets);
            pb.ReleaseTransmitLock();
            for (uint k = 10; k < 20; k++) wireA.Send(Tagged(b.MacBytes, a.MacBytes, 100, 0x0300_0000u | k));
            for (uint k = 0; k < 20; k++)
            {
                var f = wireB.NextTestFrame(5000);
                Assert.True(f is not null, $"frame {k} of the held burst at b's end");
                Assert.True(Tagged(b.MacBytes, a.MacBytes, 100, 0x0300_0000u | k).AsSpan().SequenceEqual(f),
                    $"frame {k} of the held burst: got {Convert.ToHexString(f.AsSpan(14, 4))}");
            }
        }
        finally
        {
            pb.Driver.ReleaseRounds();
        }

        // A capture on b sees what the switch delivers to it: frames are then copied into the ring
        // (where the capture takes them), not cut through.
        long cutBefore = pb.GetStatistics().TxCutThrough;
        var tap = pb.SwitchPort.OpenCapture(CaptureDirection.In);
        try
        {
            for (uint k = 0; k < 5; k++) wireA.Send(Tagged(b.MacBytes, a.MacBytes, 100, 0x0400_0000u | k));
            for (uint k = 0; k < 5; k++) Assert.Equal(Tagged(b.MacBytes, a.MacBytes, 100, 0x0400_0000u | k), wireB.NextTestFrame(5000));
            Assert.True(tap.Captured >= 5, $"the capture saw {tap.Captured} frames"); // the 5 (and whatever else the namespace sent)
            Assert.Equal(cutBefore, pb.GetStatistics().TxCutThrough);
        }
        finally
        {
            pb.SwitchPort.CloseCapture(tap);
        }

        const int count = 20_000;
        long vethDropsBefore = NetLab.Counter(b.Outer, "tx_dropped"), rxBefore = pa.GetStatistics().RxPackets;
        long ringFullBefore = pb.SwitchPort.GetStatistics().Drop(DropReason.RingFull), txDropsBefore = pb.GetStatistics().TotalTxDrops;
        long outOfOrder = 0, corrupt = 0, fromA = 0;
        string? firstBad = null;
        var stop = new ManualResetEventSlim();
        Exception? captureError = null;
        var capture = new Thread(() =>
        {
            try
            {
                var buf = new byte[65540];
                long last = -1;
                while (!stop.IsSet)
                {
                    int n = wireB.ReceiveInto(buf, 50);
                    if (n < 18 || !WireSocket.IsTestFrame(buf.AsSpan(0, n)) || !buf.AsSpan(6, 6).SequenceEqual(a.MacBytes)) continue;
                    uint tag = BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(14));
                    if (n != 60 + (int)(tag % 1400) || !buf.AsSpan(0, n).SequenceEqual(Tagged(b.MacBytes, a.MacBytes, n, tag)))
                    {
                        firstBad ??= $"frame {tag}: {n} bytes {Convert.ToHexString(buf, 0, Math.Min(n, 24))}";
                        corrupt++;
                        continue;
                    }
                    if (tag <= last) { outOfOrder++; firstBad ??= $"frame {tag} after {last}"; }
                    last = tag;
                    fromA++;
                }
            }
            catch (Exception e)
            {
                captureError = e;
            }
        }) { IsBackground = true, Name = "wire-b-capture" };
        capture.Start();
        // The domain keeps sending to the same port meanwhile: its transmissions hold the lock
        // and leave frames in the ring, where the stream's frames must then wait their turn.
        bool done = false;
        var domain = new Thread(() =>
        {
            for (uint k = 0; !Volatile.Read(ref done); k++) h.Send(Tagged(b.MacBytes, h.Mac, 60 + (int)(k % 200), 0x0200_0000u | (k & 0xFFFFFF)));
        }) { IsBackground = true, Name = "domain-sender" };
        domain.Start();
        try
        {
            for (uint k = 0; k < count; k++) wireA.Send(Tagged(b.MacBytes, a.MacBytes, 60 + (int)(k % 1400), k));
            Thread.Sleep(200);
        }
        finally
        {
            Volatile.Write(ref done, true);
            domain.Join();
        }
        long received = pa.GetStatistics().RxPackets - rxBefore;
        // Where a frame of the stream may end up, besides b's end: b's RX ring full (the domain
        // fills it too; counted by the switch), a port drop, the veth's or the capture's drops.
        long Accounted() => Interlocked.Read(ref fromA) + wireB.KernelDrops + NetLab.Counter(b.Outer, "tx_dropped") - vethDropsBefore
                            + pb.SwitchPort.GetStatistics().Drop(DropReason.RingFull) - ringFullBefore + pb.GetStatistics().TotalTxDrops - txDropsBefore;
        for (var until = Environment.TickCount64 + 30_000; Environment.TickCount64 < until && captureError is null;)
        {
            if (Accounted() >= received) break; // the stream is at b's end, or counted
            Thread.Sleep(5);
        }
        Thread.Sleep(200);
        stop.Set();
        capture.Join();
        var sa = pa.GetStatistics();
        var sb = pb.GetStatistics();
        output.WriteLine($"stream: {received} taken in at a, ring full at b {pb.SwitchPort.GetStatistics().Drop(DropReason.RingFull) - ringFullBefore}; a: rx {sa.RxPackets} drops [{string.Join(',', sa.RxDrops)}]; b: tx {sb.TxPackets} cut-through {sb.TxCutThrough} drops [{string.Join(',', sb.TxDrops)}] " +
                         $"rounds in sender {sb.TxRoundsInSender}; at b's end {fromA} of the stream, capture drops {wireB.KernelDrops}");
        Assert.Null(captureError);
        Assert.True(corrupt == 0 && outOfOrder == 0, $"{corrupt} corrupt, {outOfOrder} out of order (first: {firstBad})");
        Assert.True(sb.TxCutThrough > count / 20, $"the stream's frames cut through ({sb.TxCutThrough} of {received})");
        Assert.True(sb.TxCutThrough <= sa.RxPackets, "only frames from the other physical port cut through");
        Assert.True(Accounted() >= received, $"every frame a took in reached b's end or was counted ({fromA} of {received}, the rest: {Accounted() - fromA})");
        long delivered = pb.SwitchPort.GetStatistics().RxPackets;
        Assert.Equal(delivered, sb.TxPackets + sb.TotalTxDrops);
        StatsAssert.Balanced(sw, "valex");
    }
}
