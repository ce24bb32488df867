using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using HyperNF.Linux;
using HyperNF.Ports;
using HyperNF.Switch;

namespace HyperNF.Bench;

/// <summary>What forwards between the two veth-attached namespaces.</summary>
public enum PortsBenchmarkPath
{
    /// <summary>A HyperNF bridge with both outer veth ends attached as physical ports.</summary>
    HyperNF,
    /// <summary>A Linux bridge (ip link add type bridge) with both outer ends as its ports.</summary>
    LinuxBridge,
    /// <summary>Open vSwitch's userspace datapath (datapath_type=netdev) in a private instance.</summary>
    OvsUserspace,
    /// <summary>As <see cref="HyperNF"/>, the veths opened with the AF_XDP backend.</summary>
    HyperNFXdp,
    /// <summary>
    /// The yardstick: nothing attached, the frames die in the root namespace's stack at the
    /// first outer veth end. Its CPU per frame is the sender's own cost plus one veth hop, which
    /// every path pays; what a path costs above it is the cost of switching.
    /// </summary>
    SenderOnly,
}

public sealed record PortsBenchmarkOptions
{
    public IReadOnlyList<int> FrameSizes { get; init; } = [64, 1514];
    public IReadOnlyList<PortsBenchmarkPath> Paths { get; init; } = [PortsBenchmarkPath.SenderOnly, PortsBenchmarkPath.HyperNF, PortsBenchmarkPath.HyperNFXdp, PortsBenchmarkPath.LinuxBridge, PortsBenchmarkPath.OvsUserspace];
    public double Seconds { get; init; } = 3;
    public double WarmupSeconds { get; init; } = 0.5;
    /// <summary>Frames the sender queues per send() kick.</summary>
    public int Batch { get; init; } = 256;
    public int SenderCpu { get; init; }
    /// <summary>CPU of HyperNF's port driver threads; -1: not pinned.</summary>
    public int DriverCpu { get; init; } = 1;
    /// <summary>drvdom_txsync (ctl op 5) for the HyperNF path.</summary>
    public bool DriverDomainTxSync { get; init; }
    /// <summary>Where the hypernf-xdp path runs its XDP program: auto, native or generic.</summary>
    public string XdpMode { get; init; } = "auto";
    /// <summary>The hypernf path's AF_PACKET transmission: a TPACKET_V2 ring (true) or sendmmsg (false).</summary>
    public bool TxRing { get; init; } = new PhysicalPortOptions().TxRing;
    /// <summary>One driver thread per bridge (default) or per port (<see cref="PhysicalPortOptions.DriverPerBridge"/>).</summary>
    public bool DriverPerBridge { get; init; } = new PhysicalPortOptions().DriverPerBridge;
    /// <summary>SCHED_FIFO priority of the driver threads (0: none; <see cref="PhysicalPortOptions.DriverRealtimePriority"/>).</summary>
    public int DriverRealtimePriority { get; init; }
    /// <summary>How long a driver thread polls after its last frame (<see cref="PhysicalPortOptions.DriverSpinMicroseconds"/>).</summary>
    public int DriverSpinMicroseconds { get; init; } = new PhysicalPortOptions().DriverSpinMicroseconds;
}

