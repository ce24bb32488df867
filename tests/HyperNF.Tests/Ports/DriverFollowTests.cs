using HyperNF.Linux;
using HyperNF.Ports;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// A driver thread follows its traffic (<see cref="PhysicalPortOptions.DriverFollowsTraffic"/>):
/// the RX socket's filter records the CPU each frame arrived on (Linux/CpuBeacon.cs), the thread
/// goes to sleep pinned there while frames come one by one, and is unpinned while a stream keeps
/// it polling. Frames are sent from a test thread pinned to each CPU in turn: a frame injected on
/// a veth is received on the sender's CPU, as a container's or a VM's would be.
/// </summary>
public class DriverFollowTests
{
    private readonly ITestOutputHelper _out;

    public DriverFollowTests(ITestOutputHelper output) => _out = output;

    private static readonly byte[] DstMac = [0x02, 0x00, 0x00, 0x31, 0x00, 0x02];
    private static readonly byte[] SrcMac = [0x02, 0x00, 0x00, 0x31, 0x00, 0x01];

    /// <summary>Runs <paramref name="send"/> on a thread pinned to <paramref name="cpu"/>.</summary>
    private static void OnCpu(int cpu, Action send)
    {
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                Native.SetAffinity(0, [cpu]);
                send();
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        t.Start();
        t.Join();
        if (error is not null) throw new InvalidOperationException($"sending on CPU {cpu}: {error.Message}", error);
    }

