using System.Buffers.Binary;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>
/// Self-served RX rings (RxKring, "Self-served rings"; process domains' rxsync without a
/// hand-off): the receiver stores its head into the ring's release word and reads the publish
/// word; senders publish into that word and take the release when they lease. Here the
/// receiver's side is done in C# exactly as src/preload/hypernf_netmap.c's nm_rxsync_self does
/// it, against a real bridge, real regions and (in the last test) real threads.
/// </summary>
public unsafe class RxSelfServiceTests
{
    private const uint N = 16;

    private static (ValeSwitch Sw, Node Tx, Node Rx) Pair(uint slots = N)
    {
        var sw = new ValeSwitch();
        var layout = new RegionLayout { MaxPorts = 1, SlotsPerRing = (int)slots };
        var tx = new Node(sw, "valeself:t", Macs.Unicast(1), layout);
        var rx = new Node(sw, "valeself:r", Macs.Unicast(2), layout);
        rx.Host.Rx[0].EnableSelfService();
        return (sw, tx, rx);
    }

    private static byte[] Frame(Node from, Node to, uint tag) => from.FrameTo(to.Mac, 60, tag);

    [Fact]
    public void Senders_publish_into_the_sem_word_and_never_write_the_users_tail()
    {
        var (_, tx, rx) = Pair();
        using (tx)
        using (rx)
        {
            var k = rx.Host.Rx[0];
            Assert.True(k.IsSelfServed);
            tx.Send(Frame(tx, rx, 1), Frame(tx, rx, 2), Frame(tx, rx, 3));
            Assert.Equal(3u, *k.PublishWord);
            Assert.Equal(0u, rx.Rx.Tail); // the user's tail is the library's to write
            Assert.Equal(3, rx.Stats.RxPackets);
            // the words sit in netmap_ring's sem area, one cache line each, where the library looks
            Assert.Equal((nint)k.Ring + NetmapAbi.RingSem, (nint)k.ReleaseWord);
            Assert.Equal((nint)k.Ring + NetmapAbi.RingSem + 64, (nint)k.PublishWord);
        }
    }

    [Fact]
    public void A_release_inside_the_window_frees_slots_for_the_next_lease()
    {
        var (_, tx, rx) = Pair();
        using (tx)
        using (rx)
        {
            var k = rx.Host.Rx[0];
            tx.Send(Enumerable.Range(0, 10).Select(i => Frame(tx, rx, (uint)i)).ToArray());
            tx.Send(Enumerable.Range(10, 9).Select(i => Frame(tx, rx, (uint)i)).ToArray());
            Assert.Equal(N - 1, *k.PublishWord);          // full: N-1 delivered
            Assert.Equal(4L, rx.Stats.Drops[(int)DropReason.RingFull]);
            *k.ReleaseWord = 10;                          // the user consumed ten frames
            tx.Send(Enumerable.Range(0, 12).Select(i => Frame(tx, rx, 100 + (uint)i)).ToArray());
            Assert.Equal(10u, k.S->HwCur);
            Assert.Equal((N - 1 + 10) % N, *k.PublishWord); // ten more fit, two more dropped
            Assert.Equal(6L, rx.Stats.Drops[(int)DropReason.RingFull]);
            Assert.Equal(0, rx.Stats.CorruptRingIndex);
        }
    }

    [Fact]
    public void A_bad_release_word_is_ignored_and_counted_once_per_value()
    {
        var (_, tx, rx) = Pair();
        using (tx)
        using (rx)
        {
            var k = rx.Host.Rx[0];
            tx.Send(Enumerable.Range(0, 5).Select(i => Frame(tx, rx, (uint)i)).ToArray()); // hwtail 5
            foreach (uint bad in new uint[] { 9, 9, 9, 1000, uint.MaxValue, 1000 })
            {
                *k.ReleaseWord = bad; // past hwtail, past the ring, the NoSlot pattern
                tx.Send(Frame(tx, rx, 50));
                Assert.Equal(0u, k.S->HwCur); // never taken
            }
            // 9 once, 1000, MaxValue, then 1000 again after another value: four changes of a bad value
            Assert.Equal(4, rx.Stats.CorruptRingIndex);
            *k.ReleaseWord = 3; // a legal release again
            tx.Send(Frame(tx, rx, 60));
            Assert.Equal(3u, k.S->HwCur);
            // accounting holds: every frame is delivered or counted
            var s = tx.Host.Bridge.GetStatistics();
            Assert.Equal(0, s.Unaccounted);
        }
    }

