namespace HyperNF.Netmap;

/// <summary>
/// Byte offsets of the structures a domain sees in its region (docs/abi.md). They follow
/// netmap's <c>netmap_if</c>, <c>netmap_ring</c> and <c>netmap_slot</c> closely enough that a
/// netmap programmer recognises every field; offsets of ring fields are relative to the ring.
/// </summary>
public static class NetmapAbi
{
    public const uint RegionMagic = 0x4D464E48; // "HNFM" little-endian
    public const uint Version = 1;

    // region header
    public const int RegMagic = 0, RegVersion = 4, RegTotalBytes = 8, RegBufferSize = 16, RegBufferCount = 20,
        RegBufferOffset = 24, RegMaxPorts = 32, RegRingsPerPort = 36, RegSlotsPerRing = 40, RegPortOffsets = 64;

    // netmap_if
    public const int IfName = 0, IfNameLength = 16, IfVersion = 16, IfFlags = 20, IfTxRings = 24, IfRxRings = 28,
        IfBufsHead = 32, IfHostTxRings = 36, IfHostRxRings = 40, IfSpare = 44, IfRingOffsets = 56; // ring_ofs after ni_spare1[3], as in netmap API 14

    // netmap_ring (API 14: offset_mask and buf_align after the timestamp; sem is 128-byte aligned)
    public const int RingBufOffset = 0, RingNumSlots = 8, RingBufSize = 12, RingId = 16, RingDir = 18,
        RingHead = 20, RingCur = 24, RingTail = 28, RingFlags = 32, RingTimestamp = 40, RingOffsetMask = 56,
        RingBufAlign = 64, RingSem = 128, RingSlots = 256;

    /// <summary>
    /// Inside netmap_ring's sem area (reserved by netmap, never used by programs): the two words
    /// of a self-served RX ring (Switch/RxKring.cs, src/preload/hnf_proto.h), one cache line each,
    /// and a process TX ring's needs-kick word in split/merge (Vmm/KickChannel.cs).
    /// </summary>
    public const int RingSemRelease = RingSem, RingSemPublish = RingSem + 64, RingSemNeedsKick = RingSem;

    // netmap_slot
    public const int SlotBufIdx = 0, SlotLen = 4, SlotFlags = 6, SlotPtr = 8, SlotSize = 16;

    /// <summary>netmap's API version this layout follows (NETMAP_API); written to netmap_if.ni_version.</summary>
    public const uint NetmapApi = 14;
}
