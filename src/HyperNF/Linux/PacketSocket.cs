using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace HyperNF.Linux;

/// <summary>
/// The system calls, constants and kernel structures a physical port needs: AF_PACKET sockets
/// and their mmap rings (linux/if_packet.h), poll, eventfd and the interface ioctls
/// (SIOCGIFINDEX, SIOCGIFMTU, SIOCGIFFLAGS). Thin <c>LibraryImport</c>s like
/// <see cref="Native"/>; x86_64 Linux values.
/// </summary>
internal static unsafe partial class PacketSocket
{
    private const string Libc = "libc";

    // ---- socket families, types, levels
    public const int AF_INET = 2;
    public const int AF_PACKET = 17;
    public const int SOCK_DGRAM = 2;
    public const int SOCK_RAW = 3;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int SOL_SOCKET = 1;
    public const int SOL_PACKET = 263;
    public const ushort ETH_P_ALL = 0x0003;

    // ---- SOL_SOCKET options
    public const int SO_ERROR = 4;
    public const int SO_SNDBUF = 7;
    public const int SO_RCVBUF = 8;
    public const int SO_SNDBUFFORCE = 32;
    public const int SO_RCVBUFFORCE = 33;

    // ---- SOL_PACKET options
    public const int PACKET_ADD_MEMBERSHIP = 1;
    public const int PACKET_DROP_MEMBERSHIP = 2;
    public const int PACKET_RX_RING = 5;
    public const int PACKET_STATISTICS = 6;
    public const int PACKET_VERSION = 10;
    public const int PACKET_COPY_THRESH = 7;
    public const int PACKET_AUXDATA = 8;
    public const int PACKET_RESERVE = 12;
    public const int PACKET_TX_RING = 13;
    public const int PACKET_LOSS = 14;
    public const int PACKET_VNET_HDR = 15;
    public const int PACKET_QDISC_BYPASS = 20;
    public const int PACKET_IGNORE_OUTGOING = 23;
    public const ushort PACKET_MR_PROMISC = 1;

    public const int TPACKET_V2 = 1;
    public const int TPACKET_V3 = 2;

    // ---- tp_status / block_status bits
    public const uint TP_STATUS_KERNEL = 0;
    public const uint TP_STATUS_USER = 1;
    public const uint TP_STATUS_COPY = 1 << 1;
    public const uint TP_STATUS_LOSING = 1 << 2;
    public const uint TP_STATUS_CSUMNOTREADY = 1 << 3;
    public const uint TP_STATUS_VLAN_VALID = 1 << 4;
    public const uint TP_STATUS_VLAN_TPID_VALID = 1 << 6;
    public const uint TP_STATUS_AVAILABLE = 0;
    public const uint TP_STATUS_SEND_REQUEST = 1;
    public const uint TP_STATUS_SENDING = 2;
    public const uint TP_STATUS_WRONG_FORMAT = 4;

    /// <summary>sll_pkttype of frames the host itself sent on the interface.</summary>
    public const byte PACKET_OUTGOING = 4;

    // ---- struct layouts (offsets in bytes)
    public const int SockaddrLlSize = 20;
    /// <summary>struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1.</summary>
    public const int BlockStatus = 8, BlockNumPkts = 12, BlockFirstPkt = 16;
    /// <summary>struct tpacket3_hdr (48 bytes), followed by the sockaddr_ll.</summary>
    public const int T3NextOffset = 0, T3SnapLen = 12, T3Len = 16, T3Status = 20, T3Mac = 24,
        T3VlanTci = 32, T3VlanTpid = 36, T3HeaderSize = 48;
    /// <summary>struct tpacket2_hdr (32 bytes), followed by the sockaddr_ll on receive; a TX frame's data starts right after it.</summary>
    public const int T2Status = 0, T2Len = 4, T2SnapLen = 8, T2Mac = 12, T2VlanTci = 24, T2VlanTpid = 26, T2HeaderSize = 32, T2SllOffset = 32;
    /// <summary>Where the kernel reads a TX frame's data: TPACKET2_HDRLEN - sizeof(sockaddr_ll).</summary>
    public const int T2TxDataOffset = 32;
    public const int SllPktType = 10;

    // ---- poll
    public const short POLLIN = 0x001;
    public const short POLLERR = 0x008;
    public const short POLLHUP = 0x010;
    public const short POLLNVAL = 0x020;

    // ---- send flags, errno values
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_PEEK = 0x02;
    public const int MSG_TRUNC = 0x20;
    public const int EPERM = 1, EINTR = 4, ENXIO = 6, EBADF = 9, EAGAIN = 11, EACCES = 13, EBUSY = 16, ENODEV = 19, EINVAL = 22,
        EMSGSIZE = 90, ENETDOWN = 100, ENOBUFS = 105;

