using CsCheck;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>
/// The lease protocol of an RX ring driven directly, one step at a time, so that schedules
/// that threads produce only by luck (a sender finishing before an earlier one, a lease left
/// partly unused while a later lease exists) are produced on purpose.
/// </summary>
public unsafe class RxKringLeaseTests
{
    private const uint N = 16;

    private static (ValeSwitch, Node) Receiver()
    {
        var sw = new ValeSwitch();
        return (sw, new Node(sw, "valelease:r", Macs.Unicast(1), new RegionLayout { MaxPorts = 1, SlotsPerRing = (int)N }));
    }

    /// <summary>What a sender does between lease and completion: fill slots [start, start+used) with a tag.</summary>
    private static void Fill(RxKring k, uint start, uint used, ushort tag)
    {
        for (uint i = 0; i < used; i++)
        {
            ref var s = ref k.Slots[(start + i) % N];
            s.Len = tag;
            s.Flags = 0x100;
        }
    }

    [Fact]
    public void A_later_lease_that_finishes_first_is_published_by_the_earlier_one()
    {
        var (_, r) = Receiver();
        using (r)
        {
            var k = r.Host.Rx[0];
            Assert.Equal(3u, k.Lease(3, out uint a, out uint ta));
            Assert.Equal(2u, k.Lease(2, out uint b, out uint tb));
            Assert.Equal((0u, 3u), (a, b));
            Fill(k, b, 2, 2);
            Assert.False(k.Complete(b, 2, 2, tb, 2, 120, 0)); // not at hwtail: nothing published yet
            Assert.Equal(0u, k.S->HwTail);
            Fill(k, a, 3, 1);
            Assert.True(k.Complete(a, 3, 3, ta, 3, 180, 0)); // publishes its own slots and the later lease
            Assert.Equal(5u, k.S->HwTail);
            r.Port.RxSync();
            Assert.Equal(5u, r.Rx.Tail);
            Assert.Equal(5, r.Stats.RxPackets);
        }
    }

    [Fact]
    public void Unused_slots_of_the_newest_lease_are_given_back_otherwise_published_empty()
    {
        var (_, r) = Receiver();
        using (r)
        {
            var k = r.Host.Rx[0];
            // newest lease, partly used: the rest is rolled back
            Assert.Equal(4u, k.Lease(4, out uint a, out uint ta));
            Fill(k, a, 1, 7);
            Assert.True(k.Complete(a, 4, 1, ta, 1, 60, 0));
            Assert.Equal((1u, 1u), (k.S->HwTail, k.S->HwLease));
            // an older lease, partly used, with a later lease behind it: the gap is published as empty slots
            Assert.Equal(4u, k.Lease(4, out uint b, out uint tb));
            Assert.Equal(2u, k.Lease(2, out uint c, out uint tc));
            for (uint i = b; i < b + 4; i++) { k.Slots[i].Len = 999; k.Slots[i].Flags = 0xffff; } // stale garbage
            Fill(k, b, 1, 8);
            Assert.True(k.Complete(b, 4, 1, tb, 1, 60, 0));
            Assert.Equal(5u, k.S->HwTail); // b's whole lease, not just its used slot
            Fill(k, c, 2, 9);
            Assert.True(k.Complete(c, 2, 2, tc, 2, 120, 0));
            Assert.Equal(7u, k.S->HwTail);
            var got = r.Receive();
            Assert.Equal(new ushort[] { 7, 8, 0, 0, 0, 9, 9 }, Enumerable.Range(0, 7).Select(i => r.Rx.Slot((uint)i).Len));
            Assert.Equal(0, r.Rx.Slot(2).Flags);
            Assert.Equal(4, r.Stats.RxPackets);
        }
    }

    [Fact]
    public void An_older_lease_is_not_the_newest_even_when_the_newest_gave_all_its_slots_back()
    {
        var (_, r) = Receiver();
        using (r)
        {
            var k = r.Host.Rx[0];
            Assert.Equal(11u, k.Lease(11, out uint a, out uint ta)); // sender A: slots 0..10
            Assert.Equal(4u, k.Lease(12, out uint b, out uint tb));  // sender B: the last 4 free slots, 11..14
            // B's first frame needs more than 4 slots: it uses none and, being the newest lease, gives all back
            Assert.False(k.Complete(b, 4, 0, tb, 0, 0, 0));
            Assert.Equal(11u, k.S->HwLease);
            // A fills 3 of its 11 slots. hwlease is back at A's end, but B's ticket is newer:
            // A must publish its 8 unused slots as empty ones, not give them back.
            Fill(k, a, 3, 1);
            for (uint i = 3; i < 11; i++) { k.Slots[i].Len = 999; k.Slots[i].Flags = 0x300; } // stale data from an earlier lap
            Assert.True(k.Complete(a, 11, 3, ta, 3, 180, 0));
            Assert.Equal((11u, 11u), (k.S->HwTail, k.S->HwLease));
            Assert.All(Enumerable.Range(3, 8), i => Assert.Equal((0, 0), (k.Slots[i].Len, k.Slots[i].Flags)));
            // and the ring keeps working: the next lease starts at hwtail and is published
            Assert.Equal(2u, k.Lease(2, out uint c, out uint tc));
            Assert.Equal(11u, c);
            Fill(k, c, 2, 3);
            Assert.True(k.Complete(c, 2, 2, tc, 2, 120, 0));
            Assert.Equal(13u, k.S->HwTail);
        }
    }

