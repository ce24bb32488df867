namespace HyperNF.Tools;

/// <summary>
/// Turns the sequence numbers of received frames into loss, reordering and duplicate
/// counts without allocating. It remembers which of the last <see cref="Window"/> sequence
/// numbers below the highest one were seen (a bitmap), so a late frame is told apart from a
/// second copy. Loss is what is still missing of [lowest seen, highest seen]: a frame that
/// arrives late first counts as lost, then as reordered and no longer lost.
/// </summary>
internal sealed class SequenceTracker
{
    public const int WindowBits = 16;
    public const ulong Window = 1UL << WindowBits;
    private const ulong Mask = Window - 1;

    private readonly ulong[] _seen = new ulong[Window / 64];
    private bool _started;
    private ulong _lowest;
    private ulong _highest;

    /// <summary>Different sequence numbers seen.</summary>
    public long Distinct { get; private set; }
    /// <summary>Frames that arrived after a higher sequence number.</summary>
    public long Reordered { get; private set; }
    /// <summary>Frames whose sequence number was already seen (within the window).</summary>
    public long Duplicates { get; private set; }

    public long Lost => _started ? Math.Max(0, (long)(_highest - _lowest + 1) - Distinct) : 0;
    public ulong Highest => _highest;

    public void Reset()
    {
        Array.Clear(_seen);
        _started = false;
        _lowest = _highest = 0;
        Distinct = Reordered = Duplicates = 0;
    }

    public void Add(ulong seq)
    {
        if (!_started)
        {
            _started = true;
            _lowest = _highest = seq;
            Set(seq);
            Distinct = 1;
            return;
        }
        if (seq > _highest)
        {
            // The bitmap positions of (highest, seq] last belonged to numbers a window ago: forget them.
            Clear(_highest + 1, seq - _highest);
            Set(seq);
            _highest = seq;
            Distinct++;
            return;
        }
        if (_highest - seq < Window)
        {
            if (IsSet(seq)) { Duplicates++; return; }
            Set(seq);
        }
        // Older than the window: a duplicate cannot be told from a very late frame; late is far likelier.
        Distinct++;
        Reordered++;
        if (seq < _lowest) _lowest = seq;
    }

    private bool IsSet(ulong seq) => (_seen[(seq & Mask) >> 6] & (1UL << (int)(seq & 63))) != 0;
    private void Set(ulong seq) => _seen[(seq & Mask) >> 6] |= 1UL << (int)(seq & 63);

    private void Clear(ulong from, ulong count)
    {
        if (count >= Window) { Array.Clear(_seen); return; }
        ulong i = from & Mask;
        while (count > 0)
        {
            int bit = (int)(i & 63);
            if (bit == 0 && count >= 64)
            {
                _seen[i >> 6] = 0;
                i = (i + 64) & Mask;
                count -= 64;
                continue;
            }
            _seen[i >> 6] &= ~(1UL << bit);
            i = (i + 1) & Mask;
            count--;
        }
    }
}
