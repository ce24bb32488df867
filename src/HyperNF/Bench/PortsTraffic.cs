using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using HyperNF.Linux;
using HyperNF.Ports;
using HyperNF.Switch;

namespace HyperNF.Bench;

/// <summary>TCP throughput and ping round trips of one path, with the veths' offloads as Linux sets them.</summary>
public sealed record PortsTrafficResult
{
    [JsonPropertyName("path")] public required string Path { get; init; }
    /// <summary>Which round of <see cref="PortsTraffic.Run"/> (1..rounds) measured it.</summary>
    [JsonPropertyName("round")] public int Round { get; init; } = 1;
    /// <summary>iperf3, one TCP stream, namespace a to namespace b; 0 when no byte arrived.</summary>
    [JsonPropertyName("tcp_gbps")] public double TcpGbps { get; init; }
    [JsonPropertyName("tcp_retransmits")] public long TcpRetransmits { get; init; }
    [JsonPropertyName("ping_count")] public int PingCount { get; init; }
    [JsonPropertyName("ping_lost")] public int PingLost { get; init; }
    [JsonPropertyName("ping_p50_us")] public double PingP50Us { get; init; }
    [JsonPropertyName("ping_p99_us")] public double PingP99Us { get; init; }
    [JsonPropertyName("ping_mean_us")] public double PingMeanUs { get; init; }
    [JsonPropertyName("ping_max_us")] public double PingMaxUs { get; init; }
    /// <summary>HyperNF paths: the ports' drops over the run by direction and reason ("none" when there were none), null for other paths.</summary>
    [JsonPropertyName("port_drops")] public string? PortDrops { get; init; }
    /// <summary>What went wrong, if the path could not be measured.</summary>
    /// <summary>HyperNF paths: frames the kernel fast path forwarded (entering either port), and frames the switch took from the wire.</summary>
    [JsonPropertyName("kernel_path_frames")] public long KernelPathFrames { get; init; }
    [JsonPropertyName("switch_frames")] public long SwitchFrames { get; init; }
    [JsonPropertyName("error")] public string? Error { get; init; }
}

/// <summary>A ratio to the bridge over rounds: the median, the lowest and the highest.</summary>
public sealed record RatioRange(
    [property: JsonPropertyName("median")] double Median,
    [property: JsonPropertyName("min")] double Min,
    [property: JsonPropertyName("max")] double Max);

/// <summary>One path over all rounds of <see cref="PortsTraffic.Run"/> (<see cref="PortsTraffic.Summarize"/>).</summary>
public sealed record PortsTrafficSummary
{
    [JsonPropertyName("path")] public required string Path { get; init; }
    /// <summary>Rounds measured without an error, and rounds that failed.</summary>
    [JsonPropertyName("rounds")] public int Rounds { get; init; }
    [JsonPropertyName("failed")] public int Failed { get; init; }
    [JsonPropertyName("tcp_gbps_median")] public double TcpGbps { get; init; }
    [JsonPropertyName("ping_p50_us_median")] public double PingP50Us { get; init; }
    [JsonPropertyName("ping_p99_us_median")] public double PingP99Us { get; init; }
    [JsonPropertyName("ping_lost")] public int PingLost { get; init; }
    [JsonPropertyName("ping_count")] public int PingCount { get; init; }
    /// <summary>Each round's figure over the same round's Linux bridge.</summary>
    [JsonPropertyName("tcp_vs_bridge")] public RatioRange? TcpVsBridge { get; init; }
    [JsonPropertyName("p50_vs_bridge")] public RatioRange? P50VsBridge { get; init; }
    [JsonPropertyName("p99_vs_bridge")] public RatioRange? P99VsBridge { get; init; }
    /// <summary>The first error, when no round could measure the path.</summary>
    [JsonPropertyName("error")] public string? Error { get; init; }
}

/// <summary>
/// What a user sees on each path: two namespaces with a veth pair each (offloads untouched:
/// checksum offload, TSO/GSO on), the outer ends joined by HyperNF (af_packet or af_xdp
/// ports), a Linux bridge or OVS-netdev; ping round trips (after a warm-up) and one iperf3 TCP
/// stream. Needs root, iperf3 and ping.
/// </summary>
public static partial class PortsTraffic
{
    /// <summary>"rx kernel_ring_full 12, tx send_error 1", summed over the ports, or "none".</summary>
    private static string DescribeDrops(PhysicalPorts ports)
    {
        var stats = ports.List().Select(p => p.GetStatistics()).ToList();
        var parts = new List<string>();
        foreach (var r in PortDropReasons.All)
        {
            long rx = stats.Sum(s => s.RxDrop(r)), tx = stats.Sum(s => s.TxDrop(r));
            if (rx > 0) parts.Add($"rx {r.Key()} {rx}");
            if (tx > 0) parts.Add($"tx {r.Key()} {tx}");
        }
        return parts.Count == 0 ? "none" : string.Join(", ", parts);
    }

