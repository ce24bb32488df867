using System.Diagnostics;
using System.Text;
using HyperNF.Netmap;

namespace HyperNF.Tools;

/// <summary>
/// netmap's pkt-gen on a <see cref="NetmapPort"/>: sends numbered, timestamped UDP frames
/// (<see cref="PacketGenFunction.Tx"/>) or receives them and measures rate, loss,
/// reordering, duplicates and latency (<see cref="PacketGenFunction.Rx"/>). It uses only the
/// raw netmap API (rings, TxSync, RxSync, Poll), like an NF would.
/// </summary>
/// <remarks>
/// <see cref="Run"/> works on the calling thread: the caller owns threads and pinning, as a
/// vCPU does. Everything the data path needs is allocated in the constructor; a run
/// allocates nothing per frame (only the report records, once per interval, and the summary).
/// </remarks>
public sealed partial class PacketGenerator
{
    private readonly NetmapPort _port;
    private readonly PacketGeneratorOptions _o;
    private readonly int _bufferSize;
    private readonly int _batch;
    private readonly int _fragments;
    private readonly int _firstFragmentLength;
    private readonly int _lastFragmentLength;
    private readonly bool _varyEndpoints;
    private readonly byte[] _template;
    /// <summary>Per TX ring and slot: the buffer index that holds the template, 0 for none (index 0 is never a buffer).</summary>
    private readonly uint[][] _prefilled;
    private readonly LatencyHistogram _latency = new();
    private readonly SequenceTracker _sequence = new();
    private readonly double _nsPerTick = 1e9 / Stopwatch.Frequency;
    private readonly long _reportTicks;

    private int _running;
    private long _frames;
    private long _start, _deadline, _nextReport, _lastReport, _lastFrames, _lastBytes, _lastSyncs;

    /// <summary>Prepares a generator on <paramref name="port"/>; throws <see cref="ArgumentException"/> for bad options.</summary>
    public PacketGenerator(NetmapPort port, PacketGeneratorOptions options)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentNullException.ThrowIfNull(options);
        var ring0 = port.TxRing(0);
        _bufferSize = ring0.BufferSize;
        options.Validate(_bufferSize);
        _port = port;
        _o = options;
        SourceMac = options.SourceMac is { } s ? PacketGeneratorOptions.ParseMac(s, "source", "-S") : DefaultSourceMac(port.Name);
        DestinationMac = PacketGeneratorOptions.ParseMac(options.DestinationMac, "destination", "-D");

        _fragments = (options.FrameLength + _bufferSize - 1) / _bufferSize;
        _firstFragmentLength = Math.Min(options.FrameLength, _bufferSize);
        _lastFragmentLength = options.FrameLength - (_fragments - 1) * _bufferSize;
        // A batch must fit in a ring: netmap keeps one slot empty to tell full from empty.
        int ringFrames = (int)Math.Min(port.TxRing(0).NumSlots, port.RxRing(0).NumSlots) - 1;
        _batch = Math.Max(1, Math.Min(options.Batch, ringFrames / _fragments));
        _varyEndpoints = !options.Source.IsSingle || !options.Destination.IsSingle || options.RandomSource || options.RandomDestination;

        _template = new byte[_firstFragmentLength];
        PacketFormat.WriteFrame(_template, options.FrameLength, DestinationMac, SourceMac,
            options.Source.FirstAddress, options.Source.FirstPort, options.Destination.FirstAddress, options.Destination.FirstPort);
        _prefilled = new uint[port.TxRingCount][];
        for (int r = 0; r < _prefilled.Length; r++) _prefilled[r] = new uint[port.TxRing(r).NumSlots];
        _reportTicks = (long)(options.ReportInterval.TotalSeconds * Stopwatch.Frequency);
    }

    public NetmapPort Port => _port;
    public PacketGeneratorOptions Options => _o;
    /// <summary>Source MAC in the forwarding table's form (first octet in the low byte).</summary>
    public ulong SourceMac { get; }
    public ulong DestinationMac { get; }
    /// <summary>The batch actually used: <see cref="PacketGeneratorOptions.Batch"/> cut to what a ring holds.</summary>
    public int Batch => _batch;

    /// <summary>Raised on the running thread once per <see cref="PacketGeneratorOptions.ReportInterval"/>.</summary>
    public event Action<PacketGenInterval>? Interval;

    /// <summary>Frames sent or received so far in the current run; safe to read from another thread (updated once per batch).</summary>
    public long Frames => Volatile.Read(ref _frames);

    /// <summary>
    /// Runs until <see cref="PacketGeneratorOptions.Count"/> frames, the
    /// <see cref="PacketGeneratorOptions.Duration"/>, cancellation, or the port closing,
    /// whichever comes first. A generator runs on one thread at a time; it can be run again.
    /// </summary>
    public PacketGenSummary Run(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _running, 1) != 0)
            throw new InvalidOperationException($"the generator on {_port.Name} is already running; use one generator per thread");
        try
        {
            // pkt-gen -w: wait for the link before starting (a VALE port is up at once).
            if (_o.WaitLink > TimeSpan.Zero) cancellationToken.WaitHandle.WaitOne(_o.WaitLink);
            long now = Stopwatch.GetTimestamp();
            _start = _lastReport = now;
            _nextReport = now + _reportTicks;
            _deadline = _o.Duration is { } d ? now + (long)(d.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
            _lastFrames = _lastBytes = _lastSyncs = 0;
            Volatile.Write(ref _frames, 0);
            _latency.Reset();
            _sequence.Reset();
            return _o.Function switch
            {
                PacketGenFunction.Tx => RunTx(cancellationToken),
                PacketGenFunction.Ping => RunPing(cancellationToken),
                PacketGenFunction.Pong => RunPong(cancellationToken),
                _ => RunRx(cancellationToken),
            };
        }
        finally
        {
            Volatile.Write(ref _running, 0);
        }
    }

    private void Report(long now, long frames, long bytes, long syncs, long lost)
    {
        Interval?.Invoke(new PacketGenInterval(_o.Function, Stopwatch.GetElapsedTime(_start, now), Stopwatch.GetElapsedTime(_lastReport, now),
            frames - _lastFrames, bytes - _lastBytes, syncs - _lastSyncs, frames, lost));
        _lastReport = now;
        _lastFrames = frames;
        _lastBytes = bytes;
        _lastSyncs = syncs;
        _nextReport = now + _reportTicks;
    }

    /// <summary>How long a wait may last so that reports and the deadline stay on time and cancellation is seen within 100 ms.</summary>
    private int WaitBudgetMs(long now)
    {
        long until = Math.Min(_nextReport, _deadline) - now;
        double ms = until * 1000.0 / Stopwatch.Frequency;
        return (int)Math.Clamp(Math.Ceiling(ms), 1, 100);
    }

    private long TicksToNs(long ticks) => _nsPerTick == 1.0 ? ticks : (long)(ticks * _nsPerTick);

    /// <summary>A locally administered unicast MAC (02:00:...) stable for a port name, so two generators on one bridge differ.</summary>
    private static ulong DefaultSourceMac(string portName)
    {
        uint h = 2166136261; // FNV-1a
        foreach (byte b in Encoding.UTF8.GetBytes(portName)) h = (h ^ b) * 16777619;
        return 0x02UL | ((ulong)h << 16);
    }
}
