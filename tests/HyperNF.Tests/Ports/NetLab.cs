using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit;

namespace HyperNF.Tests.Ports;

/// <summary>A network namespace with one veth pair: the inner end inside it, the outer end in the root namespace.</summary>
public sealed record LabHost(string Ns, string Inner, string Outer, string Ip, string Mac)
{
    public string Cidr { get; init; } = "";
    public int Mtu { get; init; } = 1500;
    /// <summary>The inner end kept its TX offloads (checksum, TSO/GSO).</summary>
    public bool TxOffloads { get; init; } = true;
    /// <summary>The inner end's IPv6 address, or null.</summary>
    public string? Ip6 { get; init; }

    /// <summary>The inner end's MAC as frame bytes.</summary>
    public byte[] MacBytes => Mac.Split(':').Select(x => Convert.ToByte(x, 16)).ToArray();
}

/// <summary>
/// Network namespaces and veth pairs for one test, all named with a per-instance random tag so
/// tests never collide. Dispose removes every namespace and veth it made and kills the
/// processes it started (by PID), whatever state the test left.
/// </summary>
public sealed partial class NetLab : IDisposable
{
    private static readonly Lazy<string?> Skip = new(Probe);
    private readonly string _tag = Convert.ToHexString(BitConverter.GetBytes(Random.Shared.Next())).ToLowerInvariant()[..5];
    private readonly List<string> _namespaces = new();
    private readonly List<string> _outer = new();
    private readonly List<Process> _processes = new();
    private readonly List<WireSocket> _sockets = new();

