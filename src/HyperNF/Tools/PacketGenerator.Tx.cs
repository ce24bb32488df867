using System.Diagnostics;
using HyperNF.Netmap;

namespace HyperNF.Tools;

public sealed partial class PacketGenerator
{
    private int _txRing;

    private PacketGenSummary RunTx(CancellationToken ct)
    {
        long limit = _o.Count == 0 ? long.MaxValue : _o.Count;
        long sent = 0, syncs = 0;
        long frameLength = _o.FrameLength;
        ulong seq = 0;
        var endpoints = new EndpointCursor(_o.Source, _o.Destination) { RandomSource = _o.RandomSource, RandomDestination = _o.RandomDestination };
        bool paced = _o.RatePps > 0;
        var pacer = paced ? new RatePacer(_o.RatePps, _batch, _start) : default;
        _txRing = 0;

        while (sent < limit)
        {
            if (ct.IsCancellationRequested || _port.IsClosed) break;
            long now = Stopwatch.GetTimestamp();
            if (now >= _deadline) break;
            if (now >= _nextReport) Report(now, sent, sent * frameLength, syncs, 0);

            long want = Math.Min(_batch, limit - sent);
            if (paced)
            {
                long allowed = pacer.Take(now, want);
                if (allowed == 0)
                {
                    Pause(Math.Min(pacer.TicksToWait(want), Math.Min(_nextReport, _deadline) - now), ct);
                    continue;
                }
                want = allowed;
            }

            // One timestamp per batch, as pkt-gen: reading the clock per frame would cost more than building the frame.
            long done = FillTx(want, now, ref seq, ref endpoints);
            if (done > 0)
            {
                _port.TxSync();
                syncs++;
                sent += done;
                Volatile.Write(ref _frames, sent); // publishes progress to monitoring threads; no ordering needed beyond the value
            }
            if (done < want)
            {
                if (paced) pacer.Refund(want - done);
                if (done == 0)
                {
                    // Every TX ring is full: the host has not taken the frames yet (a backend thread, a NIC).
                    if (_o.BusyPoll) _port.TxSync();
                    else _port.Poll(PollEvents.Out, WaitBudgetMs(now));
                }
            }
        }

        long end = Stopwatch.GetTimestamp();
        var elapsed = Stopwatch.GetElapsedTime(_start, end);
        return new PacketGenSummary
        {
            Function = PacketGenFunction.Tx, Elapsed = elapsed, ActiveTime = elapsed,
            Sent = sent, Bytes = sent * frameLength, Syncs = syncs,
        };
    }

    /// <summary>
    /// Waits <paramref name="ticks"/> without spinning: a slow rate must not cost a core.
    /// Thread.Sleep's ~1 ms granularity is fine because the pacer's bucket absorbs oversleep.
    /// </summary>
    private static void Pause(long ticks, CancellationToken ct)
    {
        double ms = ticks * 1000.0 / Stopwatch.Frequency;
        if (ms < 0.05)
        {
            Thread.Yield();
            return;
        }
        int whole = (int)Math.Clamp(ms, 1, 100);
        if (ct.CanBeCanceled) ct.WaitHandle.WaitOne(whole); // wakes at once on cancellation
        else Thread.Sleep(whole);
    }

    /// <summary>
    /// Queues up to <paramref name="want"/> frames on the TX rings, filling one ring before
    /// moving to the next. Buffers hold the frame template already (written the first time a
    /// buffer is used, and again only if the slot's buffer changed), so per frame only the
    /// sequence number, the timestamp and, with address ranges, the endpoints are written.
    /// </summary>
    private long FillTx(long want, long timestamp, ref ulong seq, ref EndpointCursor ep)
    {
        long done = 0;
        int rings = _port.TxRingCount;
        int frags = _fragments;
        ushort firstLen = (ushort)_firstFragmentLength, lastLen = (ushort)_lastFragmentLength, fullLen = (ushort)_bufferSize;
        ushort firstFlags = frags > 1 ? SlotFlags.MoreFrag : (ushort)0;
        for (int k = 0; k < rings && done < want; k++)
        {
            int r = _txRing;
            var ring = _port.TxRing(r);
            uint[] prefilled = _prefilled[r];
            uint cur = ring.Cur;
            uint space = ring.Space;
            while (done < want && space >= (uint)frags)
            {
                ref NetmapSlot slot = ref ring.Slot(cur);
                uint idx = slot.BufIdx;
                Span<byte> buf = ring.Buffer(idx);
                if (prefilled[cur] != idx)
                {
                    _template.CopyTo(buf);
                    prefilled[cur] = idx;
                }
                if (_varyEndpoints)
                {
                    PacketFormat.SetEndpoints(buf, ep.SrcIp, ep.SrcPort, ep.DstIp, ep.DstPort);
                    ep.Advance();
                }
                PacketFormat.Stamp(buf, seq++, timestamp);
                slot.Len = firstLen;
                slot.Flags = firstFlags;
                cur = ring.Next(cur);
                for (int f = 1; f < frags; f++)
                {
                    // The rest of a jumbo frame is padding: whatever the buffer holds is sent.
                    ref NetmapSlot more = ref ring.Slot(cur);
                    bool last = f == frags - 1;
                    more.Len = last ? lastLen : fullLen;
                    more.Flags = last ? (ushort)0 : SlotFlags.MoreFrag;
                    cur = ring.Next(cur);
                }
                space -= (uint)frags;
                done++;
            }
            ring.Head = ring.Cur = cur;
            if (done < want) _txRing = r + 1 == rings ? 0 : r + 1; // this ring is full: start at the next one
        }
        return done;
    }
}
