using System.Numerics;
using System.Runtime.InteropServices;
using HyperNF.Linux;
using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Ports;

/// <summary>
/// The default backend: two AF_PACKET sockets bound to the interface.
/// <list type="bullet">
/// <item>RX: a TPACKET_V2 ring of frames sized for the MTU. V2 publishes every frame as it
/// arrives and wakes a sleeping poll() at once; TPACKET_V3 hands over whole blocks, so a lone
/// frame (a ping) waited for the block retire timer, milliseconds. A frame too large for a ring
/// frame (a GSO super-frame, up to 64 KiB) is marked TP_STATUS_COPY in the ring and queued
/// whole on the socket (PACKET_COPY_THRESH), where <see cref="Receive"/> reads it with recvmsg
/// in its place in the sequence. Promiscuous membership, a forced large receive buffer,
/// PACKET_IGNORE_OUTGOING so frames the host itself sends on the interface do not come back
/// into the bridge.</item>
/// <item>All sockets carry a virtio-net header (PACKET_VNET_HDR, 10 bytes) in front of every
/// frame: what the kernel knows about GSO and partial checksums crosses the bridge with the
/// frame, as it does through a Linux bridge, so TCP works with the peers' offloads on.</item>
/// <item>TX: a TPACKET_V2 ring (V3 has no fixed-size TX frames) of MTU-sized frames with
/// PACKET_QDISC_BYPASS, so one <c>send()</c> pushes every queued frame straight to the driver
/// in the caller's context (the doorbell of HyperNF's NIC txsync), and PACKET_LOSS, so a frame
/// the kernel rejects is skipped instead of blocking the ring. A frame larger than a ring frame
/// (a GSO super-frame) goes through a third socket with one send() of its own, after the ring's
/// queued frames (the order is kept). Ring frames of 128 KiB, large enough for super-frames,
/// took a page per small frame and carried about a quarter less TCP (docs/performance.md).</item>
/// </list>
/// Separate sockets because a socket has one TPACKET version (and one with a TX ring sends only
/// from it), and the TX sockets are bound with protocol 0 so they receive nothing.
/// </summary>
public sealed unsafe class AfPacketBackend : IInterfaceBackend
{
    private int _rxFd = -1, _txFd = -1;
    private byte* _rxRing, _txRing;
    private nuint _rxRingBytes, _txRingBytes;
    private readonly int _rxBlockSize, _rxBlockCount, _rxFrameSize, _rxFramesPerBlock, _rxFrames;
    private int _rxHead;
    private byte* _bigBuf;       // a frame the ring could not hold (TP_STATUS_COPY), read with recvmsg
    private const int BigBufBytes = 65536 + 64;
    /// <summary>Fragments of a scatter receive: 2 KiB slot buffers for a 64 KiB frame and its header.</summary>
    internal const int MaxScatter = 40;
    private readonly bool _wantVnet;
    private int _vnetHdr;        // 10 with PACKET_VNET_HDR on the sockets, else 0
    private bool _rxVnet, _txVnet;
    private readonly int _txFrameSize, _txBlockSize, _txBlocks, _txFrames;
    // Frames over a ring frame (GSO super-frames): one send() each on their own socket.
    private int _bigFd = -1;
    private byte* _bigTxBuf;
    private bool _bigActive;    // BeginTransmit handed out _bigTxBuf
    private int _carryUnsent, _carryErrno; // failures of super-frame sends, reported by the next Flush
    private long _carryBytes;
    private int _txHead;        // next TX frame we fill
    private int _txFirstQueued; // first frame committed since the last flush
    private int _txQueued;      // frames committed since the last flush
    // TX without the ring (TxRing = false): frames in our own memory, one sendmmsg() per flush
    private readonly bool _txViaRing;
    private byte* _txBuf;
    private Mmsghdr* _txMsgs;
    private Iovec* _txIov;
    private volatile int _mtu;
    private bool _promisc;
    private ReceiveOffloads _offloads;
    private CpuBeacon? _beacon;      // where frames arrive (DriverFollowsTraffic)
    private string? _beaconError;
    private int _disposed;

