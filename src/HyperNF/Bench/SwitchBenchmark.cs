using System.Diagnostics;
using System.Text.Json.Serialization;
using HyperNF.Linux;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Bench;

public sealed record SwitchBenchmarkOptions
{
    public int FrameSize { get; init; } = 64;
    /// <summary>Frames queued per TxSync by the sender, and the bridge_batch.</summary>
    public int Batch { get; init; } = 256;
    /// <summary>Ports on the bridge: one sender, one receiver, the rest idle (they only cost learning-table space).</summary>
    public int Ports { get; init; } = 2;
    public double Seconds { get; init; } = 5;
    public int SenderCpu { get; init; } = 0;
    public int ReceiverCpu { get; init; } = 1;
    /// <summary>
    /// A capture open on the receiving port while measuring (hypernf capture): its copies are
    /// made by the sender, and a reader thread (not pinned) turns them into pcap records.
    /// Null: no capture, the data path's only cost is the tap check.
    /// </summary>
    public CaptureDirection? Capture { get; init; }
}

public sealed record SwitchBenchmarkResult
{
    [JsonPropertyName("mpps")] public double Mpps { get; init; }
    [JsonPropertyName("gbps")] public double Gbps { get; init; }
    [JsonPropertyName("frame_size")] public int FrameSize { get; init; }
    [JsonPropertyName("batch")] public int Batch { get; init; }
    [JsonPropertyName("ports")] public int Ports { get; init; }
    [JsonPropertyName("seconds")] public double Seconds { get; init; }
    [JsonPropertyName("sent")] public long Sent { get; init; }
    [JsonPropertyName("delivered")] public long Delivered { get; init; }
    [JsonPropertyName("dropped")] public long Dropped { get; init; }
    [JsonPropertyName("ring_full")] public long RingFull { get; init; }
    [JsonPropertyName("unaccounted")] public long Unaccounted { get; init; }
    [JsonPropertyName("sender_cpu_pct")] public double SenderCpuPct { get; init; }
    [JsonPropertyName("receiver_cpu_pct")] public double ReceiverCpuPct { get; init; }
    [JsonPropertyName("ns_per_packet_sender")] public double SenderNsPerPacket { get; init; }
    [JsonPropertyName("capture")] public string Capture { get; init; } = "none";
    [JsonPropertyName("captured")] public long Captured { get; init; }
    [JsonPropertyName("capture_dropped")] public long CaptureDropped { get; init; }
}

