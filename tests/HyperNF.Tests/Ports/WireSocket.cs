using System.Buffers.Binary;
using System.Runtime.InteropServices;
using HyperNF.Linux;
using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The far end of a lab veth as a test instrument: a plain AF_PACKET SOCK_RAW socket bound to
/// the interface inside its network namespace (opened by a short-lived thread that enters the
/// namespace with setns; the socket stays there). It injects frames onto the wire towards the
/// attached port and captures the frames the port transmits, with VLAN tags the kernel strips
/// on receive put back from PACKET_AUXDATA, so a captured frame is byte for byte what was on
/// the wire. Independent of the code under test (no rings, no AfPacketBackend).
/// Frames the socket itself sends are not captured (PACKET_IGNORE_OUTGOING).
/// </summary>
public sealed unsafe partial class WireSocket : IDisposable
{
    private const int PACKET_AUXDATA = 8;
    private const int MSG_TRUNC = 0x20;
    private const int MaxFrame = 65536 + 4;

    private readonly byte[] _buffer = new byte[MaxFrame];
    private int _fd;
    private long _kernelDrops;

    public string Namespace { get; }
    public string Interface { get; }
    /// <summary>Bytes of virtio-net header in front of every frame sent and received (PACKET_VNET_HDR), or 0.</summary>
    public int HeaderLength { get; }

    private WireSocket(string ns, string ifName, int fd, int headerLength)
    {
        Namespace = ns;
        Interface = ifName;
        _fd = fd;
        HeaderLength = headerLength;
    }

