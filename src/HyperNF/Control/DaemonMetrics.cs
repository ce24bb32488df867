using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using HyperNF.Hypervisor;
using HyperNF.Switch;

namespace HyperNF.Control;

/// <summary>
/// The daemon's metrics as .NET instruments (System.Diagnostics.Metrics, meter
/// <see cref="MeterName"/>); <c>hypernf daemon --metrics ADDR:PORT</c> exports them in
/// Prometheus' text format at /metrics through OpenTelemetry's Prometheus exporter.
/// Every instrument is observable: values are read from the switch and the host when a
/// scraper asks, so nothing is added to the data path. Counters are the lifetime counters
/// (<c>stats --clear</c> does not reset them: Prometheus takes a drop as a restart).
/// Names follow Prometheus' conventions once exported: dots become underscores, counters end
/// in <c>_total</c>, units become suffixes (hypernf_port_rx_packets_total{bridge,port}).
/// </summary>
public sealed class DaemonMetrics : IDisposable
{
    public const string MeterName = "HyperNF";

    private readonly Host _host;
    private readonly Meter _meter;
    // Seconds of CPU never go down even when a thread has ended (its schedstat is gone).
    private readonly ConcurrentDictionary<(int Id, bool Backend), double> _cpuSeen = new();

    public DaemonMetrics(Host host)
    {
        ArgumentNullException.ThrowIfNull(host);
        _host = host;
        _meter = new Meter(MeterName, typeof(DaemonMetrics).Assembly.GetName().Version?.ToString());

        PortCounter("hypernf.port.tx_packets", "{packet}", "Frames the port sent into the switch (taken from its TX rings)", s => s.TxPackets);
        PortCounter("hypernf.port.tx", "By", "Bytes the port sent into the switch", s => s.TxBytes);
        PortCounter("hypernf.port.rx_packets", "{packet}", "Frames the switch delivered into the port's RX rings", s => s.RxPackets);
        PortCounter("hypernf.port.rx", "By", "Bytes the switch delivered into the port's RX rings", s => s.RxBytes);
        PortCounter("hypernf.port.flood_copies", "{packet}", "Extra copies made because frames the port sent were flooded", s => s.FloodCopies);
        PortCounter("hypernf.port.corrupt_ring_index", "{sync}", "Syncs refused because the port's head/cur were illegal (ring reinitialised)", s => s.CorruptRingIndex);
        _meter.CreateObservableCounter("hypernf.port.drops", () => Ports().SelectMany(p => DropReasons.All.Select(r =>
                new Measurement<long>(p.Stats.Drops[(int)r], Tag("bridge", p.Bridge), Tag("port", p.Port), Tag("reason", r.Key())))),
            "{packet}", "Frames dropped at the port, by reason (ingress reasons at the sender, ring_full and bad_buffer_index at the receiver)");

        _meter.CreateObservableGauge("hypernf.bridge.ports", () => Bridges().Select(b => new Measurement<int>(b.Ports.Count, Tag("bridge", b.Name))),
            "{port}", "Ports attached to the bridge");
        _meter.CreateObservableGauge("hypernf.bridge.table_entries", () => Bridges().Select(b => new Measurement<int>(b.Forwarding.Occupancy, Tag("bridge", b.Name))),
            "{entry}", "Learned MAC addresses in the bridge's learning table");
        _meter.CreateObservableGauge("hypernf.bridge.table_capacity", () => Bridges().Select(b => new Measurement<int>(b.Forwarding.Capacity, Tag("bridge", b.Name))),
            "{entry}", "Buckets of the bridge's learning table");
        _meter.CreateObservableGauge("hypernf.bridge.unaccounted", () => Bridges().Select(b => new Measurement<long>(b.GetStatistics().Unaccounted, Tag("bridge", b.Name))),
            "{packet}", "sent + flood copies - delivered - dropped over the bridge's lifetime; 0 whenever traffic is quiescent");

        _meter.CreateObservableGauge("hypernf.domain.state", () => _host.Domains.SelectMany(d => AllStates.Select(s =>
                new Measurement<int>(d.State == s ? 1 : 0, Tag("domain", d.Name), Tag("id", d.Id), Tag("state", s.ToString().ToLowerInvariant())))),
            null, "1 for the domain's current state, 0 for the others");
        _meter.CreateObservableGauge("hypernf.domain.vcpus", () => _host.Domains.Select(d => new Measurement<int>(d.Spec.VCpus, DomainTags(d))),
            "{vcpu}", "vCPUs of the domain");
        _meter.CreateObservableGauge("hypernf.domain.weight", () => _host.Domains.Select(d => new Measurement<int>(d.Weight, DomainTags(d))),
            null, "The domain's CPU weight (sched-credit2 -w)");
        _meter.CreateObservableGauge("hypernf.domain.cap", () => _host.Domains.Select(d => new Measurement<int>(d.Cap, DomainTags(d))),
            "%", "The domain's CPU cap in % of one CPU, 0 = none (sched-credit2 -c)");
        _meter.CreateObservableCounter("hypernf.domain.vcpu_cpu", () => _host.Domains.Select(d => new Measurement<double>(Seen(d, false, d.VCpuTimeNs()), DomainTags(d))),
            "s", "CPU time of the domain's vCPU threads (billed to the domain), including the switching its hypercalls did");
        _meter.CreateObservableCounter("hypernf.domain.backend_cpu", () => _host.Domains.Select(d => new Measurement<double>(Seen(d, true, d.BackendTimeNs()), DomainTags(d))),
            "s", "CPU time of the domain's split/merge backend thread (billed to the host, not the domain)");
    }

    private static readonly DomainState[] AllStates = Enum.GetValues<DomainState>();

    private static KeyValuePair<string, object?> Tag(string key, object? value) => new(key, value);

    private static KeyValuePair<string, object?>[] DomainTags(Domain d) => [Tag("domain", d.Name), Tag("id", d.Id)];

    private double Seen(Domain d, bool backend, long ns) =>
        _cpuSeen.AddOrUpdate((d.Id, backend), ns / 1e9, (_, old) => Math.Max(old, ns / 1e9));

    private IEnumerable<Bridge> Bridges() => _host.Switch.Bridges;

    private sealed record PortSample(string Bridge, string Port, PortStatistics Stats);

    private IEnumerable<PortSample> Ports() =>
        _host.Switch.Bridges.SelectMany(b => b.Ports.Select(p => new PortSample(b.Name, p.PortName, p.GetStatistics())));

    private void PortCounter(string name, string unit, string description, Func<PortStatistics, long> value) =>
        _meter.CreateObservableCounter(name, () => Ports().Select(p => new Measurement<long>(value(p.Stats), Tag("bridge", p.Bridge), Tag("port", p.Port))),
            unit, description);

    public void Dispose() => _meter.Dispose();
}
