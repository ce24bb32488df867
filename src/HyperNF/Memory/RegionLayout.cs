using HyperNF.Netmap;

namespace HyperNF.Memory;

/// <summary>
/// Sizes of one domain memory region, fixed when the region is created (as netmap's
/// per-domain allocator is). The layout they produce is documented in docs/abi.md.
/// </summary>
public sealed record RegionLayout
{
    public const int PageSize = 4096;
    public const int CacheLine = 64;
    public const int DefaultBufferSize = 2048;
    public const int DefaultSlots = 1024;
    public const int MaxSlots = 4096;
    public const int MaxRingsPerPort = 16;
    /// <summary>Buffer indices 0 and 1 are never valid, as in netmap: a zeroed slot can never name a real buffer.</summary>
    public const uint ReservedBuffers = 2;

    /// <summary>How many ports (netmap_if areas) the region can hold.</summary>
    public int MaxPorts { get; init; } = 2;
    /// <summary>TX ring count = RX ring count per port.</summary>
    public int RingsPerPort { get; init; } = 1;
    public int SlotsPerRing { get; init; } = DefaultSlots;
    /// <summary>Spare buffers per port beyond one per slot, chained from netmap_if.bufs_head.</summary>
    public int ExtraBuffersPerPort { get; init; }

    public int BufferSize => DefaultBufferSize;

    public void Validate()
    {
        if (MaxPorts is < 1 or > 254) throw new ArgumentOutOfRangeException(nameof(MaxPorts), MaxPorts, "a region holds 1..254 ports");
        if (RingsPerPort is < 1 or > MaxRingsPerPort) throw new ArgumentOutOfRangeException(nameof(RingsPerPort), RingsPerPort, $"a port has 1..{MaxRingsPerPort} ring pairs");
        if (SlotsPerRing < 8 || SlotsPerRing > MaxSlots || (SlotsPerRing & (SlotsPerRing - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(SlotsPerRing), SlotsPerRing, $"slots per ring must be a power of two in 8..{MaxSlots}");
        if (ExtraBuffersPerPort is < 0 or > 65536) throw new ArgumentOutOfRangeException(nameof(ExtraBuffersPerPort), ExtraBuffersPerPort, "0..65536 extra buffers per port");
    }

    // ---- derived offsets (all relative to the region start) ----

    /// <summary>Region header: magic, version, sizes and the table of netmap_if offsets.</summary>
    public long HeaderBytes => Align(64 + 8L * MaxPorts, PageSize);

    /// <summary>netmap_if of a port: 64 bytes of fields, then one i64 ring offset per ring.</summary>
    public long InterfaceBytes => Align(NetmapAbi.IfRingOffsets + 8L * 2 * RingsPerPort, 256);

    public long RingBytes => NetmapAbi.RingSlots + (long)NetmapAbi.SlotSize * SlotsPerRing;

    public long PortAreaBytes => Align(InterfaceBytes + 2 * RingsPerPort * RingBytes, PageSize);

    public long PortAreaOffset(int port) => HeaderBytes + port * PortAreaBytes;

    public long BufferOffset => HeaderBytes + MaxPorts * PortAreaBytes;

    public uint BuffersPerPort => (uint)(2 * RingsPerPort * SlotsPerRing + ExtraBuffersPerPort);

    public uint BufferCount => ReservedBuffers + BuffersPerPort * (uint)MaxPorts;

    public long TotalBytes => Align(BufferOffset + (long)BufferCount * BufferSize, PageSize);

    /// <summary>First buffer index owned by port area <paramref name="port"/>.</summary>
    public uint FirstBufferOf(int port) => ReservedBuffers + (uint)port * BuffersPerPort;

    internal static long Align(long v, long a) => (v + a - 1) & ~(a - 1);
}
