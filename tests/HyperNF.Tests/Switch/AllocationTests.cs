using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>The data path allocates nothing once warm (architecture §7).</summary>
public class AllocationTests
{
    /// <summary>
    /// One round: a queues a mix of frames (unicast, broadcast, a 3-slot chain, a runt, a bad
    /// buffer index, a hairpin, an unknown destination) and syncs; b receives and releases. c never releases, so after a
    /// while every flood to it is a ring-full drop: that path is measured too.
    /// </summary>
    private static void Round(NetmapPort a, NetmapPort b, byte[][] dsts, byte[] src, uint badIdx)
    {
        var ring = a.TxRing(0);
        uint first = a.Memory.Layout.FirstBufferOf(a.Area);
        uint cur = ring.Cur;
        for (int i = 0; i < dsts.Length; i++)
        {
            ref var s = ref ring.Slot(cur);
            s.BufIdx = first + cur; // the slot's own buffer
            var buf = ring.Buffer(s);
            dsts[i].CopyTo(buf);
            src.CopyTo(buf[6..]);
            if (i == 6) s.BufIdx = badIdx;
            s.Len = i switch { 5 => 8, 2 or 3 => 1500, _ => 60 };
            s.Flags = i is 2 or 3 ? SlotFlags.MoreFrag : (ushort)0;
            cur = ring.Next(cur);
        }
        ring.Head = ring.Cur = cur;
        a.TxSync();
        b.RxSync();
        var rx = b.RxRing(0);
        rx.Head = rx.Cur = rx.Tail;
        b.RxSync();
        b.Poll(PollEvents.In | PollEvents.Out, 0);
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(3)]
    public void Steady_state_TxSync_and_RxSync_allocate_nothing(int batch)
    {
        var sw = new ValeSwitch { BridgeBatch = batch };
        using var a = new Node(sw, "valealloc:a", Macs.Unicast(1));
        using var b = new Node(sw, "valealloc:b", Macs.Unicast(2));
        using var c = new Node(sw, "valealloc:c", Macs.Unicast(3));
        b.Announce();
        a.Drain();
        // unicast to b, broadcast, a 3-slot chain to b, a runt, a bad buffer index, a hairpin, unknown unicast, b
        byte[][] dsts = [b.Mac, Macs.Broadcast, b.Mac, b.Mac, b.Mac, b.Mac, b.Mac, a.Mac, Macs.Unicast(0x77), b.Mac];
        uint badIdx = a.Memory.BufferCount + 5;

        for (int i = 0; i < 3000; i++) Round(a.Port, b.Port, dsts, a.Mac, badIdx); // warm up (tiered JIT, first-touch)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5000; i++) Round(a.Port, b.Port, dsts, a.Mac, badIdx);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);

        // the rounds really went through every path
        var s = StatsAssert.Balanced(sw, "valealloc");
        Assert.Equal(5 * 8000, b.Stats.RxPackets);
        Assert.True(c.Stats.Drop(DropReason.RingFull) > 0);
        Assert.True(s.Drops[(int)DropReason.Runt] > 0 && s.Drops[(int)DropReason.BadBufferIndex] > 0 && s.Drops[(int)DropReason.Hairpin] > 0);
        Assert.True(s.FloodCopies > 0);
    }
}
