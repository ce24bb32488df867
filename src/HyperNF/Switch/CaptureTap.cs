using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HyperNF.Netmap;

namespace HyperNF.Switch;

/// <summary>Which frames of a port a capture sees, named from the port's side (tcpdump's -Q).</summary>
[Flags]
public enum CaptureDirection
{
    /// <summary>Frames the switch delivers to the port (netmap's /r monitor of the RX rings).</summary>
    In = 1,
    /// <summary>Frames the port sends into the switch (netmap's /t monitor of the TX rings).</summary>
    Out = 2,
    Both = In | Out,
}

/// <summary>One captured frame as the reader sees it.</summary>
public readonly record struct CapturedFrame(long TimeUnixNs, int OriginalLength, CaptureDirection Direction, ReadOnlyMemory<byte> Bytes);

/// <summary>
/// A copy of a port's traffic for <c>hypernf capture</c> (netmap's monitor ports).
///
/// <para><b>Cost when nobody captures.</b> A port holds its open taps in one volatile array
/// reference (<see cref="ValePort.Taps"/>), null when there are none. The switch reads it once
/// per TX sync that moved frames (frames the port sends) and once per lease it completes
/// into one of the port's RX rings (frames delivered to it): one load and one predictable
/// branch, nothing else.</para>
///
/// <para><b>Cost when somebody does.</b> The sending thread copies each frame (up to the
/// snap length) into this tap's buffer: a ring of bytes that any number of senders fill at
/// once (one compare-and-swap reserves the records of a whole sync or lease, the copies run
/// without a lock, a release store of each record's size publishes it) and one reader drains. When the ring is full the frame
/// is not captured and <see cref="Dropped"/> counts it: a slow reader loses captured copies,
/// never traffic, and a sender never waits for it.</para>
/// </summary>
public sealed unsafe class CaptureTap
{
    /// <summary>Record header: size (int, written last; negative: padding to the ring's end), caplen, origlen, direction, time (ns).</summary>
    private const int HeaderBytes = 24;
    public const int DefaultBufferBytes = 8 << 20;
    public const int MaxSnapLength = 262_144;

    private readonly byte[] _ringArray;
    private readonly byte* _ring;
    private readonly long _mask;
    private readonly int _capacity;

    // Producer reservation and consumer positions (monotonic byte counts), on their own lines.
    private PaddedLong _head;
    private PaddedLong _tail;
    private long _captured;
    private long _dropped;

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct PaddedLong
    {
        [FieldOffset(64)] public long Value;
    }

    public ValePort Port { get; }
    public CaptureDirection Direction { get; }
    /// <summary>Bytes kept of each frame (tcpdump's -s); longer frames are truncated, their original length kept.</summary>
    public int SnapLength { get; }
    /// <summary>Frames copied into the tap's buffer.</summary>
    public long Captured => Volatile.Read(ref _captured);
    /// <summary>Frames the tap could not keep because its reader was behind (the buffer was full).</summary>
    public long Dropped => Volatile.Read(ref _dropped);
    public int BufferBytes => _capacity;

    internal CaptureTap(ValePort port, CaptureDirection direction, int snapLength, int bufferBytes)
    {
        if (direction is not (CaptureDirection.In or CaptureDirection.Out or CaptureDirection.Both))
            throw new ArgumentOutOfRangeException(nameof(direction), direction, "the direction must be in, out or both");
        if (snapLength is < 1 or > MaxSnapLength)
            throw new ArgumentOutOfRangeException(nameof(snapLength), snapLength, $"the snap length must be 1..{MaxSnapLength} bytes");
        if (bufferBytes < 1 << 16 || bufferBytes > 1 << 30 || (bufferBytes & (bufferBytes - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(bufferBytes), bufferBytes, "the capture buffer must be a power of two of 64 KiB..1 GiB");
        Port = port;
        Direction = direction;
        SnapLength = snapLength;
        _capacity = bufferBytes;
        _mask = bufferBytes - 1;
        _ringArray = GC.AllocateArray<byte>(bufferBytes, pinned: true);
        _ring = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_ringArray));
    }

    private static long NowUnixNs() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100;

    // ---------------------------------------------------------------- producers (the switch)

    /// <summary>
    /// Frames a port sends: the TX slots [from, to) it just handed to the switch. Each slot
    /// field is read once and checked (a bad buffer index is skipped: the switch counts it).
    /// </summary>
    internal static void CaptureSlots(CaptureTap[] taps, CaptureDirection dir, NetmapSlot* slots, uint n, uint from, uint to,
                                      byte* bufBase, uint firstBuffer, uint bufferCount)
    {
        long now = NowUnixNs();
        foreach (var t in taps)
            if ((t.Direction & dir) != 0) t.CaptureRange(dir, slots, n, from, to, bufBase, firstBuffer, bufferCount, now);
    }

    /// <summary>Frames of one sync or lease handed to the tap at once; longer runs are split.</summary>
    private const int MaxBatchFrames = 256;