    /// <summary>Opens the socket on <paramref name="ifName"/> inside namespace <paramref name="ns"/>.</summary>
    /// <param name="vnetHeader">Frames go and come with a 10-byte virtio-net header (PACKET_VNET_HDR): GSO super-frames and partial checksums can be injected and seen.</param>
    public static WireSocket Open(string ns, string ifName, int receiveBufferBytes = 64 * 1024 * 1024, bool vnetHeader = false)
    {
        int fd = -1;
        Exception? error = null;
        var t = new Thread(() =>
        {
            try
            {
                using (NetNamespace.Enter(ns))
                {
                    int err = InterfaceQuery(ifName, SIOCGIFINDEX, out int ifIndex);
                    if (err != 0) throw new IOException($"no interface '{ifName}' in namespace {ns}: {ErrnoText(err)}");
                    fd = Socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, HostToNetwork(ETH_P_ALL));
                    if (fd < 0) throw new IOException($"socket(AF_PACKET) in {ns}: {ErrnoText(LastErrno)}");
                    SetInt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
                    if (vnetHeader && SetInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1) != 0) throw new IOException($"PACKET_VNET_HDR: {ErrnoText(LastErrno)}");
                    SetInt(fd, SOL_PACKET, PACKET_AUXDATA, 1);
                    if (SetInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, receiveBufferBytes) != 0)
                        throw new IOException($"SO_RCVBUFFORCE: {ErrnoText(LastErrno)}");
                    SetInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, 4 * 1024 * 1024);
                    var sll = new SockaddrLl { Family = AF_PACKET, Protocol = HostToNetwork(ETH_P_ALL), IfIndex = ifIndex };
                    if (Bind(fd, &sll, (uint)sizeof(SockaddrLl)) != 0) throw new IOException($"bind to {ifName} in {ns}: {ErrnoText(LastErrno)}");
                }
            }
            catch (Exception e)
            {
                error = e;
                if (fd >= 0) Native.Close(fd);
                fd = -1;
            }
        }) { IsBackground = true, Name = "wire-socket-open" };
        t.Start();
        t.Join();
        if (error is not null) throw new InvalidOperationException($"opening a packet socket on {ns}/{ifName}: {error.Message}", error);
        return new WireSocket(ns, ifName, fd, vnetHeader ? 10 : 0);
    }

    /// <summary>Puts one frame on the wire (it arrives at the other end of the veth: the attached interface).</summary>
    public void Send(ReadOnlySpan<byte> frame)
    {
        fixed (byte* p = frame)
        {
            nint n = PacketSocket.Send(_fd, p, (nuint)frame.Length, 0);
            if (n != frame.Length) throw new IOException($"send of a {frame.Length}-byte frame on {Namespace}/{Interface}: {(n < 0 ? ErrnoText(LastErrno) : $"sent {n}")}");
        }
    }

    /// <summary>
    /// The next frame from the wire, as it was on the wire (a VLAN tag the kernel stripped is
    /// put back), or null when none arrives within <paramref name="timeoutMs"/>.
    /// </summary>
    public byte[]? Receive(int timeoutMs)
    {
        int n = ReceiveInto(_buffer, timeoutMs);
        return n < 0 ? null : _buffer.AsSpan(0, n).ToArray();
    }

    /// <summary>
    /// The next frame of the tests' own ethertype (<see cref="TestFrames.EtherType"/>, possibly
    /// VLAN-tagged) from the wire, skipping the namespace's own traffic (ARP, IP), or null after
    /// <paramref name="timeoutMs"/>.
    /// </summary>
    public byte[]? NextTestFrame(int timeoutMs)
    {
        long until = Environment.TickCount64 + timeoutMs;
        while (Environment.TickCount64 < until)
        {
            var f = Receive((int)Math.Max(1, until - Environment.TickCount64));
            if (f is null) return null;
            if (IsTestFrame(f)) return f;
        }
        return null;
    }

    /// <summary>Whether <paramref name="f"/> has the tests' ethertype (after one VLAN tag, if any).</summary>
    public static bool IsTestFrame(ReadOnlySpan<byte> f)
    {
        if (f.Length < 14) return false;
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(f[12..]);
        if (type is 0x8100 or 0x88A8 && f.Length >= 18) type = BinaryPrimitives.ReadUInt16BigEndian(f[16..]);
        return type == TestFrames.EtherType;
    }

    /// <summary>Like <see cref="Receive"/> into a buffer of at least 65540 bytes; returns the length or -1.</summary>
    public int ReceiveInto(byte[] buffer, int timeoutMs)
    {
        if (buffer.Length < MaxFrame) throw new ArgumentException("the buffer must hold 65540 bytes", nameof(buffer));
        long until = Environment.TickCount64 + timeoutMs;
        byte* control = stackalloc byte[128];
        while (true)
        {
            var pfd = new PollFd { Fd = _fd, Events = POLLIN };
            int left = (int)Math.Max(0, until - Environment.TickCount64);
            int r = Poll(&pfd, 1, left);
            if (r == 0) return -1;
            if (r < 0)
            {
                if (LastErrno == EINTR) continue;
                throw new IOException($"poll on {Namespace}/{Interface}: {ErrnoText(LastErrno)}");
            }
            fixed (byte* b = buffer)
            {
                // Leave room in front for a tag the kernel took off.
                var iov = new IoVec { Base = b + 4, Length = (nuint)(buffer.Length - 4) };
                var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = 128 };
                nint n = RecvMsg(_fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0)
                {
                    int err = LastErrno;
                    // ENETDOWN: the interface went down since the last call (reported once, then cleared).
                    if (err is EAGAIN or EINTR or ENETDOWN) continue;
                    throw new IOException($"recvmsg on {Namespace}/{Interface}: {ErrnoText(err)}");
                }
                if (n > buffer.Length - 4) throw new IOException($"a {n}-byte frame does not fit the capture buffer");
                uint vlan = VlanFromAuxData(control, msg.ControlLen);
                int h = HeaderLength;
                if (vlan == 0 || n < h + 12)
                {
                    buffer.AsSpan(4, (int)n).CopyTo(buffer);
                    return (int)n;
                }
                // header, dst and src move 4 bytes forward; the tag goes where they were followed.
                buffer.AsSpan(4, h + 12).CopyTo(buffer);
                BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(h + 12), vlan);
                if (h > 0)
                {
                    // The kernel counts the header's offsets without the tag it took off.
                    if ((buffer[0] & 1) != 0) BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(6), (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(6)) + 4));
                    ushort hl = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(2));
                    if (hl != 0) BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2), (ushort)(hl + 4));
                }
                return (int)n + 4;
            }
        }
    }

    private static uint VlanFromAuxData(byte* control, nuint length)
    {
        byte* p = control;
        byte* end = control + length;
        while (p + sizeof(CmsgHdr) <= end)
        {
            var h = (CmsgHdr*)p;
            if (h->Len < (nuint)sizeof(CmsgHdr)) break;
            if (h->Level == SOL_PACKET && h->Type == PACKET_AUXDATA)
            {
                var aux = (TpacketAuxdata*)(p + sizeof(CmsgHdr));
                if ((aux->Status & TP_STATUS_VLAN_VALID) == 0) return 0;
                uint tpid = (aux->Status & TP_STATUS_VLAN_TPID_VALID) != 0 ? aux->VlanTpid : 0x8100u;
                return tpid << 16 | aux->VlanTci;
            }
            p += (h->Len + 7) & ~(nuint)7;
        }
        return 0;
    }

    /// <summary>Frames the kernel dropped because this socket's receive buffer was full (PACKET_STATISTICS), since it was opened.</summary>
    public long KernelDrops
    {
        get
        {
            TpacketStats s;
            uint len = (uint)sizeof(TpacketStats);
            if (GetSockOpt(_fd, SOL_PACKET, PACKET_STATISTICS, &s, &len) == 0) _kernelDrops += s.Drops; // reading resets them
            return _kernelDrops;
        }
    }

    public void Dispose()
    {
        if (_fd >= 0) Native.Close(_fd);
        _fd = -1;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CmsgHdr
    {
        public nuint Len;
        public int Level;
        public int Type;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TpacketAuxdata
    {
        public uint Status, Len, SnapLen;
        public ushort Mac, Net, VlanTci, VlanTpid;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct TpacketStats
    {
        public uint Packets, Drops;
    }

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    private static partial nint RecvMsg(int fd, MsgHdr* msg, int flags);
}
