using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace HyperNF.Netmap;

/// <summary>
/// A domain's view of one of its rings (netmap_ring). The indices live in the domain's
/// shared region; the ring size and the buffer range are trusted copies held here, so NF
/// code that scribbles over its own ring header still cannot make this view reach outside
/// its region.
/// </summary>
public readonly unsafe struct NetmapRing
{
    private readonly byte* _ring;
    private readonly byte* _bufferBase;
    private readonly uint _numSlots;
    private readonly uint _bufferCount;
    private readonly int _bufferSize;

    internal NetmapRing(byte* ring, byte* bufferBase, uint numSlots, uint bufferCount, int bufferSize)
    {
        _ring = ring;
        _bufferBase = bufferBase;
        _numSlots = numSlots;
        _bufferCount = bufferCount;
        _bufferSize = bufferSize;
    }

    public uint NumSlots => _numSlots;
    public int BufferSize => _bufferSize;
    public bool IsTx => *(ushort*)(_ring + NetmapAbi.RingDir) == 0;
    public ushort RingId => *(ushort*)(_ring + NetmapAbi.RingId);

    /// <summary>First slot owned by the user. Advancing it hands slots back to the host.</summary>
    public uint Head
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] get => *(uint*)(_ring + NetmapAbi.RingHead);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] set => *(uint*)(_ring + NetmapAbi.RingHead) = value;
    }

    /// <summary>Wake-up point for poll; usually equal to <see cref="Head"/>.</summary>
    public uint Cur
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] get => *(uint*)(_ring + NetmapAbi.RingCur);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] set => *(uint*)(_ring + NetmapAbi.RingCur) = value;
    }

    /// <summary>First slot owned by the host (read-only for the user; the host repairs it if written).</summary>
    public uint Tail
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] get => Volatile.Read(ref *(uint*)(_ring + NetmapAbi.RingTail));
        set => *(uint*)(_ring + NetmapAbi.RingTail) = value;
    }

    /// <summary>Slots the user may fill (TX) or read (RX): from cur to tail (nm_ring_space).</summary>
    public uint Space
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            int d = (int)Tail - (int)Cur;
            if (d < 0) d += (int)_numSlots;
            return (uint)d;
        }
    }

    public bool IsEmpty => Cur == Tail;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Next(uint i) => i + 1 == _numSlots ? 0 : i + 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref NetmapSlot Slot(uint i)
    {
        if (i >= _numSlots) ThrowSlot(i);
        return ref ((NetmapSlot*)(_ring + NetmapAbi.RingSlots))[i];
    }

    /// <summary>The whole packet buffer named by <paramref name="slot"/> (<see cref="BufferSize"/> bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> Buffer(in NetmapSlot slot) => Buffer(slot.BufIdx);

    /// <summary>The whole packet buffer with index <paramref name="bufIdx"/> of this domain's region.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Span<byte> Buffer(uint bufIdx)
    {
        if (bufIdx - Memory.RegionLayout.ReservedBuffers >= _bufferCount - Memory.RegionLayout.ReservedBuffers) ThrowBuffer(bufIdx);
        return new Span<byte>(_bufferBase + (nuint)bufIdx * (uint)_bufferSize, _bufferSize);
    }

    /// <summary>The frame bytes of a slot: <see cref="Buffer(in NetmapSlot)"/> cut to the slot's length.</summary>
    public Span<byte> Frame(in NetmapSlot slot) => Buffer(slot.BufIdx)[..Math.Min(slot.Len, _bufferSize)];

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowSlot(uint i) => throw new ArgumentOutOfRangeException(nameof(i), i, $"slot index must be below {_numSlots}");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBuffer(uint idx) => throw new ArgumentOutOfRangeException(nameof(idx), idx,
        $"buffer index {idx} is not a buffer of this domain (valid: {Memory.RegionLayout.ReservedBuffers}..{_bufferCount - 1})");
}