    [Fact]
    public void The_hosts_rxsync_of_a_self_served_ring_takes_the_release_and_leaves_the_users_ring_alone()
    {
        var (_, tx, rx) = Pair();
        using (tx)
        using (rx)
        {
            var k = rx.Host.Rx[0];
            tx.Send(Frame(tx, rx, 1), Frame(tx, rx, 2));
            var ring = rx.Rx;
            ring.Head = 77; ring.Cur = 99; // garbage in the user's ring: the library's business now
            *k.ReleaseWord = 1;
            rx.Port.RxSync();
            Assert.Equal(1u, k.S->HwCur);
            Assert.Equal((77u, 99u, 0u), (rx.Rx.Head, rx.Rx.Cur, rx.Rx.Tail));
            Assert.Equal(0, rx.Stats.CorruptRingIndex);
        }
    }

    [Fact]
    public void Enabling_on_a_ring_with_history_starts_the_words_from_the_hosts_view()
    {
        var sw = new ValeSwitch();
        var layout = new RegionLayout { MaxPorts = 1, SlotsPerRing = (int)N };
        using var tx = new Node(sw, "valeself:t", Macs.Unicast(1), layout);
        using var rx = new Node(sw, "valeself:r", Macs.Unicast(2), layout);
        var k = rx.Host.Rx[0];
        tx.Send(Enumerable.Range(0, 6).Select(i => Frame(tx, rx, (uint)i)).ToArray());
        var ring = rx.Rx;
        ring.Head = ring.Cur = 0;
        rx.Port.RxSync();
        ring.Head = ring.Cur = 4;
        rx.Port.RxSync(); // classic: hwcur 4, tail 6
        k.EnableSelfService();
        k.EnableSelfService(); // idempotent
        Assert.Equal((4u, 6u), (*k.ReleaseWord, *k.PublishWord));
    }

    /// <summary>
    /// Two real threads: a sender pushing 300 800 tagged frames through the bridge in batches, a
    /// receiver consuming them through the two words only (as the library does). Every frame
    /// that arrives is intact and in order, none twice; arrived + ring_full = sent.
    /// </summary>
    [Fact]
    public void Under_real_threads_every_frame_arrives_intact_in_order_or_is_counted()
    {
        const int Batch = 64, Total = 4700 * Batch;
        var (_, tx, rx) = Pair(256);
        using (tx)
        using (rx)
        {
            var k = rx.Host.Rx[0];
            var ring = rx.Rx;
            long received = 0, outOfOrder = 0, corrupt = 0;
            int lastTag = -1;
            var done = new ManualResetEventSlim();
            var receiver = new Thread(() =>
            {
                uint head = 0;
                var expect = new byte[60];
                while (true)
                {
                    uint tail = Volatile.Read(ref *k.PublishWord);
                    if (head == tail)
                    {
                        if (done.IsSet && Volatile.Read(ref *k.PublishWord) == head) break;
                        Thread.SpinWait(20);
                        continue;
                    }
                    for (; head != tail; head = RingRules.Next(head, ring.NumSlots))
                    {
                        var f = ring.Frame(ring.Slot(head));
                        int tag = BinaryPrimitives.ReadInt32BigEndian(f[14..]);
                        if (tag <= lastTag) outOfOrder++;
                        lastTag = tag;
                        var want = Frame(tx, rx, (uint)tag);
                        BinaryPrimitives.WriteInt32BigEndian(want.AsSpan(14), tag);
                        if (!f.SequenceEqual(want)) corrupt++;
                        received++;
                    }
                    Volatile.Write(ref *k.ReleaseWord, head);
                }
            }) { IsBackground = true };
            receiver.Start();
            var frames = new byte[Batch][];
            for (int sent = 0; sent < Total; sent += Batch)
            {
                for (int i = 0; i < Batch; i++)
                {
                    frames[i] = Frame(tx, rx, (uint)(sent + i));
                    BinaryPrimitives.WriteInt32BigEndian(frames[i].AsSpan(14), sent + i);
                }
                tx.Send(frames);
            }
            done.Set();
            Assert.True(receiver.Join(TimeSpan.FromSeconds(30)), "receiver did not finish");
            Assert.Equal(0, outOfOrder);
            Assert.Equal(0, corrupt);
            long ringFull = rx.Stats.Drops[(int)DropReason.RingFull];
            Assert.True(Total == received + ringFull, $"received {received} + ring_full {ringFull} != {Total}; port {rx.Stats}; bridge {tx.Host.Bridge.GetStatistics()}");
            Assert.True(received >= 1000, $"only {received} of {Total} arrived");
            Assert.Equal(0, rx.Stats.CorruptRingIndex);
        }
    }
}