    [SkipLocalsInit] // the scratch arrays below are only read where written: no 14 KB memset per call
    private void CaptureRange(CaptureDirection dir, NetmapSlot* slots, uint n, uint from, uint to,
                              byte* bufBase, uint firstBuffer, uint bufferCount, long now)
    {
        // Pass 1 reads each slot once and keeps what it found; pass 2 reserves room for the
        // whole batch with one compare-and-swap and copies. Fragment i of the batch is
        // frags[i]; frame f spans fragments [frameStart[f], frameStart[f + 1]).
        const int MaxFrags = MaxBatchFrames * 4;
        byte** bufs = stackalloc byte*[MaxFrags];
        int* lens = stackalloc int[MaxFrags];
        int* frameStart = stackalloc int[MaxBatchFrames + 1];
        int* frameTotal = stackalloc int[MaxBatchFrames];
        int frames = 0, fragCount = 0, start = 0, total = 0;
        bool bad = false;
        for (uint j = from; j != to; j = j + 1 == n ? 0 : j + 1)
        {
            NetmapSlot* s = slots + j;
            uint idx = s->BufIdx;
            int len = s->Len;
            uint flags = s->Flags;
            if (idx - firstBuffer >= bufferCount - firstBuffer || len > Memory.RegionLayout.DefaultBufferSize || fragCount - start >= TxKring.MaxFragments) bad = true;
            else if (!bad)
            {
                bufs[fragCount] = bufBase + (nuint)idx * Memory.RegionLayout.DefaultBufferSize;
                lens[fragCount] = len;
                fragCount++;
                total += len;
            }
            if ((flags & SlotFlags.MoreFrag) != 0) continue; // at most MaxFragments per frame are kept, and a batch leaves room for one more frame
            if (!bad && total > 0)
            {
                frameStart[frames] = start;
                frameTotal[frames] = total;
                frames++;
                start = fragCount;
            }
            else fragCount = start; // a bad frame keeps nothing (the switch counts it)
            total = 0;
            bad = false;
            if (frames == MaxBatchFrames || fragCount + TxKring.MaxFragments > MaxFrags)
            {
                frameStart[frames] = fragCount;
                WriteBatch(dir, bufs, lens, frameStart, frameTotal, frames, now);
                frames = fragCount = start = 0;
            }
        }
        if (frames > 0)
        {
            frameStart[frames] = start; // not fragCount: a chain left open by head (the switch drops it) is not a frame
            WriteBatch(dir, bufs, lens, frameStart, frameTotal, frames, now);
        }
    }

    private int RecordBytes(int total) => (HeaderBytes + Math.Min(total, SnapLength) + 7) & ~7;

    private void WriteBatch(CaptureDirection dir, byte** bufs, int* lens, int* frameStart, int* frameTotal, int frames, long now)
    {
        // Reserve room for as many whole frames as fit, with one CAS. A record never wraps: one
        // that does not fit before the end of the ring is preceded by padding to the end.
        long pos, end;
        int kept;
        while (true)
        {
            pos = Volatile.Read(ref _head.Value);
            long tail = Volatile.Read(ref _tail.Value);
            long limit = tail + _capacity;
            end = pos;
            kept = 0;
            for (; kept < frames; kept++)
            {
                int need = RecordBytes(frameTotal[kept]);
                long off = end & _mask;
                long at = _capacity - off < need ? end + (_capacity - off) : end;
                if (at + need > limit) break;
                end = at + need;
            }
            if (kept == 0) break;
            if (Interlocked.CompareExchange(ref _head.Value, end, pos) == pos) break;
        }
        if (kept < frames) Interlocked.Add(ref _dropped, frames - kept);
        if (kept == 0) return;
        long p = pos;
        for (int f = 0; f < kept; f++)
        {
            int total = frameTotal[f];
            int caplen = Math.Min(total, SnapLength);
            int need = (HeaderBytes + caplen + 7) & ~7;
            long off = p & _mask;
            if (_capacity - off < need)
            {
                Volatile.Write(ref *(int*)(_ring + off), -(int)(_capacity - off));
                p += _capacity - off;
                off = 0;
            }
            byte* rec = _ring + off;
            *(int*)(rec + 4) = caplen;
            *(int*)(rec + 8) = total;
            *(int*)(rec + 12) = (int)dir;
            *(long*)(rec + 16) = now;
            byte* dst = rec + HeaderBytes;
            int left = caplen;
            for (int k = frameStart[f]; k < frameStart[f + 1] && left > 0; k++)
            {
                int c = Math.Min(lens[k], left);
                Buffer.MemoryCopy(bufs[k], dst, c, c);
                dst += c;
                left -= c;
            }
            Volatile.Write(ref *(int*)rec, need); // publishes the record
            p += need;
        }
        Interlocked.Add(ref _captured, kept);
    }

    // ---------------------------------------------------------------- the reader

    /// <summary>
    /// Hands the published records to <paramref name="onFrame"/> in order (at most
    /// <paramref name="max"/>) and frees their space; returns how many. One reader at a time.
    /// The frame's bytes are valid only during the call.
    /// </summary>
    public int Drain(Func<CapturedFrame, bool> onFrame, int max = int.MaxValue)
    {
        int count = 0;
        long tail = Volatile.Read(ref _tail.Value);
        while (count < max)
        {
            byte* rec = _ring + (tail & _mask);
            int size = Volatile.Read(ref *(int*)rec);
            if (size == 0) break; // not published yet (or nothing there)
            if (size < 0)
            {
                new Span<byte>(rec, -size).Clear();
                tail += -size;
                Volatile.Write(ref _tail.Value, tail);
                continue;
            }
            int caplen = *(int*)(rec + 4);
            var frame = new CapturedFrame(*(long*)(rec + 16), *(int*)(rec + 8), (CaptureDirection)(*(int*)(rec + 12)),
                _ringArray.AsMemory((int)((tail & _mask) + HeaderBytes), caplen));
            bool more = onFrame(frame);
            // Zeroed before it is handed back: a later record header may land anywhere in it.
            new Span<byte>(rec, size).Clear();
            tail += size;
            Volatile.Write(ref _tail.Value, tail);
            count++;
            if (!more) break;
        }
        return count;
    }

    /// <summary>True when a published record waits for the reader.</summary>
    public bool HasFrames => Volatile.Read(ref *(int*)(_ring + (Volatile.Read(ref _tail.Value) & _mask))) != 0;
}
