using System.Buffers.Binary;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Switch;

/// <summary>Tests that start their own threads and want the two cores to themselves.</summary>
[CollectionDefinition("Threads", DisableParallelization = true)]
public sealed class ThreadsCollection;

/// <summary>
/// Four sender threads, each with its own domain and port, flood one receiver through one
/// bridge with real threads: the lease protocol, hwtail publication and the Poll wake-up
/// under contention. Every frame carries (sender, sequence) and a payload derived from both.
/// </summary>
[Collection("Threads")]
public sealed class ConcurrencyTests(ITestOutputHelper output)
{
    private const int Senders = 4;
    private const uint FramesPerSender = 500_000;
    private const uint MarkerId = 0xFFFF;
    private const int HeaderBytes = 22; // Ethernet 14 + sender id 4 + sequence 4

    /// <summary>Frame length by sequence; with chains, every 8th frame needs 2 or 3 slots.</summary>
    private static int LengthOf(uint seq, bool chains) =>
        chains && seq % 8 == 0 ? 2049 + (int)(seq * 131 % 4000) : 60 + (int)(seq * 37 % 400);

    private static byte[][] Patterns() => Enumerable.Range(0, Senders).Select(i =>
    {
        var p = new byte[8192];
        new Random(1000 + i).NextBytes(p);
        return p;
    }).ToArray();

    private static ReadOnlySpan<byte> PayloadOf(byte[] pattern, uint seq, int len) => pattern.AsSpan((int)(seq % 1024), len - HeaderBytes);

    /// <summary>Slots of the receiver's ring that are leased or published and not yet released.</summary>
    private static unsafe uint Backlog(Node rx)
    {
        var k = rx.Host.Rx[0];
        return RingRules.Distance(Volatile.Read(ref k.S->HwCur), Volatile.Read(ref k.S->HwLease), k.N);
    }

