using System.Numerics;
using HyperNF.Linux;
using static HyperNF.Linux.PacketSocket;
using static HyperNF.Linux.Xdp;

namespace HyperNF.Ports;

/// <summary>
/// The AF_XDP backend: the interface's frames are taken before the kernel builds socket
/// buffers for its stack (native XDP where the driver supports it, generic XDP otherwise),
/// which is the closest Linux comes to netmap's own NIC rings.
/// <list type="bullet">
/// <item>One AF_XDP socket per RX queue, each with its own UMEM of 4 KiB chunks; an XDP
/// program (five instructions, loaded here) redirects each frame of queue q to socket q.
/// The fill ring starts full; a received chunk goes back to the fill ring as soon as the
/// frame has been copied into the bridge.</item>
/// <item>TX through queue 0's socket: its UMEM has a second set of chunks for transmission,
/// kept on a free stack, reclaimed from the completion ring. <see cref="Flush"/> publishes the
/// TX ring and kicks with <c>sendto()</c> until the kernel has taken every descriptor (copy
/// mode transmits at most a small budget per call).</item>
/// <item>Promiscuous mode through a PACKET_MR_PROMISC membership on a socket that receives
/// nothing (the kernel counts memberships, so a crash cannot leave it set); GRO/LRO off as
/// for AF_PACKET, because generic XDP runs after GRO.</item>
/// </list>
/// The program is attached through a BPF link, so the kernel detaches it when the host exits,
/// however it exits. Frames are limited to one chunk (MTU up to 3822): jumbo frames need the
/// AF_PACKET backend.
/// </summary>
public sealed unsafe class AfXdpBackend : IInterfaceBackend
{
    /// <summary>Bytes of one UMEM chunk (one frame).</summary>
    public const int ChunkSize = 4096;
    /// <summary>The largest frame the backend moves: a chunk less the headroom the kernel keeps on receive.</summary>
    public const int MaxFrame = ChunkSize - XdpPacketHeadroom;

    private struct Ring
    {
        public uint* Producer, Consumer, Flags;
        public byte* Desc;
        public uint Mask;
        public byte* Map;
        public nuint MapBytes;
        public uint Local; // our free-running index: the producer for fill/TX, the consumer for RX/completion
    }

    private sealed class Queue
    {
        public int Fd = -1;
        public int Id;
        public byte* Umem;
        public nuint UmemBytes;
        public Ring Rx, Fill, Tx, Completion;
        public Statistics Last;
        public long Received;
    }

    private readonly Queue[] _queues;
    private readonly int _rxFrames, _txFrames;
    private int _mapFd = -1, _progFd = -1, _linkFd = -1, _promiscFd = -1;
    // Super-frames in generic mode (see SuperFrames): the packet socket that receives what the
    // program passes to the stack, and sends what an AF_XDP descriptor cannot describe.
    private int _sideFd = -1;
    private byte* _sideRxBuf, _sideTxBuf;
    private bool _sideTxActive;   // BeginTransmit handed out _sideTxBuf
    private int _carryUnsent, _carryErrno; // failed side sends, reported by the next Flush
    private long _carryBytes;
    private long _sideRxPackets, _sideTxPackets;
    // Arrival order across the two paths (generic mode with super-frames): see XdpPassOrder.
    private XdpPassOrder? _order;
    private long _sideRxSmall;
    private const int SideBufBytes = AfPacketBackend.MaxOffloadFrame + 64;
    private volatile int _mtu;
    private bool _zeroCopy;
    private string _mode = "";
    private ReceiveOffloads _offloads;
    private int _nextQueue;
    private int _disposed;

    private readonly bool _completeChecksums;
    /// <summary>Received frames whose partial TCP/UDP checksum this backend completed (driver thread).</summary>
    public long ChecksumsCompleted { get; private set; }

    // TX state: used by the transmitting thread only
    private readonly ulong[] _txFree;
    private int _txFreeCount;
    private int _txQueued;