    /// <summary>Why the namespace tests cannot run here, or null when they can.</summary>
    public static string? SkipReason => Skip.Value;

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux()) return "needs Linux network namespaces";
        if (Run("id", ["-u"], 5000, out string uid) != 0 || uid.Trim() != "0") return "needs root (id -u is not 0): attaching interfaces and 'ip netns' need CAP_NET_ADMIN/CAP_NET_RAW";
        foreach (var tool in new[] { "ip", "ping", "iperf3", "ethtool" })
            if (Run("sh", ["-c", $"command -v {tool}"], 5000, out _) != 0) return $"needs '{tool}' (scripts/install-test-deps.sh installs it)";
        string probe = "hnfprobe" + Environment.ProcessId;
        if (Run("ip", ["netns", "add", probe], 5000, out string err) != 0) return $"'ip netns add' does not work here: {err.Trim()}";
        Run("ip", ["netns", "del", probe], 5000, out _);
        return null;
    }

    /// <summary>
    /// Adds namespace N with a veth pair: inner end up with <paramref name="cidr"/>, outer end up
    /// in the root namespace (to be attached). The inner end keeps the offloads Linux gives a veth
    /// (checksum offload, TSO/GSO: the namespace's stack sends 64 KiB super-frames with partial
    /// checksums), as a container's does, unless <paramref name="txOffloads"/> is false
    /// (ethtool -K tx off: complete, MTU-sized frames). <paramref name="ipv6"/>: an IPv6 address
    /// as well (fd00:231::N/64, N the last byte of <paramref name="cidr"/>'s address).
    /// </summary>
    /// <param name="queues">RX and TX queues on each end of the veth pair.</param>
    public LabHost Add(string suffix, string cidr, int mtu = 1500, int queues = 1, bool txOffloads = true, bool ipv6 = false)
    {
        string ns = $"hnf{_tag}{suffix}";
        string outer = $"ho{_tag}{suffix}";
        string inner = $"hi{_tag}{suffix}";
        Must("ip", "netns", "add", ns);
        _namespaces.Add(ns);
        string q = queues.ToString();
        Must("ip", "link", "add", outer, "mtu", mtu.ToString(), "numtxqueues", q, "numrxqueues", q, "type", "veth",
             "peer", "name", inner, "mtu", mtu.ToString(), "numtxqueues", q, "numrxqueues", q, "netns", ns);
        _outer.Add(outer);
        Must("sysctl", "-qw", $"net.ipv6.conf.{outer}.disable_ipv6=1");
        ConfigureInner(ns, inner, cidr, txOffloads, ipv6);
        Must("ip", "link", "set", outer, "up");
        string show = Must("ip", "-n", ns, "-o", "link", "show", "dev", inner);
        string mac = MacRegex().Match(show).Groups[1].Value;
        string ip = cidr[..cidr.IndexOf('/')];
        return new LabHost(ns, inner, outer, ip, mac) { Cidr = cidr, Mtu = mtu, TxOffloads = txOffloads, Ip6 = ipv6 ? Ipv6Of(ip) : null };
    }

    /// <summary>
    /// Makes <paramref name="h"/>'s veth pair again after it was deleted, as a container runtime
    /// does: same names, same MAC on the namespace end, addressed again. The outer end is made
    /// under a temporary name (so nothing sees it half set up; GRO is turned on there when
    /// <paramref name="groOn"/>), renamed to its old name and brought up. Returns its new ifindex.
    /// </summary>
    public int Recreate(LabHost h, bool groOn = false)
    {
        string tmp = $"ht{_tag}{h.Ns[^1]}";
        Must("ip", "link", "add", tmp, "mtu", h.Mtu.ToString(), "type", "veth", "peer", "name", h.Inner, "mtu", h.Mtu.ToString(), "address", h.Mac, "netns", h.Ns);
        _outer.Add(tmp);
        if (groOn) Must("ethtool", "-K", tmp, "gro", "on");
        Must("ip", "link", "set", "dev", tmp, "name", h.Outer);
        Must("sysctl", "-qw", $"net.ipv6.conf.{h.Outer}.disable_ipv6=1");
        ConfigureInner(h.Ns, h.Inner, h.Cidr, h.TxOffloads, h.Ip6 is not null);
        Must("ip", "link", "set", h.Outer, "up");
        return int.Parse(File.ReadAllText($"/sys/class/net/{h.Outer}/ifindex").Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The lab's IPv6 address for an IPv4 address: fd00:231::LAST-BYTE.</summary>
    public static string Ipv6Of(string ip4) => $"fd00:231::{ip4[(ip4.LastIndexOf('.') + 1)..]}";

    private static void ConfigureInner(string ns, string inner, string cidr, bool txOffloads, bool ipv6)
    {
        Must("ip", "netns", "exec", ns, "sysctl", "-qw", $"net.ipv6.conf.{inner}.disable_ipv6={(ipv6 ? 0 : 1)}");
        if (!txOffloads) Must("ip", "netns", "exec", ns, "ethtool", "-K", inner, "tx", "off");
        Must("ip", "-n", ns, "addr", "add", cidr, "dev", inner);
        if (ipv6) Must("ip", "-n", ns, "addr", "add", Ipv6Of(cidr[..cidr.IndexOf('/')]) + "/64", "dev", inner, "nodad");
        Must("ip", "-n", ns, "link", "set", "lo", "up");
        Must("ip", "-n", ns, "link", "set", inner, "up");
    }

    /// <summary>Runs a command inside a namespace; returns its exit code and output.</summary>
    public int Exec(LabHost h, string[] args, int timeoutMs, out string output) =>
        Run("ip", ["netns", "exec", h.Ns, .. args], timeoutMs, out output);

    /// <summary>A packet socket on the namespace end of <paramref name="h"/>'s veth (closed at Dispose): injects and captures frames on the wire.</summary>
    public WireSocket Wire(LabHost h, bool vnetHeader = false)
    {
        var w = WireSocket.Open(h.Ns, h.Inner, vnetHeader: vnetHeader);
        lock (_sockets) _sockets.Add(w);
        return w;
    }

    /// <summary>A counter of the root namespace's interface <paramref name="dev"/> (/sys/class/net/DEV/statistics/NAME).</summary>
    public static long Counter(string dev, string name) =>
        long.Parse(File.ReadAllText($"/sys/class/net/{dev}/statistics/{name}").Trim(), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Starts a background process in a namespace; it is killed (by PID) at Dispose.</summary>
    public Process Start(LabHost h, params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])["netns", "exec", h.Ns, .. args]) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        lock (_processes) _processes.Add(p);
        return p;
    }

    /// <summary>
    /// A 2-second iperf3 TCP run from <paramref name="client"/> to a one-shot server started here on
    /// <paramref name="server"/> (retried while the server comes up); returns the bytes received.
    /// <paramref name="reverse"/>: the server sends (iperf3 -R). <paramref name="ipv6"/>: over the
    /// hosts' IPv6 addresses (<see cref="Add"/> with ipv6).
    /// </summary>
    public long IperfTcpBytes(LabHost client, LabHost server, int streams = 1, int port = 5301, bool reverse = false, bool ipv6 = false)
    {
        string addr = ipv6 ? server.Ip6 ?? throw new ArgumentException("the server has no IPv6 address") : server.Ip;
        Start(server, "iperf3", "-s", "-1", "-B", addr, "-p", port.ToString());
        string text = "";
        for (int attempt = 0; attempt < 30; attempt++)
        {
            string[] args = ["iperf3", "-c", addr, "-p", port.ToString(), "-t", "2", "-P", streams.ToString(), "-J", "--connect-timeout", "1000", .. (reverse ? new[] { "-R" } : [])];
            int rc = Exec(client, args, 20_000, out text);
            if (rc == 0 && !text.Contains("\"error\"", StringComparison.Ordinal)) break;
            Thread.Sleep(200);
        }
        int start = text.IndexOf('{');
        Assert.True(start >= 0, $"no JSON from iperf3: {text}");
        using var doc = System.Text.Json.JsonDocument.Parse(text[start..]);
        Assert.False(doc.RootElement.TryGetProperty("error", out var err), $"iperf3: {err}");
        return doc.RootElement.GetProperty("end").GetProperty("sum_received").GetProperty("bytes").GetInt64();
    }

    public static string Must(params string[] args)
    {
        int rc = Run(args[0], args[1..], 10_000, out string output);
        if (rc != 0) throw new InvalidOperationException($"'{string.Join(' ', args)}' failed ({rc}): {output.Trim()}");
        return output;
    }

    /// <summary>Runs a command with a time limit (killed by PID past it); stdout and stderr together.</summary>
    public static int Run(string file, string[] args, int timeoutMs, out string output)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            try { p.Kill(); } catch (InvalidOperationException) { }
            p.WaitForExit(2000);
            output = $"timed out after {timeoutMs} ms";
            return -1;
        }
        p.WaitForExit();
        output = stdout.Result + stderr.Result;
        return p.ExitCode;
    }

    public void Dispose()
    {
        lock (_sockets)
        {
            foreach (var w in _sockets) w.Dispose();
            _sockets.Clear();
        }
        lock (_processes)
        {
            foreach (var p in _processes)
            {
                try { if (!p.HasExited) { p.Kill(); p.WaitForExit(2000); } } catch (InvalidOperationException) { }
                p.Dispose();
            }
            _processes.Clear();
        }
        // Deleting a namespace destroys the veth ends inside it and so their peers.
        foreach (var ns in _namespaces) Run("ip", ["netns", "del", ns], 10_000, out _);
        foreach (var o in _outer) Run("ip", ["link", "del", o], 5_000, out _);
    }

    [GeneratedRegex("link/ether ([0-9a-f:]{17})")]
    private static partial Regex MacRegex();
}

/// <summary>A fact that is skipped, with the reason, where network namespaces cannot be used.</summary>
public sealed class NetnsFactAttribute : FactAttribute
{
    public NetnsFactAttribute()
    {
        if (NetLab.SkipReason is { } why) Skip = why;
    }
}

/// <summary>A theory that is skipped, with the reason, where network namespaces cannot be used.</summary>
public sealed class NetnsTheoryAttribute : TheoryAttribute
{
    public NetnsTheoryAttribute()
    {
        if (NetLab.SkipReason is { } why) Skip = why;
    }
}
