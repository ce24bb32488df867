using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>Frames larger than a buffer: NS_MOREFRAG chains of up to 64 slots.</summary>
public sealed class FragmentTests : IDisposable
{
    private const int Buf = RegionLayout.DefaultBufferSize;
    private readonly ValeSwitch _sw = new();
    private readonly Node _a, _b;

    public FragmentTests()
    {
        _a = new Node(_sw, "valef:a", Macs.Unicast(0xA));
        _b = new Node(_sw, "valef:b", Macs.Unicast(0xB));
        _b.Announce();
        _a.Drain();
    }

    public void Dispose()
    {
        _a.Dispose();
        _b.Dispose();
    }

    /// <summary>netmap's NS_RFRAGS: the fragment count in the high byte of a received slot's flags.</summary>
    private static int RFrags(ushort flags) => (flags >> SlotFlags.FragmentCountShift) & 0xff;

    private static void AssertChain(Received r, params int[] lens)
    {
        Assert.Equal(lens.Length, r.Slots.Length);
        for (int i = 0; i < lens.Length; i++)
        {
            var (len, flags, _) = r.Slots[i];
            Assert.Equal(lens[i], len);
            bool more = (flags & SlotFlags.MoreFrag) != 0;
            Assert.True(more == (i + 1 < lens.Length), $"fragment {i + 1}/{lens.Length}: MOREFRAG is {(more ? "set" : "clear")} (flags 0x{flags:x4})");
            Assert.True(RFrags(flags) == lens.Length, $"fragment {i + 1}/{lens.Length}: count in the high byte is {RFrags(flags)} (flags 0x{flags:x4})");
        }
    }

    [Fact]
    public void A_9000_byte_frame_arrives_intact_as_a_chain_of_five_slots()
    {
        var f = _a.FrameTo(_b.Mac, 9000, 42);
        _a.Send(f);
        var got = Assert.Single(_b.Receive());
        Assert.Equal(f, got.Bytes);
        AssertChain(got, Buf, Buf, Buf, Buf, 9000 - 4 * Buf);
        var s = StatsAssert.Balanced(_sw, "valef");
        Assert.Equal(60 + 9000, s.DeliveredBytes); // b's announce to a, then the jumbo frame
        Assert.Equal(1, _b.Stats.RxPackets);
        Assert.Equal(9000, _b.Stats.RxBytes);
    }

    [Fact]
    public void Chains_of_every_length_from_1_to_64_carry_flags_and_count_correctly()
    {
        var rng = new Random(7);
        for (int k = 1; k <= TxKring.MaxFragments; k++)
        {
            // fragments of random sizes; the first holds at least the Ethernet header
            var lens = Enumerable.Range(0, k).Select(i => i == 0 ? rng.Next(14, Buf + 1) : rng.Next(1, Buf + 1)).ToArray();
            if (lens.Sum() > _sw.FindBridge("valef")!.MaxFrameBytes) lens = lens.Select(l => Math.Min(l, 900)).ToArray();
            var f = _a.FrameTo(_b.Mac, lens.Sum(), (uint)k);
            var ring = _a.Tx;
            uint cur = ring.Cur;
            int off = 0;
            for (int i = 0; i < k; i++)
            {
                ref var s = ref ring.Slot(cur);
                f.AsSpan(off, lens[i]).CopyTo(ring.Buffer(s));
                off += lens[i];
                s.Len = (ushort)lens[i];
                s.Flags = i + 1 < k ? SlotFlags.MoreFrag : (ushort)0;
                cur = ring.Next(cur);
            }
            ring.Head = ring.Cur = cur;
            _a.Port.TxSync();
            var got = Assert.Single(_b.Receive());
            Assert.Equal(f, got.Bytes);
            AssertChain(got, lens);
        }
        StatsAssert.OnlyDrops(StatsAssert.Balanced(_sw, "valef").Drops);
    }

