using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HyperNF.Memory;
using HyperNF.Netmap;

namespace HyperNF.Switch;

/// <summary>
/// The offloading datapath (netmap's bdg_mismatch_datapath): used by <see cref="Deliver"/> for a
/// destination whose virtio-net header length differs from the sender's. Slower than the plain
/// copy (each frame is assembled in a scratch buffer and leased on its own) and only taken when
/// the lengths differ, which never happens between ports that left the header at 0.
/// <list type="bullet">
/// <item>sender with a header, destination without: the header is checked against the frame
/// (<see cref="Offload.Plan"/>); GSO super-frames are cut into segments, partial checksums are
/// completed, the header is dropped. A header that does not match its frame is a
/// <see cref="DropReason.BadOffload"/> drop.</item>
/// <item>sender without a header, destination with one: a zeroed header (no offloads) is put in front.</item>
/// <item>both with headers of different lengths (10 and 12): the 10 common bytes are kept, num_buffers is 0.</item>
/// </list>
/// Segments are counted as delivered frames; the frames they add are
/// <see cref="BridgeStatistics.SegmentCopies"/> (like flood copies), so the accounting still balances.
/// </summary>
internal sealed unsafe partial class TxKring
{
    /// <summary>Largest frame a chain can hold, and so the scratch size.</summary>
    private const int ScratchBytes = MaxFragments * RegionLayout.DefaultBufferSize + 64;

    /// <summary>The sender's virtio-net header length, read once per sync (the port may change it between syncs).</summary>
    private int _hdr;
    private byte[]? _scratchArray;
    private byte* _scratchIn, _scratchOut;

    private void EnsureScratch()
    {
        if (_scratchArray is not null) return;
        var a = GC.AllocateArray<byte>(2 * ScratchBytes, pinned: true);
        _scratchIn = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a));
        _scratchOut = _scratchIn + ScratchBytes;
        _scratchArray = a;
    }

    private void DeliverOffload(RxKring rx, DestQueue* dq, DestQueue* bq, int dstHdr)
    {
        EnsureScratch();
        FwdEntry* ft = _ft;
        ushort uNext = dq->Head, bNext = bq->Head;
        int srcHdr = _hdr;
        uint n = rx.N;
        NetmapSlot* rslots = rx.Slots;
        var dport = rx.Port;
        long bad = 0, ringFull = 0, extra = 0;
        bool notify = false; // once, after the last frame: the receiver (a port's sink) takes them in one round
        const int B = RegionLayout.DefaultBufferSize;
        while (uNext != FtNull || bNext != FtNull)
        {
            bool fromUnicast = bNext == FtNull || (uNext != FtNull && uNext < bNext);
            ushort i = fromUnicast ? uNext : bNext;
            if (fromUnicast) uNext = ft[i].Next; else bNext = ft[i].Next;

            // Assemble the frame (fragments validated by Preflush).
            int frags = ft[i].Frags, total = 0;
            for (int f = 0; f < frags; f++)
            {
                FwdEntry* e = ft + i + f;
                Buffer.MemoryCopy(e->Buf, _scratchIn + total, e->Len, e->Len);
                total += e->Len;
            }
            byte* frame = _scratchIn + srcHdr;
            int len = total - srcHdr;
            OffloadPlan plan = srcHdr > 0 && dstHdr == 0
                ? Offload.Plan(_scratchIn, frame, len)
                : new OffloadPlan { Action = OffloadAction.Copy, Segments = 1 };
            if (plan.Action == OffloadAction.Drop)
            {
                bad++;
                continue;
            }
            uint slots = 0;
            for (int k = 0; k < plan.Segments; k++) slots += (uint)((dstHdr + Offload.SegmentLength(plan, len, k) + B - 1) / B);
            if (slots > n - 1)
            {
                ringFull++; // could never fit, however empty the ring
                continue;
            }
            uint howmany = rx.Lease(slots, out uint start, out uint leaseIdx);
            if (howmany < slots)
            {
                if (howmany > 0) notify |= rx.Complete(start, howmany, 0, leaseIdx, 0, 0, 0);
                ringFull++;
                continue;
            }
            uint j = start;
            long packets = 0, bytes = 0, badBuffers = 0;
            for (int k = 0; k < plan.Segments; k++)
            {
                byte* o = _scratchOut;
                if (dstHdr > 0)
                {
                    new Span<byte>(o, dstHdr).Clear();
                    if (srcHdr > 0) Buffer.MemoryCopy(_scratchIn, o, 10, 10); // the fields both lengths share
                }
                int outLen = dstHdr + Offload.Write(plan, frame, len, k, o + dstHdr);
                int outFrags = (outLen + B - 1) / B;
                bool badBuffer = false;
                for (int f = 0; f < outFrags; f++)
                {
                    NetmapSlot* rs = rslots + j;
                    uint didx = rs->BufIdx; // read once: the receiving domain owns this field
                    int fl = Math.Min(B, outLen - f * B);
                    if (rx.IsValidBuffer(didx))
                    {
                        Buffer.MemoryCopy(o + f * B, rx.BufferAddress(didx), B, fl);
                        rs->Len = (ushort)fl;
                        rs->Flags = (ushort)((outFrags << SlotFlags.FragmentCountShift) | (f + 1 < outFrags ? SlotFlags.MoreFrag : 0));
                    }
                    else
                    {
                        badBuffer = true;
                        rs->Len = 0;
                        rs->Flags = 0;
                    }
                    j = j + 1 == n ? 0 : j + 1;
                }
                if (badBuffer) badBuffers++;
                else { packets++; bytes += outLen; }
            }
            extra += plan.Segments - 1;
            notify |= rx.Complete(start, howmany, slots, leaseIdx, packets, bytes, badBuffers);
        }
        if (notify) dport.NotifyReceiver();
        if (bad != 0) Drops[(int)DropReason.BadOffload] += bad;
        if (ringFull != 0) rx.CountRingFull(ringFull);
        if (extra != 0) Port.Bridge.AddSegmentCopies(extra);
    }
}
