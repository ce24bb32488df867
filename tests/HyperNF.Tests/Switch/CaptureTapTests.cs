using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>
/// The capture tap (netmap's monitor ports) on the real switch: what it copies, in which
/// direction, truncation, MOREFRAG chains, a full tap buffer (copies lost and counted, traffic
/// untouched), concurrent senders, and closing.
/// </summary>
public class CaptureTapTests
{
    private static List<CapturedFrame> DrainAll(CaptureTap tap)
    {
        var list = new List<CapturedFrame>();
        tap.Drain(f =>
        {
            list.Add(f with { Bytes = f.Bytes.ToArray() }); // the bytes are valid only during the call
            return true;
        });
        return list;
    }

    [Fact]
    public void Captures_each_direction_byte_for_byte_with_truncation_and_jumbo_chains()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valecap:a", Macs.Unicast(1), new RegionLayout { MaxPorts = 1 });
        using var b = new Node(sw, "valecap:b", Macs.Unicast(2));
        b.Announce();
        a.Drain();
        var outOfA = a.Host.OpenCapture(CaptureDirection.Out);
        var intoB = b.Host.OpenCapture(CaptureDirection.In);
        var intoA = a.Host.OpenCapture(CaptureDirection.In);
        var shortB = b.Host.OpenCapture(CaptureDirection.Both, snapLength: 100);

        var frames = new[] { a.FrameTo(b.Mac, 60, 1), a.FrameTo(b.Mac, 1514, 2), a.FrameTo(b.Mac, 9000, 3) }; // the last one spans 5 slots
        a.Send(frames);
        Assert.Equal(3, b.Receive().Count);

