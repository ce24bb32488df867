using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HyperNF.Memory;
using HyperNF.Netmap;

namespace HyperNF.Switch;

/// <summary>
/// Host-private state of one RX ring: what netmap keeps in the kring. Senders on any core
/// write into the ring through the lease protocol below; the owning domain only reads.
/// The fields are laid out so that what the receiver writes (hwcur) and what the senders
/// write (lock, hwlease, hwtail, counters) sit on different cache lines.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 256)]
internal struct RxKringState
{
    // --- line 0: written by the receiver (rxsync), read by senders
    [FieldOffset(0)] public uint HwCur;
    // --- line 1: senders, under Lock (the receiver never reads this line)
    [FieldOffset(64)] public int Lock;
    [FieldOffset(68)] public uint HwLease;
    [FieldOffset(72)] public uint LeaseIdx;
    [FieldOffset(80)] public long RxPackets;
    [FieldOffset(88)] public long RxBytes;
    [FieldOffset(96)] public long DropRingFull;
    [FieldOffset(104)] public long DropBadBuffer;
    // --- line 2: hwtail alone, written only when a lease is published, so the receiver's
    // polling read misses only when there is something new, not on every sender lock/unlock
    [FieldOffset(128)] public uint HwTail;
    // --- line 3: receiver-private
    [FieldOffset(192)] public uint RTail;
    [FieldOffset(196)] public int Busy;
    [FieldOffset(200)] public long Reinits;
    [FieldOffset(208)] public long BusySkips;
    // self-served rings (below): the last bad release word counted, under Lock
    [FieldOffset(216)] public uint LastBadRelease;
    [FieldOffset(220)] public int SelfServed;
}

/// <summary>
/// One RX ring of a switch port and the lease protocol that fills it.
///
/// <para><b>The lease protocol</b> (VALE's, mSwitch's). Several senders, each on its own
/// core, may deliver into the same RX ring at the same time. The ring's slots
/// [hwtail, hwlease) are leased to senders that are still copying; [hwlease, hwcur-1) are
/// free. A sender:</para>
/// <list type="number">
/// <item>takes the ring's short spin lock, reserves <c>howmany</c> slots starting at
/// <c>hwlease</c> (never more than the free space), writes NOSLOT into its entry of the
/// lease array, advances hwlease and the lease index, and unlocks;</item>
/// <item>copies its frames into the reserved slots <em>without</em> the lock, so copies by
/// different senders overlap in time;</item>
/// <item>locks again and reports where it stopped in its lease entry. If its lease started
/// at hwtail (every earlier lease is done) it walks forward over consecutive finished leases,
/// moves hwtail to the furthest end and, after unlocking, wakes the receiver if it sleeps.
/// Otherwise an earlier, slower sender will publish these slots when it finishes.</item>
/// </list>
/// <para>The receiver therefore only ever sees a gap-free prefix in slot order. Slots a
/// sender leased but did not fill (a multi-slot frame that no longer fits) are given back
/// if its lease is still the newest, else published as zero-length slots.</para>
///
/// <para><b>Self-served rings</b> (process domains, <see cref="EnableSelfService"/>). A netmap
/// program's rxsync needs nothing from the host but "which slots did the user release" and
/// "how far may the user read"; handing it to a host thread costs a futex round trip (several
/// microseconds) for two words. For a process port's rings the two words live in the ring's
/// <c>sem</c> area, which netmap reserves and programs never touch (as ptnetmap's CSB does for
/// guests): the receiver's library runs rxsync itself, storing <c>head</c> into the release word
/// and copying the publish word into <c>tail</c>; senders write the publish word when they move
/// hwtail (under the lock, so it only grows) and read the release word when they lease, under
/// the lock, accepting it only inside [hwcur, hwtail] (anything else is counted once per value
/// as a corrupt ring index and ignored: the receiver's ring then only fills up). The release is
/// therefore seen at the next lease rather than at the rxsync itself, which only delays reuse
/// of slots the user gave up. Nothing the program writes is trusted more than before: the
/// release word is untrusted exactly as <c>head</c> was.</para>
/// </summary>
internal sealed unsafe class RxKring
{
    public const uint NoSlot = uint.MaxValue;