    [Fact]
    public void A_lease_never_exceeds_the_free_space_and_a_full_ring_leases_nothing()
    {
        var (_, r) = Receiver();
        using (r)
        {
            var k = r.Host.Rx[0];
            Assert.Equal(N - 1, k.Lease(100, out uint a, out uint ta));
            Assert.Equal(0u, k.Lease(1, out _, out _));
            Fill(k, a, N - 1, 1);
            k.Complete(a, N - 1, N - 1, ta, N - 1, 0, 0);
            Assert.Equal(0u, k.Lease(1, out _, out _));
            r.Port.RxSync();
            var ring = r.Rx;
            ring.Head = ring.Cur = 5; // the receiver releases five slots
            r.Port.RxSync();
            Assert.Equal(5u, k.Lease(9, out uint b, out _));
            Assert.Equal(N - 1, b);
        }
    }

    public readonly record struct Op(int Kind, int Pick, uint Needed, uint Used);

    [Fact]
    public void Random_schedules_publish_exactly_the_finished_prefix_in_order()
    {
        var gen = Gen.Select(Gen.Int[0, 2], Gen.Int[0, 100], Gen.UInt[1, N], Gen.UInt[0, N], (k, p, n, u) => new Op(k, p, n, u)).Array[1, 200];
        gen.Sample(ops =>
        {
            var (_, r) = Receiver();
            using (r)
            {
                var k = r.Host.Rx[0];
                var inFlight = new List<(uint Start, uint HowMany, uint Ticket, ushort Tag)>();
                // model: tickets in order, each (start, end, done); the receiver's expected stream of tags (0 = empty slot)
                var tickets = new List<(uint Start, uint End, bool Done, ushort[] Slots)>();
                var expected = new Queue<ushort>();
                uint hwTail = 0, hwLease = 0, hwCur = 0;
                ushort nextTag = 1;
                ushort newestTag = 0; // the lease granted last (tags grow with tickets)
                foreach (var op in ops)
                {
                    if (op.Kind == 0) // a sender leases
                    {
                        uint space = N - 1 - RingRules.Distance(hwCur, hwLease, N);
                        uint want = Math.Min(op.Needed, space);
                        uint got = k.Lease(op.Needed, out uint start, out uint ticket);
                        Assert.Equal(want, got);
                        if (got == 0) continue;
                        Assert.Equal(hwLease, start);
                        hwLease = (hwLease + got) % N;
                        newestTag = nextTag;
                        inFlight.Add((start, got, ticket, nextTag++));
                        tickets.Add((start, hwLease, false, []));
                    }
                    else if (op.Kind == 1 && inFlight.Count > 0) // one of the senders finishes
                    {
                        var l = inFlight[op.Pick % inFlight.Count];
                        inFlight.Remove(l);
                        uint used = op.Used % (l.HowMany + 1);
                        Fill(k, l.Start, used, l.Tag);
                        int t = tickets.FindIndex(x => x.Start == l.Start && !x.Done);
                        uint end = (l.Start + l.HowMany) % N;
                        var slots = Enumerable.Repeat(l.Tag, (int)used).ToList();
                        if (used < l.HowMany)
                        {
                            // only the newest lease can give slots back; an older one publishes them empty
                            if (l.Tag == newestTag) { Assert.Equal(end, hwLease); hwLease = (l.Start + used) % N; end = hwLease; }
                            else slots.AddRange(Enumerable.Repeat((ushort)0, (int)(l.HowMany - used)));
                        }
                        tickets[t] = (l.Start, end, true, slots.ToArray());
                        bool moved = k.Complete(l.Start, l.HowMany, used, l.Ticket, used, 0, 0);
                        // publish the finished prefix
                        uint before = hwTail;
                        while (tickets.Count > 0 && tickets[0].Done)
                        {
                            foreach (var tag in tickets[0].Slots) expected.Enqueue(tag);
                            hwTail = tickets[0].End;
                            tickets.RemoveAt(0);
                        }
                        Assert.Equal(hwTail != before, moved);
                    }
                    else if (op.Kind == 2) // the receiver syncs, checks what it sees and releases it
                    {
                        r.Port.RxSync();
                        var ring = r.Rx;
                        Assert.Equal(hwTail, ring.Tail);
                        for (uint i = ring.Cur; i != ring.Tail; i = (i + 1) % N)
                        {
                            var s = ring.Slot(i);
                            ushort want = expected.Dequeue();
                            Assert.True(s.Len == want && s.Flags == (want == 0 ? 0 : 0x100), $"slot {i}: len {s.Len} flags {s.Flags:x}, expected tag {want}");
                        }
                        ring.Head = ring.Cur = ring.Tail;
                        hwCur = ring.Tail;
                        r.Port.RxSync();
                    }
                    Assert.Equal((hwTail, hwLease), (k.S->HwTail, k.S->HwLease));
                }
            }
        }, iter: 2000, threads: 1);
    }
}