    public string InterfaceName { get; }
    public int InterfaceIndex { get; }
    public int Mtu => _mtu;
    public int TxCapacity => _sideFd >= 0 ? AfPacketBackend.MaxOffloadFrame : MaxFrame;
    /// <summary>
    /// 10 (a virtio-net header, as af_packet ports have) when super-frames take the packet socket
    /// (<see cref="SuperFrames"/>): GSO super-frames then cross the bridge whole. 0 in native mode:
    /// XDP frames carry no offload metadata, and the switch segments and completes checksums for this port.
    /// </summary>
    public int VirtioHeaderLength => _sideFd >= 0 ? AfPacketBackend.VnetHeaderBytes : 0;
    /// <summary>
    /// True in generic mode: the XDP program passes frames longer than the MTU (GSO super-frames
    /// from a peer with TSO/GSO, which generic XDP leaves on) to the stack, where a packet socket
    /// with PACKET_VNET_HDR takes them with their GSO size and checksum offsets; super-frames and
    /// GSO frames for the wire leave through that socket too (an AF_XDP descriptor has no place
    /// for GSO metadata). Everything else, and every frame in native mode, goes through AF_XDP.
    /// </summary>
    public bool SuperFrames => _sideFd >= 0;
    /// <summary>Super-frames received through the packet socket (driver thread).</summary>
    public long SuperFramesReceived => Volatile.Read(ref _sideRxPackets);
    /// <summary>
    /// Frames of MTU size or less that came through the packet socket: they arrived while
    /// super-frames waited there, and took the same path so as not to overtake them (driver thread).
    /// </summary>
    public long FramesKeptInOrder => Volatile.Read(ref _sideRxSmall);
    /// <summary>Times the order counters were re-synchronised after a frame was lost between the XDP program and the packet socket.</summary>
    public long OrderHeals => _order?.Heals ?? 0;
    /// <summary>Frames sent through the packet socket (GSO frames; transmitting thread).</summary>
    public long SuperFramesSent => Volatile.Read(ref _sideTxPackets);
    /// <summary>"native" or "generic": where the XDP program runs.</summary>
    public string XdpMode => _mode;
    /// <summary>True when the driver moves frames to and from the UMEM itself (no copy in the kernel).</summary>
    public bool ZeroCopy => _zeroCopy;
    public int QueueCount => _queues.Length;
    /// <summary>Frames received on each RX queue since open (written by the driver thread).</summary>
    public long[] QueueRxPackets => _queues.Select(q => Volatile.Read(ref q.Received)).ToArray();
    public string Description =>
        $"af_xdp {_mode} {(_zeroCopy ? "zero-copy" : "copy")}, {_queues.Length} queue{(_queues.Length == 1 ? "" : "s")} x {_rxFrames} rx, {_txFrames} tx x {ChunkSize} B{(_sideFd >= 0 ? ", super-frames via packet socket (vnet hdr)" : "")}{(_promiscFd >= 0 || _sideFd >= 0 ? ", promisc" : "")}{_offloads.Describe()}" +
        $"{(_beaconError is not null ? $", no rx cpu beacon ({_beaconError})" : "")}";

    private AfXdpBackend(string ifName, int ifIndex, int mtu, int queues, PhysicalPortOptions o)
    {
        InterfaceName = ifName;
        InterfaceIndex = ifIndex;
        _mtu = mtu;
        _rxFrames = (int)BitOperations.RoundUpToPowerOf2((uint)o.XdpRxFrames);
        _txFrames = (int)BitOperations.RoundUpToPowerOf2((uint)o.XdpTxFrames);
        _queues = new Queue[queues];
        for (int i = 0; i < queues; i++) _queues[i] = new Queue { Id = i };
        _txFree = new ulong[_txFrames];
        _completeChecksums = o.XdpCompleteChecksums;
    }

    /// <summary>Opens the sockets and attaches the XDP program, or throws an exception that names the interface and the fix.</summary>
    public static AfXdpBackend Open(string ifName, PhysicalPortOptions options)
    {
        ArgumentNullException.ThrowIfNull(ifName);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int ifIndex = AfPacketBackend.ResolveInterface(ifName);
        int err = InterfaceQuery(ifName, SIOCGIFMTU, out int mtu);
        if (err != 0) throw new IOException($"cannot read the MTU of interface '{ifName}': {ErrnoText(err)}");
        if (mtu < 68 || mtu + 18 > MaxFrame)
            throw new ArgumentException(
                $"interface '{ifName}' has MTU {mtu}; the af_xdp backend moves frames of up to {MaxFrame} bytes (MTU {MaxFrame - 18}): use the af_packet backend for jumbo frames");
        var b = new AfXdpBackend(ifName, ifIndex, mtu, RxQueueCount(ifName), options);
        try
        {
            b.Setup(options);
        }
        catch
        {
            b.Dispose();
            throw;
        }
        return b;
    }

    /// <summary>The interface's RX queue count from sysfs (1 when it cannot be read).</summary>
    internal static int RxQueueCount(string ifName)
    {
        try
        {
            int n = Directory.GetDirectories($"/sys/class/net/{ifName}/queues", "rx-*").Length;
            return Math.Clamp(n, 1, 256);
        }
        catch (IOException) { return 1; }
        catch (UnauthorizedAccessException) { return 1; }
    }

