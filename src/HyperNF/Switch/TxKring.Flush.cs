using System.Runtime.CompilerServices;
using HyperNF.Netmap;

namespace HyperNF.Switch;

internal sealed unsafe partial class TxKring
{
    private const ulong MacMask = 0xFFFF_FFFF_FFFFUL;

    /// <summary>
    /// netmap's nm_bdg_preflush: walk [hwcur, head), validate every slot (each field read once,
    /// since the domain can change it under us), collect good frames into the scratch table and
    /// flush every <c>bridge_batch</c> slots at a frame boundary. Bad frames are counted here.
    /// </summary>
    private void Preflush(uint head)
    {
        var port = Port;
        var bridge = port.Bridge;
        PortTable table = bridge.Table; // read after TryEnter's fence: see Bridge.Detach
        int batch = bridge.Switch.BridgeBatch;
        // Index is read once: a concurrent detach sets it to -1 at any moment.
        int me = port.Index;
        bool down = me < 0 || table.ByIndex[me] != port || !port.Up;

        FwdEntry* ft = _ft;
        uint n = N;
        int ftI = 0, pktStart = 0, frags = 0;
        uint pktBytes = 0;
        int bad = -1;
        long txPackets = 0, txBytes = 0;
        // The virtio-net header (if the port has one) is in front of every frame and not part of it.
        int hdr = _hdr = port.VirtioHeaderLength;
        int maxFrame = bridge.MaxFrameBytes + hdr;
        int minFirst = MinFrame + hdr; // the header and the Ethernet header in the first slot
        byte* bufBase = _memory.BufferBase;
        uint bufLimit = _memory.BufferCount - Memory.RegionLayout.ReservedBuffers;

        for (uint j = HwCur; j != head; j = j + 1 == n ? 0 : j + 1)
        {
            NetmapSlot* slot = Slots + j;
            uint idx = slot->BufIdx;
            uint len = slot->Len;
            uint flags = slot->Flags;
            if (frags < MaxFragments)
            {
                FwdEntry* e = ft + ftI++;
                e->Buf = bufBase + (nuint)idx * Memory.RegionLayout.DefaultBufferSize;
                e->Len = (ushort)len;
                e->Next = FtNull;
                e->Frags = 0;
            }
            if (bad < 0)
            {
                if (idx - Memory.RegionLayout.ReservedBuffers >= bufLimit || (flags & SlotFlags.Indirect) != 0) bad = (int)DropReason.BadBufferIndex;
                else if (len > Memory.RegionLayout.DefaultBufferSize) bad = (int)DropReason.BadLength;
                else if (frags == 0 && len < minFirst) bad = (int)DropReason.Runt;
            }
            frags++;
            pktBytes += len;
            if ((flags & SlotFlags.MoreFrag) != 0)
            {
                if (frags == MaxFragments && bad < 0) bad = (int)DropReason.BadLength; // chain too long: consume it, keep none
                continue;
            }
            // end of a frame
            txPackets++;
            txBytes += pktBytes;
            if (bad < 0 && pktBytes > (uint)maxFrame) bad = (int)DropReason.BadLength;
            if (bad >= 0)
            {
                Drops[bad]++;
                ftI = pktStart;
            }
            else
            {
                ft[pktStart].Frags = (byte)frags;
                if (ftI >= batch)
                {
                    if (down || batch == 0) DropCollected(ftI, down);
                    else Flush(table, ftI, me);
                    ftI = 0;
                }
            }
            pktStart = ftI;
            frags = 0;
            pktBytes = 0;
            bad = -1;
        }
        if (frags > 0)
        {
            // head was set in the middle of a MOREFRAG chain: the frame is incomplete.
            txPackets++;
            txBytes += pktBytes;
            Drops[(int)DropReason.BadLength]++;
            ftI = pktStart;
        }
        if (ftI > 0)
        {
            if (down || batch == 0) DropCollected(ftI, down);
            else Flush(table, ftI, me);
        }
        TxPackets += txPackets;
        TxBytes += txBytes;
    }

    private void DropCollected(int count, bool down)
    {
        long packets = 0;
        for (int i = 0; i < count; i += _ft[i].Frags) packets++;
        Drops[(int)(down ? DropReason.PortDown : DropReason.Discarded)] += packets;
    }

