using System.Buffers.Binary;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Netmap;

namespace HyperNF.Tests.Hypervisor;

/// <summary>
/// Guests written against the netmap port API for the tests: a sender that stamps a sequence
/// number and a payload pattern, and a receiver that checks them. Flow control through
/// <see cref="Window"/> keeps the sender at most that many frames ahead of the receiver, so
/// runs can assert zero loss.
/// </summary>
internal sealed class Flow
{
    public long Sent;
    public long Received;
    public long Corrupt;
    public long OutOfOrder;
    public long LastSeq = -1;
    public int Window = 400;
    public readonly HashSet<int> CpusSeen = new();
}

internal sealed class SeqSender(Flow flow, long count, int frameSize, byte[] dstMac, byte[] srcMac) : IGuest
{
    public string Name => "test-sender";
    public IReadOnlyList<KeyValuePair<string, long>> Counters => [new("sent", Volatile.Read(ref flow.Sent))];

    public void Run(GuestContext ctx)
    {
        var port = ctx.Ports[0];
        var ring = port.TxRing(0);
        long seq = 0;
        while (!ctx.Stopping && seq < count)
        {
            ctx.Checkpoint();
            lock (flow.CpusSeen) flow.CpusSeen.Add(Native.SchedGetCpu());
            long inFlight = seq - Volatile.Read(ref flow.Received);
            if (inFlight >= flow.Window) { Thread.Sleep(0); continue; }
            uint cur = ring.Cur;
            uint k = Math.Min(ring.Space, (uint)Math.Min(64, Math.Min(count - seq, flow.Window - inFlight)));
            if (k == 0) { port.Poll(PollEvents.Out, 50); continue; }
            for (uint i = 0; i < k; i++)
            {
                ref var s = ref ring.Slot(cur);
                var b = ring.Buffer(s);
                Write(b, frameSize, seq++, dstMac, srcMac);
                s.Len = (ushort)frameSize;
                s.Flags = 0;
                cur = ring.Next(cur);
            }
            ring.Head = ring.Cur = cur;
            port.TxSync();
            Volatile.Write(ref flow.Sent, seq);
        }
        // keep checking in until stopped, as a real guest would
        while (!ctx.Stopping) { ctx.Checkpoint(); port.TxSync(); ctx.Cancellation.WaitHandle.WaitOne(20); }
    }

    public static void Write(Span<byte> b, int frameSize, long seq, byte[] dst, byte[] src)
    {
        dst.CopyTo(b);
        src.CopyTo(b[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(b[12..], 0x88b5); // local experimental ethertype
        BinaryPrimitives.WriteInt64LittleEndian(b[14..], seq);
        for (int i = 22; i < frameSize; i++) b[i] = (byte)(seq + i);
    }

    public static bool Check(ReadOnlySpan<byte> b, int len, out long seq)
    {
        seq = BinaryPrimitives.ReadInt64LittleEndian(b[14..]);
        for (int i = 22; i < len; i++) if (b[i] != (byte)(seq + i)) return false;
        return true;
    }
}

internal sealed class SeqReceiver(Flow flow, int frameSize) : IGuest
{
    public string Name => "test-receiver";
    public IReadOnlyList<KeyValuePair<string, long>> Counters => [new("received", Volatile.Read(ref flow.Received))];

    public void Run(GuestContext ctx)
    {
        var port = ctx.Ports[0];
        var ring = port.RxRing(0);
        while (!ctx.Stopping)
        {
            ctx.Checkpoint();
            if (port.Poll(PollEvents.In, 50) == PollEvents.None) continue;
            uint cur = ring.Cur, tail = ring.Tail;
            long got = 0;
            while (cur != tail)
            {
                ref var s = ref ring.Slot(cur);
                if (s.Len != frameSize || !SeqSender.Check(ring.Buffer(s), s.Len, out long seq)) Interlocked.Increment(ref flow.Corrupt);
                else
                {
                    if (seq != flow.LastSeq + 1) Interlocked.Increment(ref flow.OutOfOrder);
                    flow.LastSeq = seq;
                }
                got++;
                cur = ring.Next(cur);
            }
            ring.Head = ring.Cur = cur;
            Interlocked.Add(ref flow.Received, got);
        }
    }
}

/// <summary>A guest that runs a delegate (throws, hangs ...).</summary>
internal sealed class DelegateGuest(Action<GuestContext> body) : IGuest
{
    public string Name => "delegate";
    public IReadOnlyList<KeyValuePair<string, long>> Counters => [];
    public void Run(GuestContext ctx) => body(ctx);
}
