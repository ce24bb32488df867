using System.Diagnostics;
using System.Text.Json;
using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Memory;
using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Control;

/// <summary>
/// <c>hypernf capture</c> through the real CLI against a daemon whose switch the test drives
/// with exact frames, read back by tshark (Debian's package; skipped with a message without it).
/// </summary>
public sealed class CaptureCliTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly Host _host = new();
    private readonly ControlDaemon _daemon;

    public CaptureCliTests()
    {
        _daemon = new ControlDaemon(_host, new ControlDaemonOptions { SocketPath = _tmp.File("d.sock") });
        _daemon.Start();
    }

    public void Dispose()
    {
        _daemon.Dispose();
        _host.Dispose();
        _tmp.Dispose();
    }

    private static string? Which(string tool) =>
        Environment.GetEnvironmentVariable("PATH")!.Split(':').Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>Starts <c>hypernf capture ARGS</c> and waits for its "listening" line (the tap is open from then on).</summary>
    private Process StartCapture(out Task<string> stderr, params string[] args)
    {
        var p = Process.Start(Cli.Start(_daemon.SocketPath, ["capture", .. args]))!;
        var listening = new TaskCompletionSource();
        var err = new System.Text.StringBuilder();
        stderr = Task.Run(() =>
        {
            string? line;
            while ((line = p.StandardError.ReadLine()) is not null)
            {
                err.AppendLine(line);
                if (line.Contains("listening on")) listening.TrySetResult();
            }
            listening.TrySetResult();
            return err.ToString();
        });
        Assert.True(listening.Task.Wait(30_000), "capture did not start listening in 30 s");
        Assert.False(p.HasExited && p.ExitCode != 0, $"capture failed: {err}");
        return p;
    }

    private (Node A, Node B) TwoNodes(string bridge)
    {
        var a = new Node(_host.Switch, $"{bridge}:a", Macs.Unicast(1), new RegionLayout { MaxPorts = 1 });
        var b = new Node(_host.Switch, $"{bridge}:b", Macs.Unicast(2), new RegionLayout { MaxPorts = 1 });
        b.Announce();
        a.Drain();
        return (a, b);
    }

    [Fact]
    public async Task Capture_to_a_file_is_read_back_by_tshark_byte_for_byte()
    {
        if (Which("tshark") is null)
        {
            Console.WriteLine("SKIP: tshark is not installed (scripts/install-test-deps.sh installs it)");
            return;
        }
        var (a, b) = TwoNodes("valecap");
        using var _a = a;
        using var _b = b;
        string file = _tmp.File("b.pcap");
        using var cap = StartCapture(out var stderr, "valecap:b", "-w", file, "-c", "5", "--direction", "in");
        var frames = new[] { 60, 128, 1514, 3000, 9000 }.Select((len, i) => a.FrameTo(b.Mac, len, (uint)(i + 7))).ToArray();
        a.Send(frames);
        Assert.Equal(5, b.Receive().Count);
        Assert.True(cap.WaitForExit(30_000), "capture -c 5 did not end");
        string err = await stderr;
        Assert.Equal(0, cap.ExitCode);
        Assert.Contains("5 packets captured", err);
        Assert.Contains("0 packets dropped by the tap", err);

        var tshark = new ProcessStartInfo("tshark") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string s in new[] { "-r", file, "-T", "json", "-x" }) tshark.ArgumentList.Add(s);
        var r = Cli.RunProcess(tshark, "tshark -r");
        Assert.True(r.Exit == 0, r.ToString());
        var packets = JsonDocument.Parse(r.Out).RootElement.EnumerateArray().ToArray();
        Assert.Equal(5, packets.Length);
        for (int i = 0; i < 5; i++)
        {
            var layers = packets[i].GetProperty("_source").GetProperty("layers");
            string raw = layers.GetProperty("frame_raw")[0].GetString()!;
            Assert.Equal(Convert.ToHexStringLower(frames[i]), raw);
            Assert.Equal(frames[i].Length.ToString(), layers.GetProperty("frame").GetProperty("frame.len").GetString());
            Assert.Equal("02:00:00:00:00:01", layers.GetProperty("eth").GetProperty("eth.src").GetString());
        }
    }

    [Fact]
    public async Task Capture_streams_to_tshark_through_a_pipe_and_stops_when_it_exits()
    {
        if (Which("tshark") is null)
        {
            Console.WriteLine("SKIP: tshark is not installed (scripts/install-test-deps.sh installs it)");
            return;
        }
        var (a, b) = TwoNodes("valecapp");
        using var _a = a;
        using var _b = b;
        // tshark reads 3 frames and exits; capture must notice the closed pipe and end by itself.
        var sh = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        sh.ArgumentList.Add("-c");
        sh.ArgumentList.Add($"dotnet '{Cli.Dll}' capture valecapp:a/t -w - | tshark -r - -c 3 -T fields -e frame.len -e eth.dst -e eth.src 2>/dev/null");
        sh.Environment[ControlProtocol.SocketEnvironmentVariable] = _daemon.SocketPath;
        using var p = Process.Start(sh)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var err = p.StandardError.ReadToEndAsync();
        // Keep sending until the pipeline has ended (the capture may start after the first frames).
        var until = DateTime.UtcNow.AddSeconds(40);
        uint tag = 0;
        while (!p.HasExited && DateTime.UtcNow < until)
        {
            a.Send(a.FrameTo(b.Mac, 100, tag++));
            b.Drain();
            Thread.Sleep(20);
        }
        if (!p.WaitForExit(10_000))
        {
            p.Kill(entireProcessTree: true); // the pipeline we started: bash, the CLI, tshark
            Assert.Fail($"the pipeline did not end when tshark exited: {await err}");
        }
        var lines = (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.All(lines, l => Assert.Equal("100\t02:00:00:00:00:02\t02:00:00:00:00:01", l));
        // The daemon closed the tap when the client went away.
        var until2 = DateTime.UtcNow.AddSeconds(10);
        while (ValeSwitchPort("valecapp:a").CaptureCount != 0 && DateTime.UtcNow < until2) Thread.Sleep(50);
        Assert.Equal(0, ValeSwitchPort("valecapp:a").CaptureCount);
    }

    private HyperNF.Switch.ValePort ValeSwitchPort(string name)
    {
        var (bridge, port) = HyperNF.Switch.Bridge.ParsePortName(name);
        return _host.Switch.FindBridge(bridge)!.FindPort(port)!;
    }

    [Fact]
    public async Task Capture_prints_frames_ends_when_the_port_leaves_and_refuses_bad_requests()
    {
        var (a, b) = TwoNodes("valecapl");
        using var _a = a;
        using var cap = StartCapture(out var stderr, "valecapl:b");
        a.Send(a.FrameTo(b.Mac, 60, 1), a.FrameTo(Macs.Broadcast, 60, 2));
        b.Receive();
        Thread.Sleep(300);
        b.Dispose(); // the port leaves: the capture ends by itself
        Assert.True(cap.WaitForExit(30_000), "capture did not end when its port was detached");
        string output = cap.StandardOutput.ReadToEnd();
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{6} 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype \(0x88b5\), length 60$", lines[0]);
        Assert.Contains("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff", lines[1]);
        string err = await stderr;
        Assert.Contains("2 packets captured", err);
        Assert.Contains("was detached", err);

        string sock = _daemon.SocketPath;
        Assert.Contains("no bridge 'valenone'", Cli.Run(sock, "capture", "valenone:x", "-c", "1").Err);
        Assert.Contains("zero-copy monitors (/z) are not offered", Cli.Run(sock, "capture", "valecapl:a/z").Err);
        Assert.Contains("unknown monitor suffix '/q'", Cli.Run(sock, "capture", "valecapl:a/q").Err);
        Assert.Contains("give one of them", Cli.Run(sock, "capture", "valecapl:a/t", "--direction", "in").Err);
        Assert.Contains("no domain with id 42", Cli.Run(sock, "capture", "vif42.0").Err);
        var dir = Cli.Run(sock, "capture", "valecapl:a", "-w", _tmp.Path);
        Assert.Equal(1, dir.Exit);
        Assert.Contains("it is a directory", dir.Err);
        Assert.Equal(0, a.Host.CaptureCount);
    }
}
