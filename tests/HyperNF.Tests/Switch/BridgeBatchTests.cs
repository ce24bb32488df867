using HyperNF.Memory;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>bridge_batch (ctl op 1): how many slots a TX sync collects before it flushes.</summary>
public class BridgeBatchTests
{
    [Fact]
    public void Batch_zero_discards_everything_and_counts_it()
    {
        var sw = new ValeSwitch { BridgeBatch = 0 };
        using var a = new Node(sw, "valebb:a", Macs.Unicast(1));
        using var b = new Node(sw, "valebb:b", Macs.Unicast(2));
        a.Send(a.FrameTo(b.Mac), a.FrameTo(Macs.Broadcast), a.FrameTo(b.Mac, 5000), a.FrameTo(a.Mac));
        Assert.Empty(b.Receive());
        Assert.Empty(a.Receive());
        var s = StatsAssert.Balanced(sw, "valebb");
        Assert.Equal(4, s.Sent);
        StatsAssert.OnlyDrops(s.Drops, (DropReason.Discarded, 4));
        Assert.Equal(0, s.TableEntries); // nothing reached the forwarding pass
        // the TX slots were still handed back
        Assert.Equal(a.Tx.NumSlots - 1, a.Tx.Space);

        sw.BridgeBatch = 5; // takes effect at the next sync
        var f = a.FrameTo(b.Mac);
        a.Send(f);
        Assert.Equal(f, Assert.Single(b.Receive()).Bytes);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(100)]
    [InlineData(1024)]
    public void Every_batch_size_delivers_everything_in_order(int batch)
    {
        var sw = new ValeSwitch { BridgeBatch = batch };
        using var a = new Node(sw, "valebb:a", Macs.Unicast(1));
        using var b = new Node(sw, "valebb:b", Macs.Unicast(2));
        using var c = new Node(sw, "valebb:c", Macs.Unicast(3));
        b.Announce();
        c.Announce();
        a.Drain(); b.Drain(); c.Drain();
        var rng = new Random(batch);
        for (int round = 0; round < 3; round++)
        {
            var frames = new List<byte[]>();
            int slots = 0;
            while (true)
            {
                int kind = rng.Next(10);
                var f = kind switch
                {
                    0 => a.FrameTo(Macs.Broadcast, rng.Next(60, 200), (uint)frames.Count),
                    1 => a.FrameTo(b.Mac, rng.Next(2049, 3 * 2048), (uint)frames.Count), // a 2..3-slot chain
                    2 => a.FrameTo(c.Mac, rng.Next(60, 1500), (uint)frames.Count),
                    _ => a.FrameTo(b.Mac, rng.Next(60, 1500), (uint)frames.Count),
                };
                int need = (f.Length + 2047) / 2048;
                if (slots + need > 1023) break; // fill the whole ring in one sync
                slots += need;
                frames.Add(f);
            }
            a.Send(frames.ToArray());
            Assert.Equal(frames.Where(f => !f.AsSpan(0, 6).SequenceEqual(c.Mac)), b.Receive().Select(r => r.Bytes));
            Assert.Equal(frames.Where(f => !f.AsSpan(0, 6).SequenceEqual(b.Mac)), c.Receive().Select(r => r.Bytes));
        }
        StatsAssert.OnlyDrops(StatsAssert.Balanced(sw, "valebb").Drops);
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(1000)]
    public void A_64_slot_chain_at_the_end_of_a_full_batch_fits_the_scratch_table(int batch)
    {
        // With 4096-slot rings one sync can hold far more than a batch. Put a 64-slot chain
        // right where the batch fills up: the scratch table holds batch + 64 entries.
        var layout = new RegionLayout { MaxPorts = 1, SlotsPerRing = 4096 };
        var sw = new ValeSwitch { BridgeBatch = batch };
        using var a = new Node(sw, "valebig:a", Macs.Unicast(1), layout);
        using var b = new Node(sw, "valebig:b", Macs.Unicast(2), layout);
        b.Announce();
        a.Drain();
        var frames = new List<byte[]>();
        for (int i = 0; i < batch - 1; i++) frames.Add(a.FrameTo(b.Mac, 60, (uint)i));
        frames.Add(a.FrameTo(b.Mac, 64 * 1000, 9999));
        for (int i = 0; i < 2000; i++) frames.Add(a.FrameTo(b.Mac, 60 + i % 100, (uint)(10000 + i)));
        frames.Add(a.FrameTo(b.Mac, 64 * 1000, 99999));
        a.Queue(frames, fragmentSize: 1000);
        a.Port.TxSync();
        var got = b.Receive();
        Assert.Equal(frames.Count, got.Count);
        for (int i = 0; i < frames.Count; i++) Assert.Equal(frames[i], got[i].Bytes);
        StatsAssert.OnlyDrops(StatsAssert.Balanced(sw, "valebig").Drops);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1025)]
    [InlineData(int.MinValue)]
    [InlineData(int.MaxValue)]
    public void Out_of_range_batches_are_refused_and_leave_the_setting_alone(int value)
    {
        var sw = new ValeSwitch { BridgeBatch = 100 };
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => sw.BridgeBatch = value);
        Assert.Contains("0..1024", e.Message);
        Assert.Equal(100, sw.BridgeBatch);
        Assert.Equal(TxKring.MaxBatch, new ValeSwitch().BridgeBatch);
    }
}