    public string InterfaceName { get; }
    public int InterfaceIndex { get; }
    public int Mtu => _mtu;
    private int RingTxCapacity => _txFrameSize - T2TxDataOffset;
    public int TxCapacity => _bigTxBuf != null ? MaxOffloadFrame : RingTxCapacity;
    public int VirtioHeaderLength => _vnetHdr;
    public string Description =>
        $"af_packet rx v2 {_rxFrames} x {_rxFrameSize} B, tx {(_txViaRing ? "v2" : "sendmmsg")} {_txFrames} x {_txFrameSize} B{(_bigTxBuf != null ? " + send() for super-frames" : "")}" +
        $"{(_vnetHdr > 0 ? ", vnet hdr" : _wantVnet ? ", no vnet hdr (kernel refused PACKET_VNET_HDR)" : "")}{(_promisc ? ", promisc" : "")}{_offloads.Describe()}" +
        $"{(_beaconError is not null ? $", no rx cpu beacon ({_beaconError})" : "")}";

    public int LastRxCpu => _beacon?.LastCpu ?? -1;

    /// <summary>The CPU beacon's map (for a filter that records the CPU as the beacon does), or -1.</summary>
    internal int BeaconMapFd => _beacon?.MapFd ?? -1;

    /// <summary>
    /// Replaces the RX socket's filter with <paramref name="progFd"/> (the kernel fast path's
    /// decision filter, which also records the CPU when <see cref="BeaconMapFd"/> is given to it);
    /// 0 or an errno. The socket keeps its own reference to the program.
    /// </summary>
    internal int AttachRxFilter(int progFd) =>
        SetSockOpt(_rxFd, SOL_SOCKET, 50 /* SO_ATTACH_BPF */, &progFd, sizeof(int)) == 0 ? 0 : LastErrno;

    /// <summary>Bytes of the virtio-net header the backend asks the kernel for.</summary>
    public const int VnetHeaderBytes = 10;
    /// <summary>The largest frame with offload metadata: a 64 KiB GSO super-frame (IP length 65535), up to two VLAN tags, the header.</summary>
    public const int MaxOffloadFrame = 65535 + 14 + 8 + VnetHeaderBytes;