    private static string Allowed(int tid) =>
        File.ReadAllLines($"/proc/self/task/{tid}/status").First(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)).Split(':')[1].Trim();

    private static void WaitFor(Func<bool> condition, int ms, string what)
    {
        for (long until = Environment.TickCount64 + ms; !condition();)
        {
            if (Environment.TickCount64 > until) Assert.Fail($"timed out waiting for {what}");
            Thread.Sleep(5);
        }
    }

    [NetnsTheory]
    [InlineData("af_packet")]
    [InlineData("af_xdp")]
    public void TheBeaconRecordsEachFramesCpu_TheThreadSleepsThere_AndAStreamUnpinsIt(string backend)
    {
        int cpus = Environment.ProcessorCount;
        if (cpus < 2)
        {
            _out.WriteLine("skipped: following the traffic needs at least 2 CPUs to be observable");
            return;
        }
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.31.1/24");
        var b = lab.Add("b", "10.231.31.2/24");
        using var ports = new PhysicalPorts(new ValeSwitch(), new PhysicalPortOptions { Backend = backend });
        var pa = ports.Attach("valef", a.Outer);
        var pb = ports.Attach("valef", b.Outer);
        Assert.DoesNotContain("no rx cpu beacon", pa.Backend.Description);
        var wireA = lab.Wire(a);
        var wireB = lab.Wire(b);
        Assert.Equal(-1, pa.Backend.LastRxCpu);

        uint tag = 0;
        foreach (int cpu in new[] { 1, 0, cpus - 1, 0 })
        {
            // Frames one by one, 20 ms apart: each wakes the thread after a long sleep, its
            // polling window shrinks to nothing and it sleeps pinned to the senders' CPU.
            for (int i = 0; i < 8; i++)
            {
                var frame = TestFrames.Make(DstMac, SrcMac, 1000, ++tag);
                OnCpu(cpu, () => wireA.Send(frame));
                Assert.Equal(frame, wireB.NextTestFrame(5000)); // whole, unchanged by the filter
                Assert.Equal(cpu, pa.Backend.LastRxCpu);
                Thread.Sleep(20);
            }
            WaitFor(() => pa.Driver.FollowCpu == cpu, 2000, $"the driver thread to follow to CPU {cpu} (it is at {pa.Driver.FollowCpu})");
            Assert.Equal(0, pa.Driver.PollWindowMicroseconds);
            Assert.Equal(cpu.ToString(), Allowed(pa.DriverTid));
            _out.WriteLine($"sender on CPU {cpu}: driver thread pinned to {Allowed(pa.DriverTid)}, {pa.Driver.FollowPins} pins so far");
        }

        // A stream keeps the thread polling: its window grows and, going to sleep, it is unpinned.
        // Counters, not the thread's state at one moment: idle again, its window shrinks back to
        // nothing within a few idle timeouts and it pins itself once more.
        long unpinsBefore = pa.Driver.FollowUnpins;
        bool windowOpened = false;
        OnCpu(0, () =>
        {
            var frame = TestFrames.Make(DstMac, SrcMac, 200, 0x5eed);
            for (long until = Environment.TickCount64 + 500; Environment.TickCount64 < until;)
            {
                for (int i = 0; i < 64; i++) wireA.Send(frame);
                windowOpened |= pa.Driver.PollWindowMicroseconds > 0;
            }
        });
        Assert.True(windowOpened, "a stream grows the polling window");
        WaitFor(() => pa.Driver.FollowUnpins > unpinsBefore, 5000, $"the thread to be unpinned by the stream (window now {pa.Driver.PollWindowMicroseconds:F1} us, pinned to {pa.Driver.FollowCpu})");
        Assert.All(ports.List(), p => Assert.Null(p.LastError));
    }

    /// <summary>
    /// The thread follows the frames that wake it, not the replies its own transmissions provoke:
    /// with one thread for both ports of a bridge, a ping's reply is produced by namespace b's
    /// stack inside our send(), on our own CPU, and lands on port b a moment after the request
    /// woke us. Following that frame would keep the thread where it is, however the sender
    /// moves, and every request would wake it across CPUs.
    /// </summary>
    [NetnsFact]
    public void WithOneThreadPerBridgeTheThreadFollowsTheRequestsNotItsOwnReplies()
    {
        int cpus = Environment.ProcessorCount;
        if (cpus < 2)
        {
            _out.WriteLine("skipped: following the traffic needs at least 2 CPUs to be observable");
            return;
        }
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.33.1/24");
        var b = lab.Add("b", "10.231.33.2/24");
        using var ports = new PhysicalPorts(new ValeSwitch(), new PhysicalPortOptions { DriverPerBridge = true, KernelFastPath = false /* the requests must wake the driver thread */ });
        var pa = ports.Attach("valeh", a.Outer);
        var pb = ports.Attach("valeh", b.Outer);
        Assert.Same(pa.Driver, pb.Driver);
        foreach (int cpu in new[] { 1, 0, cpus - 1, 0 })
        {
            // ping from namespace a, on one CPU: each request wakes the thread after 20 ms.
            NetLab.Must("ip", "netns", "exec", a.Ns, "taskset", "-c", cpu.ToString(), "ping", "-c", "12", "-i", "0.02", "-W", "1", "10.231.33.2");
            WaitFor(() => pa.Driver.FollowCpu == cpu, 2000, $"the driver thread to follow the requests to CPU {cpu} (it is at {pa.Driver.FollowCpu})");
            Assert.Equal(cpu.ToString(), Allowed(pa.DriverTid));
            _out.WriteLine($"ping on CPU {cpu}: driver thread pinned to {Allowed(pa.DriverTid)}, {pa.Driver.FollowPins} pins so far");
        }
        Assert.All(ports.List(), p => Assert.Null(p.LastError));
    }

    [NetnsFact]
    public void PinnedDriverCpus_TurnFollowingOff()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.32.1/24");
        using var ports = new PhysicalPorts(new ValeSwitch(), new PhysicalPortOptions { DriverCpus = [0] });
        var pa = ports.Attach("valeg", a.Outer);
        var wireA = lab.Wire(a);
        for (int i = 0; i < 6; i++)
        {
            wireA.Send(TestFrames.Make(DstMac, SrcMac, 100, (uint)i));
            Thread.Sleep(20);
        }
        Thread.Sleep(100);
        Assert.Equal(-1, pa.Backend.LastRxCpu); // no filter on the socket
        Assert.Equal(-1, pa.Driver.FollowCpu);
        Assert.Equal("0", Allowed(pa.DriverTid));
        Assert.True(pa.GetStatistics().RxPackets >= 6, $"the port received the frames ({pa.GetStatistics().RxPackets})");
    }

    [Fact]
    public void TheBeaconIsASocketFilterThatKeepsEveryByte()
    {
        using var beacon = CpuBeacon.TryCreate(out string? error);
        if (beacon is null)
        {
            Assert.True(Environment.UserName != "root", $"root must be able to load the filter: {error}");
            _out.WriteLine($"skipped: {error}");
            return;
        }
        Assert.Equal(-1, beacon.LastCpu);
        // A UDP socket pair on loopback: the filter on the receiver sees each datagram and keeps it whole.
        using var rx = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        rx.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        Assert.Equal(0, beacon.AttachTo((int)rx.Handle));
        using var tx = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        var payload = Enumerable.Range(0, 1400).Select(i => (byte)i).ToArray();
        var buf = new byte[2048];
        for (int cpu = 0; cpu < Environment.ProcessorCount; cpu++)
        {
            OnCpu(cpu, () => tx.SendTo(payload, rx.LocalEndPoint!));
            rx.ReceiveTimeout = 5000;
            int n = rx.Receive(buf);
            Assert.Equal(payload, buf.AsSpan(0, n).ToArray());
            Assert.Equal(cpu, beacon.LastCpu);
        }
    }
}
