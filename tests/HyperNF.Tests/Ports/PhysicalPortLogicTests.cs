using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The physical port's own logic against an in-memory backend (no root needed): concurrent
/// senders in the sender-context TX path, MOREFRAG assembly and splitting, size limits,
/// link states and detach.
/// </summary>
public class PhysicalPortLogicTests
{
    private static readonly byte[] FakeMac = [0x02, 0, 0, 0, 0, 0xFA];
    private static readonly byte[] Broadcast = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    private static void WaitFor(Func<bool> cond, int ms, string what)
    {
        var until = Environment.TickCount64 + ms;
        while (!cond())
        {
            if (Environment.TickCount64 > until) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(1);
        }
    }

    private static byte[] Frame(byte[] dst, byte[] src, int len, int seed, ushort etherType = 0x0800)
    {
        var f = new byte[len];
        for (int i = 14; i < len; i++) f[i] = (byte)(i * 7 + seed);
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        f[12] = (byte)(etherType >> 8);
        f[13] = (byte)etherType;
        return f;
    }

    private static byte[] Mac(int i) => [0x02, 0, 0, 0, (byte)(i >> 8), (byte)i];

    /// <summary>Queues one frame (a MOREFRAG chain when it is over one buffer) on TX ring 0, without syncing.</summary>
    private static void Queue(NetmapPort port, byte[] frame)
    {
        var ring = port.TxRing(0);
        uint cur = ring.Cur;
        for (int off = 0; off < frame.Length; off += ring.BufferSize)
        {
            int n = Math.Min(ring.BufferSize, frame.Length - off);
            ref var slot = ref ring.Slot(cur);
            frame.AsSpan(off, n).CopyTo(ring.Buffer(slot));
            slot.Len = (ushort)n;
            slot.Flags = off + n < frame.Length ? SlotFlags.MoreFrag : (ushort)0;
            cur = ring.Next(cur);
        }
        ring.Head = ring.Cur = cur;
    }

    private static (PhysicalPorts Ports, PhysicalPort Port, FakeBackend Fake) Attach(ValeSwitch sw, int mtu = 1500, bool drvdom = false, bool lazyDriver = false)
    {
        var fake = new FakeBackend { Mtu = mtu, MaxWaitMs = lazyDriver ? 60_000 : 5 };
        // Let the bridge learn the interface's MAC (queued first: a lazy driver would sleep on it).
        fake.ToReceive.Enqueue(Frame(Broadcast, FakeMac, 60, 0));
        var ports = new PhysicalPorts(sw, new PhysicalPortOptions { BackendFactory = (_, _) => fake, IdleTimeoutMs = lazyDriver ? 10_000 : 5 })
        {
            DriverDomainTxSync = drvdom,
        };
        var port = ports.Attach("valex", fake.InterfaceName);
        WaitFor(() => port.GetStatistics().RxPackets == 1, 2000, "the announce frame");
        return (ports, port, fake);
    }