    // ---- interface ioctls and flags
    public const ulong SIOCGIFFLAGS = 0x8913;
    public const ulong SIOCSIFFLAGS = 0x8914;
    public const ulong SIOCGIFMTU = 0x8921;
    public const ulong SIOCGIFINDEX = 0x8933;
    public const int IFF_UP = 0x1;
    public const int IFF_RUNNING = 0x40;
    public const int IFF_PROMISC = 0x100;
    public const int IfNameSize = 16; // IFNAMSIZ

    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;

    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrLl
    {
        public ushort Family;
        public ushort Protocol; // network byte order
        public int IfIndex;
        public ushort HaType;
        public byte PktType;
        public byte HaLen;
        public ulong Addr;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Iovec
    {
        public byte* Base;
        public nuint Len;
    }

    /// <summary>struct msghdr (x86_64: 56 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public Iovec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    /// <summary>struct mmsghdr: a message and the bytes sendmmsg() sent of it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Mmsghdr
    {
        public MsgHdr Hdr;
        public uint Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TpacketReq
    {
        public uint BlockSize, BlockNr, FrameSize, FrameNr;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TpacketReq3
    {
        public uint BlockSize, BlockNr, FrameSize, FrameNr, RetireBlockTimeoutMs, SizeofPriv, FeatureReqWord;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PacketMreq
    {
        public int IfIndex;
        public ushort Type;
        public ushort ALen;
        public ulong Address;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TpacketStats
    {
        public uint Packets, Drops;
    }

    /// <summary>struct tpacket_auxdata: the PACKET_AUXDATA control message.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TpacketAuxdata
    {
        public uint Status, Len, SnapLen;
        public ushort Mac, Net, VlanTci, VlanTpid;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TpacketStatsV3
    {
        public uint Packets, Drops, FreezeQueueCount;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    /// <summary>struct ifreq: the name, then a 24-byte union (ifindex, mtu, flags all at offset 16).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    public struct IfReq
    {
        [FieldOffset(0)] public fixed byte Name[IfNameSize];
        [FieldOffset(16)] public int Value;
        [FieldOffset(16)] public void* Data;
    }

    // ---- ethtool (linux/ethtool.h): the legacy get/set commands on struct ethtool_value
    public const ulong SIOCETHTOOL = 0x8946;
    public const uint ETHTOOL_GFLAGS = 0x25, ETHTOOL_SFLAGS = 0x26, ETHTOOL_GGRO = 0x2b, ETHTOOL_SGRO = 0x2c;
    public const uint ETH_FLAG_LRO = 1 << 15;

    /// <summary>
    /// One ethtool command with a struct ethtool_value {cmd, data}: reads <paramref name="data"/>
    /// for a get, writes it for a set. Returns 0 or the errno.
    /// </summary>
    public static int Ethtool(string ifName, uint cmd, ref uint data)
    {
        byte[] name = Encoding.UTF8.GetBytes(ifName);
        if (name.Length == 0 || name.Length >= IfNameSize) return ENODEV;
        int fd = Socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return LastErrno;
        try
        {
            uint* value = stackalloc uint[2];
            value[0] = cmd;
            value[1] = data;
            IfReq req = default;
            for (int i = 0; i < name.Length; i++) req.Name[i] = name[i];
            req.Data = value;
            if (Ioctl(fd, SIOCETHTOOL, &req) != 0) return LastErrno;
            data = value[1];
            return 0;
        }
        finally
        {
            Native.Close(fd);
        }
    }

    /// <summary>The interface's driver name (ETHTOOL_GDRVINFO: "veth", "virtio_net", ...), or null when it cannot be read.</summary>
    public static string? EthtoolDriver(string ifName)
    {
        byte[] name = Encoding.UTF8.GetBytes(ifName);
        if (name.Length == 0 || name.Length >= IfNameSize) return null;
        int fd = Socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return null;
        try
        {
            byte* info = stackalloc byte[196]; // struct ethtool_drvinfo: cmd, driver[32], ...
            new Span<byte>(info, 196).Clear();
            *(uint*)info = 3; // ETHTOOL_GDRVINFO
            IfReq req = default;
            for (int i = 0; i < name.Length; i++) req.Name[i] = name[i];
            req.Data = info;
            if (Ioctl(fd, SIOCETHTOOL, &req) != 0) return null;
            return Marshal.PtrToStringUTF8((nint)(info + 4));
        }
        finally
        {
            Native.Close(fd);
        }
    }

    [LibraryImport(Libc, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Libc, EntryPoint = "bind", SetLastError = true)]
    public static partial int Bind(int fd, SockaddrLl* addr, uint addrLen);

    [LibraryImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    public static partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    public static partial int GetSockOpt(int fd, int level, int name, void* value, uint* length);

    [LibraryImport(Libc, EntryPoint = "send", SetLastError = true)]
    public static partial nint Send(int fd, void* buffer, nuint length, int flags);

    [LibraryImport(Libc, EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Libc, EntryPoint = "recvmsg", SetLastError = true)]
    public static partial nint RecvMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Libc, EntryPoint = "sendmmsg", SetLastError = true)]
    public static partial int SendMmsg(int fd, Mmsghdr* messages, uint count, int flags);

    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    public static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    // ioctl(2) is variadic; the third argument is a pointer, passed in the same register either way.
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, ulong request, void* arg);

    /// <summary>The index of interface <paramref name="name"/> in the calling thread's network namespace, or 0 when there is none.</summary>
    [LibraryImport(Libc, EntryPoint = "if_nametoindex", StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint IfNameToIndex(string name);

    [LibraryImport(Libc, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initial, int flags);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buffer, nuint count);

    public static int LastErrno => Marshal.GetLastPInvokeError();

    public static string ErrnoText(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";

    public static ushort HostToNetwork(ushort v) => BinaryPrimitives.ReverseEndianness(v);

    public static int SetInt(int fd, int level, int name, int value) => SetSockOpt(fd, level, name, &value, sizeof(int));

    /// <summary>Reads and clears the socket's pending error (SO_ERROR); 0 when there is none.</summary>
    public static int TakeSocketError(int fd)
    {
        int err = 0;
        uint len = sizeof(int);
        return GetSockOpt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : LastErrno;
    }

    /// <summary>
    /// One interface ioctl by name on a throw-away AF_INET socket (needs no privilege). Returns
    /// 0 and the union's int, or the errno (ENODEV: no such interface).
    /// </summary>
    public static int InterfaceQuery(string ifName, ulong request, out int value)
    {
        value = 0;
        int fd = Socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return LastErrno;
        try
        {
            return InterfaceQuery(fd, ifName, request, out value);
        }
        finally
        {
            Native.Close(fd);
        }
    }

    /// <summary>
    /// The same ioctl on a socket the caller keeps (any socket: the kernel answers interface
    /// requests in the socket's network namespace), for queries made again and again.
    /// </summary>
    public static int InterfaceQuery(int fd, string ifName, ulong request, out int value)
    {
        value = 0;
        int n = Encoding.UTF8.GetByteCount(ifName);
        if (n == 0 || n >= IfNameSize) return ENODEV;
        IfReq req = default;
        Encoding.UTF8.GetBytes(ifName, new Span<byte>(req.Name, IfNameSize - 1)); // the rest stays 0: the terminator
        if (Ioctl(fd, request, &req) != 0) return LastErrno;
        value = request == SIOCGIFFLAGS ? (ushort)req.Value : req.Value; // ifr_flags is a short
        return 0;
    }

    /// <summary>Sets interface flags (SIOCSIFFLAGS, needs CAP_NET_ADMIN). Returns 0 or the errno.</summary>
    public static int SetInterfaceFlags(string ifName, int flags)
    {
        byte[] name = Encoding.UTF8.GetBytes(ifName);
        if (name.Length == 0 || name.Length >= IfNameSize) return ENODEV;
        int fd = Socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return LastErrno;
        try
        {
            IfReq req = default;
            for (int i = 0; i < name.Length; i++) req.Name[i] = name[i];
            req.Value = (ushort)flags; // ifr_flags is a short
            return Ioctl(fd, SIOCSIFFLAGS, &req) != 0 ? LastErrno : 0;
        }
        finally
        {
            Native.Close(fd);
        }
    }

    /// <summary>Sleeps until <paramref name="fd"/> is readable or the timeout passes; drains it when it is an eventfd.</summary>
    public static void WaitEventFd(int fd, int timeoutMs)
    {
        PollFd p = new() { Fd = fd, Events = POLLIN };
        if (Poll(&p, 1, timeoutMs) > 0 && (p.REvents & POLLIN) != 0) DrainEventFd(fd);
    }

    /// <summary>Reads a nonblocking eventfd's counter, which resets it.</summary>
    public static void DrainEventFd(int fd)
    {
        ulong v;
        Read(fd, &v, sizeof(ulong));
    }

    /// <summary>Adds one to an eventfd (wakes a poller).</summary>
    public static void SignalEventFd(int fd)
    {
        ulong one = 1;
        Write(fd, &one, sizeof(ulong));
    }
}
