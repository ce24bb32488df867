using System.Runtime.CompilerServices;
using HyperNF.Linux;
using HyperNF.Netmap;

namespace HyperNF.Memory;

/// <summary>
/// One shared-memory region per domain: <c>memfd_create</c> + <c>mmap(MAP_SHARED)</c>, so a
/// separate process can map the same pages later. It holds, for each port the domain opens,
/// a netmap_if, the port's rings and its packet buffers (docs/abi.md). Nothing the switch
/// trusts lives here: hwcur/hwtail, leases and locks are host-private.
/// </summary>
public sealed unsafe class DomainMemory : IDisposable
{
    private readonly object _gate = new();
    private readonly bool[] _portUsed;
    private readonly string?[] _portNames;
    private byte* _base;
    private int _fd;

    public RegionLayout Layout { get; }
    public string Name { get; }
    public long Size => Layout.TotalBytes;
    /// <summary>The memfd behind the region (for handing to another process).</summary>
    public int FileDescriptor => _fd;

    /// <summary>Base address; valid until <see cref="Dispose"/>.</summary>
    internal byte* Base => _base;
    internal byte* BufferBase { get; }
    internal uint BufferCount { get; }

    public DomainMemory(RegionLayout layout, string name = "hypernf-domain")
    {
        ArgumentNullException.ThrowIfNull(layout);
        layout.Validate();
        Layout = layout;
        Name = name;
        _portUsed = new bool[layout.MaxPorts];
        _portNames = new string?[layout.MaxPorts];
        _fd = Native.MemfdCreate(name, Native.MFD_CLOEXEC);
        if (_fd < 0) Native.ThrowLastError($"memfd_create({name})");
        try
        {
            if (Native.Ftruncate(_fd, layout.TotalBytes) != 0) Native.ThrowLastError($"ftruncate({name}, {layout.TotalBytes})");
            nint p = Native.Mmap(0, (nuint)layout.TotalBytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _fd, 0);
            if (p == Native.MAP_FAILED) Native.ThrowLastError($"mmap({name}, {layout.TotalBytes} bytes)");
            _base = (byte*)p;
            HugePages.Advise(p, layout.TotalBytes); // 2 MiB pages where the kernel grants them (Linux/HugePages.cs)
        }
        catch
        {
            Native.Close(_fd);
            throw;
        }
        BufferBase = _base + layout.BufferOffset;
        BufferCount = layout.BufferCount;
        WriteHeader();
    }

