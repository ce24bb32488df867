using HyperNF.Tools;

namespace HyperNF.Hypervisor;

/// <summary>
/// pkt-gen as a domain (nf=pkt-gen, nf_args="-f tx -l 60 ..."), on the domain's first port.
/// The generator reports every 100 ms; each report is also the vCPU's heartbeat and pause point.
/// The domain's summary is kept after the run for listings and experiments.
/// </summary>
public sealed class PacketGenGuest : IGuest
{
    private readonly PacketGeneratorOptions _options;
    private volatile PacketGenerator? _generator;
    private long _lastIntervalFrames;

    public PacketGenGuest(PacketGeneratorOptions options)
    {
        _options = options with { ReportInterval = TimeSpan.FromMilliseconds(100) };
    }

    public static PacketGenGuest FromArgs(string? args) => new(PacketGenArgs.Parse(args));

    public string Name => "pkt-gen";
    public int MinimumPorts => 1;
    public PacketGeneratorOptions Options => _options;
    public PacketGenerator? Generator => _generator;
    /// <summary>Frames sent or received so far (updated once per batch).</summary>
    public long Frames => _generator?.Frames ?? 0;
    /// <summary>The summary of the last finished run (set when the domain stops).</summary>
    public PacketGenSummary? Summary { get; private set; }
    /// <summary>Raised on the vCPU thread with every 100 ms report.</summary>
    public event Action<PacketGenInterval>? Interval;

    public IReadOnlyList<KeyValuePair<string, long>> Counters =>
    [
        new(_options.Function is PacketGenFunction.Tx or PacketGenFunction.Ping ? "sent" : "received", Frames),
        new("last_interval_frames", Interlocked.Read(ref _lastIntervalFrames)),
    ];

    public void Run(GuestContext ctx)
    {
        if (ctx.Ports.Count < 1) throw new InvalidOperationException($"pkt-gen needs one vif; domain '{ctx.DomainName}' has none");
        if (ctx.VCpu != 0)
        {
            while (!ctx.Stopping) { ctx.Checkpoint(); ctx.Cancellation.WaitHandle.WaitOne(100); }
            return;
        }
        var gen = new PacketGenerator(ctx.Ports[0], _options);
        gen.Interval += r =>
        {
            Interlocked.Exchange(ref _lastIntervalFrames, r.Frames);
            Interval?.Invoke(r);
            ctx.Checkpoint();
        };
        _generator = gen;
        ctx.Checkpoint();
        Summary = gen.Run(ctx.Cancellation);
        // A finished count/duration: keep checking in until the domain is destroyed.
        while (!ctx.Stopping) { ctx.Checkpoint(); ctx.Cancellation.WaitHandle.WaitOne(100); }
    }
}
