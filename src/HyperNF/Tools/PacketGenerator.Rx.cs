using System.Diagnostics;
using HyperNF.Netmap;

namespace HyperNF.Tools;

public sealed partial class PacketGenerator
{
    private PacketGenSummary RunRx(CancellationToken ct)
    {
        long limit = _o.Count == 0 ? long.MaxValue : _o.Count;
        long received = 0, bytes = 0, foreign = 0, syncs = 0;
        long firstBatch = 0, lastBatch = 0;

        while (received < limit)
        {
            if (ct.IsCancellationRequested || _port.IsClosed) break;
            long now = Stopwatch.GetTimestamp();
            if (now >= _deadline) break;
            if (now >= _nextReport) Report(now, received, bytes, syncs, _sequence.Lost);

            if (!AnyRxReady())
            {
                if (_o.BusyPoll)
                {
                    _port.RxSync();
                    if (!AnyRxReady()) continue;
                }
                else if ((_port.Poll(PollEvents.In, WaitBudgetMs(now)) & PollEvents.In) == 0)
                {
                    continue; // timed out: look at the clock, the token and the report again
                }
                // One receive time per batch, like the sender's one send time per batch.
                now = Stopwatch.GetTimestamp();
            }

            long n = DrainRx(Math.Min(_batch, limit - received), now, ref bytes, ref foreign);
            if (n == 0)
            {
                // Only part of a fragment chain is published: let the host finish it.
                _port.RxSync();
                Thread.Yield();
                continue;
            }
            if (received == 0) firstBatch = now;
            lastBatch = now;
            received += n;
            syncs++;
            Volatile.Write(ref _frames, received); // progress for monitoring threads
        }
        // Hand the consumed slots back, so a later reader of the port starts clean.
        _port.RxSync();

        long end = Stopwatch.GetTimestamp();
        var elapsed = Stopwatch.GetElapsedTime(_start, end);
        var active = lastBatch > firstBatch ? Stopwatch.GetElapsedTime(firstBatch, lastBatch) : elapsed;
        return new PacketGenSummary
        {
            Function = PacketGenFunction.Rx, Elapsed = elapsed, ActiveTime = active,
            Received = received, Bytes = bytes, Syncs = syncs, Foreign = foreign,
            Lost = _sequence.Lost, Reordered = _sequence.Reordered, Duplicates = _sequence.Duplicates,
            Latency = _latency.Summarize(),
        };
    }

    private bool AnyRxReady()
    {
        for (int r = 0; r < _port.RxRingCount; r++)
            if (!_port.RxRing(r).IsEmpty) return true;
        return false;
    }

    /// <summary>
    /// Consumes up to <paramref name="limit"/> whole frames from the RX rings (an NS_MOREFRAG
    /// chain counts once, and one still missing its last slot is left for later) and releases
    /// them at the next sync by moving head and cur.
    /// </summary>
    private long DrainRx(long limit, long now, ref long bytes, ref long foreign)
    {
        long taken = 0;
        for (int r = 0; r < _port.RxRingCount && taken < limit; r++)
        {
            var ring = _port.RxRing(r);
            uint cur = ring.Cur, tail = ring.Tail;
            while (cur != tail && taken < limit)
            {
                ref NetmapSlot first = ref ring.Slot(cur);
                uint last = cur;
                int length = first.Len;
                ushort flags = first.Flags;
                bool complete = true;
                while ((flags & SlotFlags.MoreFrag) != 0)
                {
                    last = ring.Next(last);
                    if (last == tail) { complete = false; break; }
                    ref NetmapSlot more = ref ring.Slot(last);
                    length += more.Len;
                    flags = more.Flags;
                }
                if (!complete) break;

                if (PacketFormat.TryRead(ring.Frame(first), out ulong seq, out long sentAt))
                {
                    _sequence.Add(seq);
                    _latency.Record(TicksToNs(now - sentAt));
                }
                else
                {
                    foreign++;
                }
                bytes += length;
                taken++;
                cur = ring.Next(last);
            }
            ring.Head = ring.Cur = cur;
        }
        return taken;
    }
}
