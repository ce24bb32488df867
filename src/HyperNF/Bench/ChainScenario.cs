using System.Text.Json.Serialization;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;
using HyperNF.Tools;

namespace HyperNF.Bench;

public sealed record ChainOptions
{
    public IoModel IoModel { get; init; } = IoModel.Hypercall;
    public string Nf { get; init; } = "l2fwd";
    public string? NfArgs { get; init; }
    /// <summary>NF domains in a row: tx -> vale0 -> nf1 -> vale1 -> ... -> nfN -> valeN -> rx.</summary>
    public int Length { get; init; } = 1;
    /// <summary>
    /// Names of the Length + 1 bridges, sender's first; null: vale0 .. valeN. The demo uses
    /// valex and valey, as in the reference's example VM.
    /// </summary>
    public IReadOnlyList<string>? Bridges { get; init; }
    public int FrameSize { get; init; } = 60;
    public double Seconds { get; init; } = 3;
    public double WarmupSeconds { get; init; } = 0.5;
    /// <summary>Offered load in frames per second; 0 = as fast as the sender can.</summary>
    public long RatePps { get; init; }
    public int Batch { get; init; } = 256;
    public int BridgeBatch { get; init; } = 256;
    public Placement? Placement { get; init; }
    /// <summary>Called about every 100 ms with the fraction of the measured time done.</summary>
    public Action<double>? Progress { get; init; }
    /// <summary>Kernel CPU enforcement for the host (cgroups); null = accounting only.</summary>
    public Func<IDomainCpuPolicy?>? CpuPolicy { get; init; }
    /// <summary>Thread domains (built-in NFs) or VM domains (the guest SDK's images).</summary>
    public BenchDomainKind Domains { get; init; } = BenchDomainKind.Thread;
}

public sealed record DomainCpuResult(
    [property: JsonPropertyName("domain")] string Domain,
    [property: JsonPropertyName("vcpu_pct")] double VCpuPct,
    [property: JsonPropertyName("backend_pct")] double BackendPct);

public sealed record ChainResult
{
    [JsonPropertyName("io_model")] public string IoModel { get; init; } = "";
    /// <summary>"thread" or "vm".</summary>
    [JsonPropertyName("domains")] public string Domains { get; init; } = "thread";
    /// <summary>The KVM kind of VM domains ("pvm" or "hardware"); null for thread domains.</summary>
    [JsonPropertyName("kvm_kind")] public string? KvmKind { get; init; }
    [JsonPropertyName("nf")] public string Nf { get; init; } = "";
    [JsonPropertyName("length")] public int Length { get; init; }
    /// <summary>The bridges the frames crossed, sender's first.</summary>
    [JsonPropertyName("bridges")] public List<string> Bridges { get; init; } = new();
    [JsonPropertyName("frame_size")] public int FrameSize { get; init; }
    [JsonPropertyName("mpps")] public double Mpps { get; init; }
    [JsonPropertyName("gbps")] public double Gbps { get; init; }
    [JsonPropertyName("offered_mpps")] public double OfferedMpps { get; init; }
    [JsonPropertyName("sent")] public long Sent { get; init; }
    [JsonPropertyName("received")] public long Received { get; init; }
    [JsonPropertyName("dropped")] public long Dropped { get; init; }
    [JsonPropertyName("drops")] public Dictionary<string, long> Drops { get; init; } = new();
    [JsonPropertyName("unaccounted")] public long Unaccounted { get; init; }
    /// <summary>Drops by reason over the measured window only (the window of <see cref="Mpps"/>), where <see cref="Drops"/> covers the whole run with warm-up and drain.</summary>
    [JsonPropertyName("window_drops")] public Dictionary<string, long> WindowDrops { get; init; } = new();
    [JsonPropertyName("window_dropped")] public long WindowDropped { get; init; }
    [JsonPropertyName("window_seconds")] public double WindowSeconds { get; init; }
    [JsonPropertyName("cpu")] public List<DomainCpuResult> Cpu { get; init; } = new();
    /// <summary>CPU of backend threads (split/merge), billed to the host, in % of one CPU.</summary>
    [JsonPropertyName("host_cpu_pct")] public double HostCpuPct { get; init; }
    /// <summary>CPU of the NF domains' vCPUs plus their backends, per Mpps forwarded.</summary>
    [JsonPropertyName("nf_cpu_pct_per_mpps")] public double NfCpuPerMpps { get; init; }
    [JsonPropertyName("latency_p50_us")] public double LatencyP50Us { get; init; }
    [JsonPropertyName("latency_p99_us")] public double LatencyP99Us { get; init; }
    [JsonPropertyName("lost")] public long Lost { get; init; }
    /// <summary>Counters of each NF domain's guest (forwarded, NF drops, NF-specific).</summary>
    [JsonPropertyName("nf_counters")] public Dictionary<string, Dictionary<string, long>> NfCounters { get; init; } = new();
    /// <summary>What the harness saw around the measured window (frame counts at its edges, times since the sink's creation, domain states).</summary>
    [JsonPropertyName("window")] public Dictionary<string, string> Window { get; init; } = new();
}