    /// <summary>
    /// Allocates every page of the region now. A memfd's pages are otherwise allocated (and
    /// zeroed) at their first write: the first use of each packet buffer then takes a page
    /// fault in the data path, 10-100 us on a VM, until the rings have wrapped once (a ping a
    /// round trip's worth of faults for its first thousand frames). Host-owned regions that
    /// carry traffic at any rate (physical ports) populate themselves at creation.
    /// </summary>
    public void Populate()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            if (Native.Madvise((nint)_base, (nuint)Layout.TotalBytes, Native.MADV_POPULATE_WRITE) == 0) return;
            // Older kernels (EINVAL): a write to each page allocates it. The region's bytes are
            // all zero or already written by us, so an atomic add of 0 keeps them.
            for (long off = 0; off < Layout.TotalBytes; off += RegionLayout.PageSize)
                Interlocked.Add(ref *(int*)(_base + off), 0);
        }
    }

    private void WriteHeader()
    {
        byte* h = _base;
        *(uint*)(h + NetmapAbi.RegMagic) = NetmapAbi.RegionMagic;
        *(uint*)(h + NetmapAbi.RegVersion) = NetmapAbi.Version;
        *(long*)(h + NetmapAbi.RegTotalBytes) = Layout.TotalBytes;
        *(uint*)(h + NetmapAbi.RegBufferSize) = (uint)Layout.BufferSize;
        *(uint*)(h + NetmapAbi.RegBufferCount) = Layout.BufferCount;
        *(long*)(h + NetmapAbi.RegBufferOffset) = Layout.BufferOffset;
        *(uint*)(h + NetmapAbi.RegMaxPorts) = (uint)Layout.MaxPorts;
        *(uint*)(h + NetmapAbi.RegRingsPerPort) = (uint)Layout.RingsPerPort;
        *(uint*)(h + NetmapAbi.RegSlotsPerRing) = (uint)Layout.SlotsPerRing;
    }

    /// <summary>True when <paramref name="index"/> names a packet buffer of this region (one unsigned compare).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool IsValidBuffer(uint index) => index - RegionLayout.ReservedBuffers < BufferCount - RegionLayout.ReservedBuffers;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte* BufferAddress(uint index) => BufferBase + (nuint)index * (uint)RegionLayout.DefaultBufferSize;

    /// <summary>
    /// Formats a free port area: netmap_if, rings with their slots pointing at the area's own
    /// buffers, and the extra-buffer chain (all the area's spare buffers, or the first
    /// <paramref name="extraBuffers"/> of them: netmap's nr_extra_bufs). Returns the area index.
    /// </summary>
    internal int AllocatePortArea(string portName, int extraBuffers = -1)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            int area = Array.IndexOf(_portUsed, false);
            if (area < 0)
                throw new InvalidOperationException($"domain memory '{Name}' holds {Layout.MaxPorts} ports, all in use; create the domain with more ports");
            _portUsed[area] = true;
            _portNames[area] = portName;
            FormatPortArea(area, portName, extraBuffers < 0 ? Layout.ExtraBuffersPerPort : Math.Min(extraBuffers, Layout.ExtraBuffersPerPort));
            *(long*)(_base + NetmapAbi.RegPortOffsets + 8 * area) = Layout.PortAreaOffset(area);
            return area;
        }
    }

    internal void ReleasePortArea(int area)
    {
        lock (_gate)
        {
            if (_base == null || !_portUsed[area]) return;
            _portUsed[area] = false;
            _portNames[area] = null;
            *(long*)(_base + NetmapAbi.RegPortOffsets + 8 * area) = 0;
            new Span<byte>(_base + Layout.PortAreaOffset(area), (int)Layout.PortAreaBytes).Clear();
            if (_disposeWhenIdle && Array.TrueForAll(_portNames, n => n is null)) Dispose();
        }
    }

    /// <summary>
    /// Makes area <paramref name="view"/>'s netmap_if a registration's view of port area
    /// <paramref name="port"/> bound to ring pair <paramref name="ring"/> only (netmap's
    /// NR_REG_ONE_NIC): same name and ring counts, the offsets (relative to this netmap_if) of that
    /// ring's TX and RX rings, 0 for the others, no spare buffers.
    /// </summary>
    internal void FormatRingView(int view, int port, int ring)
    {
        lock (_gate)
        {
            if (_base == null || !_portUsed[view] || !_portUsed[port]) throw new InvalidOperationException("port area not in use");
            byte* vif = InterfaceAddress(view), pif = InterfaceAddress(port);
            int k = Layout.RingsPerPort;
            new Span<byte>(vif, NetmapAbi.IfRingOffsets + 16 * k).Clear();
            new Span<byte>(pif, NetmapAbi.IfRingOffsets).CopyTo(new Span<byte>(vif, NetmapAbi.IfRingOffsets));
            *(uint*)(vif + NetmapAbi.IfBufsHead) = 0;
            *(long*)(vif + NetmapAbi.IfRingOffsets + 8 * ring) = RingAddress(port, ring) - vif;
            *(long*)(vif + NetmapAbi.IfRingOffsets + 8 * (k + ring)) = RingAddress(port, k + ring) - vif;
        }
    }

    private bool _disposeWhenIdle;

    /// <summary>
    /// Unmaps the region now if none of its port areas is in use, else as soon as the last one is
    /// released: a netmap pipe's end that another domain's program has registered lives in this
    /// region (docs/process-domains.md, "Pipes") and keeps it mapped until it is closed.
    /// </summary>
    internal void DisposeWhenIdle()
    {
        lock (_gate)
        {
            if (_base == null) return;
            if (!Array.TrueForAll(_portNames, n => n is null))
            {
                _disposeWhenIdle = true;
                return;
            }
            Dispose();
        }
    }

    /// <summary>True once the region is unmapped.</summary>
    public bool IsDisposed { get { lock (_gate) return _base == null; } }

    internal byte* InterfaceAddress(int area) => _base + Layout.PortAreaOffset(area);

    /// <summary>Ring <paramref name="ring"/> of a port area; TX rings come first, then RX rings.</summary>
    internal byte* RingAddress(int area, int ring) =>
        InterfaceAddress(area) + Layout.InterfaceBytes + ring * Layout.RingBytes;

    private void FormatPortArea(int area, string portName, int extra)
    {
        var L = Layout;
        byte* nif = InterfaceAddress(area);
        new Span<byte>(nif, (int)L.PortAreaBytes).Clear();
        var name = new Span<byte>(nif + NetmapAbi.IfName, NetmapAbi.IfNameLength);
        int n = System.Text.Encoding.UTF8.GetBytes(portName.AsSpan(0, Math.Min(portName.Length, NetmapAbi.IfNameLength - 1)), name);
        name[n..].Clear();
        *(uint*)(nif + NetmapAbi.IfVersion) = NetmapAbi.NetmapApi;
        *(uint*)(nif + NetmapAbi.IfTxRings) = (uint)L.RingsPerPort;
        *(uint*)(nif + NetmapAbi.IfRxRings) = (uint)L.RingsPerPort;
        uint buf = L.FirstBufferOf(area);
        for (int r = 0; r < 2 * L.RingsPerPort; r++)
        {
            byte* ring = RingAddress(area, r);
            *(long*)(nif + NetmapAbi.IfRingOffsets + 8 * r) = ring - nif;
            *(long*)(ring + NetmapAbi.RingBufOffset) = BufferBase - ring;
            *(uint*)(ring + NetmapAbi.RingNumSlots) = (uint)L.SlotsPerRing;
            *(uint*)(ring + NetmapAbi.RingBufSize) = (uint)L.BufferSize;
            *(ushort*)(ring + NetmapAbi.RingId) = (ushort)(r % L.RingsPerPort);
            bool tx = r < L.RingsPerPort;
            *(ushort*)(ring + NetmapAbi.RingDir) = tx ? (ushort)0 : (ushort)1;
            *(uint*)(ring + NetmapAbi.RingHead) = 0;
            *(uint*)(ring + NetmapAbi.RingCur) = 0;
            // A TX ring starts with every slot but one owned by the user; an RX ring starts empty.
            *(uint*)(ring + NetmapAbi.RingTail) = tx ? (uint)L.SlotsPerRing - 1 : 0;
            var slots = (NetmapSlot*)(ring + NetmapAbi.RingSlots);
            for (int s = 0; s < L.SlotsPerRing; s++)
            {
                slots[s].BufIdx = buf++;
                slots[s].Len = 0;
                slots[s].Flags = 0;
                slots[s].Ptr = 0;
            }
        }
        // Extra buffers form a list through their first 4 bytes, ending with 0 (netmap's ni_bufs_head).
        uint head = 0;
        for (int e = extra - 1; e >= 0; e--)
        {
            uint idx = buf + (uint)e;
            *(uint*)BufferAddress(idx) = head;
            head = idx;
        }
        *(uint*)(nif + NetmapAbi.IfBufsHead) = head;
    }

    /// <summary>Names of the ports whose areas are in use (attached to a bridge).</summary>
    public IReadOnlyList<string> OpenPorts
    {
        get { lock (_gate) return _portNames.Where(n => n is not null).Select(n => n!).ToArray(); }
    }

    /// <summary>
    /// Unmaps the region. Refused while a port of it is still open: senders of other domains
    /// deliver into its rings until the port is closed (detached), and unmapping under them
    /// would fault the host. Close the ports first.
    /// </summary>
    /// <exception cref="InvalidOperationException">A port of this region is still open.</exception>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_base == null) return;
            var open = _portNames.Where(n => n is not null).ToArray();
            if (open.Length > 0)
                throw new InvalidOperationException(
                    $"domain memory '{Name}' still has {open.Length} open port(s) ({string.Join(", ", open)}); close them (NetmapPort.Dispose) before disposing the memory");
            Native.Munmap((nint)_base, (nuint)Layout.TotalBytes);
            _base = null;
            Native.Close(_fd);
            _fd = -1;
        }
    }
}