public sealed record PortsBenchmarkResult
{
    [JsonPropertyName("path")] public required string Path { get; init; }
    [JsonPropertyName("frame_size")] public int FrameSize { get; init; }
    [JsonPropertyName("seconds")] public double Seconds { get; init; }
    /// <summary>Frames the sender handed to its interface.</summary>
    [JsonPropertyName("sent")] public long Sent { get; init; }
    /// <summary>Frames that arrived at the receiving namespace's interface.</summary>
    [JsonPropertyName("received")] public long Received { get; init; }
    [JsonPropertyName("mpps_offered")] public double MppsOffered { get; init; }
    [JsonPropertyName("mpps")] public double Mpps { get; init; }
    [JsonPropertyName("gbps")] public double Gbps { get; init; }
    /// <summary>Busy time of the whole machine, in % of one core (200 = both cores of a 2-core machine).</summary>
    [JsonPropertyName("cpu_pct")] public double CpuPct { get; init; }
    /// <summary>CPU of the sender thread (its send() also runs the kernel's transmit and, for the Linux bridge, the forwarding softirq).</summary>
    [JsonPropertyName("sender_cpu_pct")] public double SenderCpuPct { get; init; }
    /// <summary>CPU of HyperNF's port driver threads (0 for the Linux bridge).</summary>
    [JsonPropertyName("driver_cpu_pct")] public double DriverCpuPct { get; init; }
    /// <summary>Machine CPU ns per received frame.</summary>
    [JsonPropertyName("ns_per_packet")] public double NsPerPacket { get; init; }
    /// <summary>
    /// <see cref="NsPerPacket"/> less the sender-only path's in the same run (same frame size):
    /// the machine CPU the switching itself costs per frame. Null without a sender-only point.
    /// </summary>
    [JsonPropertyName("switch_ns_per_packet")] public double? SwitchNsPerPacket { get; init; }
    [JsonPropertyName("port_drops")] public long PortDrops { get; init; }
    [JsonPropertyName("switch_drops")] public long SwitchDrops { get; init; }
    [JsonPropertyName("port_drops_by_reason")] public IReadOnlyDictionary<string, long> PortDropsByReason { get; init; } = new Dictionary<string, long>();
    [JsonPropertyName("drvdom_txsync")] public bool DriverDomainTxSync { get; init; }
}

/// <summary>
/// Two namespaces, each with a veth pair whose outer end is in the root namespace; a sender
/// thread inside the first namespace writes UDP frames to its veth end through an AF_PACKET
/// TX ring (our own sender, PACKET_QDISC_BYPASS, one send() per batch); the frames cross the
/// bridge (HyperNF's or Linux's) and are counted at the second namespace's veth end. The
/// destination MAC is unknown to both bridges (flooded to the one other port) and not the
/// receiver's, so the receiving stack drops each frame at once (PACKET_OTHERHOST): what is
/// measured is the bridge path, not a socket. Needs root.
/// </summary>
public static class PortsBenchmark
{
    private static readonly byte[] DstMac = [0x02, 0x00, 0x00, 0xbe, 0x0c, 0x99];
    private static readonly byte[] SrcMac = [0x02, 0x00, 0x00, 0xbe, 0x0c, 0x01];

