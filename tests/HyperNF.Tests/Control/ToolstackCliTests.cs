using System.Text.Json;
using Xunit;

namespace HyperNF.Tests.Control;

/// <summary>
/// End to end: the real CLI binary (<c>dotnet HyperNF.Cli.dll</c>, see <see cref="Cli.Dll"/>)
/// against a real daemon child process on a socket in a temporary directory. Every command is
/// a new CLI process, so state that survives between them is held by the daemon.
/// </summary>
public class ToolstackCliTests
{
    private static string Cfg(string name) => $$"""
        # written by ToolstackCliTests
        name = "{{name}}"
        kernel = "PATH_TO_KERNEL"
        vcpus = 1
        vif = [ "mac=00:10:00:00:00:02,bridge=xenbr",
                "type=nmif,bridge=valex:lx0,script=nmif-vale,mac=00:16:3e:af:12:00",
                "type=nmif,bridge=valey:ly0,script=nmif-vale,mac=00:17:3e:af:12:00" ]
        nf = "l2fwd"
        """;

    private static Cli.Result Ok(string socket, params string[] args)
    {
        var r = Cli.Run(socket, args);
        Assert.True(r.Exit == 0, $"hypernf {string.Join(' ', args)}: {r}");
        return r;
    }

    /// <summary>Non-zero exit with exactly one line on stderr containing <paramref name="expect"/>.</summary>
    private static Cli.Result Refused(string socket, string expect, params string[] args)
    {
        var r = Cli.Run(socket, args);
        Assert.True(r.Exit != 0, $"hypernf {string.Join(' ', args)} should fail: {r}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr: {r}");
        Assert.Contains(expect, lines[0]);
        return r;
    }

    private static JsonElement Json(Cli.Result r) => JsonDocument.Parse(r.Out).RootElement.Clone();

