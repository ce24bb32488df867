using BenchmarkDotNet.Attributes;
using HyperNF.Bench;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Benchmarks;

/// <summary>
/// TxSync of one batch into a receiver that releases its ring every time, on one thread:
/// the cost of validation, lookup, lease, copy and publish without cross-core traffic.
/// N frames per invocation (Garnet style); divide the reported time by Batch for ns/frame.
/// </summary>
[MemoryDiagnoser]
public class FlushBenchmarks
{
    private ValeSwitch _sw = null!;
    private DomainMemory _m1 = null!, _m2 = null!;
    private NetmapPort _tx = null!, _rx = null!;

    [Params(1, 32, 256)]
    public int Batch { get; set; }

    [Params(64, 1514)]
    public int FrameSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _sw = new ValeSwitch { BridgeBatch = Math.Max(1, Batch) };
        _m1 = new DomainMemory(new RegionLayout { MaxPorts = 1 });
        _m2 = new DomainMemory(new RegionLayout { MaxPorts = 1 });
        _tx = _sw.OpenPort("valeb:tx", _m1);
        _rx = _sw.OpenPort("valeb:rx", _m2);
        byte[] a = [2, 0, 0, 0, 0, 1], b = [2, 0, 0, 0, 0, 2];
        Frames.SendOne(_rx, a, b, 64);
        var ring = _tx.TxRing(0);
        for (uint s = 0; s < ring.NumSlots; s++) Frames.WriteUdp(ring.Buffer(ring.Slot(s)), b, a, FrameSize, s);
        Drain();
    }

    private void Drain()
    {
        _rx.RxSync();
        var r = _rx.RxRing(0);
        r.Head = r.Cur = r.Tail;
        _rx.RxSync();
    }

    [Benchmark]
    public void TxSyncBatch()
    {
        var ring = _tx.TxRing(0);
        uint cur = ring.Cur;
        ushort len = (ushort)FrameSize;
        for (int i = 0; i < Batch; i++)
        {
            ring.Slot(cur).Len = len;
            cur = ring.Next(cur);
        }
        ring.Head = ring.Cur = cur;
        _tx.TxSync();
        Drain();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tx.Dispose(); _rx.Dispose(); _m1.Dispose(); _m2.Dispose();
    }
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
    private ValeSwitch _sw = null!;
    private DomainMemory _m1 = null!, _m2 = null!;
    private NetmapPort _tx = null!, _rx = null!;
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
        _sw = new ValeSwitch { BridgeBatch = Batch };
        _m1 = new DomainMemory(new RegionLayout { MaxPorts = 1 });
        _m2 = new DomainMemory(new RegionLayout { MaxPorts = 1 });
        _tx = _sw.OpenPort("valeb:tx", _m1);
        _rx = _sw.OpenPort("valeb:rx", _m2);
        byte[] a = [2, 0, 0, 0, 0, 1], b = [2, 0, 0, 0, 0, 2];
        Frames.SendOne(_rx, a, b, 64);
        var ring = _tx.TxRing(0);
        for (uint s = 0; s < ring.NumSlots; s++) Frames.WriteUdp(ring.Buffer(ring.Slot(s)), b, a, FrameSize, s);
        Drain();
        if (Capture == "in") _tap = ValeSwitch.HostPortOf(_rx)!.OpenCapture(CaptureDirection.In);
    }

    private void Drain()
    {
        _rx.RxSync();
        var r = _rx.RxRing(0);
        r.Head = r.Cur = r.Tail;
        _rx.RxSync();
    }

    [Benchmark]
    public void TxSyncBatch()
    {
        var ring = _tx.TxRing(0);
        uint cur = ring.Cur;
        ushort len = (ushort)FrameSize;
        for (int i = 0; i < Batch; i++)
        {
            ring.Slot(cur).Len = len;
            cur = ring.Next(cur);
        }
        ring.Head = ring.Cur = cur;
        _tx.TxSync();
        Drain();
        _tap?.Drain(Keep);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_tap is not null) ValeSwitch.HostPortOf(_rx)!.CloseCapture(_tap);
        _tx.Dispose(); _rx.Dispose(); _m1.Dispose(); _m2.Dispose();
    }
}
