namespace HyperNF.Tools;

/// <summary>The end of a run.</summary>
public sealed record PacketGenSummary
{
    public PacketGenFunction Function { get; init; }
    /// <summary>Wall time of the whole run.</summary>
    public TimeSpan Elapsed { get; init; }
    /// <summary>
    /// Time the rates are computed over: TX the whole run, RX from the first received batch
    /// to the last (as pkt-gen's receiver, which starts its clock at the first packet).
    /// </summary>
    public TimeSpan ActiveTime { get; init; }
    /// <summary>Frames queued and synced (TX).</summary>
    public long Sent { get; init; }
    /// <summary>Frames received, ours or not (RX).</summary>
    public long Received { get; init; }
    /// <summary>Frame bytes sent or received.</summary>
    public long Bytes { get; init; }
    /// <summary>Syncs that moved frames (pkt-gen's events).</summary>
    public long Syncs { get; init; }
    /// <summary>RX: received frames without the generator's magic (not counted for loss or latency).</summary>
    public long Foreign { get; init; }
    /// <summary>RX: sequence numbers missing between the lowest and highest seen.</summary>
    public long Lost { get; init; }
    /// <summary>RX: frames that arrived after a higher sequence number.</summary>
    public long Reordered { get; init; }
    /// <summary>RX: frames whose sequence number had already been seen.</summary>
    public long Duplicates { get; init; }
    /// <summary>RX: receive time minus send timestamp of the generator's frames; null when none arrived (and for TX).</summary>
    public LatencySummary? Latency { get; init; }

    public long Frames => Function is PacketGenFunction.Tx or PacketGenFunction.Ping ? Sent : Received;
    public double AverageMpps => ActiveTime > TimeSpan.Zero ? Frames / ActiveTime.TotalSeconds / 1e6 : 0;
    /// <summary>Gbit/s of frame bytes.</summary>
    public double AverageGbps => ActiveTime > TimeSpan.Zero ? Bytes * 8 / ActiveTime.TotalSeconds / 1e9 : 0;
}