    private AfPacketBackend(string ifName, int ifIndex, int mtu, PhysicalPortOptions o)
    {
        InterfaceName = ifName;
        InterfaceIndex = ifIndex;
        _mtu = mtu;
        _wantVnet = o.VirtioNetHeader;
        // An RX frame holds the ring header, the sockaddr_ll, the virtio-net header and an MTU-sized
        // frame (a stripped VLAN tag is not in the data); larger ones take the copy path.
        _rxFrameSize = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(2048, RxFrameOverhead + mtu + 18));
        _rxBlockSize = Math.Max(o.RxBlockBytes, _rxFrameSize);
        _rxBlockCount = Math.Max(2, (int)((long)o.RxBlockBytes * o.RxBlockCount / _rxBlockSize));
        _rxFramesPerBlock = _rxBlockSize / _rxFrameSize;
        _rxFrames = _rxFramesPerBlock * _rxBlockCount;
        // A TX ring frame holds the largest frame the MTU allows (plus two VLAN tags) after its
        // headers; larger ones (GSO super-frames) take the send() path.
        int txMax = (_wantVnet ? VnetHeaderBytes : 0) + mtu + 22;
        _txFrameSize = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(2048, T2TxDataOffset + txMax));
        // Frames may not straddle blocks; blocks are whole pages. Keep at least 256 frames.
        _txBlockSize = Math.Max(_txFrameSize, 64 * 1024);
        int perBlock = _txBlockSize / _txFrameSize;
        int frames = Math.Max(256, o.TxRingBytes / _txFrameSize);
        _txBlocks = (frames + perBlock - 1) / perBlock;
        _txFrames = _txBlocks * perBlock;
        _txViaRing = o.TxRing;
        if (!_txViaRing) _txFrames = Math.Max(16, Math.Min(o.TxBatchFrames, 16 * 1024 * 1024 / _txFrameSize));
    }

    /// <summary>Opens both sockets on <paramref name="ifName"/>, or throws an exception that names the interface and the fix.</summary>
    public static AfPacketBackend Open(string ifName, PhysicalPortOptions options)
    {
        ArgumentNullException.ThrowIfNull(ifName);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int ifIndex = ResolveInterface(ifName);
        int err = InterfaceQuery(ifName, SIOCGIFMTU, out int mtu);
        if (err != 0) throw new IOException($"cannot read the MTU of interface '{ifName}': {ErrnoText(err)}");
        if (mtu < 68 || mtu > 65535) throw new IOException($"interface '{ifName}' has MTU {mtu}; physical ports support 68..65535");
        var b = new AfPacketBackend(ifName, ifIndex, mtu, options);
        try
        {
            b.OpenRx(options);
            b.OpenTx(options);
            if (b._rxVnet != b._txVnet)
                throw new IOException($"interface '{ifName}': the kernel took PACKET_VNET_HDR on one socket only; attach with VirtioNetHeader = false");
            b._vnetHdr = b._rxVnet ? VnetHeaderBytes : 0;
            if (options.DisableReceiveOffloads) b._offloads = ReceiveOffloads.Disable(ifName);
        }
        catch
        {
            b.Dispose();
            throw;
        }
        return b;
    }

    /// <summary>The interface index, or an exception saying the interface does not exist.</summary>
    internal static int ResolveInterface(string ifName)
    {
        if (ifName.Length == 0 || ifName.Length >= IfNameSize || ifName.AsSpan().IndexOfAny("/: \t") >= 0)
            throw new ArgumentException($"'{ifName}' is not an interface name: Linux names have 1..15 characters and no '/', ':' or spaces");
        int err = InterfaceQuery(ifName, SIOCGIFINDEX, out int ifIndex);
        if (err == ENODEV)
            throw new ArgumentException($"interface '{ifName}' does not exist; check the name with 'ip link'");
        if (err != 0) throw new IOException($"cannot look up interface '{ifName}': {ErrnoText(err)}");
        return ifIndex;
    }

    private int NewSocket()
    {
        int fd = Socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0); // protocol 0: receive nothing until bound
        if (fd >= 0) return fd;
        int err = LastErrno;
        if (err is EPERM or EACCES) throw new UnauthorizedAccessException(PermissionDenied(InterfaceName, err, ReadEffectiveCapabilities()));
        throw new IOException($"socket(AF_PACKET) for interface '{InterfaceName}' failed: {ErrnoText(err)}");
    }

    private const int CAP_NET_ADMIN = 12, CAP_NET_RAW = 13;

    /// <summary>
    /// The message for a raw packet socket the kernel refused: which interface, what failed and
    /// which capability is missing (from the process's effective set), and the fix.
    /// <paramref name="effectiveCaps"/> is CapEff of /proc/self/status, or null when unknown.
    /// </summary>
    internal static string PermissionDenied(string ifName, int errno, ulong? effectiveCaps)
    {
        string cause;
        if (effectiveCaps is not { } caps)
            cause = "it needs CAP_NET_RAW";
        else if ((caps & (1UL << CAP_NET_RAW)) == 0)
            cause = (caps & (1UL << CAP_NET_ADMIN)) == 0
                ? "the process lacks CAP_NET_RAW (and CAP_NET_ADMIN)"
                : "the process lacks CAP_NET_RAW";
        else
            cause = "the process has CAP_NET_RAW, but not in the user namespace that owns this network namespace (or a security module refused it)";
        return $"cannot attach interface '{ifName}': permission denied opening a raw packet socket ({(errno == EACCES ? "EACCES" : "EPERM")}): {cause}. " +
               "Run as root, or give the program CAP_NET_RAW (and CAP_NET_ADMIN, which the forced socket buffers and turning GRO/LRO off need)";
    }

    /// <summary>The effective capability set (CapEff in /proc/self/status), or null when it cannot be read.</summary>
    internal static ulong? ReadEffectiveCapabilities()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                    return ulong.Parse(line.AsSpan(7).Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
        }
        return null;
    }

    private void Check(int rc, string what)
    {
        if (rc == 0) return;
        int err = LastErrno;
        throw new IOException($"{what} on interface '{InterfaceName}' failed: {ErrnoText(err)}");
    }

    /// <summary>Ring header + sockaddr_ll (TPACKET2_HDRLEN, aligned), the 16 bytes the kernel keeps for the MAC header, the virtio-net header.</summary>
    private const int RxFrameOverhead = 80 + VnetHeaderBytes;

    private void OpenRx(PhysicalPortOptions o)
    {
        _rxFd = NewSocket();
        _pollFds = [_rxFd];
        Check(SetInt(_rxFd, SOL_PACKET, PACKET_VERSION, TPACKET_V2), "PACKET_VERSION v2");
        // Older kernels (< 4.20) lack it; frames the host sends are then skipped by sll_pkttype.
        SetInt(_rxFd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        // VLAN tags the kernel stripped, for frames read with recvmsg (the ring has them in its header).
        SetInt(_rxFd, SOL_PACKET, PACKET_AUXDATA, 1);
        if (SetInt(_rxFd, SOL_SOCKET, SO_RCVBUFFORCE, o.ReceiveBufferBytes) != 0)
            SetInt(_rxFd, SOL_SOCKET, SO_RCVBUF, o.ReceiveBufferBytes); // without CAP_NET_ADMIN: capped by rmem_max
        // A frame larger than a ring frame is queued whole on the socket, its place marked TP_STATUS_COPY.
        SetInt(_rxFd, SOL_PACKET, PACKET_COPY_THRESH, 1);
        _rxVnet = TryVnetHeader(_rxFd);
        var req = new TpacketReq
        {
            BlockSize = (uint)_rxBlockSize, BlockNr = (uint)_rxBlockCount,
            FrameSize = (uint)_rxFrameSize, FrameNr = (uint)_rxFrames,
        };
        Check(SetSockOpt(_rxFd, SOL_PACKET, PACKET_RX_RING, &req, (uint)sizeof(TpacketReq)), "PACKET_RX_RING");
        _rxRingBytes = (nuint)_rxBlockSize * (nuint)_rxBlockCount;
        nint p = Native.Mmap(0, _rxRingBytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _rxFd, 0);
        if (p == Native.MAP_FAILED) { _rxRingBytes = 0; Check(-1, "mmap of the RX ring"); }
        _rxRing = (byte*)p;
        _bigBuf = (byte*)NativeMemory.AlignedAlloc(BigBufBytes, 64);
        if (o.Promiscuous)
        {
            var mreq = new PacketMreq { IfIndex = InterfaceIndex, Type = PACKET_MR_PROMISC };
            Check(SetSockOpt(_rxFd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, (uint)sizeof(PacketMreq)), "PACKET_ADD_MEMBERSHIP promisc");
            _promisc = true;
        }
        if (o.DriverFollowsTraffic && o.DriverCpus.Count == 0)
        {
            // Best effort: without CAP_BPF the driver thread just does not follow the traffic.
            _beacon = CpuBeacon.TryCreate(out _beaconError);
            if (_beacon is not null && _beacon.AttachTo(_rxFd) is int err and not 0)
            {
                _beaconError = $"SO_ATTACH_BPF: {ErrnoText(err)}";
                _beacon.Dispose();
                _beacon = null;
            }
        }
        var sll = new SockaddrLl { Family = AF_PACKET, Protocol = HostToNetwork(ETH_P_ALL), IfIndex = InterfaceIndex };
        Check(Bind(_rxFd, &sll, (uint)sizeof(SockaddrLl)), "bind of the RX socket");
    }

    /// <summary>
    /// PACKET_VNET_HDR, which must come before the ring (the kernel refuses it on a socket that
    /// has one). A kernel without it leaves the port without offload metadata (<see cref="Description"/> says so).
    /// </summary>
    private bool TryVnetHeader(int fd) => _wantVnet && SetInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1) == 0;

    private void OpenTx(PhysicalPortOptions o)
    {
        if (!_txViaRing)
        {
            OpenTxBatch(o);
            return;
        }
        _txFd = NewSocket();
        Check(SetInt(_txFd, SOL_PACKET, PACKET_VERSION, TPACKET_V2), "PACKET_VERSION v2");
        Check(SetInt(_txFd, SOL_PACKET, PACKET_LOSS, 1), "PACKET_LOSS");
        _txVnet = TryVnetHeader(_txFd);
        if (o.QdiscBypass) Check(SetInt(_txFd, SOL_PACKET, PACKET_QDISC_BYPASS, 1), "PACKET_QDISC_BYPASS");
        if (_txVnet) OpenBigTx(o);
        // In-flight frames are charged to the send buffer; make it hold the whole ring so that a
        // kick never stops half-way for lack of socket memory.
        long sndbuf = Math.Min(int.MaxValue / 2, 2L * _txFrameSize * _txFrames);
        if (SetInt(_txFd, SOL_SOCKET, SO_SNDBUFFORCE, (int)sndbuf) != 0) SetInt(_txFd, SOL_SOCKET, SO_SNDBUF, (int)sndbuf);
        var req = new TpacketReq
        {
            BlockSize = (uint)_txBlockSize, BlockNr = (uint)_txBlocks,
            FrameSize = (uint)_txFrameSize, FrameNr = (uint)_txFrames,
        };
        Check(SetSockOpt(_txFd, SOL_PACKET, PACKET_TX_RING, &req, (uint)sizeof(TpacketReq)), "PACKET_TX_RING");
        _txRingBytes = (nuint)_txBlockSize * (nuint)_txBlocks;
        nint p = Native.Mmap(0, _txRingBytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _txFd, 0);
        if (p == Native.MAP_FAILED) { _txRingBytes = 0; Check(-1, "mmap of the TX ring"); }
        _txRing = (byte*)p;
        var sll = new SockaddrLl { Family = AF_PACKET, Protocol = 0, IfIndex = InterfaceIndex };
        Check(Bind(_txFd, &sll, (uint)sizeof(SockaddrLl)), "bind of the TX socket");
    }

    /// <summary>The socket for frames larger than a TX ring frame: GSO super-frames with their virtio-net header.</summary>
    private void OpenBigTx(PhysicalPortOptions o)
    {
        _bigFd = NewSocket();
        if (!TryVnetHeader(_bigFd)) Check(-1, "PACKET_VNET_HDR on the super-frame socket");
        if (o.QdiscBypass) Check(SetInt(_bigFd, SOL_PACKET, PACKET_QDISC_BYPASS, 1), "PACKET_QDISC_BYPASS");
        const int sndbuf = 4 * MaxOffloadFrame;
        if (SetInt(_bigFd, SOL_SOCKET, SO_SNDBUFFORCE, sndbuf) != 0) SetInt(_bigFd, SOL_SOCKET, SO_SNDBUF, sndbuf);
        var sll = new SockaddrLl { Family = AF_PACKET, Protocol = 0, IfIndex = InterfaceIndex };
        Check(Bind(_bigFd, &sll, (uint)sizeof(SockaddrLl)), "bind of the super-frame socket");
        _bigTxBuf = (byte*)NativeMemory.AlignedAlloc((nuint)MaxOffloadFrame, 64);
    }

    // ------------------------------------------------------------------ RX

    private byte* RxFrame(int i) => _rxRing + (nuint)(i / _rxFramesPerBlock) * (nuint)_rxBlockSize + (nuint)(i % _rxFramesPerBlock) * (nuint)_rxFrameSize;

    public int Receive(IFrameReceiver receiver, int budget)
    {
        int n = 0;
        int hdr = _vnetHdr;
        while (n < budget)
        {
            byte* f = RxFrame(_rxHead);
            // Acquire: the kernel fills the frame, then sets TP_STATUS_USER (smp_wmb before it).
            uint st = Volatile.Read(ref *(uint*)(f + T2Status));
            if ((st & TP_STATUS_USER) == 0) break;
            uint len = *(uint*)(f + T2Len);
            uint snap = *(uint*)(f + T2SnapLen);
            byte pktType = f[T2SllOffset + SllPktType];
            uint vlan = 0;
            if ((st & TP_STATUS_VLAN_VALID) != 0)
            {
                uint tpid = (st & TP_STATUS_VLAN_TPID_VALID) != 0 ? *(ushort*)(f + T2VlanTpid) : 0x8100u;
                vlan = tpid << 16 | *(ushort*)(f + T2VlanTci);
            }
            if ((st & TP_STATUS_COPY) != 0)
            {
                // The whole frame waits on the socket queue, in order: read it in its place.
                Volatile.Write(ref *(uint*)(f + T2Status), TP_STATUS_KERNEL);
                _rxHead = _rxHead + 1 == _rxFrames ? 0 : _rxHead + 1;
                if (pktType != PACKET_OUTGOING && ReceiveQueued(receiver, hdr)) n++;
                continue;
            }
            if (pktType != PACKET_OUTGOING)
            {
                int mac = *(ushort*)(f + T2Mac);
                // The kernel cut the frame (no room on the socket queue for the whole one): the
                // receiver sees wireLength > frame length and counts it.
                receiver.OnFrame(new ReadOnlySpan<byte>(f + mac - hdr, (int)snap + hdr), (int)len + hdr, vlan);
                n++;
            }
            // Release: we are done reading the frame before the kernel may refill it.
            Volatile.Write(ref *(uint*)(f + T2Status), TP_STATUS_KERNEL);
            _rxHead = _rxHead + 1 == _rxFrames ? 0 : _rxHead + 1;
        }
        return n;
    }

    /// <summary>Reads the frame the kernel queued on the socket for a TP_STATUS_COPY ring frame (with its virtio-net header and VLAN tag); false when it is not there.</summary>
    private bool ReceiveQueued(IFrameReceiver receiver, int hdr) =>
        ReceiveFrame(_rxFd, receiver, _bigBuf, BigBufBytes) > 0; // none: the socket queue had no room, the kernel counted it (PACKET_STATISTICS)

    /// <summary>
    /// Reads one frame from packet socket <paramref name="fd"/> (with its virtio-net header, if
    /// the socket has one, and the VLAN tag from PACKET_AUXDATA) and hands it to
    /// <paramref name="receiver"/>: straight into the receiver's slots when it offers them (one
    /// copy fewer for a 64 KiB super-frame), else through <paramref name="staging"/>. Returns the
    /// frame's full length, or 0 or less when none was queued. Shared with af_xdp's super-frame socket.
    /// </summary>
    internal static nint ReceiveFrame(int fd, IFrameReceiver receiver, byte* staging, int stagingBytes)
    {
        byte* control = stackalloc byte[64];
        var scatter = stackalloc FrameFragment[MaxScatter];
        int nf = receiver.BeginScatter(scatter, MaxScatter, stagingBytes);
        var iov = new Iovec { Base = staging, Len = (nuint)stagingBytes };
        var msg = nf > 0
            ? new MsgHdr { Iov = (Iovec*)scatter, IovLen = (nuint)nf, Control = control, ControlLen = 64 }
            : new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = 64 };
        nint r = RecvMsg(fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
        if (r <= 0) return r;
        uint vlan = 0;
        if (msg.ControlLen >= (nuint)(16 + sizeof(TpacketAuxdata)))
        {
            var aux = (TpacketAuxdata*)(control + 16); // one cmsghdr (16 bytes on x86_64), PACKET_AUXDATA
            if ((aux->Status & TP_STATUS_VLAN_VALID) != 0)
                vlan = ((aux->Status & TP_STATUS_VLAN_TPID_VALID) != 0 ? aux->VlanTpid : 0x8100u) << 16 | aux->VlanTci;
        }
        int got = (int)Math.Min(r, stagingBytes);
        if (nf > 0) receiver.CommitScatter(got, (int)r, vlan);
        else receiver.OnFrame(new ReadOnlySpan<byte>(staging, got), (int)r, vlan);
        return r;
    }

    private int[] _pollFds = [];

    public ReadOnlySpan<int> PollFds => _pollFds;

    // ENETDOWN after the link went down or the device went away; reading clears it.
    public void ClearPollErrors() => TakeSocketError(_rxFd);

    public long TakeKernelDrops()
    {
        TpacketStats s;
        uint len = (uint)sizeof(TpacketStats);
        return GetSockOpt(_rxFd, SOL_PACKET, PACKET_STATISTICS, &s, &len) == 0 ? s.Drops : 0; // reading resets them
    }

    // ------------------------------------------------------------------ TX

    /// <summary>
    /// The TX socket without a ring: frames are queued in our own memory and one sendmmsg()
    /// hands the whole batch over. Each frame becomes an skb with linear data, which a veth
    /// forwards as it is; a TPACKET ring's frames are page fragments the kernel must copy into
    /// fresh pages (skb_copy_ubufs) before a veth may hand them to another namespace.
    /// </summary>
    private void OpenTxBatch(PhysicalPortOptions o)
    {
        _txFd = NewSocket();
        _txVnet = TryVnetHeader(_txFd);
        if (o.QdiscBypass) Check(SetInt(_txFd, SOL_PACKET, PACKET_QDISC_BYPASS, 1), "PACKET_QDISC_BYPASS");
        if (_txVnet) OpenBigTx(o);
        long sndbuf = Math.Min(int.MaxValue / 2, 4L * _txFrameSize * _txFrames);
        if (SetInt(_txFd, SOL_SOCKET, SO_SNDBUFFORCE, (int)sndbuf) != 0) SetInt(_txFd, SOL_SOCKET, SO_SNDBUF, (int)sndbuf);
        _txBuf = (byte*)NativeMemory.AlignedAlloc((nuint)_txFrames * (nuint)_txFrameSize, 64);
        _txMsgs = (Mmsghdr*)NativeMemory.AllocZeroed((nuint)_txFrames, (nuint)sizeof(Mmsghdr));
        _txIov = (Iovec*)NativeMemory.AllocZeroed((nuint)_txFrames, (nuint)sizeof(Iovec));
        for (int i = 0; i < _txFrames; i++)
        {
            _txIov[i].Base = _txBuf + (nuint)i * (nuint)_txFrameSize;
            _txMsgs[i].Hdr.Iov = &_txIov[i];
            _txMsgs[i].Hdr.IovLen = 1;
        }
        var sll = new SockaddrLl { Family = AF_PACKET, Protocol = 0, IfIndex = InterfaceIndex };
        Check(Bind(_txFd, &sll, (uint)sizeof(SockaddrLl)), "bind of the TX socket");
    }

    private TransmitResult FlushBatch()
    {
        int count = _txQueued, sent = 0, errno = 0;
        for (int attempt = 0; sent < count && attempt < 4; attempt++)
        {
            int r = SendMmsg(_txFd, _txMsgs + sent, (uint)(count - sent), MSG_DONTWAIT);
            if (r > 0) { sent += r; attempt = -1; errno = 0; continue; } // progress: keep going
            errno = LastErrno;
            if (errno is EINTR or EAGAIN or ENOBUFS) continue;
            break; // ENETDOWN, ENXIO...: the caller counts the rest as drops
        }
        _txQueued = 0;
        if (sent == count) return TransmitResult.Ok;
        long bytes = 0;
        for (int i = sent; i < count; i++) bytes += (long)_txIov[i].Len;
        return new TransmitResult(errno == 0 ? EAGAIN : errno, count - sent, bytes);
    }

    private byte* TxFrame(int i) => _txRing + (nuint)i * (nuint)_txFrameSize;

    public Span<byte> BeginTransmit(int length)
    {
        _bigActive = false;
        if (length > RingTxCapacity && _bigTxBuf != null)
        {
            // A super-frame: the frames queued before it go first, so the order on the wire is kept.
            if (_txQueued > 0) Carry(_txViaRing ? FlushRing() : FlushBatch());
            _bigActive = true;
            return new Span<byte>(_bigTxBuf, MaxOffloadFrame);
        }
        if (!_txViaRing)
            return _txQueued < _txFrames ? new Span<byte>(_txIov[_txQueued].Base, RingTxCapacity) : default;
        byte* f = TxFrame(_txHead);
        // Acquire: the kernel's last use of the frame (AVAILABLE set by the skb destructor).
        uint st = Volatile.Read(ref *(uint*)(f + T2Status));
        if (st is TP_STATUS_SEND_REQUEST or TP_STATUS_SENDING) return default;
        return new Span<byte>(f + T2TxDataOffset, RingTxCapacity);
    }

    private void Carry(TransmitResult r)
    {
        if (!r.Failed) return;
        _carryUnsent += r.Unsent;
        _carryBytes += r.UnsentBytes;
        _carryErrno = r.Errno;
    }

    /// <summary>Sends the super-frame in <see cref="_bigTxBuf"/> at once; a failure is reported by the next <see cref="Flush"/>.</summary>
    private void SendBig(int length)
    {
        var iov = new Iovec { Base = _bigTxBuf, Len = (nuint)length };
        SendBig(&iov, 1, length);
    }

    // One sendmsg() on the super-frame socket, retried on a full socket; true when it went.
    private bool SendBig(Iovec* fragments, int count, int length)
    {
        var msg = new MsgHdr { Iov = fragments, IovLen = (nuint)count };
        int errno = 0;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            if (SendMsg(_bigFd, &msg, MSG_DONTWAIT) >= 0) return true;
            errno = LastErrno;
            if (errno is not (EINTR or EAGAIN or ENOBUFS)) break;
        }
        Carry(new TransmitResult(errno, 1, length));
        return false;
    }

    /// <summary>Frames sent straight from the switch's slots by <see cref="TransmitGather"/> (super-frames: no staging copy).</summary>
    public long SuperFramesGathered => Volatile.Read(ref _gathered);
    private long _gathered;

    public bool TransmitGather(FrameFragment* fragments, int count, int length)
    {
        if (length <= RingTxCapacity || _bigFd < 0 || (uint)length > (uint)MaxOffloadFrame) return false;
        // The frames queued before it go first, so the order on the wire is kept.
        if (_txQueued > 0) Carry(_txViaRing ? FlushRing() : FlushBatch());
        if (SendBig((Iovec*)fragments, count, length)) _gathered++;
        return true;
    }

    public void CommitTransmit(int length)
    {
        if ((uint)length > (uint)TxCapacity) throw new ArgumentOutOfRangeException(nameof(length), length, $"a TX frame holds at most {TxCapacity} bytes");
        if (_bigActive)
        {
            _bigActive = false;
            SendBig(length);
            return;
        }
        if (length > RingTxCapacity) throw new ArgumentOutOfRangeException(nameof(length), length, $"a TX frame holds at most {RingTxCapacity} bytes");
        if (!_txViaRing)
        {
            _txIov[_txQueued++].Len = (nuint)length;
            return;
        }
        byte* f = TxFrame(_txHead);
        *(uint*)(f + T2Len) = (uint)length;
        // Release: the frame bytes and length are written before the kernel can see the request.
        Volatile.Write(ref *(uint*)(f + T2Status), TP_STATUS_SEND_REQUEST);
        if (_txQueued++ == 0) _txFirstQueued = _txHead;
        _txHead = _txHead + 1 == _txFrames ? 0 : _txHead + 1;
    }

    public TransmitResult Flush()
    {
        var r = _txQueued == 0 ? TransmitResult.Ok : _txViaRing ? FlushRing() : FlushBatch();
        if (_carryUnsent == 0) return r;
        var all = new TransmitResult(r.Failed ? r.Errno : _carryErrno, r.Unsent + _carryUnsent, r.UnsentBytes + _carryBytes);
        _carryUnsent = 0; _carryBytes = 0; _carryErrno = 0;
        return all;
    }

    private TransmitResult FlushRing()
    {
        int errno = 0;
        // MSG_DONTWAIT: the kernel transmits every requested frame in this call but does not
        // wait for their completion.
        for (int attempt = 0; attempt < 2; attempt++)
        {
            if (Send(_txFd, null, 0, MSG_DONTWAIT) < 0)
            {
                errno = LastErrno;
                if (errno is EINTR or EAGAIN or ENOBUFS) continue;
                break;
            }
            errno = 0;
            // The kernel stops early, without an error, when it runs out of socket memory.
            if (!LastQueuedStillRequested()) break;
            errno = EAGAIN;
        }
        if (errno == 0)
        {
            _txQueued = 0;
            return TransmitResult.Ok;
        }
        return TakeBackUnsent(errno);
    }

    private bool LastQueuedStillRequested()
    {
        int last = _txHead == 0 ? _txFrames - 1 : _txHead - 1;
        return Volatile.Read(ref *(uint*)(TxFrame(last) + T2Status)) == TP_STATUS_SEND_REQUEST;
    }

    /// <summary>
    /// After a failed kick: frames the kernel took are a prefix of the queue (it sends in
    /// order); the rest are still SEND_REQUEST. Give those back and rewind to the first of them,
    /// which is where the kernel's own ring index stopped. Only the thread that transmits calls
    /// send() on this socket, so the kernel is not looking at them now.
    /// </summary>
    private TransmitResult TakeBackUnsent(int errno)
    {
        int i = _txFirstQueued, firstUnsent = -1, unsent = 0;
        long bytes = 0;
        for (int k = 0; k < _txQueued; k++)
        {
            byte* f = TxFrame(i);
            if (Volatile.Read(ref *(uint*)(f + T2Status)) == TP_STATUS_SEND_REQUEST)
            {
                if (firstUnsent < 0) firstUnsent = i;
                unsent++;
                bytes += *(uint*)(f + T2Len);
                Volatile.Write(ref *(uint*)(f + T2Status), TP_STATUS_AVAILABLE);
            }
            i = i + 1 == _txFrames ? 0 : i + 1;
        }
        if (firstUnsent >= 0) _txHead = firstUnsent;
        _txQueued = 0;
        return new TransmitResult(errno, unsent, bytes);
    }

    // ------------------------------------------------------------------ link

    private readonly InterfaceLink _linkQuery = new(); // link checks; closed by Dispose

    public LinkState QueryLink()
    {
        var state = _linkQuery.Query(InterfaceName, InterfaceIndex, out int mtu);
        if (mtu > 0) _mtu = mtu;
        return state;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _linkQuery.Dispose();
        if (_promisc && _rxFd >= 0)
        {
            // Closing the socket would drop it too; explicit, so a leak of the fd cannot keep it.
            // Fails harmlessly when the interface is already gone.
            var mreq = new PacketMreq { IfIndex = InterfaceIndex, Type = PACKET_MR_PROMISC };
            SetSockOpt(_rxFd, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &mreq, (uint)sizeof(PacketMreq));
        }
        _offloads.Restore(InterfaceName, InterfaceIndex);
        if (_rxRing != null) Native.Munmap((nint)_rxRing, _rxRingBytes);
        if (_txRing != null) Native.Munmap((nint)_txRing, _txRingBytes);
        _rxRing = _txRing = null;
        if (_bigBuf != null) NativeMemory.AlignedFree(_bigBuf);
        _bigBuf = null;
        if (_txBuf != null) NativeMemory.AlignedFree(_txBuf);
        if (_bigTxBuf != null) NativeMemory.AlignedFree(_bigTxBuf);
        _bigTxBuf = null;
        if (_txMsgs != null) NativeMemory.Free(_txMsgs);
        if (_txIov != null) NativeMemory.Free(_txIov);
        _txBuf = null; _txMsgs = null; _txIov = null;
        if (_rxFd >= 0) Native.Close(_rxFd);
        _beacon?.Dispose();
        _beacon = null;
        if (_txFd >= 0) Native.Close(_txFd);
        if (_bigFd >= 0) Native.Close(_bigFd);
        _rxFd = _txFd = _bigFd = -1;
    }
}
