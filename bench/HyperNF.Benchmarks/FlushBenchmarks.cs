using BenchmarkDotNet.Attributes;
using HyperNF.Bench;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Benchmarks;

/// <summary>
/// A sender port and a receiver port on one bridge, on one thread: the frames are written
/// once at setup, each invocation queues a batch, syncs it and releases the receiver's ring.
/// </summary>
internal sealed class SenderReceiverPair : IDisposable
{
    private readonly DomainMemory _m1, _m2;
    public NetmapPort Tx { get; }
    public NetmapPort Rx { get; }
    private readonly ushort _len;

    public SenderReceiverPair(int batch, int frameSize)
    {
        var sw = new ValeSwitch { BridgeBatch = Math.Max(1, batch) };
        _m1 = new DomainMemory(new RegionLayout { MaxPorts = 1 });
        _m2 = new DomainMemory(new RegionLayout { MaxPorts = 1 });
        Tx = sw.OpenPort("valeb:tx", _m1);
        Rx = sw.OpenPort("valeb:rx", _m2);
        byte[] a = [2, 0, 0, 0, 0, 1], b = [2, 0, 0, 0, 0, 2];
        Frames.SendOne(Rx, a, b, 64);
        var ring = Tx.TxRing(0);
        for (uint s = 0; s < ring.NumSlots; s++) Frames.WriteUdp(ring.Buffer(ring.Slot(s)), b, a, frameSize, s);
        _len = (ushort)frameSize;
        Drain();
    }

    /// <summary>Queues <paramref name="batch"/> frames, TxSync (the flush), then the receiver releases them.</summary>
    public void SendBatch(int batch)
    {
        var ring = Tx.TxRing(0);
        uint cur = ring.Cur;
        for (int i = 0; i < batch; i++)
        {
            ring.Slot(cur).Len = _len;
            cur = ring.Next(cur);
        }
        ring.Head = ring.Cur = cur;
        Tx.TxSync();
        Drain();
    }

    private void Drain()
    {
        Rx.RxSync();
        var r = Rx.RxRing(0);
        r.Head = r.Cur = r.Tail;
        Rx.RxSync();
    }

    public void Dispose()
    {
        Tx.Dispose(); Rx.Dispose(); _m1.Dispose(); _m2.Dispose();
    }
}

/// <summary>
/// TxSync of one batch into a receiver that releases its ring every time, on one thread:
/// the cost of validation, lookup, lease, copy and publish without cross-core traffic.
/// N frames per invocation (Garnet style); divide the reported time by Batch for ns/frame.
/// </summary>
[MemoryDiagnoser]
public class FlushBenchmarks
{
    private SenderReceiverPair _pair = null!;

    [Params(1, 32, 256)]
    public int Batch { get; set; }

    [Params(64, 1514)]
    public int FrameSize { get; set; }

    [GlobalSetup]
    public void Setup() => _pair = new SenderReceiverPair(Batch, FrameSize);

    [Benchmark]
    public void TxSyncBatch() => _pair.SendBatch(Batch);

    [GlobalCleanup]
    public void Cleanup() => _pair.Dispose();
}

/// <summary>The learning table alone: hash + lookup per frame.</summary>
public class ForwardingTableBenchmarks
{
    private readonly ForwardingTable _table = new();
    private readonly ulong[] _macs = new ulong[1024];

    [GlobalSetup]
    public void Setup()
    {
        var rnd = new Random(1);
        for (int i = 0; i < _macs.Length; i++)
        {
            _macs[i] = (ulong)rnd.NextInt64() & 0xFFFF_FFFF_FFFEUL;
            _table.Learn(_macs[i], i % 200, ForwardingTable.Now());
        }
    }

    [Benchmark(OperationsPerInvoke = 1024)]
    public int Lookup()
    {
        int acc = 0;
        uint now = ForwardingTable.Now();
        foreach (ulong m in _macs) acc += _table.Lookup(m, now);
        return acc;
    }
}

/// <summary>
/// The capture tap's cost on one thread: TxSync of 256 frames into a receiver, with no capture
/// open (the data path's only cost is the tap check) or with a capture of what the receiver
/// gets (the sender copies every frame into the tap; the tap is drained in the same
/// invocation, so the reader's share is included). Compare "none" with FlushBenchmarks'
/// TxSyncBatch at batch 256 of a build without the tap.
/// </summary>
[MemoryDiagnoser]
public class CaptureBenchmarks
{
    private SenderReceiverPair _pair = null!;
    private CaptureTap? _tap;
    private static readonly Func<CapturedFrame, bool> Keep = _ => true;

    public const int Batch = 256;

    [Params(64, 1514)]
    public int FrameSize { get; set; }

    [Params("none", "in")]
    public string Capture { get; set; } = "none";

    [GlobalSetup]
    public void Setup()
    {
        _pair = new SenderReceiverPair(Batch, FrameSize);
        if (Capture == "in") _tap = ValeSwitch.HostPortOf(_pair.Rx)!.OpenCapture(CaptureDirection.In);
    }

    [Benchmark]
    public void TxSyncBatch()
    {
        _pair.SendBatch(Batch);
        _tap?.Drain(Keep);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_tap is not null) ValeSwitch.HostPortOf(_pair.Rx)!.CloseCapture(_tap);
        _pair.Dispose();
    }
}
