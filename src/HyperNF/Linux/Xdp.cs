using System.Runtime.InteropServices;
using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Linux;

/// <summary>
/// AF_XDP sockets (linux/if_xdp.h) and the three bpf(2) commands needed to steer an
/// interface's frames into them: create an XSKMAP, load a five-instruction XDP program that
/// redirects every frame of queue <c>q</c> to the socket in slot <c>q</c>, and attach it with a
/// BPF link (detached by the kernel when the link's fd is closed, so a crash of the host leaves
/// no program behind). No libbpf: the program is written here as bytecode.
/// </summary>
internal static unsafe partial class Xdp
{
    public const int AF_XDP = 44;
    public const int SOL_XDP = 283;

    // setsockopt/getsockopt names
    public const int XDP_MMAP_OFFSETS = 1;
    public const int XDP_RX_RING = 2;
    public const int XDP_TX_RING = 3;
    public const int XDP_UMEM_REG = 4;
    public const int XDP_UMEM_FILL_RING = 5;
    public const int XDP_UMEM_COMPLETION_RING = 6;
    public const int XDP_STATISTICS = 7;
    public const int XDP_OPTIONS = 8;
    public const int XDP_MAX_TX_SKB_BUDGET = 9; // Linux 6.16+; best effort
    public const uint XDP_OPTIONS_ZEROCOPY = 1;

    // bind flags
    public const ushort XDP_COPY = 1 << 1;
    public const ushort XDP_ZEROCOPY = 1 << 2;

    // mmap offsets of the four rings
    public const long XDP_PGOFF_RX_RING = 0;
    public const long XDP_PGOFF_TX_RING = 0x80000000;
    public const long XDP_UMEM_PGOFF_FILL_RING = 0x100000000;
    public const long XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000;

    // the headroom the kernel keeps in front of each received frame (XDP_PACKET_HEADROOM)
    public const int XdpPacketHeadroom = 256;