    [Fact]
    public void A_chain_of_65_slots_is_a_bad_length_drop_and_its_neighbours_pass()
    {
        var before = _a.FrameTo(_b.Mac, 100, 1);
        var tooLong = _a.FrameTo(_b.Mac, 65 * 100, 2);
        var after = _a.FrameTo(_b.Mac, 100, 3);
        _a.Queue([before]);
        _a.Queue([tooLong], fragmentSize: 100);
        _a.Queue([after]);
        _a.Port.TxSync();
        var got = _b.Receive();
        Assert.Equal([before, after], got.Select(r => r.Bytes));
        Assert.Equal(3, _a.Stats.TxPackets);
        StatsAssert.OnlyDrops(StatsAssert.Balanced(_sw, "valef").Drops, (DropReason.BadLength, 1));
    }

    [Fact]
    public void A_chain_of_exactly_64_slots_passes()
    {
        var f = _a.FrameTo(_b.Mac, 64 * 1000, 4);
        _a.Queue([f], fragmentSize: 1000);
        _a.Port.TxSync();
        var got = Assert.Single(_b.Receive());
        Assert.Equal(f, got.Bytes);
        AssertChain(got, Enumerable.Repeat(1000, 64).ToArray());
    }

    [Fact]
    public void Frames_larger_than_MaxFrameBytes_are_bad_length()
    {
        var bridge = _sw.FindBridge("valef")!;
        Assert.Equal(Bridge.DefaultMaxFrameBytes, bridge.MaxFrameBytes);
        Assert.Equal(65535 + 14 + 8, Bridge.DefaultMaxFrameBytes); // an IP packet of 65535 bytes behind two VLAN tags: the largest GSO super-frame
        var justFits = _a.FrameTo(_b.Mac, Bridge.DefaultMaxFrameBytes, 5);
        var tooBig = _a.FrameTo(_b.Mac, Bridge.DefaultMaxFrameBytes + 1, 6); // a legal chain, too large a frame
        var huge = _a.FrameTo(_b.Mac, 64 * Buf, 7);   // the longest chain there is
        _a.Send(justFits, tooBig, huge);
        Assert.Equal([justFits], _b.Receive().Select(r => r.Bytes));
        StatsAssert.OnlyDrops(StatsAssert.Balanced(_sw, "valef").Drops, (DropReason.BadLength, 2));

        bridge.MaxFrameBytes = 4000;
        var ok = _a.FrameTo(_b.Mac, 4000, 8);
        _a.Send(ok, _a.FrameTo(_b.Mac, 4001, 9), _a.FrameTo(_b.Mac, 2100, 10));
        var got = _b.Receive();
        Assert.Equal(2, got.Count);
        Assert.Equal(ok, got[0].Bytes);
        StatsAssert.OnlyDrops(StatsAssert.Balanced(_sw, "valef").Drops, (DropReason.BadLength, 3));

        Assert.Throws<ArgumentOutOfRangeException>(() => bridge.MaxFrameBytes = 13);
        Assert.Throws<ArgumentOutOfRangeException>(() => bridge.MaxFrameBytes = 64 * Buf + 1);
    }

    [Fact]
    public void A_chain_cut_by_head_is_a_bad_length_drop_and_the_next_sync_starts_fresh()
    {
        var good = _a.FrameTo(_b.Mac, 200, 11);
        var chain = _a.FrameTo(_b.Mac, 3 * Buf, 12);
        _a.Queue([good, chain]);
        // set MOREFRAG on the last fragment too: head now cuts the chain
        var ring = _a.Tx;
        ref var last = ref ring.Slot(RingRules.Prev(ring.Head, ring.NumSlots));
        last.Flags = SlotFlags.MoreFrag;
        _a.Port.TxSync();
        Assert.Equal([good], _b.Receive().Select(r => r.Bytes));
        StatsAssert.OnlyDrops(StatsAssert.Balanced(_sw, "valef").Drops, (DropReason.BadLength, 1));

        var next = _a.FrameTo(_b.Mac, 300, 13);
        _a.Send(next);
        Assert.Equal([next], _b.Receive().Select(r => r.Bytes));
        Assert.Equal(3, _a.Stats.TxPackets); // good, cut chain, next
    }