    private static (DomainMemory Memory, NetmapPort Port) HostPort(ValeSwitch sw, string name)
    {
        var mem = new DomainMemory(new RegionLayout { MaxPorts = 1 }, name);
        return (mem, sw.OpenPort(name, mem));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ConcurrentSendersNeverLeaveADeliveredFrameBehind(bool drvdom)
    {
        var sw = new ValeSwitch();
        // The driver thread sleeps long (unless woken in drvdom mode), so in the hypercall model
        // only the senders' own try-lock protocol can have transmitted what they delivered.
        var (ports, port, fake) = Attach(sw, drvdom: drvdom, lazyDriver: true);
        using var _ = ports;
        const int senders = 4, perSender = 20_000, batch = 1;
        var hosts = Enumerable.Range(0, senders).Select(i => HostPort(sw, $"valex:s{i}")).ToArray();
        var threads = hosts.Select((h, i) => new Thread(() =>
        {
            for (int k = 0; k < perSender; k += batch)
            {
                for (int j = 0; j < batch; j++) Queue(h.Port, Frame(FakeMac, Mac(i + 1), 60 + (k + j) % 200, k + j));
                h.Port.TxSync();
            }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();

        long delivered = port.SwitchPort.GetStatistics().RxPackets;
        if (drvdom) WaitFor(() => fake.SentCount == delivered, 5000, "the driver thread to transmit everything");
        // Hypercall model: every sender's TxSync has returned, so every delivered frame is out already.
        Assert.Equal(delivered, fake.SentCount);
        var s = port.GetStatistics();
        Assert.Equal(delivered, s.TxPackets);
        Assert.Equal(0, s.TotalTxDrops);
        Assert.Equal(0, fake.Overlaps);
        long ringFull = port.SwitchPort.GetStatistics().Drop(DropReason.RingFull);
        Assert.Equal(senders * perSender, delivered + ringFull);
        Assert.Equal(0, sw.FindBridge("valex")!.GetStatistics().Unaccounted);
        if (drvdom) Assert.Equal(0, s.TxRoundsInSender);
        else Assert.True(s.TxRoundsInSender > 0);
        foreach (var h in hosts) { h.Port.Dispose(); h.Memory.Dispose(); }
    }

    [Fact]
    public void ChainsAreJoinedOnTransmitSplitOnReceiveAndFramesOverTheMtuAreDropped()
    {
        var sw = new ValeSwitch();
        var (ports, port, fake) = Attach(sw, mtu: 9000);
        using var _ = ports;
        var (mem, h) = HostPort(sw, "valex:h0");
        byte[] hMac = Mac(0x100);

        // TX: a 9014-byte frame leaves the host port as a 5-slot chain and goes out whole.
        var jumbo = Frame(FakeMac, hMac, 9014, 3);
        Queue(h, jumbo);
        h.TxSync();
        Assert.Single(fake.Sent);
        Assert.Equal(jumbo, fake.Sent[0]);

        // RX: a 6000-byte frame from the wire reaches the host port as a 3-slot chain.
        var fromWire = Frame(hMac, FakeMac, 6000, 5);
        fake.ToReceive.Enqueue(fromWire);
        var rx = h.RxRing(0);
        WaitFor(() => { h.RxSync(); return rx.Space >= 3; }, 2000, "the chain at the host port");
        var got = new List<byte>();
        uint cur = rx.Cur;
        ushort flags;
        int slots = 0;
        do
        {
            ref var slot = ref rx.Slot(cur);
            flags = slot.Flags;
            got.AddRange(rx.Frame(slot).ToArray());
            cur = rx.Next(cur);
            slots++;
        } while ((flags & SlotFlags.MoreFrag) != 0);
        rx.Head = rx.Cur = cur;
        Assert.Equal(3, slots);
        Assert.Equal(fromWire, got.ToArray());

        // Over the MTU, both ways: counted, not sent.
        fake.Mtu = 1500;
        Queue(h, Frame(FakeMac, hMac, 1515, 1));
        Queue(h, Frame(FakeMac, hMac, 1518, 1, etherType: 0x8100)); // a VLAN tag may add 4 bytes
        h.TxSync();
        fake.ToReceive.Enqueue(Frame(hMac, FakeMac, 3000, 1));
        WaitFor(() => port.GetStatistics().RxDrop(PortDropReason.Oversize) == 1, 2000, "the RX oversize drop");
        var s = port.GetStatistics();
        Assert.Equal(1, s.TxDrop(PortDropReason.Oversize));
        Assert.Equal(2, fake.SentCount);
        Assert.Contains("ethtool -K", port.LastError);
        h.Dispose();
        mem.Dispose();
    }

    [Fact]
    public void LinkDownIsCountedAndARemovedInterfaceTakesThePortDownUntilDetach()
    {
        var sw = new ValeSwitch();
        var (ports, port, fake) = Attach(sw);
        var (mem, h) = HostPort(sw, "valex:h0");

        fake.Link = LinkState.Down;
        WaitFor(() => port.Link == LinkState.Down, 2000, "link down");
        Queue(h, Frame(FakeMac, Mac(1), 100, 0));
        h.TxSync();
        Assert.Equal(1, port.GetStatistics().TxDrop(PortDropReason.LinkDown));

        fake.Link = LinkState.Up;
        WaitFor(() => port.Link == LinkState.Up, 2000, "link up");
        Queue(h, Frame(FakeMac, Mac(1), 100, 0));
        h.TxSync();
        Assert.Equal(1, fake.SentCount);

        fake.Link = LinkState.Removed;
        WaitFor(() => port.Link == LinkState.Removed, 2000, "removal");
        Assert.False(port.SwitchPort.Up);
        Assert.Contains("was removed while attached", port.LastError);
        Queue(h, Frame(FakeMac, Mac(1), 100, 0));
        h.TxSync(); // the switch now drops it as port-down
        Assert.Equal(1, ValeSwitch.HostPortOf(h)!.GetStatistics().Drop(DropReason.PortDown));

        Assert.True(ports.Detach("valex:fake0"));
        Assert.True(fake.Disposed);
        Assert.True(port.IsDetached);
        Assert.Single(sw.FindBridge("valex")!.Ports);
        h.Dispose();
        mem.Dispose();
        ports.Dispose();
    }
}
