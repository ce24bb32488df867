using HyperNF.Switch;

namespace HyperNF.Tools;

/// <summary>
/// What a <see cref="PacketGenerator"/> does, named after pkt-gen's flags. Validated when a
/// generator is created; each message names the flag and the accepted values.
/// </summary>
public sealed record PacketGeneratorOptions
{
    public const int MinFrameLength = PacketFormat.MinFrameLength;
    /// <summary>Largest frame: a 9000-byte MTU jumbo frame with its Ethernet header, sent as an NS_MOREFRAG chain.</summary>
    public const int MaxFrameLength = 9014;
    public const int MaxBatch = 4096;

    /// <summary><c>-f tx|rx</c>.</summary>
    public PacketGenFunction Function { get; init; } = PacketGenFunction.Tx;

    /// <summary><c>-l</c>: frame length without the CRC, 60..9014; above the buffer size (2048) frames span several slots.</summary>
    public int FrameLength { get; init; } = MinFrameLength;

    /// <summary><c>-n</c>: frames to send, or to receive (any frame, the generator's or not, as pkt-gen counts) before stopping; 0 = no limit.</summary>
    public long Count { get; init; }

    /// <summary><c>-R</c>: frames per second to send; 0 = as fast as possible.</summary>
    public long RatePps { get; init; }

    /// <summary><c>-b</c>: frames per sync (TX) or the most consumed per sync (RX); cut to what a ring can hold.</summary>
    public int Batch { get; init; } = 512;

    /// <summary><c>-s</c>: source addresses and ports, cycled per frame.</summary>
    public EndpointRange Source { get; init; } = new(0x0A00_0001, 0x0A00_0001, EndpointRange.DefaultPort, EndpointRange.DefaultPort);

    /// <summary><c>-d</c>: destination addresses and ports, cycled per frame after the source range wraps.</summary>
    public EndpointRange Destination { get; init; } = new(0x0A01_0001, 0x0A01_0001, EndpointRange.DefaultPort, EndpointRange.DefaultPort);

    /// <summary><c>-S</c>: source MAC; null = a locally administered MAC derived from the port name.</summary>
    public string? SourceMac { get; init; }

    /// <summary><c>-D</c>: destination MAC; broadcast by default, as in pkt-gen (a VALE bridge floods it).</summary>
    public string DestinationMac { get; init; } = "ff:ff:ff:ff:ff:ff";

    /// <summary>Stop after this long; null = until <see cref="Count"/> or cancellation.</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>Interval between <see cref="PacketGenerator.Interval"/> reports (pkt-gen's -T).</summary>
    public TimeSpan ReportInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Spin on RxSync/TxSync instead of sleeping in Poll when there is nothing to do (pkt-gen's
    /// busy-wait): lower latency, one full core.
    /// </summary>
    public bool BusyPoll { get; init; }

    /// <summary><c>-w</c>: seconds to wait for the link before starting, as pkt-gen's wait_link (a VALE port is up at once; the wait is honoured all the same).</summary>
    public TimeSpan WaitLink { get; init; }

    /// <summary><c>-z</c>: a random source address and port (within <see cref="Source"/>) per frame instead of walking the range.</summary>
    public bool RandomSource { get; init; }

    /// <summary><c>-Z</c>: a random destination address and port (within <see cref="Destination"/>) per frame.</summary>
    public bool RandomDestination { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option and what it accepts.</summary>
    public void Validate(int bufferSize = Memory.RegionLayout.DefaultBufferSize)
    {
        if (!Enum.IsDefined(Function))
            throw new ArgumentException($"function {(int)Function} is not tx, rx, ping or pong (-f)", nameof(Function));
        if (FrameLength is < MinFrameLength or > MaxFrameLength)
            throw new ArgumentException($"frame length {FrameLength} is out of range: use {MinFrameLength}..{MaxFrameLength} bytes (-l)", nameof(FrameLength));
        if ((FrameLength + bufferSize - 1) / bufferSize > TxKring.MaxFragments)
            throw new ArgumentException($"frame length {FrameLength} needs more than {TxKring.MaxFragments} buffers of {bufferSize} bytes (-l)", nameof(FrameLength));
        if (Function is PacketGenFunction.Ping or PacketGenFunction.Pong && FrameLength > bufferSize)
            throw new ArgumentException($"frame length {FrameLength}: ping and pong frames must fit one buffer, {MinFrameLength}..{bufferSize} bytes (-l)", nameof(FrameLength));
        if (Count < 0)
            throw new ArgumentException($"count {Count} is negative: use 0 for no limit or a number of frames (-n)", nameof(Count));
        if (RatePps < 0)
            throw new ArgumentException($"rate {RatePps} is negative: use 0 for no limit or frames per second (-R)", nameof(RatePps));
        if (Batch is < 1 or > MaxBatch)
            throw new ArgumentException($"batch {Batch} is out of range: use 1..{MaxBatch} frames (-b)", nameof(Batch));
        if (Duration is { } d && d <= TimeSpan.Zero)
            throw new ArgumentException($"duration {d} is not positive: leave it unset for no limit", nameof(Duration));
        if (WaitLink < TimeSpan.Zero || WaitLink > TimeSpan.FromHours(1))
            throw new ArgumentException($"link wait {WaitLink.TotalSeconds} s is out of range: use 0..3600 seconds (-w)", nameof(WaitLink));
        if (ReportInterval < TimeSpan.FromMilliseconds(10))
            throw new ArgumentException($"report interval {ReportInterval.TotalMilliseconds} ms is too short: use at least 10 ms (-T)", nameof(ReportInterval));
        if (Source.LastAddress < Source.FirstAddress || Source.LastPort < Source.FirstPort)
            throw new ArgumentException($"source range {Source} runs backwards (-s)", nameof(Source));
        if (Destination.LastAddress < Destination.FirstAddress || Destination.LastPort < Destination.FirstPort)
            throw new ArgumentException($"destination range {Destination} runs backwards (-d)", nameof(Destination));
        if (SourceMac is not null)
        {
            ulong s = ParseMac(SourceMac, "source", "-S");
            if ((s & 1) != 0)
                throw new ArgumentException($"source MAC {SourceMac} is a multicast address: a sender needs a unicast MAC, e.g. 02:00:00:00:00:01 (-S)", nameof(SourceMac));
        }
        ParseMac(DestinationMac, "destination", "-D");
    }

    internal static ulong ParseMac(string text, string what, string flag)
    {
        try
        {
            return ForwardingTable.ParseMac(text ?? "");
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"{what} MAC: {e.Message} ({flag})", what == "source" ? nameof(SourceMac) : nameof(DestinationMac));
        }
    }
}
