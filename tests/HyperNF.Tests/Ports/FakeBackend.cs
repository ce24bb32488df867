using System.Collections.Concurrent;
using HyperNF.Ports;

namespace HyperNF.Tests.Ports;

/// <summary>An interface backend in memory: frames to "receive" are queued by the test, transmitted frames are kept.</summary>
public sealed class FakeBackend : IInterfaceBackend
{
    private readonly byte[] _frame = new byte[16384];
    private readonly List<byte[]> _sent = new();
    private int _inTransmit;

    public ConcurrentQueue<byte[]> ToReceive { get; } = new();
    public string InterfaceName { get; init; } = "fake0";
    public int InterfaceIndex => 1;
    public int Mtu { get; set; } = 1500;
    public int TxCapacity => _frame.Length;
    public string Description => "fake";
    public volatile LinkState Link = LinkState.Up;
    public int Kicks;
    /// <summary>Times two threads were inside the transmit calls at once (must stay 0).</summary>
    public int Overlaps;
    public bool Disposed;
    /// <summary>Longest idle sleep; long values keep the driver thread from sweeping up what senders left.</summary>
    public int MaxWaitMs { get; init; } = 5;

    public IReadOnlyList<byte[]> Sent { get { lock (_sent) return _sent.ToArray(); } }
    public int SentCount { get { lock (_sent) return _sent.Count; } }

    public int Receive(IFrameReceiver receiver, int budget)
    {
        int n = 0;
        while (n < budget && ToReceive.TryDequeue(out var f))
        {
            receiver.OnFrame(f, f.Length, 0);
            n++;
        }
        return n;
    }

    public bool Wait(int wakeFd, int timeoutMs)
    {
        if (ToReceive.IsEmpty) HyperNF.Linux.PacketSocket.WaitEventFd(wakeFd, Math.Min(timeoutMs, MaxWaitMs));
        return false;
    }

    public Span<byte> BeginTransmit()
    {
        if (Interlocked.Increment(ref _inTransmit) != 1) Interlocked.Increment(ref Overlaps);
        Interlocked.Decrement(ref _inTransmit);
        return _frame;
    }

    public void CommitTransmit(int length)
    {
        if (Interlocked.Increment(ref _inTransmit) != 1) Interlocked.Increment(ref Overlaps);
        var copy = _frame.AsSpan(0, length).ToArray();
        Thread.SpinWait(20); // widen the window a concurrent transmit would hit
        lock (_sent) _sent.Add(copy);
        Interlocked.Decrement(ref _inTransmit);
    }

    public TransmitResult Flush()
    {
        Interlocked.Increment(ref Kicks);
        return TransmitResult.Ok;
    }

    public LinkState QueryLink() => Link;

    public long TakeKernelDrops() => 0;

    public void Dispose() => Disposed = true;
}