    /// <summary>
    /// Unpaced, the senders outrun the receiver and most frames are ring-full drops: the lease
    /// protocol runs at the edge of a full ring. Paced, senders back off while the receiver's
    /// ring is more than half full and now and then pause, so most frames are delivered, leases
    /// overlap with free space, and a Poll-ing receiver regularly finds its ring empty and sleeps.
    /// </summary>
    /// <remarks>
    /// With chains, a lease can end with slots its sender could not fill (the next chain did not
    /// fit) while a later lease exists: those slots are published as empty (len 0, flags 0)
    /// and the receiver skips them; they never appear inside a chain.
    /// </remarks>
    [Theory]
    [InlineData(false, 64, false, false)]
    [InlineData(false, 128, true, false)]
    [InlineData(true, 256, true, false)]
    [InlineData(false, 200, false, true)]
    [InlineData(true, 100, true, true)]
    public void Four_senders_one_receiver_every_frame_once_intact_in_order_and_accounted(bool usePoll, int batch, bool paced, bool chains)
    {
        var sw = new ValeSwitch { BridgeBatch = batch };
        var rx = new Node(sw, "valecc:rx", Macs.Unicast(0x100));
        var tx = Enumerable.Range(0, Senders).Select(i => new Node(sw, $"valecc:tx{i}", Macs.Unicast(i + 1))).ToArray();
        var threads = new List<Thread>();
        string? failure = null;
        int done = 0;
        long target = -1;
        try
        {
            rx.Announce();
            foreach (var t in tx) t.Drain();
            var patterns = Patterns();
            var baseline = sw.FindBridge("valecc")!.GetStatistics();

            void Fail(string m) => Interlocked.CompareExchange(ref failure, m, null);
            var go = new ManualResetEventSlim();
            var received = new long[Senders];
            long pollTimeoutsWhileSending = 0, polls = 0, sleepingPolls = 0, emptySlots = 0;
            int sending = Senders; // senders not yet finished

            var receiver = new Thread(() =>
            {
                try
                {
                    var ring = rx.Rx;
                    var last = new long[Senders];
                    Array.Fill(last, -1);
                    long total = 0;
                    var frame = new byte[8192];
                    int have = 0, frags = 0, expectFrags = 0;
                    go.Wait();
                    while (true)
                    {
                        if (usePoll)
                        {
                            polls++;
                            if (rx.Port.Poll(PollEvents.In, 0) == PollEvents.None)
                            {
                                // nothing ready: this Poll goes to sleep until a sender wakes it
                                sleepingPolls++;
                                // A timeout counts only if a sender was running through all of it
                                // (not: the senders had just finished and the test thread was slow to set done).
                                var ev = rx.Port.Poll(PollEvents.In, 1000);
                                if (ev == PollEvents.None && Volatile.Read(ref sending) > 0) pollTimeoutsWhileSending++;
                            }
                        }
                        else
                        {
                            rx.Port.RxSync();
                            if (ring.IsEmpty) Thread.Yield(); // busy polling, but let a sender have the core
                        }
                        uint cur = ring.Cur, tail = ring.Tail;
                        while (cur != tail)
                        {
                            ref var slot = ref ring.Slot(cur);
                            cur = ring.Next(cur);
                            if (slot.Len == 0 && slot.Flags == 0 && frags == 0) { emptySlots++; continue; } // an unfilled leased slot
                            int count = slot.Flags >> SlotFlags.FragmentCountShift;
                            bool more = (slot.Flags & SlotFlags.MoreFrag) != 0;
                            if (frags == 0) expectFrags = count;
                            if (slot.Len == 0 || count != expectFrags || more != (frags + 1 < count) || (slot.Flags & 0xff & ~SlotFlags.MoreFrag) != 0)
                            { Fail($"slot {cur}: len {slot.Len} flags 0x{slot.Flags:x4} as fragment {frags + 1} of {expectFrags}"); return; }
                            ring.Frame(slot).CopyTo(frame.AsSpan(have));
                            have += slot.Len;
                            if (++frags < count) continue;
                            var f = frame.AsSpan(0, have);
                            have = frags = 0;
                            if (f.Length < HeaderBytes) { Fail($"a {f.Length}-byte frame"); return; }
                            uint id = BinaryPrimitives.ReadUInt32LittleEndian(f[14..]);
                            uint seq = BinaryPrimitives.ReadUInt32LittleEndian(f[18..]);
                            if (id == MarkerId) continue;
                            if (id >= Senders) { Fail($"frame with sender id {id}"); return; }
                            if (seq <= last[id]) { Fail($"sender {id}: sequence {seq} after {last[id]} (duplicate or reordered)"); return; }
                            if (f.Length != LengthOf(seq, chains) || !f[HeaderBytes..].SequenceEqual(PayloadOf(patterns[id], seq, f.Length))
                                || !f[..6].SequenceEqual(rx.Mac) || !f[6..12].SequenceEqual(tx[id].Mac))
                            { Fail($"sender {id} sequence {seq}: frame corrupted (len {f.Length})"); return; }
                            last[id] = seq;
                            received[id]++;
                            total++;
                        }
                        if (frags != 0) { Fail("the published slots ended inside a chain"); return; }
                        ring.Head = ring.Cur = cur;
                        if (Volatile.Read(ref done) != 0 && total >= Volatile.Read(ref target)) break;
                    }
                    rx.Port.RxSync();
                }
                catch (Exception e) { Fail("receiver: " + e); }
            }) { IsBackground = true, Name = "rx" };

            var senders = Enumerable.Range(0, Senders).Select(id => new Thread(() =>
            {
                try
                {
                    var node = tx[id];
                    var ring = node.Tx;
                    var header = node.FrameTo(rx.Mac, 14);
                    var rng = new Random(id);
                    var frame = new byte[8192];
                    go.Wait();
                    uint seq = 0, progressSeq = 0;
                    long progressAt = Environment.TickCount64;
                    bool Stalled()
                    {
                        if (seq != progressSeq) { progressSeq = seq; progressAt = Environment.TickCount64; return false; }
                        if (Environment.TickCount64 - progressAt < 10_000) return false;
                        Fail($"sender {id} made no progress for 10 s at sequence {seq} (no TX space, or the receiver's ring never drains)");
                        return true;
                    }
                    while (seq < FramesPerSender && Volatile.Read(ref failure) is null)
                    {
                        if (paced)
                        {
                            var spin = new SpinWait(); // escalates to Sleep(1): the receiver must get a core
                            while (Backlog(rx) > 512)
                            {
                                if (Volatile.Read(ref failure) is not null || Stalled()) return; // the receiver gave up
                                spin.SpinOnce();
                            }
                            if (rng.Next(200) == 0) Thread.Sleep(1);
                        }
                        uint cur = ring.Cur;
                        uint space = ring.Space;
                        int burst = rng.Next(1, 400);
                        for (int i = 0; i < burst && seq < FramesPerSender; i++, seq++)
                        {
                            int len = LengthOf(seq, chains);
                            int need = (len + 2047) / 2048;
                            if (need > space) break;
                            space -= (uint)need;
                            header.CopyTo(frame);
                            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(14), (uint)id);
                            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(18), seq);
                            PayloadOf(patterns[id], seq, len).CopyTo(frame.AsSpan(HeaderBytes));
                            for (int off = 0; off < len; off += 2048)
                            {
                                ref var slot = ref ring.Slot(cur);
                                int n = Math.Min(2048, len - off);
                                frame.AsSpan(off, n).CopyTo(ring.Buffer(slot));
                                slot.Len = (ushort)n;
                                slot.Flags = off + n < len ? SlotFlags.MoreFrag : (ushort)0;
                                cur = ring.Next(cur);
                            }
                        }
                        ring.Head = ring.Cur = cur;
                        node.Port.TxSync();
                        if (Stalled()) return;
                    }
                }
                catch (Exception e) { Fail($"sender {id}: {e}"); }
                finally { Interlocked.Decrement(ref sending); }
            }) { IsBackground = true, Name = $"tx{id}" }).ToArray();

