using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;

namespace HyperNF.Tests.Control;

/// <summary>
/// <c>hypernf daemon --metrics</c> scraped with curl, checked by <c>promtool check metrics</c>
/// (Debian's prometheus package) and compared with <c>stats --json</c>; <c>stats --clear</c>.
/// </summary>
public partial class MetricsCliTests
{
    private static string? Which(string tool) =>
        Environment.GetEnvironmentVariable("PATH")!.Split(':').Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    private static int FreePort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")]
    private static partial Regex SampleRegex();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelRegex();

    private sealed record Sample(string Name, Dictionary<string, string> Labels, double Value);

    private static List<Sample> Parse(string text) =>
        text.Split('\n').Where(l => l.Length > 0 && l[0] != '#').Select(l =>
        {
            var m = SampleRegex().Match(l);
            Assert.True(m.Success, $"not a sample line: {l}");
            var labels = LabelRegex().Matches(m.Groups[3].Value).ToDictionary(x => x.Groups[1].Value, x => x.Groups[2].Value);
            return new Sample(m.Groups[1].Value, labels, double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture));
        }).ToList();

    private static double Value(List<Sample> s, string name, params (string Key, string Value)[] labels)
    {
        var hits = s.Where(x => x.Name == name && labels.All(l => x.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToArray();
        Assert.True(hits.Length == 1, $"{name}{{{string.Join(",", labels.Select(l => $"{l.Key}={l.Value}"))}}}: {hits.Length} samples");
        return hits[0].Value;
    }

    private static Cli.Result Run(string what, params string[] argv)
    {
        var psi = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in argv.Skip(1)) psi.ArgumentList.Add(a);
        return Cli.RunProcess(psi, what);
    }

    [Fact]
    public void Metrics_are_valid_prometheus_text_and_match_stats()
    {
        if (Which("curl") is null || Which("promtool") is null)
        {
            Console.WriteLine("SKIP: curl and promtool (Debian's prometheus package) are needed; scripts/install-test-deps.sh installs them");
            return;
        }
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        int port = FreePort();
        using var daemon = new DaemonProcess(sock, true, "--metrics", $"127.0.0.1:{port}");
        string cfg = tmp.File("nf.cfg");
        File.WriteAllText(cfg, "name = \"mnf\"\nvif = [\"type=nmif,bridge=valex:lx0\", \"type=nmif,bridge=valey:ly0\"]\nnf = \"l2fwd\"\n");
        Assert.Equal(0, Cli.Run(sock, "create", cfg).Exit);
        Assert.Equal(0, Cli.Run(sock, "sched-credit2", "-d", "mnf", "-w", "512", "-c", "50").Exit);
        var gen = Cli.Run(sock, "pkt-gen", "-i", "valex:tx", "-f", "tx", "-n", "3000", "-l", "128", "-R", "20000"); // paced: the capped NF's ring never fills
        Assert.True(gen.Exit == 0, gen.ToString());
        Thread.Sleep(500); // the NF forwards what it received; let it finish

        string url = $"http://127.0.0.1:{port}/metrics";
        var scrape = Run("curl", "curl", "-sf", url);
        Assert.True(scrape.Exit == 0, scrape.ToString());
        string file = tmp.File("m.txt");
        File.WriteAllText(file, scrape.Out);
        var lint = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        lint.ArgumentList.Add("-c");
        lint.ArgumentList.Add($"promtool check metrics < '{file}'");
        var lr = Cli.RunProcess(lint, "promtool < file");
        Assert.True(lr.Exit == 0 && lr.Out.Trim().Length == 0 && lr.Err.Trim().Length == 0, $"promtool findings: {lr}");

        var m = Parse(scrape.Out);
        var stats = JsonDocument.Parse(Cli.Run(sock, "stats", "--json").Out).RootElement;
        int compared = 0;
        foreach (var b in stats.GetProperty("bridges").EnumerateArray())
        {
            string bridge = b.GetProperty("name").GetString()!;
            Assert.Equal(b.GetProperty("table_entries").GetInt32(), Value(m, "hypernf_bridge_table_entries", ("bridge", bridge)));
            Assert.Equal(b.GetProperty("table_capacity").GetInt32(), Value(m, "hypernf_bridge_table_capacity", ("bridge", bridge)));
            Assert.Equal(0, Value(m, "hypernf_bridge_unaccounted", ("bridge", bridge)));
            foreach (var p in b.GetProperty("ports").EnumerateArray())
            {
                string pn = p.GetProperty("name").GetString()!.Split(':')[1];
                (string, string)[] l = [("bridge", bridge), ("port", pn)];
                Assert.Equal(p.GetProperty("tx_packets").GetInt64(), Value(m, "hypernf_port_tx_packets_total", l));
                Assert.Equal(p.GetProperty("rx_packets").GetInt64(), Value(m, "hypernf_port_rx_packets_total", l));
                Assert.Equal(p.GetProperty("tx_bytes").GetInt64(), Value(m, "hypernf_port_tx_bytes_total", l));
                Assert.Equal(p.GetProperty("rx_bytes").GetInt64(), Value(m, "hypernf_port_rx_bytes_total", l));
                foreach (var d in p.GetProperty("drops").EnumerateObject())
                    Assert.Equal(d.Value.GetInt64(), Value(m, "hypernf_port_drops_total", [.. l, ("reason", d.Name)]));
                compared++;
            }
        }
        Assert.Equal(2, compared); // lx0 and ly0 (the pkt-gen port has left)
        Assert.Equal(3000, Value(m, "hypernf_port_rx_packets_total", ("bridge", "valex"), ("port", "lx0")));
        Assert.Equal(3000, Value(m, "hypernf_port_tx_packets_total", ("bridge", "valey"), ("port", "ly0")));
        Assert.Equal(3000 * 128, Value(m, "hypernf_port_rx_bytes_total", ("bridge", "valex"), ("port", "lx0")));
        Assert.Equal(1, Value(m, "hypernf_domain_state", ("domain", "mnf"), ("state", "running")));
        Assert.Equal(0, Value(m, "hypernf_domain_state", ("domain", "mnf"), ("state", "paused")));
        Assert.Equal(512, Value(m, "hypernf_domain_weight", ("domain", "mnf")));
        Assert.Equal(50, Value(m, "hypernf_domain_cap_percent", ("domain", "mnf")));
        Assert.True(Value(m, "hypernf_domain_vcpu_cpu_seconds_total", ("domain", "mnf")) > 0);
        Assert.Equal(0, Value(m, "hypernf_domain_backend_cpu_seconds_total", ("domain", "mnf"))); // hypercall: no backend thread

        // stats --clear: the port's rows restart from zero, the lifetime totals and /metrics do not.
        var cleared = Cli.Run(sock, "stats", "--clear", "valex:lx0");
        Assert.True(cleared.Exit == 0, cleared.ToString());
        Assert.Contains("statistics cleared for 1 port(s): valex:lx0", cleared.Out);
        var after = JsonDocument.Parse(Cli.Run(sock, "stats", "valex", "--json").Out).RootElement.GetProperty("bridges")[0];
        var lx0 = after.GetProperty("ports").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "valex:lx0");
        Assert.Equal(0, lx0.GetProperty("rx_packets").GetInt64());
        Assert.True(lx0.GetProperty("cleared_s_ago").GetDouble() >= 0);
        Assert.Equal(3000, after.GetProperty("delivered").GetInt64()); // the bridge was not cleared, only one port
        Assert.Equal(0, after.GetProperty("unaccounted").GetInt64());
        Assert.Equal(0, Cli.Run(sock, "pkt-gen", "-i", "valex:tx", "-f", "tx", "-n", "100", "-l", "128").Exit);
        Thread.Sleep(300);
        Assert.Equal(0, Cli.Run(sock, "stats", "--clear", "valex").Exit); // the whole bridge
        var b2 = JsonDocument.Parse(Cli.Run(sock, "stats", "valex", "--json").Out).RootElement.GetProperty("bridges")[0];
        Assert.Equal(0, b2.GetProperty("delivered").GetInt64());
        Assert.Equal(0, b2.GetProperty("unaccounted").GetInt64());
        var m2 = Parse(Run("curl", "curl", "-sf", url).Out);
        Assert.Equal(3100, Value(m2, "hypernf_port_rx_packets_total", ("bridge", "valex"), ("port", "lx0")));
        Assert.Contains("no port 'nope'", Cli.Run(sock, "stats", "--clear", "valex:nope").Err);
    }

    [Fact]
    public void A_bad_or_taken_metrics_address_is_refused_before_the_daemon_starts()
    {
        using var tmp = new TempDir();
        var bad = Cli.Run(tmp.File("a.sock"), "daemon", "--socket", tmp.File("a.sock"), "--metrics", "localhost");
        Assert.Equal(1, bad.Exit);
        Assert.Contains("write ADDR:PORT with an IP address and a port", bad.Err);
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        int port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        var busy = Cli.Run(tmp.File("b.sock"), "daemon", "--socket", tmp.File("b.sock"), "--metrics", $"127.0.0.1:{port}");
        Assert.Equal(1, busy.Exit);
        Assert.Contains($"port {port} is already in use", busy.Err);
        Assert.False(File.Exists(tmp.File("b.sock")));
    }
}
