namespace HyperNF.Tools;

/// <summary>
/// One periodic report (pkt-gen's once-a-second line): what happened in the last
/// <see cref="Length"/>, plus running totals.
/// </summary>
/// <param name="Elapsed">Time since the run started, at the end of the interval.</param>
/// <param name="Length">Length of the interval (about the report interval; longer if the loop was blocked).</param>
/// <param name="Frames">Frames sent or received in the interval.</param>
/// <param name="Bytes">Frame bytes (without CRC) in the interval.</param>
/// <param name="Syncs">TxSync/RxSync calls that moved frames in the interval (pkt-gen's events).</param>
/// <param name="TotalFrames">Frames since the start.</param>
/// <param name="Lost">RX: frames missing so far according to the sequence numbers; TX: 0.</param>
public sealed record PacketGenInterval(PacketGenFunction Function, TimeSpan Elapsed, TimeSpan Length,
    long Frames, long Bytes, long Syncs, long TotalFrames, long Lost)
{
    public double Pps => Length > TimeSpan.Zero ? Frames / Length.TotalSeconds : 0;
    /// <summary>Bits per second of frame bytes (frame length * 8, no preamble or CRC).</summary>
    public double Bps => Length > TimeSpan.Zero ? Bytes * 8 / Length.TotalSeconds : 0;
    public double AverageBatch => Syncs > 0 ? (double)Frames / Syncs : 0;
}