    /// <summary>
    /// Measures every path (the sender-only yardstick has no traffic part) <paramref name="rounds"/>
    /// times, all paths once per round, each round starting one path further along (so no path
    /// always runs first, after the same neighbour). Compare a path with the bridge of the same
    /// round (<see cref="Summarize"/>): on a shared machine the bridge itself moves between rounds.
    /// </summary>
    public static IReadOnlyList<PortsTrafficResult> Run(IReadOnlyList<PortsBenchmarkPath> paths, double tcpSeconds = 3, int pings = 300, Action<string>? progress = null, PhysicalPortOptions? portOptions = null, int rounds = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rounds, 1);
        var measured = paths.Where(p => p != PortsBenchmarkPath.SenderOnly).ToArray();
        var results = new List<PortsTrafficResult>();
        for (int round = 1; round <= rounds; round++)
        {
            for (int k = 0; k < measured.Length; k++)
            {
                var path = measured[(k + round - 1) % measured.Length];
                PortsTrafficResult r;
                try
                {
                    r = RunOne(path, tcpSeconds, pings, portOptions ?? new PhysicalPortOptions());
                }
                catch (Exception e) when (e is InvalidOperationException or IOException or ArgumentException or UnauthorizedAccessException)
                {
                    r = new PortsTrafficResult { Path = PortsBenchmark.PathName(path), Error = e.Message };
                }
                r = r with { Round = round };
                string tag = rounds > 1 ? $"[{round}/{rounds}] " : "";
                progress?.Invoke(r.Error is { } err
                    ? $"{tag}{r.Path,-12} traffic: {err}"
                    : $"{tag}{r.Path,-12} TCP {r.TcpGbps,6:F2} Gbit/s ({r.TcpRetransmits} retransmits)  ping p50 {r.PingP50Us,6:F0} us  p99 {r.PingP99Us,6:F0} us  mean {r.PingMeanUs:F0} us  max {r.PingMaxUs:F0} us  lost {r.PingLost}/{r.PingCount}{(r.PortDrops is { } d ? $"  port drops: {d}" : "")}");
                results.Add(r);
            }
        }
        return results;
    }

    /// <summary>
    /// One line per path over all rounds: medians of its own figures and, for each figure, the
    /// median, lowest and highest of its ratio to the Linux bridge measured in the same round
    /// (null without a bridge in that round). Failed measurements are left out (and counted).
    /// </summary>
    public static IReadOnlyList<PortsTrafficSummary> Summarize(IReadOnlyList<PortsTrafficResult> results)
    {
        var bridge = results.Where(r => r.Path == "linux-bridge" && r.Error is null).GroupBy(r => r.Round).ToDictionary(g => g.Key, g => g.First());
        var list = new List<PortsTrafficSummary>();
        foreach (var g in results.GroupBy(r => r.Path))
        {
            var ok = g.Where(r => r.Error is null).ToList();
            RatioRange? Ratios(Func<PortsTrafficResult, double> f)
            {
                var v = ok.Where(r => bridge.TryGetValue(r.Round, out var b) && f(b) > 0).Select(r => f(r) / f(bridge[r.Round])).Order().ToArray();
                return v.Length == 0 ? null : new RatioRange(Median(v), v[0], v[^1]);
            }
            list.Add(new PortsTrafficSummary
            {
                Path = g.Key, Rounds = ok.Count, Failed = g.Count() - ok.Count,
                TcpGbps = Median(ok.Select(r => r.TcpGbps)), PingP50Us = Median(ok.Select(r => r.PingP50Us)), PingP99Us = Median(ok.Select(r => r.PingP99Us)),
                PingLost = ok.Sum(r => r.PingLost), PingCount = ok.Sum(r => r.PingCount),
                TcpVsBridge = Ratios(r => r.TcpGbps), P50VsBridge = Ratios(r => r.PingP50Us), P99VsBridge = Ratios(r => r.PingP99Us),
                Error = ok.Count == 0 ? g.First().Error : null,
            });
        }
        return list;
    }

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? 0 : v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    private static PortsTrafficResult RunOne(PortsBenchmarkPath path, double tcpSeconds, int pings, PhysicalPortOptions portOptions)
    {
        string tag = (Environment.ProcessId % 100000).ToString(CultureInfo.InvariantCulture) + Random.Shared.Next(10, 99);
        string nsA = $"hnfta{tag}", nsB = $"hnftb{tag}", outA = $"hta{tag}", outB = $"htb{tag}", br = $"htbr{tag}";
        PhysicalPorts? ports = null;
        OvsUserspace? ovs = null;
        var procs = new List<System.Diagnostics.Process>();
        try
        {
            MakeHost(nsA, outA, "10.238.0.1/24");
            MakeHost(nsB, outB, "10.238.0.2/24");
            if (path is PortsBenchmarkPath.HyperNF or PortsBenchmarkPath.HyperNFXdp)
            {
                ports = new PhysicalPorts(new ValeSwitch(), portOptions with { Backend = path == PortsBenchmarkPath.HyperNFXdp ? "af_xdp" : "af_packet" });
                ports.Attach("valetr", outA);
                ports.Attach("valetr", outB);
            }
            else if (path == PortsBenchmarkPath.OvsUserspace)
            {
                if (OvsUserspace.Unavailable() is { } why) throw new InvalidOperationException($"ovs: {why}");
                ovs = OvsUserspace.Start(br, [outA, outB]);
            }
            else
            {
                Must("ip", "link", "add", br, "type", "bridge");
                Must("ip", "link", "set", outA, "master", br);
                Must("ip", "link", "set", outB, "master", br);
                Must("ip", "link", "set", br, "up");
            }
            // Warm-up: ARP, the learning tables, the JIT of our threads.
            for (int i = 0; i < 30 && Processes.Run(out _, 10_000, "ip", "netns", "exec", nsA, "ping", "-c", "1", "-W", "1", "10.238.0.2") != 0; i++) Thread.Sleep(100);
            Processes.Run(out _, 30_000, "ip", "netns", "exec", nsA, "ping", "-c", "50", "-i", "0.01", "-q", "10.238.0.2");

            Processes.Run(out string pingOut, 120_000, "ip", "netns", "exec", nsA, "ping", "-c", pings.ToString(CultureInfo.InvariantCulture), "-i", "0.01", "-W", "1", "10.238.0.2");
            var rtts = RttRegex().Matches(pingOut).Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) * 1000).Order().ToArray();

            var server = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("ip", ["netns", "exec", nsB, "iperf3", "-s", "-1", "-B", "10.238.0.2"])
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            })!;
            procs.Add(server);
            string json = "";
            for (int attempt = 0; attempt < 20; attempt++)
            {
                int rc = Processes.Run(out json, (int)(tcpSeconds * 1000) + 30_000, "ip", "netns", "exec", nsA, "iperf3", "-c", "10.238.0.2", "-t",
                    tcpSeconds.ToString(CultureInfo.InvariantCulture), "-J", "--connect-timeout", "1000");
                if (rc == 0 && !json.Contains("\"error\"", StringComparison.Ordinal)) break;
                Thread.Sleep(200);
            }
            double gbps = 0;
            long retrans = 0;
            int start = json.IndexOf('{');
            if (start >= 0)
            {
                using var doc = JsonDocument.Parse(json[start..]);
                if (doc.RootElement.TryGetProperty("end", out var end) && end.TryGetProperty("sum_received", out var recv))
                {
                    gbps = recv.GetProperty("bits_per_second").GetDouble() / 1e9;
                    if (end.TryGetProperty("sum_sent", out var sent) && sent.TryGetProperty("retransmits", out var rt)) retrans = rt.GetInt64();
                }
            }
            return new PortsTrafficResult
            {
                Path = PortsBenchmark.PathName(path), TcpGbps = gbps, TcpRetransmits = retrans,
                PingCount = pings, PingLost = pings - rtts.Length,
                PingP50Us = Percentile(rtts, 0.50), PingP99Us = Percentile(rtts, 0.99),
                PingMeanUs = rtts.Length > 0 ? rtts.Average() : 0, PingMaxUs = rtts.Length > 0 ? rtts[^1] : 0,
                PortDrops = ports is null ? null : DescribeDrops(ports),
                KernelPathFrames = ports?.List().Sum(p => p.GetStatistics().KernelRxPackets) ?? 0,
                SwitchFrames = ports?.List().Sum(p => p.GetStatistics().RxPackets) ?? 0,
            };
        }
        finally
        {
            foreach (var p in procs)
            {
                try { if (!p.HasExited) { p.Kill(); p.WaitForExit(2000); } } catch (InvalidOperationException) { }
                p.Dispose();
            }
            ports?.Dispose();
            ovs?.Dispose();
            Processes.Run(out _, 10_000, "ip", "netns", "del", nsA);
            Processes.Run(out _, 10_000, "ip", "netns", "del", nsB);
            Processes.Run(out _, 10_000, "ip", "link", "del", outA);
            Processes.Run(out _, 10_000, "ip", "link", "del", outB);
            if (path == PortsBenchmarkPath.LinuxBridge) Processes.Run(out _, 10_000, "ip", "link", "del", br);
        }
    }

    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];

    private static void MakeHost(string ns, string outer, string cidr)
    {
        Must("ip", "netns", "add", ns);
        Must("ip", "link", "add", outer, "type", "veth", "peer", "name", "veth0", "netns", ns);
        Processes.Run(out _, 10_000, "sysctl", "-qw", $"net.ipv6.conf.{outer}.disable_ipv6=1");
        Processes.Run(out _, 10_000, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.veth0.disable_ipv6=1");
        Must("ip", "-n", ns, "addr", "add", cidr, "dev", "veth0");
        Must("ip", "-n", ns, "link", "set", "lo", "up");
        Must("ip", "-n", ns, "link", "set", "veth0", "up");
        Must("ip", "link", "set", outer, "up");
    }

    private static string Must(params string[] args) => Processes.Must(10_000, args);

    [GeneratedRegex(@"time=([0-9.]+) ms")]
    private static partial Regex RttRegex();
}