    [Fact]
    public void Bad_fragments_drop_the_whole_frame()
    {
        var ring = _a.Tx;
        // a fragment longer than a buffer
        var f1 = _a.FrameTo(_b.Mac, 3000, 14);
        _a.Queue([f1], fragmentSize: 1500);
        ring.Slot(RingRules.Prev(ring.Head, ring.NumSlots)).Len = Buf + 1;
        // a middle fragment naming a buffer outside the region
        var f2 = _a.FrameTo(_b.Mac, 3 * 1000, 15);
        _a.Queue([f2], fragmentSize: 1000);
        uint middle = RingRules.Prev(RingRules.Prev(ring.Head, ring.NumSlots), ring.NumSlots);
        uint saved = ring.Slot(middle).BufIdx;
        ring.Slot(middle).BufIdx = 1;
        // a first fragment shorter than an Ethernet header (runt), even though the frame is longer
        var f3 = _a.FrameTo(_b.Mac, 30, 16);
        _a.Queue([f3], fragmentSize: 10);
        // a chain with tiny later fragments is fine
        var f4 = _a.FrameTo(_b.Mac, 20, 17);
        _a.Queue([f4], fragmentSize: 14);
        _a.Port.TxSync();
        ring.Slot(middle).BufIdx = saved;
        var got = Assert.Single(_b.Receive());
        Assert.Equal(f4, got.Bytes);
        AssertChain(got, 14, 6);
        StatsAssert.OnlyDrops(StatsAssert.Balanced(_sw, "valef").Drops,
            (DropReason.BadLength, 1), (DropReason.BadBufferIndex, 1), (DropReason.Runt, 1));
    }

    [Fact]
    public void Chains_wrap_around_both_rings()
    {
        // move both rings close to their end: 1020 single-slot frames
        for (int i = 0; i < 1020; i += 100)
        {
            _a.Send(Enumerable.Range(0, Math.Min(100, 1020 - i)).Select(j => _a.FrameTo(_b.Mac, 60, (uint)j)).ToArray());
            _b.Drain();
        }
        Assert.Equal((1020u, 1020u), (_a.Tx.Head, _b.Rx.Head));
        var f = _a.FrameTo(_b.Mac, 9000, 18);
        _a.Send(f); // slots 1020..1023 and 0 on both rings
        var got = Assert.Single(_b.Receive());
        Assert.Equal(f, got.Bytes);
        AssertChain(got, Buf, Buf, Buf, Buf, 9000 - 4 * Buf);
        Assert.Equal((1u, 1u), (_a.Tx.Head, _b.Rx.Head));
    }

    [Fact]
    public void A_chain_that_does_not_fit_is_dropped_whole_never_published_in_part()
    {
        // fill b's ring to 3 free slots
        _a.Send(Enumerable.Range(0, 1020).Select(j => _a.FrameTo(_b.Mac, 60, (uint)j)).ToArray());
        var chain = _a.FrameTo(_b.Mac, 5 * 1000, 19);
        var small = _a.FrameTo(_b.Mac, 60, 20);
        _a.Queue([chain], fragmentSize: 1000);
        _a.Queue([small]);
        _a.Port.TxSync();
        var got = _b.Receive();
        Assert.Equal(1020, got.Count);
        Assert.All(got, r => Assert.Single(r.Slots));
        Assert.Equal(2, _b.Stats.Drop(DropReason.RingFull)); // the chain, and the frame queued behind it
        StatsAssert.Balanced(_sw, "valef");
        _a.Queue([chain], fragmentSize: 1000);
        _a.Port.TxSync();
        Assert.Equal(chain, Assert.Single(_b.Receive()).Bytes);
    }
}
