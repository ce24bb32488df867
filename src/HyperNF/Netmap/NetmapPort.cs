using HyperNF.Memory;

namespace HyperNF.Netmap;

/// <summary>
/// What an NF programs against: one open port (netmap's file descriptor after NIOCREGIF).
/// It exposes the port's rings in the domain's own region and the three calls of the netmap
/// API. Which thread does the forwarding work when <see cref="TxSync"/> is called depends on
/// the I/O model behind <see cref="Backend"/>; the NF code is the same in all of them.
/// </summary>
public sealed unsafe class NetmapPort : IDisposable
{
    private readonly NetmapRing[] _tx;
    private readonly NetmapRing[] _rx;
    private readonly Action? _onClose;
    private int _closed;

    /// <summary>Full name, e.g. <c>valex:lx0</c>.</summary>
    public string Name { get; }
    public DomainMemory Memory { get; }
    /// <summary>Index of the port's area (netmap_if) inside the domain region.</summary>
    public int Area { get; }
    public int TxRingCount => _tx.Length;
    public int RxRingCount => _rx.Length;

    /// <summary>Where syncs go. The I/O model may replace it (hypercall, split, merge).</summary>
    public IPortBackend Backend { get; set; }

    /// <summary>The backend the port was opened with (the switch port), whatever <see cref="Backend"/> is now.</summary>
    public IPortBackend Origin { get; }

    internal NetmapPort(string name, DomainMemory memory, int area, IPortBackend backend, Action? onClose)
    {
        Origin = backend;
        Name = name;
        Memory = memory;
        Area = area;
        Backend = backend;
        _onClose = onClose;
        var L = memory.Layout;
        _tx = new NetmapRing[L.RingsPerPort];
        _rx = new NetmapRing[L.RingsPerPort];
        for (int r = 0; r < L.RingsPerPort; r++)
        {
            _tx[r] = new NetmapRing(memory.RingAddress(area, r), memory.BufferBase, (uint)L.SlotsPerRing, memory.BufferCount, L.BufferSize);
            _rx[r] = new NetmapRing(memory.RingAddress(area, L.RingsPerPort + r), memory.BufferBase, (uint)L.SlotsPerRing, memory.BufferCount, L.BufferSize);
        }
    }

    public NetmapRing TxRing(int i) => _tx[i];
    public NetmapRing RxRing(int i) => _rx[i];

    /// <summary>First spare buffer of the port (netmap's ni_bufs_head); 0 when there is none.</summary>
    public uint ExtraBuffersHead => *(uint*)(Memory.InterfaceAddress(Area) + NetmapAbi.IfBufsHead);

    /// <summary>
    /// The virtio-net header length of the port (netmap's NETMAP_REQ_PORT_HDR_SET/GET, what
    /// pkt-gen -H asks for): 0 (default), 10 or 12. With a header, every frame the domain sends
    /// starts with one (in the same buffer as the Ethernet header) and every frame it receives
    /// carries one; other lengths throw <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public int VirtioHeaderLength
    {
        get => Origin.VirtioHeaderLength;
        set => Origin.VirtioHeaderLength = value;
    }

    /// <summary>netmap's NIOCTXSYNC.</summary>
    public void TxSync() => Backend.TxSync();

    /// <summary>netmap's NIOCRXSYNC.</summary>
    public void RxSync() => Backend.RxSync();

    /// <summary>netmap's poll(): POLLIN when an RX ring has frames, POLLOUT when a TX ring has room.</summary>
    public PollEvents Poll(PollEvents events, int timeoutMs) => Backend.Poll(events, timeoutMs);

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>Closes the port: detaches it from its bridge and frees its area in the region.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _onClose?.Invoke();
    }

    public override string ToString() => Name;
}