    /// <summary>
    /// netmap's nm_bdg_flush over <paramref name="count"/> scratch entries. Pass 1 learns
    /// sources, looks up destinations and appends each frame to its destination's list (or the
    /// broadcast list). Pass 2 delivers each list into its destination ring with the lease
    /// protocol (see <see cref="RxKring"/>), merging the broadcast list into every list.
    /// </summary>
    private void Flush(PortTable table, int count, int me)
    {
        FwdEntry* ft = _ft;
        DestQueue* q = _q;
        ushort* dsts = _dsts;
        var port = Port;
        var fwd = port.Bridge.Forwarding;
        uint now = ForwardingTable.Now();
        int numDsts = 0;
        ulong lastDmac = ulong.MaxValue;
        int lastDst = 0;
        long hairpin = 0, portDown = 0;
        int touched = 0;
        DestQueue* bq = q + BroadcastQueue;
        bool wire = !port.Bridge.Learning; // a plain wire: every frame floods, nothing is learned
        bool learnedNew = false;

        // ---- pass 1: learn, look up, bucket
        for (int i = 0; i < count; i += ft[i].Frags)
        {
            byte* buf = ft[i].Buf + _hdr;
            ulong dmac = *(ulong*)buf & MacMask;          // bytes 0..5
            ulong smac = *(ulong*)(buf + 6) & MacMask;    // bytes 6..11
            if (wire) dmac |= 1;                          // treated as multicast: flooded, source not learned
            else if ((smac & 1) == 0 && (smac != port.LastSmac || now != port.LastLearn))
            {
                learnedNew |= fwd.Learn(smac, me, now);
                port.LastSmac = smac;
                port.LastLearn = now;
                // Learning may change what the cached destination resolves to (it may be this
                // very address, now behind us, or an address whose bucket it just took over).
                lastDmac = ulong.MaxValue;
            }
            int dst;
            if ((dmac & 1) != 0) dst = BroadcastQueue;     // multicast and broadcast
            else if (dmac == lastDmac) dst = lastDst;
            else
            {
                dst = fwd.Lookup(dmac, now);
                lastDmac = dmac;
                lastDst = dst;
            }
            if (dst != BroadcastQueue)
            {
                if (dst == me) { hairpin++; continue; }
                byte st = _dstState[dst];
                if (st == DestUnknown) st = Resolve(table, dst, ref touched);
                if (st == DestGone) dst = BroadcastQueue; // entry of a port that just left: flood
                else if (st == DestDown) { portDown++; continue; }
            }
            DestQueue* dq = q + dst;
            if (dq->Head == FtNull)
            {
                dq->Head = (ushort)i;
                if (dst != BroadcastQueue) dsts[numDsts++] = (ushort)dst;
            }
            else
            {
                ft[dq->Tail].Next = (ushort)i;
            }
            dq->Tail = (ushort)i;
            dq->Slots += ft[i].Frags;
            dq->Packets++;
        }
        if (hairpin != 0) Drops[(int)DropReason.Hairpin] += hairpin;
        if (portDown != 0) Drops[(int)DropReason.PortDown] += portDown;
        // A copy of the table elsewhere (the kernel fast path of physical ports) follows it, in
        // the learner's context, only when an answer changed.
        if (learnedNew && port.Bridge.ForwardingObservers is { } observers)
            foreach (var o in observers) o.ForwardingChanged();

        if (bq->Packets != 0)
        {
            // A flood goes to every other port that is up; ports without unicast traffic in this
            // batch get an (empty) list of their own so the broadcast list is merged there too.
            // The same per-flush decision as for unicast: a port counted here is exactly a
            // port pass 2 delivers to, whatever its Up flag does meanwhile.
            int fanout = 0;
            int[] active = table.ActiveIndex;
            for (int a = 0; a < active.Length; a++)
            {
                int pi = active[a];
                if (pi == me) continue;
                byte st = _dstState[pi];
                if (st == DestUnknown) st = Resolve(table, pi, ref touched);
                if (st != DestUp) continue;
                fanout++;
                if (q[pi].Head == FtNull) dsts[numDsts++] = (ushort)pi;
            }
            if (fanout == 0)
            {
                Drops[(int)DropReason.NoDestination] += bq->Packets;
                bq->Head = bq->Tail = FtNull;
                bq->Slots = bq->Packets = 0;
            }
            else
            {
                FloodCopies += (long)bq->Packets * (fanout - 1);
            }
        }

        // ---- pass 2: deliver per destination
        for (int k = 0; k < numDsts; k++)
        {
            int d = dsts[k];
            var dport = table.ByIndex[d]!;
            DestQueue* dq = q + d;
            var rx = dport.Rx[RingIndex % dport.Rx.Length];
            Deliver(rx, dq, bq);
            dq->Head = dq->Tail = FtNull;
            dq->Slots = dq->Packets = 0;
        }
        bq->Head = bq->Tail = FtNull;
        bq->Slots = bq->Packets = 0;
        for (int t = 0; t < touched; t++) _dstState[_touched[t]] = DestUnknown;
    }

    private const byte DestUnknown = 0, DestUp = 1, DestDown = 2, DestGone = 3;

    /// <summary>
    /// Decides, once per flush, what destination <paramref name="idx"/> of
    /// <paramref name="table"/> is for this flush: up (frames go to it and count as sent to it),
    /// down (port-down drops) or gone (no port there: flood). Every later look at the same port
    /// in this flush uses the decision, never the live flag.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte Resolve(PortTable table, int idx, ref int touched)
    {
        var d = table.ByIndex[idx];
        byte st = d is null ? DestGone : d.Up ? DestUp : DestDown; // Up read once
        _dstState[idx] = st;
        _touched[touched++] = (ushort)idx;
        return st;
    }

