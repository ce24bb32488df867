using HyperNF.Memory;
using HyperNF.Netmap;
using Xunit;

namespace HyperNF.Tests.Netmap;

/// <summary>
/// netmap pipes (NetmapPipe) on their own: zero-copy slot swaps between the two ends, a full
/// receiver stopping the sender without a loss, and hostile slot fields and ring indices counted
/// and repaired, never followed.
/// </summary>
public sealed class NetmapPipeTests
{
    private static (DomainMemory Mem, NetmapPipe Pipe, NetmapPort M, NetmapPort S) Make()
    {
        var mem = new DomainMemory(new RegionLayout { MaxPorts = 3 });
        var pipe = new NetmapPipe(mem, "valepipe:p", "0");
        var m = pipe.Master.Bind(new WakeWord());
        var s = pipe.Slave.Bind(new WakeWord());
        return (mem, pipe, m, s);
    }

    private static void Dispose((DomainMemory Mem, NetmapPipe Pipe, NetmapPort M, NetmapPort S) t)
    {
        t.M.Dispose();
        t.S.Dispose();
        Assert.True(t.Pipe.Release());
        t.Mem.Dispose();
    }

    private static int Send(NetmapPort p, int count, uint seq0)
    {
        var tx = p.TxRing(0);
        uint cur = tx.Cur;
        int n = 0;
        for (; n < count && tx.Space > 0; n++)
        {
            ref var slot = ref tx.Slot(cur);
            BitConverter.TryWriteBytes(tx.Buffer(slot.BufIdx), seq0 + (uint)n);
            slot.Len = 60;
            slot.Flags = 0;
            cur = tx.Next(cur);
            tx.Head = tx.Cur = cur;
        }
        p.TxSync();
        return n;
    }

    private static List<(uint Buf, uint Seq)> Receive(NetmapPort p)
    {
        var rx = p.RxRing(0);
        p.RxSync();
        var got = new List<(uint, uint)>();
        uint cur = rx.Cur;
        while (cur != rx.Tail)
        {
            ref var slot = ref rx.Slot(cur);
            Assert.Equal(60, slot.Len);
            Assert.NotEqual(0, slot.Flags & SlotFlags.BufChanged);
            got.Add((slot.BufIdx, BitConverter.ToUInt32(rx.Buffer(slot.BufIdx))));
            cur = rx.Next(cur);
        }
        rx.Head = rx.Cur = cur;
        p.RxSync();
        return got;
    }

    [Fact]
    public void TxSync_SwapsSlotsIntoThePeer_ZeroCopy_BothWays()
    {
        var t = Make();
        try
        {
            var tx = t.M.TxRing(0);
            var sent = Enumerable.Range(0, 10).Select(i => tx.Slot((uint)i).BufIdx).ToArray();
            Assert.Equal(10, Send(t.M, 10, 100));
            // The sender's slots now hold the receiver's free buffers, marked changed.
            for (uint i = 0; i < 10; i++)
            {
                Assert.DoesNotContain(tx.Slot(i).BufIdx, sent);
                Assert.NotEqual(0, tx.Slot(i).Flags & SlotFlags.BufChanged);
            }
            Assert.Equal(tx.NumSlots - 1, RingRules.Distance(tx.Head, tx.Tail, tx.NumSlots) + 0u); // all slots the user's again
            var got = Receive(t.S);
            Assert.Equal(sent, got.Select(g => g.Buf).ToArray()); // the very buffers: no copy
            Assert.Equal(Enumerable.Range(100, 10).Select(i => (uint)i), got.Select(g => g.Seq));
            // and back
            Assert.Equal(5, Send(t.S, 5, 7));
            Assert.Equal(Enumerable.Range(7, 5).Select(i => (uint)i), Receive(t.M).Select(g => g.Seq));
            Assert.Equal((10L, 5L), t.Pipe.Moved);
        }
        finally { Dispose(t); }
    }

    [Fact]
    public void AFullReceiver_StopsTheSender_WithoutLosingAFrame()
    {
        var t = Make();
        try
        {
            uint n = t.M.TxRing(0).NumSlots;
            int total = 3000, sent = 0;
            var seqs = new List<uint>();
            int rounds = 0;
            while (seqs.Count < total && rounds++ < 100)
            {
                sent += Send(t.M, total - sent, (uint)sent);
                // what the receiver has not released stays: the sender's TX holds the rest
                if (rounds == 1) Assert.Equal(n - 1, (uint)t.Pipe.Moved.ToSlave);
                seqs.AddRange(Receive(t.S).Select(g => g.Seq));
                t.M.TxSync(); // the pending slots move now that there is room
                seqs.AddRange(Receive(t.S).Select(g => g.Seq));
            }
            Assert.Equal(Enumerable.Range(0, total).Select(i => (uint)i), seqs);
            Assert.Equal(0, t.Pipe.BadSlots);
        }
        finally { Dispose(t); }
    }

    [Fact]
    public void HostileSlotsAndIndices_AreCountedAndRepaired_NeverFollowed()
    {
        var t = Make();
        try
        {
            var tx = t.M.TxRing(0);
            tx.Slot(0).BufIdx = 0xffff_fff0; // outside the region
            tx.Slot(0).Len = 60;
            tx.Slot(1).BufIdx = 1;           // a reserved buffer
            tx.Slot(1).Len = 60;
            tx.Slot(2).Len = 60000;          // longer than a buffer
            tx.Slot(3).Len = 60;
            tx.Head = tx.Cur = 4;
            t.M.TxSync();
            Assert.Equal(3, t.Pipe.BadSlots);
            Assert.Equal(1, t.Pipe.Moved.ToSlave);
            Assert.Equal(0xffff_fff0u, tx.Slot(0).BufIdx); // returned to its owner untouched
            // head and cur outside the window: the ring is reset to where the host is, counted.
            tx.Head = 5000;
            t.M.TxSync();
            Assert.Equal(1, t.Pipe.CorruptRingIndex);
            Assert.Equal(4u, tx.Head);
            var rx = t.S.RxRing(0);
            t.S.RxSync();
            rx.Head = rx.Cur = 900; // beyond what it was given
            t.S.RxSync();
            Assert.Equal(2, t.Pipe.CorruptRingIndex);
            Assert.Equal(0u, rx.Head);
            Assert.Single(Receive(t.S));
        }
        finally { Dispose(t); }
    }

    [Fact]
    public void AnEnd_IsRegisteredOnce_AndThePipeIsReleasedOnlyWhenBothAreClosed()
    {
        var mem = new DomainMemory(new RegionLayout { MaxPorts = 2 });
        var pipe = new NetmapPipe(mem, "valepipe:q", "1");
        Assert.Throws<InvalidOperationException>(() => new NetmapPipe(mem, "valepipe:q", "2")); // no area left
        bool empty = false;
        pipe.OnEmpty = () => empty = true;
        var m = pipe.Master.Bind(new WakeWord());
        Assert.Throws<InvalidOperationException>(() => pipe.Master.Bind(new WakeWord()));
        Assert.False(pipe.Release());
        m.Dispose();
        Assert.True(empty);
        Assert.True(pipe.Release());
        Assert.Empty(mem.OpenPorts);
        mem.Dispose();
    }
}
