using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>The learning bridge end to end: flooding, learning, hairpin, purge on detach, aging.</summary>
public sealed class LearningTests : IDisposable
{
    private readonly ValeSwitch _sw = new();
    private readonly Node _a, _b, _c, _d;
    private Bridge Bridge => _sw.FindBridge("valel")!;

    public LearningTests()
    {
        _a = new Node(_sw, "valel:a", Macs.Unicast(0xA));
        _b = new Node(_sw, "valel:b", Macs.Unicast(0xB));
        _c = new Node(_sw, "valel:c", Macs.Unicast(0xC));
        _d = new Node(_sw, "valel:d", Macs.Unicast(0xD));
    }

    public void Dispose()
    {
        foreach (var n in new[] { _a, _b, _c, _d }) n.Dispose();
    }

    private void DrainAll()
    {
        foreach (var n in new[] { _a, _b, _c, _d }) n.Drain();
    }

    private static void ReceivedExactly(Node n, params byte[][] frames)
    {
        var got = n.Receive();
        Assert.True(got.Count == frames.Length, $"{n.Port.Name}: expected {frames.Length} frame(s), got {got.Count}");
        for (int i = 0; i < frames.Length; i++) Assert.Equal(frames[i], got[i].Bytes);
    }

    [Fact]
    public void Unknown_unicast_floods_to_every_other_port()
    {
        var f = _a.FrameTo(Macs.Unicast(0x99), 100, 1);
        _a.Send(f);
        ReceivedExactly(_b, f);
        ReceivedExactly(_c, f);
        ReceivedExactly(_d, f);
        ReceivedExactly(_a);
        Assert.Equal(2, _a.Stats.FloodCopies); // one frame, three copies
        var s = StatsAssert.Balanced(_sw, "valel");
        Assert.Equal((1, 3), (s.Sent, s.Delivered));
        StatsAssert.OnlyDrops(s.Drops);
    }

    [Fact]
    public void Once_the_destination_has_sent_unicast_goes_only_to_it()
    {
        _b.Send(_b.FrameTo(Macs.Unicast(0x98)));
        DrainAll();
        var f = _a.FrameTo(_b.Mac, 300, 2);
        _a.Send(f, f);
        ReceivedExactly(_b, f, f);
        ReceivedExactly(_c);
        ReceivedExactly(_d);
        ReceivedExactly(_a);
        Assert.Equal(0, _a.Stats.FloodCopies);
        Assert.Equal(_b.Host.BridgeIndex, Bridge.Forwarding.Lookup(Macs.ToTable(_b.Mac), ForwardingTable.Now()));
        StatsAssert.Balanced(_sw, "valel");
    }

    [Fact]
    public void Broadcast_and_multicast_flood_even_when_everyone_is_known()
    {
        foreach (var n in new[] { _a, _b, _c, _d }) n.Announce();
        DrainAll();
        var bc = _a.FrameTo(Macs.Broadcast, 64, 3);
        var mc = _a.FrameTo(Macs.Multicast(7), 80, 4);
        var uc = _a.FrameTo(_c.Mac, 90, 5);
        _a.Send(bc, uc, mc);
        ReceivedExactly(_b, bc, mc);
        ReceivedExactly(_c, bc, uc, mc); // the unicast list and the flood list merge in send order
        ReceivedExactly(_d, bc, mc);
        ReceivedExactly(_a);
        StatsAssert.Balanced(_sw, "valel");
    }

    [Fact]
    public void A_frame_to_the_senders_own_mac_is_a_hairpin_drop()
    {
        _a.Announce();
        DrainAll();
        _a.Send(_a.FrameTo(_a.Mac, 60, 6));
        foreach (var n in new[] { _a, _b, _c, _d }) ReceivedExactly(n);
        Assert.Equal(1, _a.Stats.Drop(DropReason.Hairpin));
        StatsAssert.Balanced(_sw, "valel");
    }

    [Fact]
    public void A_frame_whose_destination_was_learned_on_the_sender_earlier_in_the_same_batch_is_a_hairpin_drop()
    {
        // Frame 1 goes to X, still unknown: flooded. Frame 2 comes from X itself (X lives behind
        // a), so the bridge learns X on a, and its destination X now resolves to a: hairpin.
        var x = Macs.Unicast(0x77);
        var f1 = _a.FrameTo(x, 60, 7);
        var f2 = TestFrames.Make(x, x, 60, 8);
        _a.Send(f1, f2);
        ReceivedExactly(_b, f1);
        ReceivedExactly(_c, f1);
        Assert.Equal(1, _a.Stats.Drop(DropReason.Hairpin));
        StatsAssert.Balanced(_sw, "valel");
    }

    [Fact]
    public void A_destination_evicted_by_a_colliding_source_earlier_in_the_same_batch_is_flooded()
    {
        // X hashes to b's bucket. Frame 1 goes to b (a hit). Frame 2 comes from X: learning X
        // overwrites b's entry, so frame 2's destination b is now unknown and must be flooded.
        _b.Announce();
        DrainAll();
        uint bucket = ForwardingTable.Hash(Macs.ToTable(_b.Mac)) & (ForwardingTable.DefaultSize - 1);
        var x = Enumerable.Range(0x1000, 1 << 20).Select(Macs.Unicast)
            .First(m => (ForwardingTable.Hash(Macs.ToTable(m)) & (ForwardingTable.DefaultSize - 1)) == bucket && !m.AsSpan().SequenceEqual(_b.Mac));
        var f1 = _a.FrameTo(_b.Mac, 60, 1);
        var f2 = TestFrames.Make(_b.Mac, x, 60, 2);
        _a.Send(f1, f2);
        ReceivedExactly(_b, f1, f2);
        ReceivedExactly(_c, f2);
        ReceivedExactly(_d, f2);
        Assert.Equal(ForwardingTable.Broadcast, Bridge.Forwarding.Lookup(Macs.ToTable(_b.Mac), ForwardingTable.Now()));
        StatsAssert.Balanced(_sw, "valel");
    }