/// <summary>
/// The paper's basic setup: a pkt-gen sender domain, a chain of NF domains across bridges,
/// a pkt-gen receiver domain. The I/O model applies to the NF domains (the ones under test);
/// the generators play dom0's pkt-gen, which always transmits in its own context.
/// Accounting is checked end to end: every frame the sender sent was received or counted as
/// a drop somewhere (bridges or NFs); <see cref="ChainResult.Unaccounted"/> must be 0.
/// </summary>
public static class ChainScenario
{
    /// <summary>NF arguments that let the benchmark traffic (UDP 10.0.0.1 -> 10.1.0.1) through, with some rules that do not match.</summary>
    public static string? DefaultNfArgs(string nf) => nf switch
    {
        "firewall" => "rule=deny tcp any -> any 22;deny udp any -> 10.9.0.0/16 any;allow udp any -> 10.1.0.0/16 any,default=deny",
        "router" => "mac0=02:00:00:00:01:00,mac1=02:00:00:00:01:01,route=10.1.0.0/16 via ff:ff:ff:ff:ff:ff port 1",
        "nat" => "public=192.0.2.1,ports=20000-29999",
        "cost" => "cycles=300",
        _ => null,
    };

    /// <summary>Drops by reason right now: the bridges' counters and the NFs' own drops ("nf").</summary>
    private static Dictionary<string, long> DropsNow(ValeSwitch sw, IEnumerable<Domain> nfs)
    {
        var map = new Dictionary<string, long>();
        foreach (var b in sw.Bridges)
        {
            var st = b.GetStatistics();
            foreach (var r in DropReasons.All) map[r.Key()] = map.GetValueOrDefault(r.Key()) + st.Drops[(int)r];
        }
        long nf = 0;
        foreach (var d in nfs)
            if (d.Guest is { } g)
                foreach (var kv in g.Counters)
                    if (kv.Key is "nf_dropped" or "reflect_no_room") nf += kv.Value;
        map["nf"] = nf;
        return map;
    }

    /// <summary>Every vCPU and backend thread of <paramref name="domains"/>, as /proc shows it now, plus what the backends counted.</summary>
    private static string Probe(IEnumerable<Domain> domains) => string.Join(" | ", domains.Select(d =>
        $"{d.Name} ({d.State}): " + string.Join("; ", d.VCpuTids.Select(t => "vcpu " + ThreadProbe.Describe(t))) +
        (d.Backend is { } b ? $"; backend rounds {b.Rounds} kicks {b.VmKick?.Kicks ?? b.Kicks} wakeups {b.Notifications} late {b.LateRounds} needs_kick {b.VmKick?.NeedsKick} {ThreadProbe.Describe(b.Tid)}" : "") +
        string.Concat(d.Ports.Select(p => p.Origin is ValePort vp ? $"; {vp.Name} tx_pending {vp.AnyTxPending()} tx_space {vp.AnyTxSpace()} rx_published {vp.AnyRxPublished()}" : ""))));