    private void Setup(PhysicalPortOptions o)
    {
        // Where frames arrive (DriverFollowsTraffic): the XDP program and the super-frame
        // socket's filter record it in the beacon's map. Best effort, as for af_packet.
        if (o.DriverFollowsTraffic && o.DriverCpus.Count == 0) _beacon = CpuBeacon.TryCreate(out _beaconError);
        _mapFd = CreateXskMap(_queues.Length, InterfaceName);
        foreach (var q in _queues) OpenQueue(q, transmit: q.Id == 0);
        foreach (var q in _queues)
        {
            int rc = MapUpdate(_mapFd, q.Id, q.Fd);
            if (rc != 0) throw new IOException($"adding the AF_XDP socket of queue {q.Id} of interface '{InterfaceName}' to the XSKMAP failed: {ErrnoText(rc)}");
        }
        // A veth whose peer sees a native XDP program turns its TSO off (the kernel does that
        // whatever the program declares), so the peer's stack cuts every TCP stream into MTU-sized
        // frames; generic XDP leaves the peer alone. So on a veth, auto means generic.
        string mode = o.XdpMode;
        if (mode == "auto" && PacketSocket.EthtoolDriver(InterfaceName) == "veth") mode = "generic";
        AttachProgram(mode, o.XdpSuperFrames);
        if (_sideFd >= 0) _promiscFd = -1; // the side socket holds the membership
        else if (o.Promiscuous)
        {
            _promiscFd = Socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); // protocol 0: receives nothing
            if (_promiscFd < 0) throw new IOException($"socket(AF_PACKET) for promiscuous mode on '{InterfaceName}' failed: {ErrnoText(LastErrno)}");
            var mreq = new PacketMreq { IfIndex = InterfaceIndex, Type = PACKET_MR_PROMISC };
            if (SetSockOpt(_promiscFd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, (uint)sizeof(PacketMreq)) != 0)
                throw new IOException($"promiscuous mode on '{InterfaceName}' failed: {ErrnoText(LastErrno)}");
        }
        if (o.DisableReceiveOffloads) _offloads = ReceiveOffloads.Disable(InterfaceName);
    }

    private void AttachProgram(string mode, bool superFrames)
    {
        int rc = -EINVAL;
        if (mode is "auto" or "native")
        {
            _progFd = LoadRedirectProgram(_mapFd, InterfaceName, out _, _beacon?.MapFd ?? -1);
            rc = Attach(_progFd, InterfaceIndex, XDP_FLAGS_DRV_MODE);
            if (rc >= 0) { _linkFd = rc; _mode = "native"; return; }
            if (mode == "native" || rc == -EBUSY) ThrowAttach(-rc, "native");
            Native.Close(_progFd);
            _progFd = -1;
        }
        // Generic XDP sees the frames a peer's TSO/GSO made whole: those longer than the MTU
        // (plus two VLAN tags) go to the stack and the side socket, which is opened first so that
        // none is lost in between; every other frame is redirected to the AF_XDP sockets.
        if (superFrames)
        {
            OpenSideSocket();
            _order = XdpPassOrder.Create(InterfaceName);
            _order.PassAbove = PassAbove;
        }
        _progFd = LoadRedirectProgram(_mapFd, InterfaceName, out _, _beacon?.MapFd ?? -1, _order?.MapFd ?? -1);
        rc = Attach(_progFd, InterfaceIndex, XDP_FLAGS_SKB_MODE);
        if (rc >= 0) { _linkFd = rc; _mode = "generic"; return; }
        ThrowAttach(-rc, "generic");
    }

    private const int EthHeaderBytes = 14;
    /// <summary>
    /// Frames longer than this are passed to the stack and read from the packet socket with
    /// their virtio-net header: the MTU plus an Ethernet header. Anything longer may be a GSO
    /// super-frame, whose metadata an AF_XDP descriptor cannot carry; that includes small ones
    /// (two segments of 1448 + 4 bytes make a 1518-byte frame, which with room for two VLAN tags
    /// here took the AF_XDP ring and was dropped as a plain frame over the MTU). A VLAN-tagged
    /// frame of full size takes the packet socket too: slower, never wrong. Never more than a
    /// UMEM chunk holds (the MTU raised while attached). The program reads it from the order map,
    /// so it follows the MTU.
    /// </summary>
    private int PassAbove => Math.Min(_mtu + EthHeaderBytes, MaxFrame);

    /// <summary>
    /// The packet socket for super-frames (generic mode): PACKET_VNET_HDR (each frame with its
    /// GSO size and checksum offsets), PACKET_IGNORE_OUTGOING (not the frames it sends itself),
    /// PACKET_AUXDATA (VLAN tags the kernel stripped), the promiscuous membership, a large
    /// receive buffer. It sees only what the XDP program passes to the stack: the program runs
    /// before the kernel's packet taps, and a redirected frame never reaches them.
    /// </summary>
    private void OpenSideSocket()
    {
        _sideFd = Socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); // protocol 0: nothing until bound
        if (_sideFd < 0) throw new IOException($"socket(AF_PACKET) for super-frames on '{InterfaceName}' failed: {ErrnoText(LastErrno)}");
        if (SetInt(_sideFd, SOL_PACKET, PACKET_VNET_HDR, 1) != 0)
            throw new IOException($"PACKET_VNET_HDR on interface '{InterfaceName}' failed: {ErrnoText(LastErrno)}; attach with XdpSuperFrames = false (the peer's TSO then goes off) or use the af_packet backend");
        SetInt(_sideFd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        SetInt(_sideFd, SOL_PACKET, PACKET_AUXDATA, 1);
        SetInt(_sideFd, SOL_PACKET, PACKET_QDISC_BYPASS, 1);
        const int buf = 64 * AfPacketBackend.MaxOffloadFrame;
        if (SetInt(_sideFd, SOL_SOCKET, SO_RCVBUFFORCE, buf) != 0) SetInt(_sideFd, SOL_SOCKET, SO_RCVBUF, buf);
        if (SetInt(_sideFd, SOL_SOCKET, SO_SNDBUFFORCE, 4 * AfPacketBackend.MaxOffloadFrame) != 0) SetInt(_sideFd, SOL_SOCKET, SO_SNDBUF, 4 * AfPacketBackend.MaxOffloadFrame);
        _sideRxBuf = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(SideBufBytes, 64);
        _sideTxBuf = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(SideBufBytes, 64);
        var mreq = new PacketMreq { IfIndex = InterfaceIndex, Type = PACKET_MR_PROMISC };
        if (SetSockOpt(_sideFd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, (uint)sizeof(PacketMreq)) != 0)
            throw new IOException($"promiscuous mode on '{InterfaceName}' failed: {ErrnoText(LastErrno)}");
        if (_beacon is not null && _beacon.AttachTo(_sideFd) is int err and not 0) _beaconError = $"SO_ATTACH_BPF on the super-frame socket: {ErrnoText(err)}";
        var sll = new SockaddrLl { Family = AF_PACKET, Protocol = HostToNetwork(ETH_P_ALL), IfIndex = InterfaceIndex };
        if (PacketSocket.Bind(_sideFd, &sll, (uint)sizeof(SockaddrLl)) != 0)
            throw new IOException($"bind of the super-frame socket on '{InterfaceName}' failed: {ErrnoText(LastErrno)}");
    }

    private void ThrowAttach(int err, string mode)
    {
        if (err == EBUSY)
            throw new IOException($"interface '{InterfaceName}' already has an XDP program ('ip link show {InterfaceName}' lists it): detach it, or attach the port with the af_packet backend");
        if (err is EPERM or EACCES)
            throw new UnauthorizedAccessException($"attaching an XDP program to '{InterfaceName}' was refused ({ErrnoText(err)}): the af_xdp backend needs CAP_BPF and CAP_NET_ADMIN (or root)");
        throw new IOException($"attaching the XDP program to '{InterfaceName}' in {mode} mode failed: {ErrnoText(err)}");
    }

    private void Check(int rc, string what, Queue q)
    {
        if (rc == 0) return;
        int err = LastErrno;
        if (err is EPERM or EACCES)
            throw new UnauthorizedAccessException($"{what} for queue {q.Id} of '{InterfaceName}' was refused ({ErrnoText(err)}): the af_xdp backend needs CAP_NET_RAW (or root)");
        throw new IOException($"{what} for queue {q.Id} of interface '{InterfaceName}' failed: {ErrnoText(err)}");
    }

    private void OpenQueue(Queue q, bool transmit)
    {
        q.Fd = Socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
        if (q.Fd < 0) Check(-1, "socket(AF_XDP)", q);
        int chunks = _rxFrames + (transmit ? _txFrames : 0);
        q.UmemBytes = (nuint)chunks * ChunkSize;
        nint mem = Native.Mmap(0, q.UmemBytes, Native.PROT_READ | Native.PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (mem == Native.MAP_FAILED) { q.UmemBytes = 0; Check(-1, "mmap of the UMEM", q); }
        q.Umem = (byte*)mem;
        var reg = new UmemReg { Addr = (ulong)mem, Len = q.UmemBytes, ChunkSize = ChunkSize };
        Check(SetSockOpt(q.Fd, SOL_XDP, XDP_UMEM_REG, &reg, (uint)sizeof(UmemReg)), "XDP_UMEM_REG", q);
        // Every socket that owns a UMEM needs both UMEM rings, even one that never transmits.
        int completion = transmit ? _txFrames : 64;
        Check(SetInt(q.Fd, SOL_XDP, XDP_UMEM_FILL_RING, _rxFrames), "XDP_UMEM_FILL_RING", q);
        Check(SetInt(q.Fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, completion), "XDP_UMEM_COMPLETION_RING", q);
        Check(SetInt(q.Fd, SOL_XDP, XDP_RX_RING, _rxFrames), "XDP_RX_RING", q);
        if (transmit)
        {
            Check(SetInt(q.Fd, SOL_XDP, XDP_TX_RING, _txFrames), "XDP_TX_RING", q);
            SetInt(q.Fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, Math.Min(_txFrames, 1024)); // older kernels: 32 per kick
        }
        MmapOffsets off;
        uint len = (uint)sizeof(MmapOffsets);
        Check(GetSockOpt(q.Fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len), "XDP_MMAP_OFFSETS", q);
        q.Rx = MapRing(q, off.Rx, XDP_PGOFF_RX_RING, _rxFrames, sizeof(Desc), "RX ring");
        q.Fill = MapRing(q, off.Fill, XDP_UMEM_PGOFF_FILL_RING, _rxFrames, sizeof(ulong), "fill ring");
        q.Completion = MapRing(q, off.Completion, XDP_UMEM_PGOFF_COMPLETION_RING, completion, sizeof(ulong), "completion ring");
        if (transmit) q.Tx = MapRing(q, off.Tx, XDP_PGOFF_TX_RING, _txFrames, sizeof(Desc), "TX ring");

        // The fill ring starts with every RX chunk; the TX chunks start on the free stack.
        ulong* fill = (ulong*)q.Fill.Desc;
        for (int i = 0; i < _rxFrames; i++) fill[i] = (ulong)i * ChunkSize;
        q.Fill.Local = (uint)_rxFrames;
        Volatile.Write(ref *q.Fill.Producer, q.Fill.Local);
        if (transmit)
        {
            for (int i = 0; i < _txFrames; i++) _txFree[i] = (ulong)(_rxFrames + _txFrames - 1 - i) * ChunkSize;
            _txFreeCount = _txFrames;
        }

        var sxdp = new SockaddrXdp { Family = AF_XDP, IfIndex = (uint)InterfaceIndex, QueueId = (uint)q.Id };
        if (Xdp.Bind(q.Fd, &sxdp, (uint)sizeof(SockaddrXdp)) != 0)
        {
            if (LastErrno == EBUSY)
                throw new IOException($"queue {q.Id} of interface '{InterfaceName}' already has an AF_XDP socket (another host or program is attached to it): detach it there first");
            Check(-1, "bind of the AF_XDP socket", q);
        }
        uint opts = 0;
        len = sizeof(uint);
        if (q.Id == 0 && GetSockOpt(q.Fd, SOL_XDP, XDP_OPTIONS, &opts, &len) == 0) _zeroCopy = (opts & XDP_OPTIONS_ZEROCOPY) != 0;
    }

    private Ring MapRing(Queue q, RingOffset off, long pgoff, int entries, int descSize, string what)
    {
        nuint bytes = (nuint)(off.Desc + (ulong)(entries * descSize));
        nint p = Native.Mmap(0, bytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED | MAP_POPULATE, q.Fd, pgoff);
        if (p == Native.MAP_FAILED) Check(-1, $"mmap of the {what}", q);
        byte* b = (byte*)p;
        return new Ring
        {
            Map = b, MapBytes = bytes,
            Producer = (uint*)(b + off.Producer), Consumer = (uint*)(b + off.Consumer), Flags = (uint*)(b + off.Flags),
            Desc = b + off.Desc, Mask = (uint)entries - 1,
        };
    }

    // ------------------------------------------------------------------ RX

    public int Receive(IFrameReceiver receiver, int budget)
    {
        int total = 0;
        int nq = _queues.Length;
        // Start at a different queue each round so a busy queue cannot starve the others.
        int start = _nextQueue;
        _nextQueue = start + 1 == nq ? 0 : start + 1;
        for (int k = 0; k < nq && total < budget; k++)
        {
            var q = _queues[(start + k) % nq];
            ref Ring rx = ref q.Rx;
            ref Ring fill = ref q.Fill;
            // Acquire: the descriptors and the frame bytes are written before the producer moves.
            uint prod = Volatile.Read(ref *rx.Producer);
            uint cons = rx.Local;
            uint n = Math.Min(prod - cons, (uint)(budget - total));
            if (n == 0) continue;
            Desc* descs = (Desc*)rx.Desc;
            ulong* fillAddrs = (ulong*)fill.Desc;
            int hdr = VirtioHeaderLength;
            for (uint i = 0; i < n; i++)
            {
                Desc d = descs[(cons + i) & rx.Mask];
                if (d.Addr + d.Len <= q.UmemBytes)
                {
                    // No offload metadata comes with an XDP frame, yet a peer with checksum offload
                    // (a veth's default) leaves TCP/UDP checksums partial: complete them here, in
                    // the chunk we own until it goes back to the fill ring.
                    var frame = new Span<byte>(q.Umem + d.Addr, (int)d.Len);
                    if (_completeChecksums && HyperNF.Switch.Offload.CompleteIfPartial(frame)) ChecksumsCompleted++;
                    // The port's frames start with a virtio-net header when it has one: an empty
                    // one (complete frame, no GSO), in the headroom the kernel left before the frame.
                    if (hdr == 0) receiver.OnFrame(frame, (int)d.Len, 0);
                    else if ((d.Addr & (ChunkSize - 1)) >= (ulong)hdr)
                    {
                        new Span<byte>(q.Umem + d.Addr - (ulong)hdr, hdr).Clear();
                        receiver.OnFrame(new Span<byte>(q.Umem + d.Addr - (ulong)hdr, (int)d.Len + hdr), (int)d.Len + hdr, 0);
                    }
                    else
                    {
                        // No headroom (a kernel that puts frames at the chunk's start): copy.
                        new Span<byte>(_sideRxBuf, hdr).Clear();
                        frame.CopyTo(new Span<byte>(_sideRxBuf + hdr, SideBufBytes - hdr));
                        receiver.OnFrame(new Span<byte>(_sideRxBuf, (int)d.Len + hdr), (int)d.Len + hdr, 0);
                    }
                }
                // The chunk goes back to the kernel once the frame has been copied out.
                fillAddrs[(fill.Local + i) & fill.Mask] = d.Addr & ~(ulong)(ChunkSize - 1);
            }
            rx.Local = cons + n;
            fill.Local += n;
            // Release: done with the frames and the descriptors before the kernel may reuse them.
            Volatile.Write(ref *rx.Consumer, rx.Local);
            Volatile.Write(ref *fill.Producer, fill.Local);
            total += (int)n;
            Volatile.Write(ref q.Received, q.Received + n);
        }
        if (_sideFd >= 0)
        {
            while (total < budget && ReceiveSide(receiver)) total++;
        }
        return total;
    }

    /// <summary>One super-frame from the packet socket, with its virtio-net header; false when none is queued.</summary>
    private bool ReceiveSide(IFrameReceiver receiver)
    {
        nint r = AfPacketBackend.ReceiveFrame(_sideFd, receiver, _sideRxBuf, SideBufBytes);
        if (r <= 0) return false;
        // Taken: from now on a frame the program sees may take the AF_XDP path again; the driver
        // reads that path only after this frame has gone to the switch.
        _order?.Took(1);
        if (r - AfPacketBackend.VnetHeaderBytes <= PassAbove) _sideRxSmall++;
        _sideRxPackets++;
        return true;
    }

    private int[] _pollFds = [];

    public ReadOnlySpan<int> PollFds
    {
        get
        {
            int n = _queues.Length + (_sideFd >= 0 ? 1 : 0);
            if (_pollFds.Length != n) _pollFds = [.. _queues.Select(q => q.Fd), .. (_sideFd >= 0 ? new[] { _sideFd } : [])]; // once, after the sockets are open
            return _pollFds;
        }
    }

    public void ClearPollErrors()
    {
        // ENETDOWN once the device is unregistered; reading clears it.
        foreach (var q in _queues) if (q.Fd >= 0) TakeSocketError(q.Fd);
        if (_sideFd >= 0) TakeSocketError(_sideFd);
    }

    public int LastRxCpu => _beacon?.LastCpu ?? -1;

    private CpuBeacon? _beacon;     // where frames arrive (DriverFollowsTraffic)
    private string? _beaconError;

    public long TakeKernelDrops()
    {
        long drops = 0;
        foreach (var q in _queues)
        {
            Statistics s;
            uint len = (uint)sizeof(Statistics);
            if (GetSockOpt(q.Fd, SOL_XDP, XDP_STATISTICS, &s, &len) != 0) continue;
            // The kernel's counters only grow; report what is new since the last call.
            drops += (long)(s.RxDropped - q.Last.RxDropped) + (long)(s.RxRingFull - q.Last.RxRingFull);
            q.Last = s;
        }
        if (_sideFd >= 0)
        {
            TpacketStats ps;
            uint plen = (uint)sizeof(TpacketStats);
            if (GetSockOpt(_sideFd, SOL_PACKET, PACKET_STATISTICS, &ps, &plen) == 0) // reading resets them
            {
                drops += ps.Drops;
                _order?.Took(ps.Drops); // counted by the program, never to be read
            }
            if (_order is not null)
            {
                byte probe;
                bool empty = RecvFrom(_sideFd, &probe, 1, MSG_DONTWAIT | MSG_PEEK, null, null) < 0;
                _order.Heal(empty);
            }
        }
        return drops;
    }

    // ------------------------------------------------------------------ TX

    private Queue TxQueue => _queues[0];

    /// <summary>Takes the chunks the kernel has finished sending back onto the free stack.</summary>
    private void Reclaim()
    {
        ref Ring c = ref TxQueue.Completion;
        uint prod = Volatile.Read(ref *c.Producer);
        uint cons = c.Local;
        if (prod == cons) return;
        ulong* addrs = (ulong*)c.Desc;
        for (; cons != prod; cons++) _txFree[_txFreeCount++] = addrs[cons & c.Mask] & ~(ulong)(ChunkSize - 1);
        c.Local = cons;
        Volatile.Write(ref *c.Consumer, cons);
    }

    public Span<byte> BeginTransmit(int length)
    {
        _sideTxActive = false;
        if (_sideFd >= 0 && length > MaxFrame)
        {
            // A super-frame: what is queued goes first, so the order on the wire is kept.
            Carry(FlushXsk());
            _sideTxActive = true;
            return new Span<byte>(_sideTxBuf, AfPacketBackend.MaxOffloadFrame);
        }
        if (_txFreeCount == 0)
        {
            Reclaim();
            if (_txFreeCount == 0) return default;
        }
        return new Span<byte>(TxQueue.Umem + _txFree[_txFreeCount - 1], MaxFrame);
    }

    public void CommitTransmit(int length)
    {
        if (_sideTxActive)
        {
            _sideTxActive = false;
            if ((uint)length > (uint)AfPacketBackend.MaxOffloadFrame) throw new ArgumentOutOfRangeException(nameof(length), length, $"a TX frame holds at most {AfPacketBackend.MaxOffloadFrame} bytes");
            SendSide(_sideTxBuf, length);
            return;
        }
        if ((uint)length > (uint)MaxFrame) throw new ArgumentOutOfRangeException(nameof(length), length, $"a TX frame holds at most {MaxFrame} bytes");
        if (_txFreeCount == 0) throw new InvalidOperationException("CommitTransmit without a frame from BeginTransmit");
        ulong addr = _txFree[_txFreeCount - 1];
        int hdr = VirtioHeaderLength;
        if (hdr > 0)
        {
            // The frame comes with a virtio-net header (the port's rings carry one). A GSO frame
            // goes whole through the packet socket, which hands the kernel its metadata; a partial
            // checksum is completed here (PhysicalPort checked the offsets against the frame);
            // then the frame alone goes to the TX ring, the header skipped.
            byte* f = TxQueue.Umem + addr;
            if (length < hdr) throw new ArgumentOutOfRangeException(nameof(length), length, $"a TX frame starts with a {hdr}-byte virtio-net header");
            if ((f[VirtioNetHeaderGsoType] & 0x7F) != 0)
            {
                Carry(FlushXsk());
                SendSide(f, length);
                return; // the chunk stays on the free stack
            }
            if ((f[0] & 1) != 0) // VIRTIO_NET_HDR_F_NEEDS_CSUM
            {
                int start = *(ushort*)(f + 6), offset = *(ushort*)(f + 8);
                if (start + offset + 2 <= length - hdr) HyperNF.Switch.Offload.CompletePartial(f + hdr, length - hdr, start, offset);
            }
            addr += (ulong)hdr;
            length -= hdr;
        }
        _txFreeCount--;
        ref Ring tx = ref TxQueue.Tx;
        ((Desc*)tx.Desc)[tx.Local & tx.Mask] = new Desc { Addr = addr, Len = (uint)length };
        tx.Local++;
        _txQueued++;
    }

    private const int VirtioNetHeaderGsoType = 1;

    public bool TransmitGather(FrameFragment* fragments, int count, int length)
    {
        if (_sideFd < 0 || length <= MaxFrame || (uint)length > (uint)AfPacketBackend.MaxOffloadFrame) return false;
        // A super-frame: what is queued goes first, so the order on the wire is kept.
        Carry(FlushXsk());
        SendSide((Iovec*)fragments, count, length);
        return true;
    }

    /// <summary>Sends one frame with its virtio-net header through the packet socket at once; a failure is reported by the next <see cref="Flush"/>.</summary>
    private void SendSide(byte* frame, int length)
    {
        var iov = new Iovec { Base = frame, Len = (nuint)length };
        SendSide(&iov, 1, length);
    }

    private void SendSide(Iovec* fragments, int count, int length)
    {
        var msg = new MsgHdr { Iov = fragments, IovLen = (nuint)count };
        int errno = 0;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            if (SendMsg(_sideFd, &msg, MSG_DONTWAIT) >= 0)
            {
                _sideTxPackets++;
                return;
            }
            errno = LastErrno;
            if (errno is not (EINTR or EAGAIN or ENOBUFS)) break;
        }
        Carry(new TransmitResult(errno, 1, length));
    }

    private void Carry(TransmitResult r)
    {
        if (!r.Failed) return;
        _carryUnsent += r.Unsent;
        _carryBytes += r.UnsentBytes;
        _carryErrno = r.Errno;
    }

    public TransmitResult Flush()
    {
        var r = FlushXsk();
        if (_carryUnsent == 0) return r;
        var all = new TransmitResult(r.Failed ? r.Errno : _carryErrno, r.Unsent + _carryUnsent, r.UnsentBytes + _carryBytes);
        _carryUnsent = 0; _carryBytes = 0; _carryErrno = 0;
        return all;
    }

    private TransmitResult FlushXsk()
    {
        if (_txQueued == 0) return TransmitResult.Ok;
        var q = TxQueue;
        ref Ring tx = ref q.Tx;
        // Release: descriptors and frame bytes are written before the kernel sees the producer.
        Volatile.Write(ref *tx.Producer, tx.Local);
        int errno = 0;
        // Copy mode sends a bounded batch per call and returns EAGAIN while more are queued;
        // a full completion ring also gives EAGAIN until we reclaim. Bounded so that a device
        // that stops taking frames cannot hold the sender here.
        int rounds = _txQueued / 16 + 8;
        while (Volatile.Read(ref *tx.Consumer) != tx.Local && rounds-- > 0)
        {
            if (SendTo(q.Fd, null, 0, MSG_DONTWAIT, null, 0) >= 0) { errno = 0; continue; }
            errno = LastErrno;
            if (errno is EAGAIN or EBUSY or ENOBUFS or EINTR) { Reclaim(); continue; }
            break; // ENETDOWN, ENXIO: the link or the device is gone
        }
        Reclaim();
        uint left = tx.Local - Volatile.Read(ref *tx.Consumer);
        if (left == 0 || _zeroCopy)
        {
            // Zero-copy drivers take descriptors asynchronously: what is published is theirs.
            _txQueued = 0;
            return TransmitResult.Ok;
        }
        // Copy mode: the kernel reads the TX ring only inside our sendto(), so the descriptors
        // it has not taken can be withdrawn; they are the newest ones.
        long bytes = 0;
        Desc* descs = (Desc*)tx.Desc;
        for (uint i = 0; i < left; i++)
        {
            Desc d = descs[(tx.Local - 1 - i) & tx.Mask];
            _txFree[_txFreeCount++] = d.Addr & ~(ulong)(ChunkSize - 1);
            bytes += d.Len + VirtioHeaderLength; // as committed: with the header
        }
        tx.Local -= left;
        Volatile.Write(ref *tx.Producer, tx.Local);
        _txQueued = 0;
        return new TransmitResult(errno == 0 ? EAGAIN : errno, (int)left, bytes);
    }

    // ------------------------------------------------------------------ link

    private readonly InterfaceLink _linkQuery = new(); // link checks; closed by Dispose

    public LinkState QueryLink()
    {
        var state = _linkQuery.Query(InterfaceName, InterfaceIndex, out int mtu);
        if (mtu > 0 && mtu != _mtu)
        {
            _mtu = mtu;
            if (_order is { } order) order.PassAbove = PassAbove;
        }
        return state;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _linkQuery.Dispose();
        // The link first: with the program gone no frame is redirected to a closing socket.
        if (_linkFd >= 0) Native.Close(_linkFd);
        if (_progFd >= 0) Native.Close(_progFd);
        if (_mapFd >= 0) Native.Close(_mapFd);
        _linkFd = _progFd = _mapFd = -1;
        _beacon?.Dispose();
        _beacon = null;
        _order?.Dispose(); // after the link: the program no longer writes to it
        _order = null;
        foreach (var q in _queues)
        {
            foreach (var r in new[] { q.Rx, q.Fill, q.Tx, q.Completion })
                if (r.Map != null) Native.Munmap((nint)r.Map, r.MapBytes);
            q.Rx = q.Fill = q.Tx = q.Completion = default;
            if (q.Fd >= 0) Native.Close(q.Fd);
            q.Fd = -1;
            if (q.Umem != null) Native.Munmap((nint)q.Umem, q.UmemBytes);
            q.Umem = null;
        }
        if (_sideFd >= 0)
        {
            var mreq = new PacketMreq { IfIndex = InterfaceIndex, Type = PACKET_MR_PROMISC };
            SetSockOpt(_sideFd, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &mreq, (uint)sizeof(PacketMreq));
            Native.Close(_sideFd);
            _sideFd = -1;
        }
        if (_sideRxBuf != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(_sideRxBuf);
        if (_sideTxBuf != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(_sideTxBuf);
        _sideRxBuf = _sideTxBuf = null;
        if (_promiscFd >= 0)
        {
            var mreq = new PacketMreq { IfIndex = InterfaceIndex, Type = PACKET_MR_PROMISC };
            SetSockOpt(_promiscFd, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &mreq, (uint)sizeof(PacketMreq));
            Native.Close(_promiscFd);
            _promiscFd = -1;
        }
        _offloads.Restore(InterfaceName, InterfaceIndex);
    }

    private const int MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_POPULATE = 0x8000;
}
