using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>
/// NS_BUF_CHANGED: a domain with two ports in one region forwards between two bridges by
/// swapping buffer indices between its RX slots and its TX slots, never copying a byte.
/// </summary>
public class ZeroCopyTests
{
    /// <summary>The NF's forwarding loop: every received slot's buffer goes out on the other port by swapping.</summary>
    private static int ForwardBySwapping(NetmapPort inPort, NetmapPort outPort)
    {
        inPort.RxSync();
        var rx = inPort.RxRing(0);
        var tx = outPort.TxRing(0);
        uint i = rx.Cur, o = tx.Cur;
        int n = 0;
        while (i != rx.Tail && o != tx.Tail)
        {
            ref var rs = ref rx.Slot(i);
            ref var ts = ref tx.Slot(o);
            (rs.BufIdx, ts.BufIdx) = (ts.BufIdx, rs.BufIdx);
            ts.Len = rs.Len;
            ts.Flags = (ushort)(SlotFlags.BufChanged | (rs.Flags & SlotFlags.MoreFrag));
            rs.Flags = SlotFlags.BufChanged;
            i = rx.Next(i);
            o = tx.Next(o);
            n++;
        }
        tx.Head = tx.Cur = o;
        outPort.TxSync();
        rx.Head = rx.Cur = i;
        inPort.RxSync();
        return n;
    }

    private static HashSet<uint> BuffersOf(NetmapRing a, NetmapRing b)
    {
        var set = new HashSet<uint>();
        for (uint i = 0; i < a.NumSlots; i++) Assert.True(set.Add(a.Slot(i).BufIdx), "a buffer is named twice");
        for (uint i = 0; i < b.NumSlots; i++) Assert.True(set.Add(b.Slot(i).BufIdx), "a buffer is named twice");
        return set;
    }

    [Fact]
    public void Frames_forwarded_by_swapping_buffers_arrive_intact_on_the_other_bridge()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valezc1:a", Macs.Unicast(0xA));
        using var b = new Node(sw, "valezc2:b", Macs.Unicast(0xB));
        using var nfMemory = new DomainMemory(new RegionLayout { MaxPorts = 2 }, "nf");
        using var f0 = sw.OpenPort("valezc1:f0", nfMemory);
        using var f1 = sw.OpenPort("valezc2:f1", nfMemory);
        b.Announce(); // f1 receives it; b is now known on valezc2
        f1.RxSync();
        f1.RxRing(0).Head = f1.RxRing(0).Cur = f1.RxRing(0).Tail;
        f1.RxSync();

        var original = BuffersOf(f0.RxRing(0), f1.TxRing(0));
        uint f1TxFirst = nfMemory.Layout.FirstBufferOf(f1.Area), f1TxEnd = f1TxFirst + (uint)nfMemory.Layout.SlotsPerRing;
        var rng = new Random(3);
        uint tag = 0;
        for (int round = 0; round < 12; round++)
        {
            // a sends a burst of frames, some of them MOREFRAG chains, to b (unknown on valezc1: flooded to f0)
            var frames = Enumerable.Range(0, 150).Select(_ => a.FrameTo(b.Mac, rng.Next(10) == 0 ? rng.Next(2049, 9001) : rng.Next(60, 2049), tag++)).ToArray();
            a.Send(frames);
            int slots = frames.Sum(f => (f.Length + 2047) / 2048);
            Assert.Equal(slots, ForwardBySwapping(f0, f1));
            var got = b.Receive();
            Assert.Equal(frames.Length, got.Count);
            for (int i = 0; i < frames.Length; i++) Assert.Equal(frames[i], got[i].Bytes);
        }
        // the host never rewrote a buffer index: the NF's buffers were only permuted, and they did cross over
        Assert.True(original.SetEquals(BuffersOf(f0.RxRing(0), f1.TxRing(0))));
        var rxRing = f0.RxRing(0);
        Assert.Contains(Enumerable.Range(0, (int)rxRing.NumSlots), i => rxRing.Slot((uint)i).BufIdx >= f1TxFirst && rxRing.Slot((uint)i).BufIdx < f1TxEnd);
        StatsAssert.OnlyDrops(StatsAssert.Balanced(sw, "valezc1").Drops);
        StatsAssert.OnlyDrops(StatsAssert.Balanced(sw, "valezc2").Drops);
        Assert.Equal(12 * 150, b.Stats.RxPackets);
    }
}
