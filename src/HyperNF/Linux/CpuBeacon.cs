using System.Runtime.InteropServices;
using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Linux;

/// <summary>
/// Where a packet socket's frames arrive: a socket filter that accepts every frame and, on the
/// way, writes the number of the CPU the kernel received it on (the sender's CPU for a veth or
/// tap: the frame is received in the sender's own softirq) into a one-word BPF array map that is
/// mapped into our memory. A driver thread that sleeps pinned to that CPU is then woken there
/// (the kernel's sync wake-up runs it as soon as the sender blocks) instead of on an idle CPU,
/// which in a VM costs an inter-processor interrupt and a halted vCPU's wake-up
/// (docs/ports.md, Latency: "The driver thread follows the traffic").
///
/// <para>The program (8 instructions, no libbpf):</para>
/// <code>
///   r0 = bpf_get_smp_processor_id() + 1       ; 0 in the word means "no frame yet"
///   r1 = &amp;value                              ; lddw, BPF_PSEUDO_MAP_VALUE
///   if *(u32 *)r1 != r0: *(u32 *)r1 = r0      ; written only when it changes: no shared cache
///                                             ;   line bouncing between CPUs under load
///   return 0xffffffff                         ; keep the whole frame
/// </code>
/// Frames are neither dropped nor truncated by it. Needs CAP_BPF (or root); without it
/// <see cref="TryCreate"/> returns null and the caller goes on without.
/// </summary>
internal sealed unsafe class CpuBeacon : IDisposable
{
    private const int BPF_PROG_LOAD = 5;
    private const uint BPF_PROG_TYPE_SOCKET_FILTER = 1;
    private const int BPF_PSEUDO_MAP_VALUE = 2;
    private const int SOL_SOCKET = 1, SO_ATTACH_BPF = 50;

    private int _mapFd, _progFd;
    private uint* _word;

    private CpuBeacon(int mapFd, int progFd, uint* word)
    {
        _mapFd = mapFd;
        _progFd = progFd;
        _word = word;
    }

    /// <summary>The map an XDP program writes the CPU into (<see cref="Xdp.LoadRedirectProgram"/>): one u32 at offset 0, the CPU + 1.</summary>
    public int MapFd => _mapFd;

    /// <summary>The CPU the last frame arrived on, or -1 before the first (or after dispose).</summary>
    public int LastCpu
    {
        get
        {
            uint* w = _word;
            return w == null ? -1 : (int)Volatile.Read(ref *w) - 1;
        }
    }

    /// <summary>A beacon (map, program, mapping), or null with <paramref name="error"/> saying why.</summary>
    public static CpuBeacon? TryCreate(out string? error)
    {
        error = null;
        int mapFd = Xdp.CreateArrayMap(4, mmapable: true, "hnf_rx_cpu"); // the CPU + 1
        if (mapFd < 0)
        {
            error = $"BPF array map: {ErrnoText(LastErrno)}";
            return null;
        }
        nint map = Native.Mmap(0, 4096, Native.PROT_READ, Native.MAP_SHARED, mapFd, 0);
        if (map == -1)
        {
            error = $"mmap of the BPF map: {ErrnoText(LastErrno)}";
            Native.Close(mapFd);
            return null;
        }
        ulong* insns = stackalloc ulong[10];
        int n = EmitRecordCpu(insns, mapFd);
        insns[n++] = Xdp.Insn(0xb4, 0, 0, 0, -1);                       // w0 = 0xffffffff: keep all
        insns[n++] = Xdp.Insn(0x95, 0, 0, 0, 0);                        // exit
        byte* license = stackalloc byte[] { (byte)'G', (byte)'P', (byte)'L', 0 };
        const int LogSize = 2048;
        byte* log = stackalloc byte[LogSize];
        log[0] = 0;
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = BPF_PROG_TYPE_SOCKET_FILTER;
        *(uint*)(attr + 4) = (uint)n;
        *(ulong*)(attr + 8) = (ulong)insns;
        *(ulong*)(attr + 16) = (ulong)license;
        *(uint*)(attr + 24) = 1;            // log_level
        *(uint*)(attr + 28) = LogSize;
        *(ulong*)(attr + 32) = (ulong)log;
        Xdp.WriteName(attr + 48, "hnf_rx_cpu");
        int progFd = Xdp.Bpf(BPF_PROG_LOAD, attr, 128);
        if (progFd < 0)
        {
            int err = LastErrno;
            string verifier = Marshal.PtrToStringUTF8((nint)log)?.Trim() ?? "";
            error = $"socket filter: {ErrnoText(err)}{(verifier.Length > 0 ? " (verifier: " + verifier + ")" : "")}";
            Native.Munmap(map, 4096);
            Native.Close(mapFd);
            return null;
        }
        return new CpuBeacon(mapFd, progFd, (uint*)map);
    }

    /// <summary>
    /// Writes the seven instructions that record the CPU (+ 1) in word 0 of map <paramref name="mapFd"/>,
    /// only when it changed; they clobber r0-r2 and keep r6-r9 (the socket filter above, the XDP
    /// program in <see cref="Xdp.LoadRedirectProgram"/>). Returns how many were written.
    /// </summary>
    internal static int EmitRecordCpu(ulong* insns, int mapFd)
    {
        int n = 0;
        insns[n++] = Xdp.Insn(0x85, 0, 0, 0, 8);                        // call bpf_get_smp_processor_id
        insns[n++] = Xdp.Insn(0x07, 0, 0, 0, 1);                        // r0 += 1
        insns[n++] = Xdp.Insn(0x18, 1, BPF_PSEUDO_MAP_VALUE, 0, mapFd); // r1 = &map[0] + off
        insns[n++] = Xdp.Insn(0x00, 0, 0, 0, 0);                        //   (second half: offset 0)
        insns[n++] = Xdp.Insn(0x61, 2, 1, 0, 0);                        // r2 = *(u32 *)(r1 + 0)
        insns[n++] = Xdp.Insn(0x1d, 2, 0, 1, 0);                        // if r2 == r0 goto +1
        insns[n++] = Xdp.Insn(0x63, 1, 0, 0, 0);                        // *(u32 *)(r1 + 0) = r0
        return n;
    }

    /// <summary>Attaches the filter to a socket (SO_ATTACH_BPF); 0 or an errno.</summary>
    public int AttachTo(int socketFd)
    {
        int prog = _progFd;
        return SetSockOpt(socketFd, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(int)) == 0 ? 0 : LastErrno;
    }

    public void Dispose()
    {
        uint* w = _word;
        _word = null;
        if (w != null) Native.Munmap((nint)w, 4096);
        if (_progFd >= 0) Native.Close(_progFd);
        if (_mapFd >= 0) Native.Close(_mapFd);
        _progFd = _mapFd = -1;
    }
}
