using System.Diagnostics;
using HyperNF.Tests.Control;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// `hypernf run` as a user runs it: the real CLI binary attaches two veth ends to a bridge and
/// starts an l2fwd domain from an xl config; a ping crosses; SIGTERM stops it cleanly with
/// the counters printed and everything detached.
/// </summary>
public class RunCommandTests(ITestOutputHelper output)
{
    [NetnsFact]
    public void RunAttachesInterfacesForwardsAndStopsCleanlyOnSigterm()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.9.1/24");
        var b = lab.Add("b", "10.231.9.2/24");
        using var dir = new TempDir();
        string cfg = dir.File("fw.cfg");
        File.WriteAllText(cfg, "name = \"mid\"\nvif = [ \"type=nmif,bridge=valex:m0\", \"type=nmif,bridge=valey:m1\" ]\nnf = \"l2fwd\"\nkernel = \"/boot/none\"\n");
        var psi = Cli.Start(dir.File("unused.sock"), "run", "--interval", "0", "--attach", $"valex:{a.Outer}", "--attach", $"valey:{b.Outer}", cfg);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            int rc = 1;
            string ping = "";
            for (int i = 0; i < 40 && rc != 0; i++)
            {
                Thread.Sleep(250);
                rc = lab.Exec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "1", b.Ip], 10_000, out ping);
            }
            Assert.True(rc == 0, $"ping through `hypernf run` failed: {ping}");
        }
        finally
        {
            Cli.Signal(p, Cli.SIGTERM);
            Assert.True(p.WaitForExit(30_000), "run stops within 30 s of SIGTERM");
        }
        string outText = stdout.Result, errText = stderr.Result;
        output.WriteLine(outText);
        output.WriteLine(errText);
        Assert.Equal(0, p.ExitCode);
        Assert.Contains($"attached {a.Outer} to valex", outText);
        Assert.Contains("created domain mid", outText);
        Assert.Contains("stopping", outText);
        Assert.Contains("valex", outText.Split("stopping")[1]); // the counters table
        Assert.Contains("kernel: ignored", errText);              // xl keys we do not use: a notice
        // detached: promiscuous mode is off again on the outer ends
        Assert.DoesNotContain("PROMISC", NetLab.Must("ip", "link", "show", a.Outer));
    }

    /// <summary>
    /// run tells the user what happens as it happens: a down interface brought up at attach, a
    /// link that goes down and comes back, and the first drop of each cause with its fix
    /// (frames over the MTU, frames to a link that is down), also on the status lines.
    /// </summary>
    [Theory]
    [InlineData("--driver-cpus", "0-zz", "--driver-cpus")]
    [InlineData("--driver-spin", "20000", "driver spin: 0..10000 us")]
    [InlineData("--xdp-mode", "turbo", "turbo")]
    public void RunRefusesBadDriverSettingsWithTheReason(string option, string value, string reason)
    {
        using var dir = new TempDir();
        var r = Cli.Run(dir.File("unused.sock"), "run", "--seconds", "1", "--interval", "0", option, value);
        Assert.NotEqual(0, r.Exit);
        Assert.Contains(reason, r.Err + r.Out);
    }

    /// <summary>`run --port-backend af_xdp` picks generic XDP on a veth; `--xdp-mode native` forces the driver's mode.</summary>
    [NetnsFact]
    public void RunTakesTheXdpModeForAfXdpPorts()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.15.1/24");
        using var dir = new TempDir();
        foreach (var (mode, expect) in new[] { ("auto", "af_xdp generic"), ("native", "af_xdp native"), ("generic", "af_xdp generic") })
        {
            var r = Cli.Run(dir.File("unused.sock"), "run", "--seconds", "1", "--interval", "0", "--port-backend", "af_xdp", "--xdp-mode", mode, "--attach", $"valex:{a.Outer}");
            output.WriteLine(r.Out.Split('\n')[0]);
            Assert.True(r.Exit == 0, $"--xdp-mode {mode}: exit {r.Exit}: {r.Err}");
            Assert.Contains($"attached {a.Outer} to valex", r.Out);
            Assert.Contains(expect, r.Out.Split('\n')[0]);
        }
    }

    [NetnsFact]
    public void RunReportsLinkChangesAndDropsWithTheirFix()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.14.1/24", mtu: 9000);
        var b = lab.Add("b", "10.231.14.2/24", mtu: 1500);
        NetLab.Must("ip", "link", "set", b.Outer, "down");
        using var dir = new TempDir();
        var psi = Cli.Start(dir.File("unused.sock"), "run", "--interval", "1", "--attach", $"valex:{a.Outer}", "--attach", $"valex:{b.Outer}");
        using var p = Process.Start(psi)!;
        var outText = new System.Text.StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (outText) outText.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        var stderr = p.StandardError.ReadToEndAsync();
        string Out() { lock (outText) return outText.ToString(); }
        void WaitOut(string text, string what)
        {
            for (int i = 0; i < 100 && !Out().Contains(text, StringComparison.Ordinal); i++) Thread.Sleep(100);
            Assert.True(Out().Contains(text, StringComparison.Ordinal), $"run printed no '{text}' ({what}):\n{Out()}");
        }
        try
        {
            WaitOut("running;", "start");
            Assert.Contains($"interface '{b.Outer}' was down; brought it up", Out());
            int rc = 1;
            for (int i = 0; i < 40 && rc != 0; i++) rc = lab.Exec(a, ["ping", "-c", "1", "-W", "1", b.Ip], 10_000, out _);
            Assert.Equal(0, rc);

            // 3000-byte pings from the 9000-byte side: over b's MTU.
            lab.Exec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "3000", "-M", "do", b.Ip], 10_000, out _);
            WaitOut($"frames to interface '{b.Outer}' dropped (oversize)", "the oversize drop");
            Assert.Contains($"ip link set {b.Outer} mtu", Out());
            WaitOut("tx drops (oversize", "the status line");

            // b's peer goes down: reported, and frames to it are link_down drops with the fix.
            NetLab.Must("ip", "-n", b.Ns, "link", "set", b.Inner, "down");
            WaitOut($"port valex:{b.Outer}: link down", "the link change");
            lab.Exec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "1", b.Ip], 10_000, out _);
            WaitOut($"frames to interface '{b.Outer}' dropped (link_down)", "the link-down drop");
            Assert.Contains($"ip link set {b.Outer} up", Out());
            NetLab.Must("ip", "-n", b.Ns, "link", "set", b.Inner, "up");
            WaitOut($"port valex:{b.Outer}: link up", "the link coming back");
            // Each cause once.
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(Out(), "dropped \\(oversize\\)"));
        }
        finally
        {
            Cli.Signal(p, Cli.SIGTERM);
            Assert.True(p.WaitForExit(30_000), "run stops within 30 s of SIGTERM");
            p.WaitForExit();
            output.WriteLine(Out());
            output.WriteLine(stderr.Result);
        }
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>The ways the CLI is started without the right to open raw packet sockets.</summary>
    private static readonly Dictionary<string, string[]> Unprivileged = new()
    {
        // uid/gid nobody, no capabilities at all
        ["nobody"] = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"],
        // still uid 0, but CAP_NET_RAW and CAP_NET_ADMIN taken out of the bounding set before exec
        ["root-without-net-caps"] = ["setpriv", "--inh-caps=-net_raw,-net_admin", "--bounding-set=-net_raw,-net_admin", "--"],
        // every capability, but in a new user namespace that does not own the network namespace
        ["userns-root"] = ["unshare", "--user", "--map-root-user", "--"],
    };

    [UnprivilegedTheory]
    [InlineData("nobody", "lacks CAP_NET_RAW")]
    [InlineData("root-without-net-caps", "lacks CAP_NET_RAW")]
    [InlineData("userns-root", "not in the user namespace that owns this network namespace")]
    public void AttachingWithoutCapNetRawFailsWithAClearError(string who, string cause)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.12.1/24");
        var psi = new ProcessStartInfo(Unprivileged[who][0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // --seconds 60: should the attach succeed, the run would stay up and the exit code be 0.
        foreach (string arg in (string[])[.. Unprivileged[who][1..], "dotnet", Cli.Dll, "run", "--interval", "0", "--seconds", "60", "--attach", $"valex:{a.Outer}"])
            psi.ArgumentList.Add(arg);
        psi.Environment["HOME"] = Path.GetTempPath(); // nobody's home does not exist
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var r = Cli.RunProcess(psi, $"hypernf run as {who}"); // no hang: at most 60 s, then killed and failed
        output.WriteLine(r.ToString());
        Assert.Equal(1, r.Exit);
        Assert.DoesNotContain("Unhandled exception", r.Err);
        Assert.DoesNotContain("   at ", r.Err); // no stack trace
        Assert.Contains($"cannot attach interface '{a.Outer}': permission denied opening a raw packet socket", r.Err);
        Assert.Contains(cause, r.Err);
        Assert.Contains("CAP_NET_RAW", r.Err);
        Assert.DoesNotContain("attached", r.Out);
        // Nothing was changed on the interface.
        Assert.Contains("promiscuity 0 ", NetLab.Must("ip", "-d", "link", "show", "dev", a.Outer));
    }
}

/// <summary>
/// A theory that needs network namespaces, setpriv and unshare, and a CLI build that user
/// nobody can read; skipped with the reason otherwise.
/// </summary>
public sealed class UnprivilegedTheoryAttribute : TheoryAttribute
{
    private static readonly Lazy<string?> Reason = new(Probe);

    private static string? Probe()
    {
        if (NetLab.SkipReason is { } why) return why;
        foreach (var tool in new[] { "setpriv", "unshare" })
            if (NetLab.Run("sh", ["-c", $"command -v {tool}"], 5000, out _) != 0) return $"needs '{tool}' (util-linux) to drop privileges";
        string dll;
        try { dll = Cli.Dll; }
        catch (FileNotFoundException e) { return e.Message; }
        if (NetLab.Run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", "test", "-r", dll], 5000, out _) != 0)
            return $"user nobody (65534) cannot read {dll}: the unprivileged run needs a readable build";
        if (NetLab.Run("unshare", ["--user", "--map-root-user", "--", "true"], 5000, out string err) != 0)
            return $"user namespaces are not available: {err.Trim()}";
        return null;
    }

    public UnprivilegedTheoryAttribute()
    {
        if (Reason.Value is { } why) Skip = why;
    }
}