    /// <summary>
    /// Copies one destination's frames (its own list merged with the broadcast list, in
    /// scratch order) into ring <paramref name="rx"/> of the destination port.
    /// </summary>
    private void Deliver(RxKring rx, DestQueue* dq, DestQueue* bq)
    {
        int dstHdr = rx.Port.VirtioHeaderLength;
        if (dstHdr != _hdr)
        {
            DeliverOffload(rx, dq, bq, dstHdr);
            return;
        }
        if (rx.Port.Direct is { } direct && Port.HostOwnedFrames && rx.Port.Taps is null)
        {
            // Cut-through: the device takes the frames from our slots (IDirectSink), or declines.
            var frames = new DirectFrames(_ft, dq->Head, bq->Head);
            if (direct.TryTransmitDirect(rx, ref frames, out long p, out long b))
            {
                rx.CountDirect(p, b);
                return;
            }
        }
        FwdEntry* ft = _ft;
        uint needed = (uint)dq->Slots + bq->Slots;
        long left = dq->Packets + bq->Packets;
        ushort uNext = dq->Head, bNext = bq->Head;
        int retry = 2; // NM_TXSYNC_RETRY: retry after partial progress, the receiver may have freed slots
        uint n = rx.N;
        NetmapSlot* rslots = rx.Slots;
        var dport = rx.Port;
        while (true)
        {
            uint howmany = rx.Lease(needed, out uint start, out uint leaseIdx);
            if (howmany == 0) break;
            uint j = start, used = 0;
            long packets = 0, bytes = 0, badBuffers = 0;
            while (uNext != FtNull || bNext != FtNull)
            {
                // merge the two lists in scratch order (both are sorted)
                ushort i;
                bool fromUnicast = bNext == FtNull || (uNext != FtNull && uNext < bNext);
                i = fromUnicast ? uNext : bNext;
                uint frags = ft[i].Frags;
                if (frags > howmany - used) break; // does not fit in what is left of the lease
                if (fromUnicast) uNext = ft[i].Next; else bNext = ft[i].Next;
                bool badBuffer = false;
                uint frameBytes = 0;
                for (uint f = 0; f < frags; f++)
                {
                    FwdEntry* e = ft + i + f;
                    NetmapSlot* rs = rslots + j;
                    uint didx = rs->BufIdx; // read once: the receiving domain owns this slot's field
                    uint len = e->Len;
                    if (rx.IsValidBuffer(didx))
                    {
                        FrameCopy.Copy(rx.BufferAddress(didx), e->Buf, len);
                        rs->Len = (ushort)len;
                        rs->Flags = (ushort)((frags << SlotFlags.FragmentCountShift) | (f + 1 < frags ? SlotFlags.MoreFrag : 0u));
                    }
                    else
                    {
                        badBuffer = true;
                        rs->Len = 0;
                        rs->Flags = 0;
                    }
                    frameBytes += len;
                    j = j + 1 == n ? 0 : j + 1;
                }
                used += frags;
                needed -= frags;
                left--;
                if (badBuffer) badBuffers++;
                else { packets++; bytes += frameBytes; }
            }
            if (rx.Complete(start, howmany, used, leaseIdx, packets, bytes, badBuffers)) dport.NotifyReceiver();
            if (left == 0 || used == 0 || --retry == 0) break;
        }
        if (left != 0) rx.CountRingFull(left);
    }
}

/// <summary>
/// One destination's frames during a flush, in scratch order (its unicast list merged with the
/// broadcast list, as <see cref="TxKring"/>'s Deliver copies them), for a device sink that
/// transmits them from the sender's slots (<see cref="IDirectSink"/>). Valid only inside the
/// call it is passed to.
/// </summary>
internal unsafe ref struct DirectFrames
{
    private readonly FwdEntry* _ft;
    private ushort _u, _b;
    private int _cur, _frags;

    internal DirectFrames(FwdEntry* ft, ushort unicastHead, ushort broadcastHead)
    {
        _ft = ft;
        _u = unicastHead;
        _b = broadcastHead;
    }

    /// <summary>Steps to the next frame; false after the last.</summary>
    public bool MoveNext()
    {
        if (_u == TxKring.FtNull && _b == TxKring.FtNull) return false;
        bool fromUnicast = _b == TxKring.FtNull || (_u != TxKring.FtNull && _u < _b);
        ushort i = fromUnicast ? _u : _b;
        if (fromUnicast) _u = _ft[i].Next; else _b = _ft[i].Next;
        _cur = i;
        _frags = _ft[i].Frags;
        return true;
    }

    /// <summary>Slots of the current frame (1..<see cref="TxKring.MaxFragments"/>).</summary>
    public readonly int Fragments => _frags;
    /// <summary>Fragment <paramref name="f"/>'s bytes (with the virtio-net header in the first, if the ports have one).</summary>
    public readonly byte* Buffer(int f) => _ft[_cur + f].Buf;
    public readonly int Length(int f) => _ft[_cur + f].Len;
}