    [Fact]
    public async Task Session_create_list_ctl_sched_stats_pktgen_destroy_then_sigterm_cleans_up()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(sock));

        string cfg = tmp.File("nf.cfg");
        File.WriteAllText(cfg, Cfg("nf1"));
        var created = Ok(sock, "create", cfg);
        Assert.Contains("created domain nf1", created.Out);
        Assert.Contains($"{cfg}:3: kernel: ignored", created.Err);

        // A new CLI process sees what the previous one created: the daemon holds the state.
        var list = Json(Ok(sock, "list", "--json"));
        var dom = Assert.Single(list.GetProperty("domains").EnumerateArray());
        Assert.Equal("nf1", dom.GetProperty("name").GetString());
        Assert.Equal("running", dom.GetProperty("state").GetString());
        Assert.Equal(["valex:lx0", "valey:ly0"], dom.GetProperty("ports").EnumerateArray().Select(p => p.GetString()!).ToArray());
        Assert.Equal("l2fwd", dom.GetProperty("nf").GetString());
        Assert.Contains("nf1", Ok(sock, "list").Out);

        // ctl: op 1 and 5 are honoured, 2..4 refused with a reason, unknown ops refused.
        Assert.Contains("bridge_batch = 100", Ok(sock, "ctl", "-o", "1", "-v", "100").Out);
        Assert.Equal("100", Ok(sock, "get", "bridge_batch").Out.Trim());
        Refused(sock, "cannot be honoured", "ctl", "-o", "2", "-v", "0");
        Refused(sock, "cannot be honoured", "ctl", "-o", "4", "-v", "10");
        Refused(sock, "unknown ctl op 9", "ctl", "-o", "9", "-v", "1");
        Refused(sock, "out of range", "ctl", "-o", "1", "-v", "5000");
        Assert.Equal("100", Ok(sock, "get", "bridge_batch").Out.Trim());
        Ok(sock, "ctl", "-o", "5", "-v", "1");
        Assert.Equal("1", Ok(sock, "get", "drvdom_txsync").Out.Trim());
        Ok(sock, "set", "drvdom_txsync", "0");
        var all = Json(Ok(sock, "get", "--json")).GetProperty("settings").EnumerateArray().ToDictionary(s => s.GetProperty("key").GetString()!, s => s.GetProperty("value").GetString()!);
        Assert.Equal("0", all["drvdom_txsync"]);
        Assert.Equal("hypercall", all["io_model"]);

        // sched-credit2: only the given value changes; -d alone prints.
        Ok(sock, "sched-credit2", "-d", "nf1", "-w", "512");
        Ok(sock, "sched-credit2", "-d", "nf1", "-c", "50");
        var sched = Json(Ok(sock, "sched-credit2", "-d", "nf1", "--json")).GetProperty("domains")[0];
        Assert.Equal(512, sched.GetProperty("weight").GetInt32());
        Assert.Equal(50, sched.GetProperty("cap").GetInt32());
        Assert.Contains("nf1", Ok(sock, "sched-credit2", "-d", "nf1").Out);
        Refused(sock, "cap must be", "sched-credit2", "-d", "nf1", "-c", "500");

        // pkt-gen through the daemon: a temporary domain on a new port of valex, summary printed.
        var gen = Ok(sock, "pkt-gen", "-i", "valex:pg0", "-f", "tx", "-n", "20000", "-l", "60");
        Assert.Contains("Sent 20000 packets", gen.Out);
        Assert.Contains("pktgen-", gen.Err);
        Assert.DoesNotContain("pktgen-", Ok(sock, "list").Out); // destroyed when the run ended

        // An endless receiver ended by SIGTERM (as by Ctrl-C) still prints its summary.
        using (var rx = System.Diagnostics.Process.Start(Cli.Start(sock, "pkt-gen", "-i", "valey:pr0", "-f", "rx", "-T", "200"))!)
        {
            var rxErr = rx.StandardError.ReadLineAsync();
            var rxOut = rx.StandardOutput.ReadToEndAsync();
            Assert.Contains("Ctrl-C to stop", await rxErr.WaitAsync(TimeSpan.FromSeconds(30)));
            Cli.Signal(rx, Cli.SIGTERM);
            Assert.True(rx.WaitForExit(30_000), "pkt-gen rx did not end after SIGTERM");
            rx.WaitForExit();
            Assert.Equal(0, rx.ExitCode);
            Assert.Contains("Received 0 packets", await rxOut);
        }
        Assert.DoesNotContain("pktgen-", Ok(sock, "list").Out);

        var stats = Json(Ok(sock, "stats", "--json"));
        var valex = stats.GetProperty("bridges").EnumerateArray().Single(b => b.GetProperty("name").GetString() == "valex");
        Assert.True(valex.GetProperty("sent").GetInt64() >= 20000, valex.GetRawText());
        Assert.Equal(0, valex.GetProperty("unaccounted").GetInt64());
        var lx0 = valex.GetProperty("ports").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "valex:lx0");
        Assert.Equal("nf1", lx0.GetProperty("owner").GetString());
        Assert.True(lx0.GetProperty("drops").TryGetProperty("ring_full", out _));
        Ok(sock, "stats", "valex:lx0");
        Refused(sock, "no port 'nope'", "stats", "valex:nope");

        var vale = Json(Ok(sock, "vale-ctl", "-l", "--json"));
        Assert.Equal(["valex", "valey"], vale.GetProperty("bridges").EnumerateArray().Select(b => b.GetProperty("name").GetString()!).ToArray());
        Refused(sock, "creates a persistent VALE port", "vale-ctl", "-n", "valez"); // netmap's -n makes a port, not a bridge: refused with the difference
        Refused(sock, "does not exist", "vale-ctl", "-a", "valex:eth9");
        Refused(sock, "belongs to domain 'nf1'", "vale-ctl", "-d", "valex:lx0");
        Refused(sock, "removes a persistent VALE port", "vale-ctl", "-r", "valez");

        var top = Ok(sock, "top", "--iterations", "2", "--interval", "0.2");
        Assert.Contains("frame 2", top.Out);
        Assert.Contains("valex:lx0", top.Out);

        Assert.Equal("split", Ok(sock, "io-model", "split").Out.Trim());
        Assert.Equal("split", Ok(sock, "io-model").Out.Trim());
        Refused(sock, "not an I/O model", "io-model", "bogus");
        Ok(sock, "io-model", "hypercall");

        Ok(sock, "pause", "nf1");
        Assert.Equal("paused", Json(Ok(sock, "list", "--json")).GetProperty("domains")[0].GetProperty("state").GetString());
        Ok(sock, "unpause", "nf1");
        Ok(sock, "vcpu-pin", "nf1", "0", "0");
        Assert.Equal("0", Json(Ok(sock, "list", "--json")).GetProperty("domains")[0].GetProperty("cpus")[0].GetString());

        Assert.Contains("destroyed domain 'nf1'", Ok(sock, "destroy", "nf1").Out);
        Assert.Empty(Json(Ok(sock, "list", "--json")).GetProperty("domains").EnumerateArray());

        // A domain left running is destroyed at shutdown; SIGTERM: exit 0, socket removed.
        Ok(sock, "create", cfg);
        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
        Assert.False(File.Exists(sock), "the socket must be removed at shutdown");
        Assert.Contains("1 domain(s) destroyed", daemon.Log);
    }

    [Fact]
    public void Bad_input_is_refused_with_one_line_and_the_daemon_keeps_its_state()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);

        string bad = tmp.File("bad.cfg");
        File.WriteAllText(bad, "name = \"b\"\nvcpus = 1\nweight = \"heavy\"\n");
        Refused(sock, $"{bad}:3: weight: 'heavy' is not an integer", "create", bad);
        File.WriteAllText(bad, "name = \"b\"\nvif = [ \"type=nmif,bridge=valex:lx0\" ]\nnf = \"nosuchnf\"\n");
        Refused(sock, "unknown nf 'nosuchnf'", "create", bad);
        Refused(sock, "missing.cfg: no such file", "create", tmp.File("missing.cfg"));
        Refused(sock, "no domain 'ghost'", "destroy", "ghost");
        Refused(sock, "no domain 'ghost'", "pause", "ghost");
        Refused(sock, "no domain 'ghost'", "sched-credit2", "-d", "ghost", "-w", "10");
        Refused(sock, "unknown setting 'nosuch'", "get", "nosuch");
        Refused(sock, "unknown setting 'nosuch'", "set", "nosuch", "1");
        Refused(sock, "bridge_batch: 2000 is out of range", "set", "bridge_batch", "2000");
        Refused(sock, "no bridge 'valeq'", "stats", "valeq");
        Refused(sock, "no bridge 'valeq'", "vale-ctl", "-d", "valeq:p0");
        Refused(sock, "is not a VALE bridge name", "pkt-gen", "-i", "eth0:x", "-n", "1");
        Refused(sock, "pkt-gen: -l abc: not an integer", "pkt-gen", "-i", "valex:p", "-l", "abc");
        Assert.Empty(Json(Ok(sock, "list", "--json")).GetProperty("domains").EnumerateArray());

        // No daemon at the path: exit 2 and what to do.
        var none = Cli.Run(tmp.File("none.sock"), "list");
        Assert.Equal(2, none.Exit);
        Assert.Contains("no hypernf daemon", none.Err);

        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
        Assert.False(File.Exists(sock));
    }

    /// <summary>
    /// hypernf run with a bad config: exit 1 and the config error (file:line: key:), never a
    /// stack trace; values only the host can check (nf_args) are reported the same way.
    /// </summary>
    [Fact]
    public void Run_refuses_a_bad_config_with_file_line_and_key()
    {
        using var tmp = new TempDir();
        string bad = tmp.File("bad.cfg");
        File.WriteAllText(bad, "name = \"b\"\nvcpus = \"two\"\n");
        var r = Cli.Run(tmp.File("unused.sock"), "run", "--seconds", "1", bad);
        Assert.True(r.Exit == 1, r.ToString());
        Assert.Equal($"hypernf run: {bad}:2: vcpus: 'two' is not an integer (want 1..64)", r.Err.Trim());

        File.WriteAllText(bad, "name = \"b\"\nvif = [ \"type=nmif,bridge=valex:b0\" ]\nnf = \"pkt-gen\"\nnf_args = \"-f sideways\"\n");
        r = Cli.Run(tmp.File("unused.sock"), "run", "--seconds", "1", bad);
        Assert.True(r.Exit == 1, r.ToString());
        Assert.Contains($"hypernf run: {bad}:4: nf_args: pkt-gen: -f sideways: use tx, rx, ping or pong", r.Err);
        Assert.DoesNotContain("Unhandled", r.Err);
        Assert.DoesNotContain("created domain", r.Out);
    }

    [Fact]
    public void The_translated_init_script_and_vm_config_run_against_a_daemon()
    {
        if (Environment.ProcessorCount < 2) return; // examples/linux.cfg pins to CPU 1
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        var psi = new System.Diagnostics.ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(Cli.RepoRoot, "examples", "init.sh"));
        psi.Environment["HYPERNF"] = $"dotnet {Cli.Dll}";
        psi.Environment["HYPERNF_SOCKET"] = sock;
        psi.Environment.Remove("NIC");
        var r = Cli.RunProcess(psi, "examples/init.sh");
        Assert.True(r.Exit == 0, $"init.sh: {r}");
        Assert.Contains("created domain linux", r.Out);
        Assert.Contains("linux.cfg:7: kernel: ignored", r.Err);
        Assert.Equal("100", Ok(sock, "get", "bridge_batch").Out.Trim());
        var dom = Json(Ok(sock, "list", "--json")).GetProperty("domains")[0];
        Assert.Equal("linux", dom.GetProperty("name").GetString());
        Assert.Equal("1", dom.GetProperty("cpus")[0].GetString());
        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
    }

    /// <summary>
    /// The daemon enforces weights and caps with cgroups (v1 here) under hypernf/&lt;its pid&gt;;
    /// SIGTERM destroys the domains and removes every group it made, and the socket.
    /// </summary>
    [HyperNF.Tests.Cpu.RealCgroupV1Fact]
    public void Daemon_shutdown_removes_its_cgroups_and_its_socket()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        string mine = Path.Combine(HyperNF.Tests.Cpu.RealCgroupV1.Mounts.V1Cpu!, "hypernf", daemon.Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        string cfg = tmp.File("cg.cfg");
        File.WriteAllText(cfg, "name = \"cg\"\nvif = [ \"type=nmif,bridge=valex:cg0\", \"type=nmif,bridge=valey:cg1\" ]\nnf = \"l2fwd\"\ncap = 20\n");
        Ok(sock, "create", cfg);
        Ok(sock, "sched-credit2", "-d", "cg", "-w", "512");
        string group = Assert.Single(Directory.GetDirectories(mine, "dom*-cg", SearchOption.AllDirectories));
        Assert.Equal("20000", File.ReadAllText(Path.Combine(group, "cpu.cfs_quota_us")).Trim());
        Assert.Equal("2048", File.ReadAllText(Path.Combine(group, "cpu.shares")).Trim());
        Assert.NotEmpty(File.ReadAllText(Path.Combine(group, "tasks")).Trim());

        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
        Assert.False(Directory.Exists(mine), $"{mine} is left behind after shutdown");
        Assert.False(File.Exists(sock));
        Assert.Contains("1 domain(s) destroyed", daemon.Log);
    }

    /// <summary>The host-wide I/O model (--io-model) applies to configs without io_model; a config's own wins.</summary>
    [Fact]
    public void Daemon_io_model_is_the_default_of_new_domains()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        var bad = Cli.Run(sock, "daemon", "--socket", sock, "--io-model", "bogus");
        Assert.Equal(1, bad.Exit);
        Assert.Equal("hypernf: 'bogus' is not an I/O model: use hypercall, split or merge", bad.Err.Trim());
        Assert.False(File.Exists(sock));

        using var daemon = new DaemonProcess(sock, true, "--io-model", "split");
        Assert.Equal("split", Ok(sock, "io-model").Out.Trim());
        string plain = tmp.File("plain.cfg"), own = tmp.File("own.cfg");
        File.WriteAllText(plain, "name = \"plain\"\nvif = [ \"type=nmif,bridge=valex:p0\", \"type=nmif,bridge=valey:p1\" ]\n");
        File.WriteAllText(own, "name = \"own\"\nvif = [ \"type=nmif,bridge=valex:o0\", \"type=nmif,bridge=valey:o1\" ]\nio_model = \"merge\"\n");
        Ok(sock, "create", plain);
        Ok(sock, "create", own);
        var models = Json(Ok(sock, "list", "--json")).GetProperty("domains").EnumerateArray()
            .ToDictionary(d => d.GetProperty("name").GetString()!, d => d.GetProperty("io_model").GetString());
        Assert.Equal("split", models["plain"]);
        Assert.Equal("merge", models["own"]);
        // SIGINT (Ctrl-C) stops it as cleanly as SIGTERM.
        Cli.Signal(daemon.Process, Cli.SIGINT);
        Assert.Equal(0, daemon.WaitExit());
        Assert.False(File.Exists(sock));
        Assert.Contains("2 domain(s) destroyed", daemon.Log);
    }

    [Fact]
    public void A_second_daemon_refuses_and_a_stale_socket_is_replaced()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var first = new DaemonProcess(sock);

        using (var second = new DaemonProcess(sock, waitReady: false))
        {
            Assert.Equal(1, second.WaitExit());
            Assert.Contains($"another hypernf daemon (pid {first.Process.Id}) is already running on {sock}", second.Log);
        }
        Ok(sock, "vale-ctl", "-l"); // the first one is unharmed

        // A killed daemon leaves its socket file behind; the next one detects and replaces it.
        Cli.Signal(first.Process, Cli.SIGKILL);
        first.WaitExit();
        Assert.True(File.Exists(sock), "SIGKILL leaves the socket file");
        Assert.Equal(2, Cli.Run(sock, "list").Exit);

        using var third = new DaemonProcess(sock);
        Assert.Contains("removed stale socket", third.Log);
        Assert.Contains("no bridges", Ok(sock, "vale-ctl").Out); // a new host: nothing survived the kill
        Cli.Signal(third.Process, Cli.SIGTERM);
        Assert.Equal(0, third.WaitExit());
        Assert.False(File.Exists(sock));
    }
}