    [StructLayout(LayoutKind.Sequential)]
    public struct UmemReg
    {
        public ulong Addr, Len;
        public uint ChunkSize, Headroom, Flags, TxMetadataLen;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct RingOffset
    {
        public ulong Producer, Consumer, Desc, Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MmapOffsets
    {
        public RingOffset Rx, Tx, Fill, Completion;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrXdp
    {
        public ushort Family, Flags;
        public uint IfIndex, QueueId, SharedUmemFd;
    }

    /// <summary>struct xdp_desc: one frame in the RX or TX ring.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Desc
    {
        public ulong Addr;
        public uint Len, Options;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Statistics
    {
        public ulong RxDropped, RxInvalidDescs, TxInvalidDescs, RxRingFull, RxFillRingEmptyDescs, TxRingEmptyDescs;
    }

    [LibraryImport("libc", EntryPoint = "bind", SetLastError = true)]
    public static partial int Bind(int fd, SockaddrXdp* addr, uint addrLen);

    [LibraryImport("libc", EntryPoint = "sendto", SetLastError = true)]
    public static partial nint SendTo(int fd, void* buffer, nuint length, int flags, void* addr, uint addrLen);

    [LibraryImport("libc", EntryPoint = "recvfrom", SetLastError = true)]
    public static partial nint RecvFrom(int fd, void* buffer, nuint length, int flags, void* addr, uint* addrLen);

    // ------------------------------------------------------------------ bpf(2)

    private const long SYS_bpf = 321; // x86_64
    private const int BPF_MAP_CREATE = 0, BPF_MAP_UPDATE_ELEM = 2, BPF_MAP_DELETE_ELEM = 3, BPF_PROG_LOAD = 5, BPF_LINK_CREATE = 28;
    private const uint BPF_MAP_TYPE_XSKMAP = 17, BPF_PROG_TYPE_XDP = 6, BPF_XDP = 37;
    public const uint XDP_FLAGS_SKB_MODE = 1 << 1, XDP_FLAGS_DRV_MODE = 1 << 2;

    internal static int Bpf(int cmd, void* attr, int size)
    {
        long r = Native.Syscall(SYS_bpf, cmd, (nint)attr, size, 0, 0, 0);
        return (int)r;
    }

    /// <summary>An XSKMAP with <paramref name="entries"/> slots (one per queue), or throws.</summary>
    public static int CreateXskMap(int entries, string ifName)
    {
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = BPF_MAP_TYPE_XSKMAP;
        *(uint*)(attr + 4) = 4;  // key: the queue index
        *(uint*)(attr + 8) = 4;  // value: the socket's fd
        *(uint*)(attr + 12) = (uint)entries;
        WriteName(attr + 28, "hnf_xsks"); // map_name follows map_flags, inner_map_fd, numa_node
        int fd = Bpf(BPF_MAP_CREATE, attr, 128);
        if (fd < 0) throw BpfError("creating the XSKMAP", ifName);
        return fd;
    }

    /// <summary>
    /// A BPF array map of one <paramref name="valueBytes"/>-byte value (BPF_F_MMAPABLE when
    /// <paramref name="mmapable"/>: mmap at offset 0 gives the value); its fd, or -1 with errno set.
    /// </summary>
    public static int CreateArrayMap(int valueBytes, bool mmapable, string name)
    {
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = 2;                 // BPF_MAP_TYPE_ARRAY
        *(uint*)(attr + 4) = 4;                 // key: u32 index
        *(uint*)(attr + 8) = (uint)valueBytes;
        *(uint*)(attr + 12) = 1;                // one entry
        *(uint*)(attr + 16) = mmapable ? 1u << 10 : 0; // BPF_F_MMAPABLE
        WriteName(attr + 28, name);
        return Bpf(BPF_MAP_CREATE, attr, 128);
    }

    /// <summary>Puts socket <paramref name="xskFd"/> in slot <paramref name="queue"/> of the map.</summary>
    public static int MapUpdate(int mapFd, int queue, int xskFd)
    {
        byte* attr = stackalloc byte[32];
        new Span<byte>(attr, 32).Clear();
        *(uint*)(attr + 0) = (uint)mapFd;
        *(ulong*)(attr + 8) = (ulong)&queue;
        *(ulong*)(attr + 16) = (ulong)&xskFd;
        return Bpf(BPF_MAP_UPDATE_ELEM, attr, 32) < 0 ? LastErrno : 0;
    }

    public static void MapDelete(int mapFd, int queue)
    {
        byte* attr = stackalloc byte[32];
        new Span<byte>(attr, 32).Clear();
        *(uint*)(attr + 0) = (uint)mapFd;
        *(ulong*)(attr + 8) = (ulong)&queue;
        Bpf(BPF_MAP_DELETE_ELEM, attr, 32);
    }

    /// <summary>
    /// Loads the redirect program:
    /// <code>
    ///   r2 = ctx->rx_queue_index          ; ldxw r2, [r1+16]
    ///   r1 = &amp;xskmap                     ; lddw r1, map_fd (BPF_PSEUDO_MAP_FD)
    ///   r3 = XDP_PASS                     ; the action when slot r2 holds no socket
    ///   return bpf_redirect_map(r1, r2, r3)
    /// </code>
    /// Frames of a queue without a socket go to the kernel stack as if nothing were attached.
    ///
    /// <para>With <paramref name="orderMapFd"/> (an <see cref="XdpPassOrder"/>'s map: generic mode
    /// with super-frames) the program is loaded with BPF_F_XDP_HAS_FRAGS (it accepts frames in
    /// several buffers, so generic XDP does not have to linearise a GSO super-frame for it) and
    /// first checks the frame's whole length (bpf_xdp_get_buff_len): a frame longer than the
    /// map's <c>pass_above</c> (a super-frame, which an AF_XDP descriptor cannot describe: no GSO
    /// size, no partial checksum) goes on to the stack, where a packet socket takes it with its
    /// virtio-net header.</para>
    ///
    /// <para>The two paths keep the order frames arrived in: the program counts every frame it passes to the
    /// stack (<c>lock passed += 1</c>), and while the packet socket holds frames the reader has
    /// not taken (<c>passed != taken</c>) it passes every frame, small ones too, so that none
    /// overtakes a super-frame queued before it (RFS's rule: a flow changes queue only once the
    /// old queue has drained past it):</para>
    /// <code>
    ///   r7 = &amp;order                          ; lddw, BPF_PSEUDO_MAP_VALUE
    ///   if bpf_xdp_get_buff_len(ctx) &gt; order.pass_above goto pass   ; set by us, follows the MTU
    ///   if order.passed != order.taken goto pass
    ///   r0 = bpf_redirect_map(&amp;xskmap, ctx-&gt;rx_queue_index, XDP_PASS)
    ///   if r0 != XDP_PASS goto out            ; redirected (a queue without a socket passes)
    /// pass:
    ///   lock order.passed += 1
    ///   r0 = XDP_PASS
    /// out:
    ///   return r0
    /// </code>
    /// </summary>
    public static int LoadRedirectProgram(int mapFd, string ifName, out string verifierLog, int cpuMapFd = -1, int orderMapFd = -1)
    {
        ulong* insns = stackalloc ulong[32];
        int n = 0;
        int ctx = 1;
        if (cpuMapFd >= 0)
        {
            // The CPU the frame arrived on (the sender's, for a veth), as CpuBeacon's socket filter
            // records it: u32 CPU + 1 at offset 0 of the beacon's map, written only when it changes.
            insns[n++] = Insn(0xbf, 6, 1, 0, 0);            // r6 = r1 (ctx; r1-r5 die in calls)
            n += CpuBeacon.EmitRecordCpu(insns + n, cpuMapFd);
            insns[n++] = Insn(0xbf, 1, 6, 0, 0);            // r1 = r6
            ctx = 6;
        }
        if (orderMapFd >= 0)
        {
            insns[n++] = Insn(0xbf, 6, 1, 0, 0);            // r6 = r1 (ctx)
            insns[n++] = Insn(0x18, 7, BPF_PSEUDO_MAP_VALUE, 0, orderMapFd); // r7 = &order
            insns[n++] = Insn(0x00, 0, 0, 0, 0);            //   (second half: offset 0)
            insns[n++] = Insn(0x85, 0, 0, 0, 188);          // call bpf_xdp_get_buff_len(ctx)
            insns[n++] = Insn(0x79, 1, 7, XdpPassOrder.PassAboveOffset, 0); // r1 = order.pass_above (follows the MTU)
            insns[n++] = Insn(0x2d, 0, 1, 9, 0);            // BPF_JMP | BPF_JGT | BPF_X: if r0 > r1 goto pass (+9)
            insns[n++] = Insn(0x79, 1, 7, XdpPassOrder.PassedOffset, 0); // BPF_LDX | BPF_MEM | BPF_DW: r1 = order.passed
            insns[n++] = Insn(0x79, 2, 7, XdpPassOrder.TakenOffset, 0);  // r2 = order.taken
            insns[n++] = Insn(0x5d, 1, 2, 6, 0);            // BPF_JMP | BPF_JNE | BPF_X: if r1 != r2 goto pass (+6)
            insns[n++] = Insn(0x61, 2, 6, 16, 0);           // r2 = ctx->rx_queue_index
            insns[n++] = Insn(0x18, 1, 1, 0, mapFd);        // r1 = &xskmap
            insns[n++] = Insn(0x00, 0, 0, 0, 0);
            insns[n++] = Insn(0xb7, 3, 0, 0, 2);            // r3 = XDP_PASS
            insns[n++] = Insn(0x85, 0, 0, 0, 51);           // call bpf_redirect_map
            insns[n++] = Insn(0x55, 0, 0, 3, 2);            // BPF_JMP | BPF_JNE | BPF_K: if r0 != XDP_PASS goto out (+3)
            insns[n++] = Insn(0xb7, 1, 0, 0, 1);            // pass: r1 = 1
            insns[n++] = Insn(0xdb, 7, 1, XdpPassOrder.PassedOffset, 0); // BPF_STX | BPF_ATOMIC | BPF_DW, BPF_ADD: lock order.passed += r1
            insns[n++] = Insn(0xb7, 0, 0, 0, 2);            // r0 = XDP_PASS
            insns[n++] = Insn(0x95, 0, 0, 0, 0);            // out: exit
            return LoadXdp(insns, n, ifName, out verifierLog, frags: true, "hnf_xsk_redir_o");
        }
        insns[n++] = Insn(0x61, 2, ctx, 16, 0);             // BPF_LDX | BPF_MEM | BPF_W: r2 = ctx->rx_queue_index
        insns[n++] = Insn(0x18, 1, 1, 0, mapFd);            // BPF_LD | BPF_IMM | BPF_DW, src = BPF_PSEUDO_MAP_FD
        insns[n++] = Insn(0x00, 0, 0, 0, 0);                //   (upper half of the 64-bit immediate)
        insns[n++] = Insn(0xb7, 3, 0, 0, 2);                // BPF_ALU64 | BPF_MOV | BPF_K: r3 = XDP_PASS
        insns[n++] = Insn(0x85, 0, 0, 0, 51);               // BPF_JMP | BPF_CALL: bpf_redirect_map
        insns[n++] = Insn(0x95, 0, 0, 0, 0);                // BPF_JMP | BPF_EXIT
        return LoadXdp(insns, n, ifName, out verifierLog, frags: false, "hnf_xsk_redir");
    }

    private const int BPF_PSEUDO_MAP_VALUE = 2;

    private static int LoadXdp(ulong* insns, int n, string ifName, out string verifierLog, bool frags, string name)
    {
        int fd = Linux.Bpf.Load(BPF_PROG_TYPE_XDP, new ReadOnlySpan<ulong>(insns, n), name, frags ? BPF_F_XDP_HAS_FRAGS : 0, BPF_XDP, out verifierLog);
        if (fd < 0) throw BpfError($"loading the XDP program{(verifierLog.Length > 0 ? " (verifier: " + verifierLog + ")" : "")}", ifName);
        return fd;
    }

    /// <summary>prog_flags: the program handles frames in several buffers (Linux 5.18+).</summary>
    private const uint BPF_F_XDP_HAS_FRAGS = 1 << 5;

    /// <summary>Attaches the program to the interface through a BPF link; returns the link's fd, or -errno.</summary>
    public static int Attach(int progFd, int ifIndex, uint modeFlags)
    {
        byte* attr = stackalloc byte[64];
        new Span<byte>(attr, 64).Clear();
        *(uint*)(attr + 0) = (uint)progFd;
        *(uint*)(attr + 4) = (uint)ifIndex;
        *(uint*)(attr + 8) = BPF_XDP;
        *(uint*)(attr + 12) = modeFlags;
        int fd = Bpf(BPF_LINK_CREATE, attr, 64);
        return fd >= 0 ? fd : -LastErrno;
    }

    internal static ulong Insn(byte code, int dst, int src, short off, int imm) =>
        code | (ulong)(byte)(dst | src << 4) << 8 | (ulong)(ushort)off << 16 | (ulong)(uint)imm << 32;

    internal static void WriteName(byte* p, string name)
    {
        for (int i = 0; i < name.Length && i < 15; i++) p[i] = (byte)name[i];
    }

    private static Exception BpfError(string what, string ifName)
    {
        int err = LastErrno;
        if (err is EPERM or EACCES)
            return new UnauthorizedAccessException(
                $"{what} for interface '{ifName}' was refused ({ErrnoText(err)}): the AF_XDP backend needs CAP_BPF and CAP_NET_ADMIN (or root); the af_packet backend needs only CAP_NET_RAW");
        return new IOException($"{what} for interface '{ifName}' failed: {ErrnoText(err)}");
    }
}
