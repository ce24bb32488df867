namespace HyperNF.Switch;

/// <summary>Counters of one port at one moment. Exact at a quiescent point, close otherwise.</summary>
public sealed record PortStatistics
{
    public required string Name { get; init; }
    /// <summary>Frames taken from this port's TX rings ("sent").</summary>
    public long TxPackets { get; init; }
    public long TxBytes { get; init; }
    /// <summary>Frames copied into this port's RX rings ("delivered").</summary>
    public long RxPackets { get; init; }
    public long RxBytes { get; init; }
    /// <summary>Extra copies made because a frame sent from this port was flooded to several ports.</summary>
    public long FloodCopies { get; init; }
    /// <summary>Drops by <see cref="DropReason"/>: ingress reasons counted at the sender, ring-full and bad RX buffers at the receiver.</summary>
    public required long[] Drops { get; init; }
    /// <summary>Syncs refused because head/cur were illegal (the ring was reinitialised): netmap's "corrupt ring index".</summary>
    public long CorruptRingIndex { get; init; }
    /// <summary>Syncs skipped because another thread was syncing the same ring.</summary>
    public long BusySkips { get; init; }

    public long Drop(DropReason r) => Drops[(int)r];
    public long TotalDrops => Drops.Sum();
}

/// <summary>Totals of a bridge; includes ports that have since detached.</summary>
public sealed record BridgeStatistics
{
    public required string Name { get; init; }
    public int Ports { get; init; }
    public long Sent { get; init; }
    public long Delivered { get; init; }
    public long FloodCopies { get; init; }
    /// <summary>Frames added by segmenting GSO super-frames for ports without a virtio-net header (segments - 1 per super-frame).</summary>
    public long SegmentCopies { get; init; }
    public required long[] Drops { get; init; }
    public long SentBytes { get; init; }
    public long DeliveredBytes { get; init; }
    public long CorruptRingIndex { get; init; }
    public int TableEntries { get; init; }
    public int TableCapacity { get; init; }

    public long Dropped => Drops.Sum();
    /// <summary>sent + extra flood copies + extra segments - delivered - dropped: 0 at any quiescent point.</summary>
    public long Unaccounted => Sent + FloodCopies + SegmentCopies - Delivered - Dropped;
}
