using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>Ports that leave while traffic flows: the epoch wait in Bridge.Detach and the sender's view of its own port.</summary>
[Collection("Threads")]
public class DetachTests
{
    [Fact]
    public void A_stale_handle_of_a_closed_port_cannot_touch_the_port_that_reuses_its_area()
    {
        var sw = new ValeSwitch();
        using var sink = new Node(sw, "valest:sink", Macs.Unicast(0x100));
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 1, SlotsPerRing = 8 });
        var old = sw.OpenPort("valest:old", mem);
        old.Dispose();
        using var fresh = sw.OpenPort("valest:new", mem);
        Assert.Equal(old.Area, fresh.Area);
        var tx = fresh.TxRing(0);
        for (uint i = 0; i < 2; i++)
        {
            TestFrames.Make(sink.Mac, Macs.Unicast(1), 60, i).CopyTo(tx.Buffer(tx.Slot(i)));
            tx.Slot(i).Len = 60;
        }
        tx.Head = tx.Cur = 2;
        old.TxSync(); // the old handle's host state must not consume or rewrite the new port's ring
        old.RxSync();
        Assert.Equal((2u, 2u, 7u), (tx.Head, tx.Cur, tx.Tail));
        Assert.Equal((0u, 0u, 0u), (fresh.RxRing(0).Head, fresh.RxRing(0).Cur, fresh.RxRing(0).Tail));
        fresh.TxSync();
        Assert.Equal(2, sink.Receive().Count);
        var s = StatsAssert.Balanced(sw, "valest");
        Assert.Equal(2, s.Sent);
    }

    /// <summary>
    /// A domain closes its port while its own vCPU thread is inside TxSync on it (an NF being
    /// torn down). Whatever instant the detach hits, the sync must neither throw nor leave the
    /// ring busy (a busy ring would make the detach wait forever).
    /// </summary>
    [Fact]
    public void Closing_a_port_while_its_own_thread_is_syncing_never_throws_or_hangs()
    {
        var sw = new ValeSwitch();
        var sink = new Node(sw, "valedt:sink", Macs.Unicast(0x100));
        var mem = new DomainMemory(new RegionLayout { MaxPorts = 1, SlotsPerRing = 64 }, "churn");
        NetmapPort? current = null;
        string? failure = null;
        int stop = 0;
        long syncs = 0;
        const int Cycles = 4000;

        var sender = new Thread(() =>
        {
            try
            {
                var frame = TestFrames.Make(sink.Mac, Macs.Unicast(1), 60, 0);
                while (Volatile.Read(ref stop) == 0)
                {
                    var p = Volatile.Read(ref current);
                    if (p is null) continue;
                    var ring = p.TxRing(0);
                    uint cur = ring.Cur;
                    if (cur >= ring.NumSlots) continue; // the area was cleared under us: nothing to do
                    for (int i = 0; i < 4; i++)
                    {
                        ref var s = ref ring.Slot(cur);
                        uint idx = s.BufIdx; // read once: the area may be cleared under us
                        if (idx < RegionLayout.ReservedBuffers || idx >= mem.BufferCount) break;
                        frame.CopyTo(ring.Buffer(idx));
                        s.Len = 60;
                        s.Flags = 0;
                        cur = ring.Next(cur);
                    }
                    ring.Head = ring.Cur = cur;
                    p.TxSync();
                    Interlocked.Increment(ref syncs);
                }
            }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, "sender: " + e, null); }
        }) { IsBackground = true, Name = "churn-tx" };

        var churn = new Thread(() =>
        {
            try
            {
                // At least Cycles detaches, and on until the sender has synced more often than
                // that (a sender starved by a busy machine would otherwise overlap with few of
                // them); bounded, so a sender that stopped syncing still fails below.
                for (int i = 0; (i < Cycles || Interlocked.Read(ref syncs) <= Cycles) && i < 20 * Cycles && Volatile.Read(ref failure) is null; i++)
                {
                    var p = sw.OpenPort("valedt:churn", mem);
                    Volatile.Write(ref current, p);
                    Thread.SpinWait(200 + i % 1000);
                    p.Dispose(); // detaches while the sender may be inside TxSync on p
                    sink.Drain();
                }
            }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, "churn: " + e, null); }
        }) { IsBackground = true, Name = "churn" };

        sender.Start();
        churn.Start();
        bool finished = churn.Join(TimeSpan.FromSeconds(60));
        Volatile.Write(ref stop, 1);
        bool senderDone = sender.Join(TimeSpan.FromSeconds(10));
        if (finished && senderDone)
        {
            sink.Dispose();
            mem.Dispose();
        } // else: a thread is stuck inside the bridge (holding its lock); leak rather than hang here too
        Assert.True(failure is null, failure);
        Assert.True(finished, "closing a port hung: a sync left its ring marked busy");
        Assert.True(senderDone);
        Assert.True(syncs > Cycles, $"only {syncs} syncs ran during the detaches");
        // every detached port's counters were kept, and syncs on a closed port count nothing
        Assert.True(StatsAssert.Balanced(sw, "valedt").Delivered > 0);
    }
}