    private readonly RxKringState[] _stateArray; // pinned, length 1
    private readonly uint[] _leaseArray;         // pinned
    public readonly RxKringState* S;
    public readonly uint* Leases;
    public readonly byte* Ring;
    public readonly NetmapSlot* Slots;
    public readonly uint N;
    public readonly byte* BufferBase;
    public readonly uint BufferCount;
    public readonly int RingIndex;
    public readonly ValePort Port;

    public RxKring(ValePort port, DomainMemory memory, int area, int ringIndex)
    {
        Port = port;
        var L = memory.Layout;
        RingIndex = ringIndex;
        N = (uint)L.SlotsPerRing;
        _stateArray = GC.AllocateArray<RxKringState>(1, pinned: true);
        _leaseArray = GC.AllocateArray<uint>((int)N, pinned: true);
        S = (RxKringState*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_stateArray));
        Leases = (uint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_leaseArray));
        Ring = memory.RingAddress(area, L.RingsPerPort + ringIndex);
        Slots = (NetmapSlot*)(Ring + NetmapAbi.RingSlots);
        BufferBase = memory.BufferBase;
        BufferCount = memory.BufferCount;
        for (int i = 0; i < N; i++) Leases[i] = NoSlot;
        ReleaseWord = (uint*)(Ring + NetmapAbi.RingSemRelease);
        PublishWord = (uint*)(Ring + NetmapAbi.RingSemPublish);
        // An empty RX ring: hwcur = hwtail = hwlease = 0.
    }

    /// <summary>Written by the receiver's library at its rxsync: the user's head (self-served rings only).</summary>
    public readonly uint* ReleaseWord;
    /// <summary>Written by senders when they move hwtail: how far the user may read (self-served rings only).</summary>
    public readonly uint* PublishWord;

    /// <summary>True once <see cref="EnableSelfService"/> ran: the receiver syncs without the host.</summary>
    public bool IsSelfServed => Volatile.Read(ref S->SelfServed) != 0;

    /// <summary>
    /// Switches the ring to self-service (the class comment): the two words in the ring's sem
    /// area start from the host's view (release = hwcur, publish = hwtail), and from then on
    /// senders read the release word instead of waiting for an rxsync. Idempotent; safe while
    /// senders deliver (it takes the ring's lock).
    /// </summary>
    public void EnableSelfService()
    {
        Lock();
        if (S->SelfServed == 0)
        {
            Volatile.Write(ref *ReleaseWord, S->HwCur);
            Volatile.Write(ref *PublishWord, S->HwTail);
            S->LastBadRelease = uint.MaxValue;
            Volatile.Write(ref S->SelfServed, 1);
        }
        Unlock();
    }

    /// <summary>
    /// Self-served rings, under the lock: takes the receiver's release word if it lies in
    /// [hwcur, hwtail], else counts it (once per distinct value) and keeps hwcur.
    /// </summary>
    private void TakeRelease()
    {
        uint rel = Volatile.Read(ref *ReleaseWord); // read once: the program may change it at any time
        uint hwcur = S->HwCur;
        if (rel == hwcur) return;
        if (rel < N && RingRules.Distance(hwcur, rel, N) <= RingRules.Distance(hwcur, S->HwTail, N))
        {
            Volatile.Write(ref S->HwCur, rel);
        }
        else if (rel != S->LastBadRelease)
        {
            S->LastBadRelease = rel;
            Volatile.Write(ref S->Reinits, S->Reinits + 1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock()
    {
        // Acquire: CompareExchange is a full fence, so nothing in the critical section moves above it.
        if (Interlocked.CompareExchange(ref S->Lock, 1, 0) != 0) LockContended();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockContended()
    {
        var spin = new SpinWait();
        do
        {
            while (Volatile.Read(ref S->Lock) != 0) spin.SpinOnce(sleep1Threshold: -1);
        } while (Interlocked.CompareExchange(ref S->Lock, 1, 0) != 0);
    }

    // Release: a volatile store keeps every write of the critical section before it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock() => Volatile.Write(ref S->Lock, 0);

    /// <summary>
    /// Step 1 of the lease protocol: reserve up to <paramref name="needed"/> slots. Returns
    /// how many were leased (0: ring full, nothing leased) and the lease's start and ticket.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Lease(uint needed, out uint start, out uint leaseIdx)
    {
        // A full ring is the common case of an overloaded receiver: find out without the lock,
        // so a sender that can only drop does not keep pulling the lock line away from others.
        // A racy read can only err towards "there is space", which the locked check corrects.
        uint cur0 = Volatile.Read(ref S->HwCur);
        if (Volatile.Read(ref S->HwLease) == RingRules.Prev(cur0, N)
            && (S->SelfServed == 0 || Volatile.Read(ref *ReleaseWord) == cur0))
        {
            start = 0;
            leaseIdx = 0;
            return 0;
        }
        Lock();
        if (S->SelfServed != 0) TakeRelease();
        start = S->HwLease;
        // hwcur is written by the receiver without the lock; a stale value only makes the
        // free space look smaller. Acquire: the receiver finished reading the slots it released.
        uint hwcur = Volatile.Read(ref S->HwCur);
        uint busy = RingRules.Distance(hwcur, start, N);
        uint space = N - 1 - busy;
        uint howmany = needed < space ? needed : space;
        if (howmany == 0)
        {
            Unlock();
            leaseIdx = 0;
            return 0;
        }
        leaseIdx = S->LeaseIdx;
        Leases[leaseIdx] = NoSlot;
        S->LeaseIdx = RingRules.Next(leaseIdx, N);
        uint end = start + howmany;
        S->HwLease = end >= N ? end - N : end;
        Unlock();
        return howmany;
    }

    /// <summary>
    /// Step 3 of the lease protocol: report that the lease (<paramref name="start"/>,
    /// <paramref name="howmany"/>) was filled up to <paramref name="used"/> slots. Returns
    /// true when this call moved hwtail (the caller then notifies the receiver).
    /// </summary>
    public bool Complete(uint start, uint howmany, uint used, uint leaseIdx, long packets, long bytes, long badBuffers)
    {
        uint j = start + used;
        if (j >= N) j -= N;
        // Capture (monitor port): the leased slots are still ours and not yet visible to the
        // receiver, so their contents are stable. One load and one branch when nobody captures.
        if (Port.Taps is { } taps && used != 0)
            CaptureTap.CaptureSlots(taps, CaptureDirection.In, Slots, N, start, j, BufferBase, RegionLayout.ReservedBuffers, BufferCount);
        Lock();
        S->RxPackets += packets;
        S->RxBytes += bytes;
        S->DropBadBuffer += badBuffers;
        if (used < howmany)
        {
            uint leaseEnd = start + howmany;
            if (leaseEnd >= N) leaseEnd -= N;
            // Newest by ticket, not by position: a later lease that gave all its slots back
            // leaves hwlease at our end, yet its ticket (ending there) is still to be walked.
            if (RingRules.Next(leaseIdx, N) == S->LeaseIdx)
            {
                S->HwLease = j; // still the newest lease: give the unused slots back
            }
            else
            {
                // A later lease exists; the unused slots must still be published, as empty slots.
                for (uint k = j; k != leaseEnd; k = RingRules.Next(k, N))
                {
                    Slots[k].Len = 0;
                    Slots[k].Flags = 0;
                }
                j = leaseEnd;
            }
        }
        Leases[leaseIdx] = j;
        bool moved = false;
        if (start == S->HwTail)
        {
            // Every earlier lease is done: publish ours and any later ones already finished.
            uint idx = leaseIdx;
            uint newTail = start;
            while (idx != S->LeaseIdx && Leases[idx] != NoSlot)
            {
                newTail = Leases[idx];
                Leases[idx] = NoSlot;
                idx = RingRules.Next(idx, N);
            }
            if (newTail != start)
            {
                // Self-served: the user may read up to here (ordered before hwtail's fence below).
                if (S->SelfServed != 0) Volatile.Write(ref *PublishWord, newTail);
                // Full fence (xchg): the receiver reads hwtail with acquire and then the slots;
                // the fence also orders this store before the caller's read of the waiter count.
                Interlocked.Exchange(ref S->HwTail, newTail);
                moved = true;
            }
        }
        Unlock();
        return moved;
    }

    /// <summary>
    /// No slot leased, published or unsynced: every frame ever delivered here was taken by the
    /// receiver. Racy by nature (a sender may lease right after); a device sink reads it under its
    /// transmit lock, where hwcur only moves for itself, to know its earlier frames are gone.
    /// </summary>
    public bool IsDrained => Volatile.Read(ref S->HwLease) == Volatile.Read(ref S->HwCur);

    /// <summary>Counts frames a device sink transmitted straight from the sender's slots (<see cref="IDirectSink"/>) as delivered here.</summary>
    public void CountDirect(long packets, long bytes)
    {
        Lock();
        S->RxPackets += packets;
        S->RxBytes += bytes;
        Unlock();
    }

    /// <summary>Counts frames that found no room, outside any lease.</summary>
    public void CountRingFull(long packets) => Interlocked.Add(ref S->DropRingFull, packets);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsValidBuffer(uint idx) => idx - RegionLayout.ReservedBuffers < BufferCount - RegionLayout.ReservedBuffers;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* BufferAddress(uint idx) => BufferBase + (nuint)idx * RegionLayout.DefaultBufferSize;

    /// <summary>True when frames were published that the receiver has not synced yet.
    /// Self-served: frames are published past the user's cur (read as a hint: a wrong value only
    /// makes the user's own POLL return early or wait for the next frame).</summary>
    public bool HasUnsynced => S->SelfServed != 0
        ? Volatile.Read(ref S->HwTail) != Volatile.Read(ref *(uint*)(Ring + NetmapAbi.RingCur))
        : Volatile.Read(ref S->HwTail) != S->RTail;

    /// <summary>
    /// netmap rxsync for this ring, run by the receiver: validate head/cur, release the slots
    /// the user consumed (hwcur = head) and publish the frames senders completed (tail = hwtail).
    /// The receiver never copies. Returns true when the ring then holds frames for the user
    /// (cur != tail): poll's POLLIN, decided inside the sync so that nothing outside it reads
    /// ring memory. A retired port's sync touches nothing (see <see cref="ValePort"/>, "Port
    /// state changes").
    /// </summary>
    public bool Sync()
    {
        if (S->SelfServed != 0) return SyncSelfServed();
        // Enter: CompareExchange is a full fence, so the read of Retired below cannot move above
        // it; Bridge.Detach stores Retired, fences, then waits for Busy == 0 (Dekker).
        if (Interlocked.CompareExchange(ref S->Busy, 1, 0) != 0)
        {
            Interlocked.Increment(ref S->BusySkips);
            return false;
        }
        if (Port.Retired)
        {
            Volatile.Write(ref S->Busy, 0); // closed: the ring's area belongs to the region again
            return false;
        }
        uint* ringHead = (uint*)(Ring + NetmapAbi.RingHead);
        uint* ringCur = (uint*)(Ring + NetmapAbi.RingCur);
        uint* ringTail = (uint*)(Ring + NetmapAbi.RingTail);
        uint head = Volatile.Read(ref *ringHead); // read once: the domain may change it at any time
        uint cur = Volatile.Read(ref *ringCur);
        uint hwcur = S->HwCur;
        if (!RingRules.IsLegalMove(head, cur, hwcur, S->RTail, N))
        {
            // Corrupt ring index: reinitialise the user's view to the host's and do nothing else.
            *ringHead = hwcur;
            *ringCur = hwcur;
            *ringTail = S->RTail;
            S->Reinits++;
            bool any = hwcur != S->RTail;
            Volatile.Write(ref S->Busy, 0);
            return any;
        }
        if (head != hwcur)
        {
            // Release: the domain finished with [hwcur, head); senders may reuse those slots.
            Volatile.Write(ref S->HwCur, head);
        }
        // Acquire: the slots up to hwtail were fully written before the sender published it.
        uint tail = Volatile.Read(ref S->HwTail);
        S->RTail = tail;
        Volatile.Write(ref *ringTail, tail);
        Volatile.Write(ref S->Busy, 0); // release: every write above is done before a detach sees the ring idle
        return cur != tail;
    }

    /// <summary>
    /// The host's rxsync of a self-served ring (a stale request, a host-side poll): the user's
    /// ring is the library's to update; here only the release is taken. True when frames the
    /// user has not released are published (the user may have unread frames).
    /// </summary>
    private bool SyncSelfServed()
    {
        if (Port.Retired) return false;
        Lock();
        TakeRelease();
        bool any = S->HwTail != Volatile.Read(ref *(uint*)(Ring + NetmapAbi.RingCur)); // a hint: frames past the user's cur
        Unlock();
        return any;
    }

    /// <summary>
    /// Waits until no rxsync of this ring is running. Called by <see cref="Bridge.Detach"/> after
    /// it set Retired with a full fence: a sync that entered before that is waited for, one that
    /// enters after it sees Retired and touches nothing.
    /// </summary>
    public void WaitQuiescent()
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref S->Busy) != 0) spin.SpinOnce();
    }
}