    [Fact]
    public void A_mac_that_moves_to_another_port_is_relearned()
    {
        var x = Macs.Unicast(0x55);
        _b.Send(TestFrames.Make(Macs.Broadcast, x, 60, 0));
        DrainAll();
        _c.Send(TestFrames.Make(Macs.Broadcast, x, 60, 0)); // x moved behind c
        DrainAll();
        var f = _a.FrameTo(x, 60, 9);
        _a.Send(f);
        ReceivedExactly(_c, f);
        ReceivedExactly(_b);
        ReceivedExactly(_d);
    }

    [Fact]
    public void Source_addresses_are_learned_multicast_sources_are_not()
    {
        Assert.Equal(0, Bridge.GetStatistics().TableEntries);
        var sources = Enumerable.Range(0x100, 5).Select(Macs.Unicast).ToArray();
        var buckets = sources.Select(m => ForwardingTable.Hash(Macs.ToTable(m)) & (ForwardingTable.DefaultSize - 1)).Distinct().Count();
        Assert.Equal(5, buckets); // test precondition: no collisions among these addresses
        _a.Send(sources.Select(m => TestFrames.Make(Macs.Broadcast, m, 60, 0)).ToArray());
        _a.Send(TestFrames.Make(Macs.Broadcast, Macs.Multicast(1), 60, 0));
        var s = Bridge.GetStatistics();
        Assert.Equal(5, s.TableEntries);
        Assert.Equal(ForwardingTable.DefaultSize, s.TableCapacity);
        var entries = Bridge.Forwarding.Entries();
        Assert.Equal(sources.Select(m => Macs.ToTable(m)).Order(), entries.Select(e => e.Mac).Order());
        Assert.All(entries, e => Assert.Equal(_a.Host.BridgeIndex, e.Port));
        Assert.All(entries, e => Assert.InRange(e.AgeSeconds, 0, 2));
    }

    [Fact]
    public void Detaching_a_port_purges_its_addresses_and_traffic_to_them_floods_again()
    {
        foreach (var n in new[] { _a, _b, _c, _d }) n.Announce();
        _b.Send(TestFrames.Make(Macs.Broadcast, Macs.Unicast(0x200), 60, 0)); // a second MAC behind b
        DrainAll();
        Assert.Equal(5, Bridge.GetStatistics().TableEntries);
        _b.Dispose();
        var s = Bridge.GetStatistics();
        Assert.Equal(4 - 1, s.Ports);
        Assert.Equal(3, s.TableEntries);
        Assert.DoesNotContain(Bridge.Forwarding.Entries(), e => e.Mac == Macs.ToTable(_b.Mac) || e.Mac == Macs.ToTable(Macs.Unicast(0x200)));
        var f = _a.FrameTo(Macs.Unicast(0xB), 60, 10);
        _a.Send(f);
        ReceivedExactly(_c, f);
        ReceivedExactly(_d, f);
        StatsAssert.Balanced(_sw, "valel"); // the detached port's counters are kept
    }

    [Fact]
    public void A_single_port_bridge_counts_floods_as_no_destination()
    {
        var sw = new ValeSwitch();
        using var lone = new Node(sw, "valeone:p", Macs.Unicast(1));
        lone.Send(lone.FrameTo(Macs.Broadcast), lone.FrameTo(Macs.Unicast(2)), lone.FrameTo(Macs.Multicast(3)));
        var s = StatsAssert.Balanced(sw, "valeone");
        Assert.Equal(3, s.Sent);
        StatsAssert.OnlyDrops(s.Drops, (DropReason.NoDestination, 3));
        Assert.Empty(lone.Receive());
    }

    [Fact]
    public void Entries_age_out_on_the_real_clock()
    {
        var sw = new ValeSwitch { AgingSeconds = 1 };
        using var a = new Node(sw, "valeage:a", Macs.Unicast(1));
        using var b = new Node(sw, "valeage:b", Macs.Unicast(2));
        using var c = new Node(sw, "valeage:c", Macs.Unicast(3));
        b.Announce();
        a.Drain(); c.Drain();
        a.Send(a.FrameTo(b.Mac));
        Assert.Single(b.Receive());
        Assert.Empty(c.Receive());
        // 1 s of aging is one 1.024 s unit; an entry is stale once two units have passed
        Thread.Sleep(2200);
        a.Send(a.FrameTo(b.Mac));
        Assert.Single(b.Receive());
        Assert.Single(c.Receive()); // flooded: b's entry aged out
        b.Announce();
        a.Drain(); c.Drain();
        a.Send(a.FrameTo(b.Mac));
        Assert.Single(b.Receive());
        Assert.Empty(c.Receive()); // relearned
    }
}