    /// <summary>Why the benchmark cannot run here, or null.</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux()) return "needs Linux";
        if (Sh(out _, "id", "-u") != 0) return "cannot run 'id'";
        Sh(out string uid, "id", "-u");
        if (uid.Trim() != "0") return "needs root (network namespaces, veth, AF_PACKET)";
        if (Sh(out string err, "ip", "netns", "list") != 0) return $"'ip netns' does not work: {err.Trim()}";
        return null;
    }

    public static IReadOnlyList<PortsBenchmarkResult> Run(PortsBenchmarkOptions o, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (Unavailable() is { } why) throw new InvalidOperationException($"ports benchmark: {why}");
        foreach (int size in o.FrameSizes)
            if (size is < 60 or > 1514) throw new ArgumentOutOfRangeException(nameof(o), size, "frame sizes must be 60..1514 bytes (the veth MTU is 1500)");
        if (o.Seconds <= 0 || o.Batch is < 1 or > 4096) throw new ArgumentOutOfRangeException(nameof(o), "seconds must be > 0 and batch 1..4096");
        var results = new List<PortsBenchmarkResult>();
        foreach (var path in o.Paths)
            foreach (int size in o.FrameSizes)
            {
                var r = RunOne(o, path, size);
                var yard = results.FirstOrDefault(x => x.Path == PathName(PortsBenchmarkPath.SenderOnly) && x.FrameSize == size);
                if (yard is not null && path != PortsBenchmarkPath.SenderOnly && r.Received > 0)
                    r = r with { SwitchNsPerPacket = r.NsPerPacket - yard.NsPerPacket };
                progress?.Invoke($"{r.Path,-12} {r.FrameSize,5} B: {r.Mpps,6:F3} Mpps ({r.MppsOffered:F3} offered) {r.Gbps,6:F2} Gbit/s  " +
                                 $"cpu {r.CpuPct:F0}% (sender {r.SenderCpuPct:F0}%, driver {r.DriverCpuPct:F0}%)  {r.NsPerPacket:F0} ns/pkt" +
                                 (r.PortDropsByReason.Count > 0 ? "  drops " + string.Join(", ", r.PortDropsByReason.Select(kv => $"{kv.Key} {kv.Value}")) : ""));
                results.Add(r);
            }
        return results;
    }

    private static PortsBenchmarkResult RunOne(PortsBenchmarkOptions o, PortsBenchmarkPath path, int frameSize)
    {
        string tag = (Environment.ProcessId % 100000).ToString(CultureInfo.InvariantCulture) + Random.Shared.Next(10, 99);
        string nsSrc = $"hnfbs{tag}", nsDst = $"hnfbd{tag}";
        string outSrc = $"hbs{tag}", outDst = $"hbd{tag}", br = $"hbr{tag}";
        PhysicalPorts? ports = null;
        ValeSwitch? sw = null;
        OvsUserspace? ovs = null;
        var sender = new Sender(nsSrc, "veth0", frameSize, o.Batch, o.SenderCpu);
        try
        {
            MakeHost(nsSrc, outSrc);
            MakeHost(nsDst, outDst);
            if (path is PortsBenchmarkPath.HyperNF or PortsBenchmarkPath.HyperNFXdp)
            {
                sw = new ValeSwitch();
                ports = new PhysicalPorts(sw, new PhysicalPortOptions
                {
                    DriverCpus = o.DriverCpu >= 0 ? [o.DriverCpu] : [],
                    Backend = path == PortsBenchmarkPath.HyperNFXdp ? "af_xdp" : "af_packet",
                    XdpMode = o.XdpMode,
                    TxRing = o.TxRing,
                    DriverPerBridge = o.DriverPerBridge,
                    DriverRealtimePriority = o.DriverRealtimePriority,
                    DriverSpinMicroseconds = o.DriverSpinMicroseconds,
                })
                {
                    DriverDomainTxSync = o.DriverDomainTxSync,
                };
                ports.Attach("valebench", outSrc);
                ports.Attach("valebench", outDst);
            }
            else if (path == PortsBenchmarkPath.OvsUserspace)
            {
                if (OvsUserspace.Unavailable() is { } why) throw new InvalidOperationException($"ports benchmark (ovs): {why}");
                ovs = OvsUserspace.Start(br, [outSrc, outDst]);
            }
            else if (path == PortsBenchmarkPath.LinuxBridge)
            {
                Must("ip", "link", "add", br, "type", "bridge");
                Must("ip", "link", "set", outSrc, "master", br);
                Must("ip", "link", "set", outDst, "master", br);
                Must("ip", "link", "set", br, "up");
            }
            sender.Start();
            Thread.Sleep(TimeSpan.FromSeconds(o.WarmupSeconds));

            bool yardstick = path == PortsBenchmarkPath.SenderOnly;
            long rx0 = yardstick ? RxPackets(null, outSrc) : RxPackets(nsDst, "veth0"), sent0 = sender.Sent, sndNs0 = CpuTime.ThreadNs(sender.Tid);
            long drvNs0 = DriverNs(ports);
            long switchDrops0 = SwitchDrops(sw);
            long idle0 = MachineIdleTicks();
            var dropsAtStart = PortDropsByReason(ports);
            var sw0 = Stopwatch.StartNew();
            Thread.Sleep(TimeSpan.FromSeconds(o.Seconds));
            long rx1 = yardstick ? RxPackets(null, outSrc) : RxPackets(nsDst, "veth0"), sent1 = sender.Sent, sndNs1 = CpuTime.ThreadNs(sender.Tid);
            long drvNs1 = DriverNs(ports);
            long switchDrops1 = SwitchDrops(sw);
            long idle1 = MachineIdleTicks();
            var byReason = PortDropsByReason(ports);
            foreach (var (k, v) in dropsAtStart) byReason[k] = byReason.GetValueOrDefault(k) - v;
            double secs = sw0.Elapsed.TotalSeconds;
            sender.Stop();
            if (sender.Error is { } e) throw new InvalidOperationException($"ports benchmark sender failed: {e.Message}", e);

            long received = rx1 - rx0, sent = sent1 - sent0;
            // Busy = all CPUs' wall time less their idle time. Idle time is measured exactly (the
            // nohz code clocks it), but user/system/softirq ticks are sampled by a tick that only
            // fires on a CPU that is running: they over-count a CPU that is often briefly idle
            // (measured: 645 ticks in 3 s on 2 CPUs), so they are not used.
            double busyNs = Math.Max(0, Environment.ProcessorCount * secs * 1e9 - (idle1 - idle0) * (1e9 / 100.0)); // USER_HZ = 100
            long portDrops = byReason.Values.Sum(), switchDrops = switchDrops1 - switchDrops0;
            return new PortsBenchmarkResult
            {
                Path = PathName(path),
                FrameSize = frameSize, Seconds = secs, Sent = sent, Received = received,
                MppsOffered = sent / secs / 1e6, Mpps = received / secs / 1e6,
                Gbps = received * (frameSize + 24) * 8 / secs / 1e9, // with preamble, SFD and IFG as on a wire
                CpuPct = busyNs / secs / 1e7,
                SenderCpuPct = (sndNs1 - sndNs0) / secs / 1e7,
                DriverCpuPct = (drvNs1 - drvNs0) / secs / 1e7,
                NsPerPacket = received > 0 ? busyNs / received : 0,
                PortDrops = portDrops, SwitchDrops = switchDrops,
                PortDropsByReason = byReason.Where(kv => kv.Value != 0).ToDictionary(),
                DriverDomainTxSync = (path is PortsBenchmarkPath.HyperNF or PortsBenchmarkPath.HyperNFXdp) && o.DriverDomainTxSync,
            };
        }
        finally
        {
            sender.Stop();
            ports?.Dispose();
            ovs?.Dispose();
            Sh(out _, "ip", "netns", "del", nsSrc);
            Sh(out _, "ip", "netns", "del", nsDst);
            Sh(out _, "ip", "link", "del", outSrc);
            Sh(out _, "ip", "link", "del", outDst);
            if (path == PortsBenchmarkPath.LinuxBridge) Sh(out _, "ip", "link", "del", br);
        }
    }

    public static string PathName(PortsBenchmarkPath p) => p switch
    {
        PortsBenchmarkPath.HyperNF => "hypernf",
        PortsBenchmarkPath.HyperNFXdp => "hypernf-xdp",
        PortsBenchmarkPath.SenderOnly => "sender-only",
        PortsBenchmarkPath.LinuxBridge => "linux-bridge",
        _ => "ovs-netdev",
    };

    private static void MakeHost(string ns, string outer)
    {
        Must("ip", "netns", "add", ns);
        Must("ip", "link", "add", outer, "type", "veth", "peer", "name", "veth0", "netns", ns);
        Sh(out _, "sysctl", "-qw", $"net.ipv6.conf.{outer}.disable_ipv6=1");
        Sh(out _, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.veth0.disable_ipv6=1");
        Must("ip", "-n", ns, "link", "set", "veth0", "up");
        Must("ip", "link", "set", outer, "up");
    }

    /// <summary>Port drops by direction and reason ("rx:kernel_ring_full"), summed over the ports.</summary>
    private static Dictionary<string, long> PortDropsByReason(PhysicalPorts? ports)
    {
        var d = new Dictionary<string, long>();
        if (ports is null) return d;
        foreach (var p in ports.List())
        {
            var s = p.GetStatistics();
            for (int i = 0; i < PortDropReasons.Count; i++)
            {
                string name = ((PortDropReason)i).Key();
                if (s.RxDrops[i] != 0) d[$"rx:{name}"] = d.GetValueOrDefault($"rx:{name}") + s.RxDrops[i];
                if (s.TxDrops[i] != 0) d[$"tx:{name}"] = d.GetValueOrDefault($"tx:{name}") + s.TxDrops[i];
            }
        }
        return d;
    }

    private static long SwitchDrops(ValeSwitch? sw) => sw?.FindBridge("valebench")?.GetStatistics().Dropped ?? 0;

    private static long DriverNs(PhysicalPorts? ports)
    {
        if (ports is null) return 0;
        long sum = 0;
        // The ports of a bridge share one driver thread by default: count each thread once.
        foreach (int tid in ports.List().Select(p => p.DriverTid).Distinct()) sum += Math.Max(0, CpuTime.ThreadNs(tid));
        return sum;
    }

    /// <summary>Frames received by interface <paramref name="dev"/>, in namespace <paramref name="ns"/> or (null) the root one.</summary>
    private static long RxPackets(string? ns, string dev)
    {
        string json = ns is null ? Must("ip", "-s", "-j", "link", "show", "dev", dev) : Must("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev);
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement[0].GetProperty("stats64").GetProperty("rx").GetProperty("packets").GetInt64();
    }

    /// <summary>Idle and iowait time of all CPUs from /proc/stat, in USER_HZ ticks.</summary>
    private static long MachineIdleTicks()
    {
        string line = File.ReadLines("/proc/stat").First();
        var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        return f[3] + f[4];
    }

    private static string Must(params string[] args) => Processes.Must(10_000, args);

    private static int Sh(out string output, params string[] args) => Processes.Run(out output, 10_000, args);

    /// <summary>The traffic source: a thread inside the source namespace with an AF_PACKET TX ring on its veth end.</summary>
    private sealed class Sender
    {
        private readonly string _ns, _ifName;
        private readonly int _frameSize, _batch, _cpu;
        private readonly ManualResetEventSlim _ready = new();
        private Thread? _thread;
        private volatile bool _stop;
        private long _sent;

        public Sender(string ns, string ifName, int frameSize, int batch, int cpu)
        {
            _ns = ns; _ifName = ifName; _frameSize = frameSize; _batch = batch; _cpu = cpu;
        }

        public long Sent => Interlocked.Read(ref _sent);
        public int Tid { get; private set; }
        public Exception? Error { get; private set; }

        public void Start()
        {
            _thread = new Thread(Main) { IsBackground = true, Name = "ports-bench-sender" };
            _thread.Start();
            _ready.Wait();
            if (Error is { } e) throw new InvalidOperationException($"ports benchmark sender: {e.Message}", e);
        }

        public void Stop()
        {
            _stop = true;
            _thread?.Join();
        }

        private void Main()
        {
            try
            {
                Tid = Native.GetTid();
                if (_cpu >= 0 && _cpu < Environment.ProcessorCount) Native.SetAffinity(0, [_cpu]);
                AfPacketBackend tx;
                using (NetNamespace.Enter(_ns))
                {
                    // The socket stays in the namespace it was opened in.
                    tx = AfPacketBackend.Open(_ifName, new PhysicalPortOptions
                    {
                        Promiscuous = false, DisableReceiveOffloads = false, RxBlockCount = 2, RxBlockBytes = 64 * 1024, VirtioNetHeader = false,
                    });
                }
                using (tx)
                {
                    _ready.Set();
                    uint seq = 0;
                    while (!_stop)
                    {
                        int n = 0;
                        for (; n < _batch; n++)
                        {
                            var frame = tx.BeginTransmit(_frameSize);
                            if (frame.IsEmpty) break;
                            Frames.WriteUdp(frame, DstMac, SrcMac, _frameSize, seq++);
                            tx.CommitTransmit(_frameSize);
                        }
                        var r = tx.Flush();
                        Interlocked.Add(ref _sent, n - r.Unsent);
                        if (n == 0) Thread.Yield();
                    }
                }
            }
            catch (Exception e)
            {
                Error = e;
            }
            finally
            {
                _ready.Set();
            }
        }
    }
}