            threads.Add(receiver);
            threads.AddRange(senders);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            receiver.Start();
            foreach (var t in senders) t.Start();
            go.Set();
            foreach (var t in senders) Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a sender did not finish");
            Assert.True(failure is null, failure);
            var sendTime = clock.Elapsed;

            // quiescent: every sender is done, so the counters are exact
            var mid = StatsAssert.Balanced(sw, "valecc");
            var rxStats = rx.Stats;
            var txPackets = tx.Select(t => t.Stats.TxPackets).ToArray();
            Volatile.Write(ref target, rxStats.RxPackets - baseline.Delivered + tx.Sum(t => t.Stats.RxPackets));
            Volatile.Write(ref done, 1);
            // wake a receiver that may be sleeping in Poll: send markers until it has finished
            for (int i = 0; receiver.IsAlive && i < 3000; i++)
            {
                var m = tx[0].FrameTo(rx.Mac, 60);
                BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(14), MarkerId);
                tx[0].Send(m);
                receiver.Join(10);
            }
            Assert.False(receiver.IsAlive, "the receiver did not finish");
            Assert.True(failure is null, failure);

            long sent = Senders * (long)FramesPerSender;
            long got = received.Sum();
            output.WriteLine($"poll={usePoll} batch={batch} paced={paced} chains={chains}: {sent} frames sent in {sendTime.TotalSeconds:F2} s, {got} received, " +
                             $"{rxStats.Drop(DropReason.RingFull)} ring-full drops, {emptySlots} empty slots, polls {polls}, sleeping polls {sleepingPolls}");
            Assert.Equal(sent, mid.Sent - baseline.Sent);
            Assert.All(txPackets, n => Assert.Equal((long)FramesPerSender, n));
            Assert.Equal(rxStats.RxPackets, got);
            // every frame that was not received is a counted ring-full drop at the receiver
            Assert.Equal(sent - got, rxStats.Drop(DropReason.RingFull));
            StatsAssert.OnlyDrops(mid.Drops, (DropReason.RingFull, sent - got));
            Assert.Equal(0, mid.CorruptRingIndex);
            Assert.All(tx.Append(rx), n => Assert.Equal(0, n.Stats.BusySkips));
            Assert.True(got > 0, "nothing was received");
            if (paced)
            {
                Assert.True(received.All(r => r > 0), $"every sender should reach the receiver: {string.Join(",", received)}");
                Assert.True(got > sent / 2, $"paced senders should mostly be delivered, got {got} of {sent}");
            }
            if (usePoll) Assert.True(sleepingPolls > 0, "the receiver never slept in Poll");
            Assert.Equal(0, pollTimeoutsWhileSending);
            StatsAssert.Balanced(sw, "valecc");
        }
        finally
        {
            // on failure, stop the receiver; never unmap memory a thread of this test may still use
            Interlocked.CompareExchange(ref failure, "test ended", null);
            Volatile.Write(ref target, 0);
            Volatile.Write(ref done, 1);
            foreach (var t in threads) t.Join(5000);
            if (threads.All(t => !t.IsAlive))
            {
                rx.Dispose();
                foreach (var t in tx) t.Dispose();
            }
        }
    }
}