        foreach (var (tap, dir) in new[] { (outOfA, CaptureDirection.Out), (intoB, CaptureDirection.In) })
        {
            var got = DrainAll(tap);
            Assert.Equal(3, got.Count);
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(frames[i], got[i].Bytes.ToArray());
                Assert.Equal(frames[i].Length, got[i].OriginalLength);
                Assert.Equal(dir, got[i].Direction);
                Assert.InRange(got[i].TimeUnixNs, DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds() * 1_000_000L, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000L + 1);
            }
            Assert.Equal(3, tap.Captured);
            Assert.Equal(0, tap.Dropped);
        }
        Assert.Empty(DrainAll(intoA)); // a received nothing
        var cut = DrainAll(shortB);
        Assert.Equal([60, 100, 100], cut.Select(f => f.Bytes.Length));
        Assert.Equal([60, 1514, 9000], cut.Select(f => f.OriginalLength));
        Assert.Equal(frames[2].AsSpan(0, 100).ToArray(), cut[2].Bytes.ToArray());

        // Closed captures see nothing more; the others still do.
        a.Host.CloseCapture(outOfA);
        b.Host.CloseCapture(intoB);
        a.Send(a.FrameTo(b.Mac, 64, 4));
        b.Receive();
        Assert.Empty(DrainAll(outOfA));
        Assert.Empty(DrainAll(intoB));
        Assert.Single(DrainAll(shortB));
        Assert.Equal(1, b.Host.CaptureCount); // shortB
        Assert.Equal(1, a.Host.CaptureCount); // intoA
        StatsAssert.Balanced(sw, "valecap");
    }

    [Fact]
    public void A_full_tap_loses_copies_counted_never_traffic()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valecapf:a", Macs.Unicast(1));
        using var b = new Node(sw, "valecapf:b", Macs.Unicast(2));
        b.Announce();
        a.Drain();
        var tap = b.Host.OpenCapture(CaptureDirection.In, bufferBytes: 64 * 1024); // room for ~42 frames of 1514 B; nobody reads
        const int Rounds = 40, PerRound = 100;
        for (int r = 0; r < Rounds; r++)
        {
            a.Send(Enumerable.Range(0, PerRound).Select(i => a.FrameTo(b.Mac, 1514, (uint)(r * PerRound + i))).ToArray());
            Assert.Equal(PerRound, b.Receive().Count); // every frame arrived, whatever the tap could keep
        }
        var s = StatsAssert.Balanced(sw, "valecapf");
        StatsAssert.OnlyDrops(s.Drops);
        Assert.Equal(Rounds * PerRound, tap.Captured + tap.Dropped);
        Assert.True(tap.Dropped > 0 && tap.Captured > 0, $"captured {tap.Captured}, dropped {tap.Dropped}");
        var got = DrainAll(tap);
        Assert.Equal(tap.Captured, got.Count);
        // What it kept is the first frames, intact and in order.
        for (int i = 0; i < got.Count; i++) Assert.Equal(a.FrameTo(b.Mac, 1514, (uint)i), got[i].Bytes.ToArray());

        // Drained, it has room again: the next frames are kept (the ring wraps around).
        for (int r = 0; r < 3; r++)
        {
            a.Send(Enumerable.Range(0, 20).Select(i => a.FrameTo(b.Mac, 1514, (uint)(100_000 + r * 20 + i))).ToArray());
            b.Receive();
            var more = DrainAll(tap);
            Assert.Equal(20, more.Count);
            for (int i = 0; i < 20; i++) Assert.Equal(a.FrameTo(b.Mac, 1514, (uint)(100_000 + r * 20 + i)), more[i].Bytes.ToArray());
        }
    }

    [Fact]
    public void Concurrent_senders_into_one_captured_port_give_intact_records()
    {
        var sw = new ValeSwitch();
        using var rx = new Node(sw, "valecapc:rx", Macs.Unicast(9), new RegionLayout { MaxPorts = 1, SlotsPerRing = 1024 });
        var senders = Enumerable.Range(1, 2).Select(i => new Node(sw, $"valecapc:s{i}", Macs.Unicast(i))).ToArray();
        try
        {
            rx.Announce();
            foreach (var s in senders) s.Drain();
            var tap = rx.Host.OpenCapture(CaptureDirection.In, bufferBytes: 256 * 1024);
            var seen = new List<CapturedFrame>();
            long bad = 0;
            using var done = new CancellationTokenSource();
            var reader = new Thread(() =>
            {
                while (true)
                {
                    bool last = done.IsCancellationRequested;
                    tap.Drain(f =>
                    {
                        var bytes = f.Bytes.ToArray();
                        // Each frame's payload is derived from its tag (bytes 14..17 are not the tag, so check against every sender's frame of the length).
                        uint tag = BitConverter.ToUInt32(bytes, bytes.Length - 4);
                        int sender = bytes[11];
                        var expect = TestFrames.Make(Macs.Unicast(9), Macs.Unicast(sender), bytes.Length, tag);
                        BitConverter.TryWriteBytes(expect.AsSpan(expect.Length - 4), tag);
                        if (!expect.AsSpan().SequenceEqual(bytes)) Interlocked.Increment(ref bad);
                        seen.Add(f with { Bytes = Array.Empty<byte>() });
                        return true;
                    });
                    if (last) return;
                    Thread.Sleep(1);
                }
            });
            reader.Start();
            const int PerSender = 20_000;
            var threads = senders.Select(s => new Thread(() =>
            {
                for (int i = 0; i < PerSender; i += 16)
                {
                    var batch = Enumerable.Range(i, 16).Select(k =>
                    {
                        var f = s.FrameTo(Macs.Unicast(9), 64 + k % 200, (uint)k);
                        BitConverter.TryWriteBytes(f.AsSpan(f.Length - 4), (uint)k); // tag at the end, for the reader
                        return f;
                    }).ToArray();
                    s.Send(batch);
                }
            })).ToArray();
            var drain = new Thread(() =>
            {
                while (threads.Any(t => t.IsAlive)) { rx.Drain(); Thread.Yield(); }
                rx.Drain();
            });
            foreach (var t in threads) t.Start();
            drain.Start();
            foreach (var t in threads) t.Join();
            drain.Join();
            done.Cancel();
            reader.Join();
            var st = StatsAssert.Balanced(sw, "valecapc");
            long delivered = rx.Stats.RxPackets;
            Assert.Equal(0, Interlocked.Read(ref bad));
            Assert.Equal(delivered, tap.Captured + tap.Dropped);
            Assert.Equal(tap.Captured, seen.Count);
            Assert.True(seen.Count > 0);
            Assert.Equal(2L * PerSender, st.Sent - 1); // one announce
        }
        finally
        {
            foreach (var s in senders) s.Dispose();
        }
    }

    [Fact]
    public void Bad_slots_and_an_open_chain_are_not_captured_and_the_switch_still_counts_them()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valecapx:a", Macs.Unicast(1));
        using var b = new Node(sw, "valecapx:b", Macs.Unicast(2));
        b.Announce();
        a.Drain();
        var tap = a.Host.OpenCapture(CaptureDirection.Out);
        var good1 = a.FrameTo(b.Mac, 100, 1);
        var bad = a.FrameTo(b.Mac, 100, 2);
        var good2 = a.FrameTo(b.Mac, 3000, 3); // two slots
        var open = a.FrameTo(b.Mac, 3000, 4);  // two slots, the last one left with MOREFRAG: head mid-chain
        uint first = a.Tx.Cur;
        a.Queue([good1, bad, good2, open]);
        a.Tx.Slot(a.Tx.Next(first)).BufIdx = 0;          // a reserved buffer: bad_buffer_index
        uint last = RingRules.Prev(a.Tx.Cur, a.Tx.NumSlots);
        a.Tx.Slot(last).Flags = SlotFlags.MoreFrag;     // the chain never ends before head
        a.Port.TxSync();
        Assert.Equal(2, b.Receive().Count);
        var got = DrainAll(tap);
        Assert.Equal([good1, good2], got.Select(f => f.Bytes.ToArray()));
        var s = StatsAssert.Balanced(sw, "valecapx");
        StatsAssert.OnlyDrops(s.Drops, (DropReason.BadBufferIndex, 1), (DropReason.BadLength, 1));
    }

    [Fact]
    public void Bad_arguments_and_a_detached_port_are_refused()
    {
        var sw = new ValeSwitch();
        var a = new Node(sw, "valecapb:a", Macs.Unicast(1));
        var p = a.Host;
        Assert.Throws<ArgumentOutOfRangeException>(() => p.OpenCapture(CaptureDirection.In, snapLength: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.OpenCapture(CaptureDirection.In, bufferBytes: 100_000));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.OpenCapture((CaptureDirection)7));
        a.Dispose();
        Assert.Throws<InvalidOperationException>(() => p.OpenCapture(CaptureDirection.Both));
    }
}
