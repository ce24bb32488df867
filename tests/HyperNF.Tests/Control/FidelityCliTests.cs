using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Control;

/// <summary>
/// Where our commands borrow a name (netmap's vale-ctl and pkt-gen, xl), they behave as the
/// original or refuse saying how we differ (docs/compatibility.md). Through the real CLI.
/// </summary>
public class FidelityCliTests
{
    private static Cli.Result Ok(string socket, params string[] args)
    {
        var r = Cli.Run(socket, args);
        Assert.True(r.Exit == 0, $"hypernf {string.Join(' ', args)}: {r}");
        return r;
    }

    private static void Refused(string socket, string expect, params string[] args)
    {
        var r = Cli.Run(socket, args);
        Assert.True(r.Exit == 1, $"hypernf {string.Join(' ', args)} should be refused: {r}");
        Assert.Contains(expect, r.Err);
        Assert.DoesNotContain("System.", r.Err);
        Assert.DoesNotContain("Usage", r.Out + r.Err);
    }

    private static string Cfg(TempDir tmp, string name)
    {
        string cfg = tmp.File($"{name}.cfg");
        File.WriteAllText(cfg, $"name = \"{name}\"\nvif = [\"type=nmif,bridge=valex:{name}0\", \"type=nmif,bridge=valey:{name}1\"]\nnf = \"l2fwd\"\n");
        return cfg;
    }

    private static string[] Bridges(string sock) =>
        JsonDocument.Parse(Ok(sock, "vale-ctl", "-l", "--json").Out).RootElement.GetProperty("bridges").EnumerateArray().Select(b => b.GetProperty("name").GetString()!).ToArray();

    [Fact]
    public void ValeCtl_flags_behave_as_netmaps_or_are_refused_with_the_difference()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        Ok(sock, "create", Cfg(tmp, "v"));

        // netmap's -h attaches an interface with its host stack: not help, and nothing happens.
        Refused(sock, "together with its host stack", "vale-ctl", "-h", "valex:nuv0");
        Assert.Contains("vale-ctl", Ok(sock, "vale-ctl", "--help").Out);
        Refused(sock, "creates a persistent VALE port", "vale-ctl", "-n", "v0");
        Refused(sock, "removes a persistent VALE port", "vale-ctl", "-r", "v0");
        Refused(sock, "polling threads", "vale-ctl", "-p", "valex:v0");
        Refused(sock, "polling threads", "vale-ctl", "-P", "valex:v0");
        Refused(sock, "ring and slot counts", "vale-ctl", "-C", "1024,1024,1,1");
        Refused(sock, "memory allocators", "vale-ctl", "-m", "1");
        Assert.Equal(["valex", "valey"], Bridges(sock));

        // -l takes an optional BRIDGE[:PORT].
        var one = JsonDocument.Parse(Ok(sock, "vale-ctl", "-l", "valex:v0", "--json").Out).RootElement.GetProperty("bridges");
        Assert.Equal("valex", Assert.Single(one.EnumerateArray()).GetProperty("name").GetString());
        Assert.Equal("v0", Assert.Single(one[0].GetProperty("ports").EnumerateArray()).GetProperty("port").GetString());
        Assert.Contains("valey", Ok(sock, "vale-ctl", "-l", "valey").Out);
        Assert.DoesNotContain("valex", Ok(sock, "vale-ctl", "-l", "valey").Out);
        Refused(sock, "no bridge 'valeq' (bridges: valex, valey)", "vale-ctl", "-l", "valeq");
        Refused(sock, "has no port 'zz'", "vale-ctl", "-l", "valex:zz");