    public static ChainResult Run(ChainOptions o)
    {
        if (o.Length < 1 || o.Length > 16) throw new ArgumentOutOfRangeException(nameof(o), o.Length, "chain length must be 1..16");
        if (o.Bridges is { } names && (names.Count != o.Length + 1 || names.Distinct(StringComparer.Ordinal).Count() != names.Count))
            throw new ArgumentException($"a chain of {o.Length} NF(s) needs {o.Length + 1} distinct bridge names, not [{string.Join(", ", names)}]", nameof(o));
        var kind = BenchDomains.For(o.Domains);
        kind.Check();
        var place = o.Placement ?? Placement.For(Environment.ProcessorCount, o.Length);
        var sw = new ValeSwitch { BridgeBatch = o.BridgeBatch };
        using var host = new Host(sw) { BackendCpus = place.BackendCpus, CpuPolicy = o.CpuPolicy?.Invoke() };
        string Bridge(int i) => o.Bridges?[i] ?? $"vale{i}";
        var created = System.Diagnostics.Stopwatch.GetTimestamp();
        var rxDom = host.Create(kind.Receiver("pktgen-rx", $"{Bridge(o.Length)}:rx", [place.RxCpu]));
        var nfs = new List<Domain>();
        for (int i = 0; i < o.Length; i++)
            nfs.Add(host.Create(kind.Nf($"nf{i + 1}", [$"{Bridge(i)}:nf{i + 1}a", $"{Bridge(i + 1)}:nf{i + 1}b"], [place.NfCpu(i)], o.Nf, o.NfArgs, o.IoModel)));
        var txDom = host.Create(kind.Sender("pktgen-tx", $"{Bridge(0)}:tx", [place.TxCpu], o.FrameSize, o.RatePps, o.Batch));
        var rx = kind.Endpoint(rxDom, sender: false);
        var tx = kind.Endpoint(txDom, sender: true);
        // The measuring sink must never be the bottleneck: when it shares a core with the
        // sender (2-CPU machines) it gets priority, as dom0's receiver would on its own core.
        if (place.RxCpu == place.TxCpu)
        {
            foreach (int tid in rxDom.VCpuTids) Native.SetNice(tid, -10);
            foreach (int tid in txDom.VCpuTids) Native.SetNice(tid, 5);
        }

        Thread.Sleep(TimeSpan.FromSeconds(o.WarmupSeconds));
        var domains = new[] { txDom }.Concat(nfs).Append(rxDom).ToArray();
        var cpu0 = CpuAccounting.Sample(domains);
        var drops0 = DropsNow(sw, nfs);
        long rx0 = rx.Frames, tx0 = tx.Frames;
        var t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        int steps = Math.Max(1, (int)(o.Seconds * 10));
        long rxPrev = rx0;
        string? probe = null;
        for (int s = 1; s <= steps; s++)
        {
            Thread.Sleep(TimeSpan.FromSeconds(o.Seconds / steps));
            o.Progress?.Invoke((double)s / steps);
            // Nothing reached the sink for a whole step: record what every thread is doing (once).
            long rxNow = rx.Frames;
            if (rxNow == rxPrev && probe is null) probe = Probe(domains);
            rxPrev = rxNow;
        }
        long rx1 = rx.Frames, tx1 = tx.Frames;
        var drops1 = DropsNow(sw, nfs);
        var cpu1 = CpuAccounting.Sample(domains);
        double el = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var window = new Dictionary<string, string>
        {
            ["rx0"] = $"{rx0}", ["rx1"] = $"{rx1}", ["tx0"] = $"{tx0}", ["tx1"] = $"{tx1}",
            ["start_s_after_sink"] = (System.Diagnostics.Stopwatch.GetElapsedTime(created, t0).TotalSeconds).ToString("F3", System.Globalization.CultureInfo.InvariantCulture),
            ["end_s_after_sink"] = (System.Diagnostics.Stopwatch.GetElapsedTime(created).TotalSeconds).ToString("F3", System.Globalization.CultureInfo.InvariantCulture),
            ["states"] = string.Join(",", domains.Select(d => $"{d.Name}={d.State}")),
            ["cpu0"] = string.Join(",", cpu0.Domains.Values.Select(v => $"{v.Name}={v.VCpuNs / 1000000}+{v.BackendNs / 1000000}ms")),
            ["cpu1"] = string.Join(",", cpu1.Domains.Values.Select(v => $"{v.Name}={v.VCpuNs / 1000000}+{v.BackendNs / 1000000}ms")),
        };
        if (probe is not null) window["stalled_step_probe"] = probe;
        if (rx1 == rx0 || probe is not null) Console.Error.WriteLine($"chain: the sink got nothing for {(rx1 == rx0 ? "the whole window" : "at least one 100 ms step")}: {string.Join(" ", window.Select(kv => $"{kv.Key}={kv.Value}"))}");
        if (rxDom.State != DomainState.Running)
            throw new InvalidOperationException($"the sink {rxDom.Name} is {rxDom.State.ToString().ToLowerInvariant()} at the end of the window ({o.IoModel.Key()}, {o.Nf}); the window's figures would be wrong");
        foreach (var d in domains)
            if (d.State is not (DomainState.Running or DomainState.Exited))
                throw new InvalidOperationException($"{kind.Label} domain {d.Name} ({o.IoModel.Key()}, {o.Nf}) is {d.State.ToString().ToLowerInvariant()}: {d.CrashReason}");

        // Quiesce: stop the sender, let the chain drain, then stop the rest.
        long sentByTx = tx.Frames;
        host.Destroy(txDom);
        sentByTx = Math.Max(sentByTx, tx.Frames);
        Thread.Sleep(300);
        var drops = new Dictionary<string, long>();
        long dropped = 0;
        foreach (var b in sw.Bridges)
        {
            var st = b.GetStatistics();
            foreach (var r in DropReasons.All)
            {
                long v = st.Drops[(int)r];
                if (v == 0) continue;
                drops[r.Key()] = drops.GetValueOrDefault(r.Key()) + v;
                dropped += v;
            }
        }
        long nfDrops = nfs.Sum(kind.NfDrops);
        if (nfDrops != 0) drops["nf"] = nfDrops;
        dropped += nfDrops;
        var nfCounters = nfs.ToDictionary(d => d.Name, kind.NfCounters);
        long receivedNow = rx.Frames;
        foreach (var d in nfs) host.Destroy(d);
        kind.StopSink(rx, TimeSpan.FromSeconds(5));
        host.Destroy(rxDom);
        var lat = kind.Latency(rx);
        var txSum = tx.Summary;
        long sent = txSum?.Sent ?? sentByTx;
        long received = lat.Received is { } got && o.Domains == BenchDomainKind.Thread ? got : Math.Max(receivedNow, rx.Frames);

        var cpu = CpuAccounting.Between(cpu0, cpu1);
        double mpps = (rx1 - rx0) / el / 1e6;
        double nfCpu = cpu.Where(c => c.Domain.StartsWith("nf", StringComparison.Ordinal)).Sum(c => c.TotalPct);
        return new ChainResult
        {
            IoModel = o.IoModel.Key(), Domains = kind.KindKey, KvmKind = kind.KvmKind, Nf = o.Nf, Length = o.Length, FrameSize = o.FrameSize,
            Bridges = Enumerable.Range(0, o.Length + 1).Select(Bridge).ToList(),
            Mpps = Math.Round(mpps, 4),
            Gbps = Math.Round((rx1 - rx0) * (double)o.FrameSize * 8 / el / 1e9, 3),
            OfferedMpps = Math.Round((tx1 - tx0) / el / 1e6, 4),
            Sent = sent, Received = received, Dropped = dropped, Drops = drops,
            Unaccounted = sent - received - dropped,
            WindowDrops = drops1.Select(kv => (kv.Key, V: kv.Value - drops0.GetValueOrDefault(kv.Key))).Where(x => x.V != 0).ToDictionary(x => x.Key, x => x.V),
            WindowDropped = drops1.Sum(kv => kv.Value - drops0.GetValueOrDefault(kv.Key)),
            WindowSeconds = Math.Round(el, 3),
            Cpu = cpu.Select(c => new DomainCpuResult(c.Domain, c.VCpuPct, c.BackendPct)).ToList(),
            HostCpuPct = Math.Round(cpu.Sum(c => c.BackendPct), 1),
            NfCpuPerMpps = mpps > 0 ? Math.Round(nfCpu / mpps, 1) : 0,
            LatencyP50Us = lat.P50Us,
            LatencyP99Us = lat.P99Us,
            Lost = lat.Lost,
            NfCounters = nfCounters,
            Window = window,
        };
    }
}
