using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HyperNF.Memory;
using HyperNF.Netmap;

namespace HyperNF.Switch;

/// <summary>One entry of the forwarding scratch table (netmap's nm_bdg_fwd).</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
internal unsafe struct FwdEntry
{
    public byte* Buf;
    public ushort Len;
    public ushort Next;   // next packet in the same destination list, or FtNull
    public byte Frags;    // on a frame's first fragment: how many slots the frame has
    public byte Pad0;
    public ushort Pad1;
}

/// <summary>A destination list (netmap's nm_bdg_q), linked through <see cref="FwdEntry.Next"/>.</summary>
[StructLayout(LayoutKind.Sequential, Size = 8)]
internal struct DestQueue
{
    public ushort Head;
    public ushort Tail;
    public ushort Slots;
    public ushort Packets;
}

/// <summary>
/// Host-private state of one TX ring of a switch port, and its forwarding scratch area. A
/// sync is serialised per ring by <see cref="Seq"/> (odd while a sync runs): a second thread
/// that tries to sync the same ring at the same time skips it, as netmap's nm_kr_tryget
/// does. The same counter lets a detaching port wait until no flush that could still see it
/// is in progress (an epoch per ring, with no shared cache line between senders).
/// </summary>
internal sealed unsafe partial class TxKring
{
    public const int MaxFragments = 64;                       // NM_MULTISEG
    public const int MaxBatch = 1024;                         // NM_BDG_BATCH
    public const int ScratchEntries = MaxBatch + MaxFragments; // NM_BDG_BATCH_MAX
    public const ushort FtNull = ushort.MaxValue;
    public const int BroadcastQueue = ForwardingTable.Broadcast;
    public const int MinFrame = 14;

    public readonly ValePort Port;
    public readonly int RingIndex;
    public readonly byte* Ring;
    public readonly NetmapSlot* Slots;
    public readonly uint N;
    private readonly DomainMemory _memory;

    // host view of the ring; touched only by the thread holding Seq
    public uint HwCur;
    public uint HwTail;

    /// <summary>Odd while a sync of this ring runs (busy flag + epoch).</summary>
    public int Seq;

    // scratch (pinned, host-private)
    private readonly FwdEntry[] _ftArray;
    private readonly DestQueue[] _queueArray;
    private readonly ushort[] _dstArray;
    private readonly byte[] _stateArray;
    private readonly ushort[] _touchedArray;
    private readonly FwdEntry* _ft;
    private readonly DestQueue* _q;
    private readonly ushort* _dsts;
    // Per flush: what each destination port was when this flush first looked at it
    // (DestUnknown until then); see ValePort, "Port state changes".
    private readonly byte* _dstState;
    private readonly ushort* _touched;

    // counters: single writer (the sync holder); readers tolerate a moment's staleness
    public long TxPackets, TxBytes, FloodCopies, Reinits, BusySkips;
    public readonly long[] Drops = new long[DropReasons.Count];

    public TxKring(ValePort port, DomainMemory memory, int area, int ringIndex)
    {
        Port = port;
        RingIndex = ringIndex;
        _memory = memory;
        N = (uint)memory.Layout.SlotsPerRing;
        Ring = memory.RingAddress(area, ringIndex);
        Slots = (NetmapSlot*)(Ring + NetmapAbi.RingSlots);
        HwCur = 0;
        HwTail = N - 1;
        _ftArray = GC.AllocateArray<FwdEntry>(ScratchEntries, pinned: true);
        _queueArray = GC.AllocateArray<DestQueue>(BroadcastQueue + 1, pinned: true);
        _dstArray = GC.AllocateArray<ushort>(BroadcastQueue + 1, pinned: true);
        _ft = (FwdEntry*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_ftArray));
        _q = (DestQueue*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_queueArray));
        _dsts = (ushort*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_dstArray));
        _stateArray = GC.AllocateArray<byte>(BroadcastQueue + 1, pinned: true);
        _touchedArray = GC.AllocateArray<ushort>(BroadcastQueue + 1, pinned: true);
        _dstState = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_stateArray));
        _touched = (ushort*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_touchedArray));
        for (int i = 0; i <= BroadcastQueue; i++) _q[i] = new DestQueue { Head = FtNull, Tail = FtNull };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryEnter(out int seq)
    {
        seq = Volatile.Read(ref Seq);
        // Full fence on success: the read of the bridge's port table that follows cannot move
        // above it, which is what a detaching port relies on (see Bridge.Detach).
        return (seq & 1) == 0 && Interlocked.CompareExchange(ref Seq, seq + 1, seq) == seq;
    }

    // Release: every write of the sync (host view, counters) is visible before the ring looks free.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exit(int seq) => Volatile.Write(ref Seq, seq + 2);

    /// <summary>Waits until a sync that was running when this was called has finished.</summary>
    public void WaitQuiescent()
    {
        int s = Volatile.Read(ref Seq);
        if ((s & 1) == 0) return;
        var spin = new SpinWait();
        while (Volatile.Read(ref Seq) == s) spin.SpinOnce();
    }

    /// <summary>
    /// netmap txsync of a VALE port, run in the caller's context (the hypercall): validate
    /// head/cur, forward every frame in [hwcur, head) through the bridge, and hand all those
    /// slots back to the user at once. A frame is delivered or counted as dropped; the sender
    /// never blocks. Returns true when the user has TX slots afterwards (cur != tail: poll's
    /// POLLOUT), or when another thread holds the ring (it will hand the slots back). A retired
    /// port's sync touches nothing (see <see cref="ValePort"/>, "Port state changes").
    /// </summary>
    public bool Sync()
    {
        if (!TryEnter(out int seq))
        {
            Interlocked.Increment(ref BusySkips);
            return true;
        }
        try
        {
            if (Port.Retired) return false; // closed: the ring's area belongs to the region again and the counters were final
            uint* ringHead = (uint*)(Ring + NetmapAbi.RingHead);
            uint* ringCur = (uint*)(Ring + NetmapAbi.RingCur);
            uint* ringTail = (uint*)(Ring + NetmapAbi.RingTail);
            uint head = Volatile.Read(ref *ringHead); // each read once: the domain may rewrite them
            uint cur = Volatile.Read(ref *ringCur);
            if (!RingRules.IsLegalMove(head, cur, HwCur, HwTail, N))
            {
                *ringHead = HwCur;
                *ringCur = HwCur;
                *ringTail = HwTail;
                Reinits++;
                return HwCur != HwTail;
            }
            if (head != HwCur)
            {
                // Capture (monitor port): one load and one branch when nobody captures.
                if (Port.Taps is { } taps)
                    CaptureTap.CaptureSlots(taps, CaptureDirection.Out, Slots, N, HwCur, head, _memory.BufferBase, Memory.RegionLayout.ReservedBuffers, _memory.BufferCount);
                Preflush(head);
                HwCur = head;
                HwTail = RingRules.Prev(head, N);
            }
            *ringTail = HwTail; // also repairs a tail the domain overwrote
            return cur != HwTail;
        }
        finally
        {
            Exit(seq);
        }
    }
}