        // Bridges come and go with their ports, as in VALE.
        Ok(sock, "destroy", "v");
        Assert.Empty(Bridges(sock));
    }

    [Fact]
    public async Task PktGen_flags_behave_as_netmaps_or_are_refused_and_a_typo_bridge_is_warned_about_and_removed()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        Ok(sock, "create", Cfg(tmp, "p"));

        // The default function is rx, as in netmap; -w N waits N seconds for the link.
        var clock = Stopwatch.StartNew();
        var rx = Ok(sock, "pkt-gen", "-i", "valex:r0", "-w", "1", "-t", "0.5");
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.5), $"-w 1 -t 0.5 took {clock.Elapsed}");
        Assert.Contains("rx on valex:r0", rx.Err);

        // A bridge that does not exist (a typo for valex): warned about, and gone after the run.
        var typo = Ok(sock, "pkt-gen", "-i", "valez:p0", "-f", "tx", "-n", "1000");
        Assert.Contains("warning: bridge valez did not exist; it was created for this run and goes away with it (existing bridges: valex, valey)", typo.Err);
        Assert.Contains("valez has no other port: every frame sent is dropped", typo.Err);
        Assert.Equal(["valex", "valey"], Bridges(sock));

        // Refused, each saying how we differ.
        Refused(sock, "one generator thread per run", "pkt-gen", "-i", "valex:t", "-f", "tx", "-p", "2");
        Refused(sock, "pin it with -a", "pkt-gen", "-i", "valex:t", "-f", "tx", "-c", "2");
        Refused(sock, "replay a pcap file", "pkt-gen", "-i", "valex:t", "-f", "tx", "-P", "x.pcap");
        Refused(sock, "a range of frame sizes", "pkt-gen", "-i", "valex:t", "-f", "tx", "-l", "60", "-l", "1514");
        Refused(sock, "ping and pong frames must fit one buffer", "pkt-gen", "-i", "valex:t", "-f", "ping", "-l", "3000");

        // -f ping / -f pong: round trips through the switch, each ping answered by the pong.
        using (var pong = Process.Start(Cli.Start(sock, "pkt-gen", "-i", "valex:po", "-f", "pong"))!)
        {
            var pongOut = pong.StandardOutput.ReadToEndAsync();
            var pongErr = pong.StandardError.ReadToEndAsync();
            try
            {
                // The pong's port must exist before the first ping, or that ping has no one to answer it.
                var until = DateTime.UtcNow.AddSeconds(30);
                while (!Ok(sock, "vale-ctl", "-l", "valex").Out.Contains("po") && DateTime.UtcNow < until) Thread.Sleep(100);
                var ping = Ok(sock, "pkt-gen", "-i", "valex:pi", "-f", "ping", "-n", "50", "-R", "500");
                Assert.Contains("Sent 50 pings, 50 replies, 0 lost", ping.Out);
                Assert.Matches(@"Round trip \(usec\): min \d+\.\d avg", ping.Out);
            }
            finally
            {
                Cli.Signal(pong, Cli.SIGINT);
                Assert.True(pong.WaitForExit(30_000), "pong did not stop on SIGINT");
            }
            Assert.Contains("Received 50 packets, replied to 50, 0 not echoed", await pongOut + await pongErr);
        }
        Refused(sock, "-w x: not an integer", "pkt-gen", "-i", "valex:t", "-w", "x");

        // -z: random source ports within -s, seen by a capture of the sending port.
        string file = tmp.File("z.pcap");
        // The port is pkt-gen's, so start it first and capture once the port exists.
        var gen = Process.Start(Cli.Start(sock, "pkt-gen", "-i", "valex:z0", "-f", "tx", "-z", "-s", "10.0.0.1:1000-1999", "-R", "2000", "-t", "20"))!;
        try
        {
            Cli.Result? got = null;
            for (int i = 0; i < 100 && got is null; i++)
            {
                var r = Cli.Run(sock, "capture", "valex:z0/t", "-w", file, "-c", "300");
                if (r.Exit == 0) got = r;
                else Thread.Sleep(100);
            }
            Assert.NotNull(got);
        }
        finally
        {
            Cli.Signal(gen, Cli.SIGINT);
            gen.WaitForExit(30_000);
        }
        var frames = Pcap.ReadRecords(File.ReadAllBytes(file)[Pcap.FileHeaderBytes..]).ToArray();
        Assert.Equal(300, frames.Length);
        var ports = frames.Select(f => (int)BinaryPrimitives.ReadUInt16BigEndian(f.Bytes.AsSpan(34))).ToArray();
        Assert.All(ports, p => Assert.InRange(p, 1000, 1999));
        int ascending = ports.Zip(ports.Skip(1)).Count(x => x.Second == x.First + 1);
        Assert.True(ascending < 30, $"-z should pick source ports at random, {ascending} of 299 steps were +1");
        Assert.True(ports.Distinct().Count() > 200, $"only {ports.Distinct().Count()} distinct source ports");
    }

    [Fact]
    public void Xl_commands_behave_as_xls_or_are_refused_with_the_difference()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        string cfg = Cfg(tmp, "x");

        // create CFG KEY=VALUE...: overrides replace the file's settings.
        Assert.Contains("created domain x2 (id 1): 2 vCPU(s)", Ok(sock, "create", cfg, "name=x2", "vcpus=2", "vif=[\"type=nmif,bridge=valex:y0\", \"type=nmif,bridge=valey:y1\"]").Out);
        Ok(sock, "create", cfg);
        Refused(sock, "is a directory; give the domain's config file", "create", tmp.Path);
        Refused(sock, "then run hypernf console D -f", "create", cfg, "-c");
        Refused(sock, "(command line):2: vcpus", "create", cfg, "name=x3", "vcpus=abc");

        // list DOMAIN..., list -l
        var listed = Ok(sock, "list", "x2").Out;
        Assert.Contains("x2", listed);
        Assert.DoesNotContain("x ", listed.Split('\n').Skip(1).FirstOrDefault() ?? "");
        Refused(sock, "no domain 'ghost' (domains: x2, x)", "list", "ghost");
        var longList = JsonDocument.Parse(Ok(sock, "list", "-l", "x").Out).RootElement;
        Assert.Equal("x", Assert.Single(longList.EnumerateArray()).GetProperty("name").GetString());
        Assert.Equal(2, JsonDocument.Parse(Ok(sock, "list", "--json").Out).RootElement.GetProperty("domains").GetArrayLength());

        // vcpu-list, info, uptime, network-list
        var vcpus = JsonDocument.Parse(Ok(sock, "vcpu-list", "x2", "--json").Out).RootElement.GetProperty("vcpus");
        Assert.Equal(2, vcpus.GetArrayLength());
        Assert.All(vcpus.EnumerateArray(), v => Assert.True(v.GetProperty("tid").GetInt32() > 0));
        Assert.All(vcpus.EnumerateArray(), v => Assert.Contains(v.GetProperty("state").GetString(), new[] { "r", "b" }));
        Assert.Contains("x2", Ok(sock, "vcpu-list").Out);
        var info = JsonDocument.Parse(Ok(sock, "info", "--json").Out).RootElement;
        Assert.Equal(Environment.ProcessorCount, info.GetProperty("nr_cpus").GetInt32());
        Assert.Equal(2, info.GetProperty("domains").GetInt32());
        Assert.True(info.GetProperty("total_memory_mb").GetInt64() > 0);
        Assert.Contains("nr_cpus", Ok(sock, "info").Out);
        Assert.Matches(@"x2\s+1 \d+:\d\d:\d\d", Ok(sock, "uptime").Out);
        Refused(sock, "no domain 'ghost'", "uptime", "ghost");
        var vifs = JsonDocument.Parse(Ok(sock, "network-list", "x", "--json").Out).RootElement.GetProperty("vifs");
        Assert.Equal(["valex:x0", "valey:x1"], vifs.EnumerateArray().Select(v => v.GetProperty("port").GetString()!).ToArray());
        Assert.All(vifs.EnumerateArray(), v => Assert.Equal("attached", v.GetProperty("state").GetString()));
        Assert.StartsWith("00:16:3e:", vifs[0].GetProperty("mac").GetString());

        // A thread domain has no console (a VM domain has, tested with the VMs); vif hot-plug is refused.
        Refused(sock, "only VM domains (kernel=) have a console", "console", "x");
        Refused(sock, "vifs are fixed when a domain is created", "network-attach", "x", "bridge=valez:p");
        Refused(sock, "vifs are fixed when a domain is created", "network-detach", "x", "1");

        // shutdown (orderly) and destroy -f
        Assert.Contains("shut down domain 'x2' (id 1)", Ok(sock, "shutdown", "x2").Out);
        Assert.Contains("destroyed domain 'x'", Ok(sock, "destroy", "-f", "x").Out);
        Assert.Empty(JsonDocument.Parse(Ok(sock, "list", "--json").Out).RootElement.GetProperty("domains").EnumerateArray());
    }

    [Fact]
    public void Messages_show_no_dotnet_internals()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("none.sock");
        var r = Cli.Run(sock, "sched-credit2", "-d", "x", "-w", "abc");
        Assert.Equal(1, r.Exit);
        Assert.Contains("cannot read 'abc' given to '--weight' as an integer", r.Err);
        Assert.DoesNotContain("System.", r.Err);
        Assert.Contains("run 'hypernf sched-credit2 --help'", r.Err);
        var help = Cli.Run(sock, "--help");
        Assert.Contains("hypernf [command] [options]", help.Out);
        Assert.DoesNotContain("HyperNF.Cli", help.Out);
        Assert.Contains("hypernf list", Cli.Run(sock, "list", "-h").Out);
        var dir = Cli.Run(sock, "create", tmp.Path);
        Assert.Contains("is a directory", dir.Err);
        Assert.DoesNotContain("Access to the path", dir.Err);
    }
}
