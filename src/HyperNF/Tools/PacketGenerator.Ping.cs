using System.Diagnostics;
using HyperNF.Netmap;

namespace HyperNF.Tools;

/// <summary>pkt-gen's ping and pong: round-trip latency between two ports.</summary>
public sealed partial class PacketGenerator
{
    private static readonly long ReplyTimeoutTicks = Stopwatch.Frequency; // 1 s, as pkt-gen's pinger

    /// <summary>
    /// Sends one stamped frame, waits up to 1 s for it to come back (a pong echoes it), records
    /// the round trip, and repeats: -n pings (0: until stopped or -t), -R pings per second at most.
    /// </summary>
    private PacketGenSummary RunPing(CancellationToken ct)
    {
        long limit = _o.Count == 0 ? long.MaxValue : _o.Count;
        long sent = 0, replies = 0, lost = 0, foreign = 0, bytes = 0, syncs = 0;
        ulong seq = 0;
        var endpoints = new EndpointCursor(_o.Source, _o.Destination) { RandomSource = _o.RandomSource, RandomDestination = _o.RandomDestination };
        long gap = _o.RatePps > 0 ? Stopwatch.Frequency / _o.RatePps : 0;
        long nextSend = Stopwatch.GetTimestamp();
        _txRing = 0;
        while (sent < limit)
        {
            if (ct.IsCancellationRequested || _port.IsClosed) break;
            long now = Stopwatch.GetTimestamp();
            if (now >= _deadline) break;
            if (now >= _nextReport) Report(now, replies, bytes, syncs, lost);
            if (now < nextSend)
            {
                Pause(Math.Min(nextSend, Math.Min(_nextReport, _deadline)) - now, ct);
                continue;
            }
            ulong mine = seq;
            if (FillTx(1, now, ref seq, ref endpoints) == 0)
            {
                _port.Poll(PollEvents.Out, WaitBudgetMs(now));
                continue;
            }
            _port.TxSync();
            syncs++;
            sent++;
            nextSend = now + gap;
            long sentAt = now, giveUp = now + ReplyTimeoutTicks;
            bool answered = false;
            while (!answered)
            {
                long t = Stopwatch.GetTimestamp();
                if (t >= giveUp || t >= _deadline || ct.IsCancellationRequested || _port.IsClosed) break;
                if (!AnyRxReady())
                {
                    int ms = (int)Math.Max(1, Math.Min((giveUp - t) * 1000 / Stopwatch.Frequency, WaitBudgetMs(t)));
                    if (_o.BusyPoll) _port.RxSync();
                    else _port.Poll(PollEvents.In, ms);
                    continue;
                }
                long arrived = Stopwatch.GetTimestamp();
                for (int r = 0; r < _port.RxRingCount; r++)
                {
                    var ring = _port.RxRing(r);
                    uint cur = ring.Cur, tail = ring.Tail;
                    for (; cur != tail; cur = ring.Next(cur))
                    {
                        ref NetmapSlot slot = ref ring.Slot(cur);
                        if (!answered && PacketFormat.TryRead(ring.Frame(slot), out ulong s, out long stamp) && s == mine && stamp == sentAt)
                        {
                            _latency.Record(TicksToNs(arrived - sentAt));
                            answered = true;
                            bytes += slot.Len;
                        }
                        else foreign++;
                    }
                    ring.Head = ring.Cur = cur;
                }
                _port.RxSync();
            }
            if (answered) replies++;
            else lost++;
            Volatile.Write(ref _frames, replies);
        }
        _port.RxSync();
        var elapsed = Stopwatch.GetElapsedTime(_start);
        return new PacketGenSummary
        {
            Function = PacketGenFunction.Ping, Elapsed = elapsed, ActiveTime = elapsed, Sent = sent, Received = replies,
            Bytes = bytes, Syncs = syncs, Lost = lost, Foreign = foreign, Latency = _latency.Summarize(),
        };
    }

    /// <summary>
    /// Echoes every frame it receives back to its sender: destination MAC = the frame's source,
    /// source MAC = this port's; the rest (the pinger's stamp) unchanged. -n frames (0: until stopped).
    /// </summary>
    private PacketGenSummary RunPong(CancellationToken ct)
    {
        long limit = _o.Count == 0 ? long.MaxValue : _o.Count;
        long received = 0, echoed = 0, bytes = 0, syncs = 0;
        ReadOnlySpan<byte> myMac = _template.AsSpan(6, 6);
        while (received < limit)
        {
            if (ct.IsCancellationRequested || _port.IsClosed) break;
            long now = Stopwatch.GetTimestamp();
            if (now >= _deadline) break;
            if (now >= _nextReport) Report(now, received, bytes, syncs, 0);
            if (!AnyRxReady())
            {
                if (_o.BusyPoll) _port.RxSync();
                else _port.Poll(PollEvents.In, WaitBudgetMs(now));
                continue;
            }
            var tx = _port.TxRing(0);
            uint tcur = tx.Cur, space = tx.Space;
            uint[] prefilled = _prefilled[0];
            for (int r = 0; r < _port.RxRingCount && received < limit; r++)
            {
                var ring = _port.RxRing(r);
                uint cur = ring.Cur, tail = ring.Tail;
                for (; cur != tail && received < limit; cur = ring.Next(cur))
                {
                    ref NetmapSlot slot = ref ring.Slot(cur);
                    received++;
                    // One-buffer frames only: a MOREFRAG chain is not echoed (counted as not echoed).
                    if ((slot.Flags & SlotFlags.MoreFrag) != 0)
                    {
                        while ((ring.Slot(cur).Flags & SlotFlags.MoreFrag) != 0 && ring.Next(cur) != tail) cur = ring.Next(cur);
                        continue;
                    }
                    var frame = ring.Frame(slot);
                    if (space == 0 || frame.Length < 12) continue;
                    ref NetmapSlot out_ = ref tx.Slot(tcur);
                    var buf = tx.Buffer(out_);
                    frame.CopyTo(buf);
                    frame.Slice(6, 6).CopyTo(buf);   // back to whoever sent it
                    myMac.CopyTo(buf[6..]);
                    out_.Len = (ushort)frame.Length;
                    out_.Flags = 0;
                    prefilled[tcur] = uint.MaxValue; // the buffer no longer holds the TX template
                    tcur = tx.Next(tcur);
                    space--;
                    echoed++;
                    bytes += frame.Length;
                }
                ring.Head = ring.Cur = cur;
            }
            tx.Head = tx.Cur = tcur;
            _port.TxSync();
            _port.RxSync();
            syncs++;
            Volatile.Write(ref _frames, received);
        }
        _port.RxSync();
        var elapsed = Stopwatch.GetElapsedTime(_start);
        return new PacketGenSummary
        {
            Function = PacketGenFunction.Pong, Elapsed = elapsed, ActiveTime = elapsed, Sent = echoed, Received = received,
            Bytes = bytes, Syncs = syncs,
        };
    }
}
