using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Ports;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The ports' driver threads (DriverGroup): one per bridge or one per port as
/// <see cref="PhysicalPortOptions.DriverPerBridge"/> says, each serving all of its ports, asleep
/// (not spinning) when there is no traffic, and gone with the last port it served.
/// </summary>
public class DriverThreadTests
{
    private readonly ITestOutputHelper _out;

    public DriverThreadTests(ITestOutputHelper output) => _out = output;

    private void Ping(NetLab lab, LabHost from, LabHost to)
    {
        int rc = lab.Exec(from, ["ping", "-c", "3", "-i", "0.2", "-W", "2", to.Ip], 15_000, out string output);
        Assert.True(rc == 0, $"ping {from.Ip} -> {to.Ip} failed ({rc}): {output}");
    }

    private static bool Alive(int tid) => Directory.Exists($"/proc/self/task/{tid}");

    /// <summary>Whether the thread is gone within 2 s (a joined thread's task may linger in /proc for a moment).</summary>
    private static bool Ends(int tid)
    {
        for (long until = Environment.TickCount64 + 2000; Alive(tid);)
        {
            if (Environment.TickCount64 > until) return false;
            Thread.Sleep(10);
        }
        return true;
    }

    [NetnsTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void DriverThreadsFollowTheSettingServeEveryPortSleepWhenIdleAndEndWithTheirLastPort(bool perBridge)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.21.1/24");
        var b = lab.Add("b", "10.231.21.2/24");
        var c = lab.Add("c", "10.231.22.1/24");
        var d = lab.Add("d", "10.231.22.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { DriverPerBridge = perBridge });
        var pa = ports.Attach("valex", a.Outer);
        var pb = ports.Attach("valex", b.Outer);
        var pc = ports.Attach("valey", c.Outer);
        var pd = ports.Attach("valey", d.Outer);
        Ping(lab, a, b);
        Ping(lab, c, d);

        int[] tids = [pa.DriverTid, pb.DriverTid, pc.DriverTid, pd.DriverTid];
        _out.WriteLine($"driver threads: {string.Join(' ', tids)}");
        Assert.All(tids, t => Assert.True(Alive(t)));
        if (perBridge)
        {
            Assert.Equal(pa.DriverTid, pb.DriverTid);
            Assert.Equal(pc.DriverTid, pd.DriverTid);
            Assert.NotEqual(pa.DriverTid, pc.DriverTid);
        }
        else
        {
            Assert.Equal(4, tids.Distinct().Count());
        }
        Assert.All(ports.List(), p => Assert.Null(p.LastError));

        // Idle: the threads sleep in poll() (they wake every IdleTimeoutMs for the link check);
        // a thread that kept polling would use most of a CPU over the same time.
        Thread.Sleep(300); // past the spin window after the last frame
        var distinct = tids.Distinct().ToArray();
        long before = distinct.Sum(CpuTime.ThreadNs);
        var wall = System.Diagnostics.Stopwatch.StartNew();
        Thread.Sleep(2000);
        long used = distinct.Sum(CpuTime.ThreadNs) - before;
        double share = used / (wall.Elapsed.TotalMilliseconds * 1e6);
        _out.WriteLine($"idle: {distinct.Length} driver threads used {used / 1e6:F1} ms of CPU in {wall.ElapsedMilliseconds} ms ({share:P2} of a core)");
        Assert.True(share < 0.10, $"idle driver threads must sleep: they used {share:P1} of a core");

        // A thread ends with the last port it serves; the others keep working meanwhile.
        int tidA = pa.DriverTid;
        Assert.True(ports.Detach("valex", a.Outer));
        if (perBridge) Assert.True(Alive(tidA), "b still needs the bridge's thread");
        else Assert.True(Ends(tidA), "a's own thread ends with it");
        Ping(lab, c, d);
        Assert.True(ports.Detach("valex", b.Outer));
        Assert.True(Ends(tidA));
        Assert.True(Ends(tids[1]));
        Ping(lab, c, d);
        Assert.True(Alive(pc.DriverTid) && Alive(pd.DriverTid));
        Assert.Equal(0, host.Switch.FindBridge("valey")!.GetStatistics().Unaccounted);
    }

    [NetnsFact]
    public void ARealtimeDriverThreadSleepsWhenIdleAndRunsAsAnOrdinaryThreadWhileAFloodKeepsItAwake()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.23.1/24");
        var b = lab.Add("b", "10.231.23.2/24");
        using var host = new Host();
        using var ports = new PhysicalPorts(host, new PhysicalPortOptions { DriverRealtimePriority = 1, DriverRealtimeBudgetMicroseconds = 2000, KernelFastPath = false /* the flood must reach the driver thread */ });
        var pa = ports.Attach("valex", a.Outer);
        ports.Attach("valex", b.Outer);
        Assert.True(pa.LastError is null, $"the test runs as root, so SCHED_FIFO must be granted: {pa.LastError}");
        Ping(lab, a, b);
        int tid = pa.DriverTid;
        var driver = pa.Driver;

        // Idle: real-time, and asleep.
        Thread.Sleep(300);
        Assert.Equal(Native.SCHED_FIFO, Native.SchedGetScheduler(tid));
        long before = CpuTime.ThreadNs(tid);
        Thread.Sleep(1000);
        double share = (CpuTime.ThreadNs(tid) - before) / 1e9;
        _out.WriteLine($"idle real-time driver: {share:P2} of a core");
        Assert.True(share < 0.10, $"an idle real-time driver thread must sleep: it used {share:P1} of a core");
        long demotionsIdle = driver.RealtimeDemotions;

        // A TCP stream keeps the thread awake for seconds: past its budget it must not stay real-time.
        var server = lab.Start(b, "iperf3", "-s", "-1", "-B", b.Ip);
        bool sawOrdinary = false;
        var client = Task.Run(() =>
        {
            for (int attempt = 0; attempt < 20; attempt++)
            {
                if (lab.Exec(a, ["iperf3", "-c", b.Ip, "-t", "3", "--connect-timeout", "1000"], 20_000, out string o) == 0) return o;
                Thread.Sleep(200);
            }
            return "iperf3 failed";
        });
        while (!client.IsCompleted)
        {
            if (Native.SchedGetScheduler(tid) == Native.SCHED_OTHER) sawOrdinary = true;
            Thread.Sleep(5);
        }
        _out.WriteLine(client.Result);
        _out.WriteLine($"demotions: {driver.RealtimeDemotions - demotionsIdle}");
        Assert.DoesNotContain("iperf3 failed", client.Result);
        Assert.True(driver.RealtimeDemotions > demotionsIdle, "a flood must use up the real-time budget");
        Assert.True(sawOrdinary, "while the flood keeps it awake the driver thread runs as SCHED_OTHER");

        // Idle again: back to real time after its next sleep.
        var until = Environment.TickCount64 + 3000;
        while (Native.SchedGetScheduler(tid) != Native.SCHED_FIFO && Environment.TickCount64 < until) Thread.Sleep(10);
        Assert.Equal(Native.SCHED_FIFO, Native.SchedGetScheduler(tid));
        Ping(lab, a, b);
        server.WaitForExit(5000);
    }
}