/// <summary>
/// The switch alone: one sender thread and one receiver thread, each pinned to its own core,
/// through one bridge. The sender's buffers are filled once (as pkt-gen does); per frame it
/// only sets the slot length. The receiver reads the first and last byte of every frame.
/// What is measured is the synchronous TxSync path: validation, lookup, lease, copy, publish.
/// </summary>
public static class SwitchBenchmark
{
    public static SwitchBenchmarkResult Run(SwitchBenchmarkOptions o, Action<string>? progress = null)
    {
        if (o.FrameSize < 14 || o.FrameSize > RegionLayout.DefaultBufferSize) throw new ArgumentOutOfRangeException(nameof(o), o.FrameSize, "frame size must be 14..2048 bytes");
        if (o.Batch < 1 || o.Batch > 1024) throw new ArgumentOutOfRangeException(nameof(o), o.Batch, "batch must be 1..1024");
        if (o.Ports < 2 || o.Ports > Bridge.MaxPorts) throw new ArgumentOutOfRangeException(nameof(o), o.Ports, "ports must be 2..254");
        var sw = new ValeSwitch { BridgeBatch = o.Batch };
        var layout = new RegionLayout { MaxPorts = 1 };
        using var memTx = new DomainMemory(layout, "bench-tx");
        using var memRx = new DomainMemory(layout, "bench-rx");
        var idle = new List<(DomainMemory, NetmapPort)>();
        using var tx = sw.OpenPort("valebench:tx", memTx);
        using var rx = sw.OpenPort("valebench:rx", memRx);
        for (int i = 2; i < o.Ports; i++)
        {
            var m = new DomainMemory(layout, "bench-idle");
            idle.Add((m, sw.OpenPort($"valebench:p{i}", m)));
        }
        try
        {
            ulong macTx = 0x0000_0100_163e_0002UL, macRx = 0x0000_0200_163e_0002UL; // locally administered? no: 02:00:3e:16:00:01 style
            byte[] txMac = Frames.Mac(0x02, 0, 0, 0, 0, 1), rxMac = Frames.Mac(0x02, 0, 0, 0, 0, 2);
            _ = macTx; _ = macRx;
            // the receiver announces itself once so the sender's frames are unicast hits
            Frames.SendOne(rx, txMac, rxMac, 64);
            var txRing = tx.TxRing(0);
            for (uint s = 0; s < txRing.NumSlots; s++)
            {
                var buf = txRing.Buffer(txRing.Slot(s));
                Frames.WriteUdp(buf, rxMac, txMac, o.FrameSize, (uint)s);
            }
            rx.RxSync(); // nothing for rx (it sent), drains
            tx.RxSync();
            var rxRing0 = tx.RxRing(0);
            rxRing0.Head = rxRing0.Cur = rxRing0.Tail;
            tx.RxSync();

            var rxPort = ValeSwitch.HostPortOf(rx)!;
            var tap = o.Capture is { } dir ? rxPort.OpenCapture(dir, snapLength: 262_144) : null;
            volatile_bool stop = new();
            long pcapBytes = 0;
            var reader = tap is null ? null : new Thread(() =>
            {
                // What the daemon does with a tap: pcap records into a buffer that is sent on.
                var buf = new System.Buffers.ArrayBufferWriter<byte>(1 << 20);
                while (!stop.Value)
                {
                    if (tap.Drain(f => { Tools.Pcap.AppendRecord(buf, f); return true; }, 4096) == 0) Thread.Sleep(1);
                    pcapBytes += buf.WrittenCount;
                    buf.ResetWrittenCount();
                }
            }) { IsBackground = true, Name = "bench-capture" };
            long received = 0;
            int rxTid = 0, txTid = 0;
            var ready = new CountdownEvent(2);
            var start = new ManualResetEventSlim();
            var receiver = new Thread(() =>
            {
                Native.SetAffinity(0, [o.ReceiverCpu]);
                rxTid = Native.GetTid();
                ready.Signal();
                start.Wait();
                var ring = rx.RxRing(0);
                long n = 0;
                ulong sum = 0;
                while (!stop.Value)
                {
                    rx.RxSync();
                    uint cur = ring.Cur, tail = ring.Tail;
                    while (cur != tail)
                    {
                        ref var slot = ref ring.Slot(cur);
                        var b = ring.Buffer(slot);
                        sum += (ulong)(b[0] + b[slot.Len - 1]);
                        n++;
                        cur = ring.Next(cur);
                    }
                    ring.Head = ring.Cur = cur;
                }
                rx.RxSync();
                Volatile.Write(ref received, n + (long)(sum & 0));
            }) { IsBackground = true, Name = "bench-rx" };
            var sender = new Thread(() =>
            {
                Native.SetAffinity(0, [o.SenderCpu]);
                txTid = Native.GetTid();
                ready.Signal();
                start.Wait();
                var ring = tx.TxRing(0);
                ushort len = (ushort)o.FrameSize;
                int batch = o.Batch;
                while (!stop.Value)
                {
                    uint cur = ring.Cur;
                    uint space = ring.Space;
                    uint k = space < (uint)batch ? space : (uint)batch;
                    for (uint i = 0; i < k; i++)
                    {
                        ring.Slot(cur).Len = len;
                        cur = ring.Next(cur);
                    }
                    ring.Head = ring.Cur = cur;
                    tx.TxSync();
                }
            }) { IsBackground = true, Name = "bench-tx" };
            receiver.Start();
            sender.Start();
            reader?.Start();
            ready.Wait();
            var before = sw.FindBridge("valebench")!.GetStatistics();
            long rxCpu0 = CpuTime.ThreadNs(rxTid), txCpu0 = CpuTime.ThreadNs(txTid);
            var clock = Stopwatch.StartNew();
            start.Set();
            double warm = Math.Min(1.0, o.Seconds / 5);
            Thread.Sleep(TimeSpan.FromSeconds(warm));
            var s0 = sw.FindBridge("valebench")!.GetStatistics();
            long cpuRx0 = CpuTime.ThreadNs(rxTid), cpuTx0 = CpuTime.ThreadNs(txTid);
            double t0 = clock.Elapsed.TotalSeconds;
            Thread.Sleep(TimeSpan.FromSeconds(o.Seconds));
            var s1 = sw.FindBridge("valebench")!.GetStatistics();
            long cpuRx1 = CpuTime.ThreadNs(rxTid), cpuTx1 = CpuTime.ThreadNs(txTid);
            double t1 = clock.Elapsed.TotalSeconds;
            stop.Value = true;
            sender.Join();
            receiver.Join();
            reader?.Join();
            if (tap is not null) rxPort.CloseCapture(tap);
            var end = sw.FindBridge("valebench")!.GetStatistics();
            double el = t1 - t0;
            long delivered = s1.Delivered - s0.Delivered;
            double mpps = delivered / el / 1e6;
            long sent = s1.Sent - s0.Sent;
            _ = before; _ = rxCpu0; _ = txCpu0;
            return new SwitchBenchmarkResult
            {
                Mpps = Math.Round(mpps, 3),
                Gbps = Math.Round(delivered * (double)o.FrameSize * 8 / el / 1e9, 2),
                FrameSize = o.FrameSize, Batch = o.Batch, Ports = o.Ports, Seconds = Math.Round(el, 2),
                Sent = end.Sent, Delivered = end.Delivered, Dropped = end.Dropped,
                RingFull = end.Drops[(int)DropReason.RingFull], Unaccounted = end.Unaccounted,
                SenderCpuPct = Math.Round((cpuTx1 - cpuTx0) / el / 1e7, 1),
                ReceiverCpuPct = Math.Round((cpuRx1 - cpuRx0) / el / 1e7, 1),
                SenderNsPerPacket = sent > 0 ? Math.Round((cpuTx1 - cpuTx0) / (double)sent, 1) : 0,
                Capture = o.Capture switch { null => "none", CaptureDirection.In => "in", CaptureDirection.Out => "out", _ => "both" },
                Captured = tap?.Captured ?? 0, CaptureDropped = tap?.Dropped ?? 0,
            };
        }
        finally
        {
            foreach (var (m, p) in idle) { p.Dispose(); m.Dispose(); }
        }
    }

    private sealed class volatile_bool { private volatile bool _v; public bool Value { get => _v; set => _v = value; } }
}
