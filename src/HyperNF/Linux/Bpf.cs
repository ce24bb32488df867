using System.Runtime.InteropServices;
using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Linux;

/// <summary>
/// The bpf(2) calls the kernel fast path needs (maps of any type with byte keys, program load of
/// any type, a BPF link to a tcx hook), without libbpf. Layouts of <c>union bpf_attr</c> are the
/// kernel's (include/uapi/linux/bpf.h); every call returns a file descriptor or 0 on success and
/// -1 / an errno on failure, never throws: callers say what failed in their own terms.
/// </summary>
internal static unsafe class Bpf
{
    public const int BPF_MAP_CREATE = 0, BPF_MAP_LOOKUP_ELEM = 1, BPF_MAP_UPDATE_ELEM = 2, BPF_MAP_DELETE_ELEM = 3,
        BPF_PROG_LOAD = 5, BPF_LINK_CREATE = 28;
    public const uint MapHash = 1, MapPerCpuArray = 6;
    public const uint ProgSocketFilter = 1, ProgSchedCls = 3;
    /// <summary>enum bpf_attach_type: the tcx ingress hook (Linux 6.6+).</summary>
    public const uint AttachTcxIngress = 46;
    public const int PseudoMapFd = 1;

    // helper numbers (enum bpf_func_id)
    public const int FnMapLookup = 1, FnGetSmpProcessorId = 8, FnRedirect = 23, FnSkbLoadBytes = 26;

    /// <summary>A map; its fd, or -1 with errno set.</summary>
    public static int CreateMap(uint type, int keySize, int valueSize, int maxEntries, string name, uint flags = 0)
    {
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = type;
        *(uint*)(attr + 4) = (uint)keySize;
        *(uint*)(attr + 8) = (uint)valueSize;
        *(uint*)(attr + 12) = (uint)maxEntries;
        *(uint*)(attr + 16) = flags;
        Xdp.WriteName(attr + 28, name);
        return Xdp.Bpf(BPF_MAP_CREATE, attr, 128);
    }

    private static int MapOp(int cmd, int mapFd, void* key, void* value, ulong flags)
    {
        byte* attr = stackalloc byte[32];
        new Span<byte>(attr, 32).Clear();
        *(uint*)(attr + 0) = (uint)mapFd;
        *(ulong*)(attr + 8) = (ulong)key;
        *(ulong*)(attr + 16) = (ulong)value;
        *(ulong*)(attr + 24) = flags;
        return Xdp.Bpf(cmd, attr, 32) < 0 ? LastErrno : 0;
    }

    /// <summary>0 or an errno.</summary>
    public static int Update(int mapFd, void* key, void* value) => MapOp(BPF_MAP_UPDATE_ELEM, mapFd, key, value, 0);

    /// <summary>0 or an errno (ENOENT when there was no such key).</summary>
    public static int Delete(int mapFd, void* key) => MapOp(BPF_MAP_DELETE_ELEM, mapFd, key, null, 0);

    /// <summary>0 or an errno; for a per-CPU map <paramref name="value"/> receives one value per possible CPU, each rounded up to 8 bytes.</summary>
    public static int Lookup(int mapFd, void* key, void* value) => MapOp(BPF_MAP_LOOKUP_ELEM, mapFd, key, value, 0);

    /// <summary>Loads a program; its fd, or -1 with <paramref name="error"/> saying why (with the verifier's log).</summary>
    public static int LoadProgram(uint type, ReadOnlySpan<ulong> insns, string name, out string? error)
    {
        int fd = Load(type, insns, name, 0, 0, out string verifier);
        error = fd >= 0 ? null : $"{ErrnoText(LastErrno)}{(verifier.Length > 0 ? " (verifier: " + verifier + ")" : "")}";
        return fd;
    }

    /// <summary>
    /// BPF_PROG_LOAD: without a verifier log first (a log too small for the program fails the load
    /// with ENOSPC), with one only to say why a load failed (the last 600 characters of it in
    /// <paramref name="verifier"/>). Its fd, or -1 with errno set.
    /// </summary>
    public static int Load(uint type, ReadOnlySpan<ulong> insns, string name, uint progFlags, uint expectedAttachType, out string verifier)
    {
        verifier = "";
        byte* license = stackalloc byte[] { (byte)'G', (byte)'P', (byte)'L', 0 };
        const int LogSize = 65536;
        byte[] log = new byte[LogSize];
        fixed (ulong* code = insns)
        fixed (byte* logp = log)
        {
            byte* attr = stackalloc byte[128];
            int fd = -1;
            for (int level = 0; level <= 1 && fd < 0; level++)
            {
                new Span<byte>(attr, 128).Clear();
                *(uint*)(attr + 0) = type;
                *(uint*)(attr + 4) = (uint)insns.Length;
                *(ulong*)(attr + 8) = (ulong)code;
                *(ulong*)(attr + 16) = (ulong)license;
                if (level > 0)
                {
                    *(uint*)(attr + 24) = 1;            // log_level
                    *(uint*)(attr + 28) = LogSize;
                    *(ulong*)(attr + 32) = (ulong)logp;
                }
                *(uint*)(attr + 44) = progFlags;
                Xdp.WriteName(attr + 48, name);
                *(uint*)(attr + 68) = expectedAttachType;
                fd = Xdp.Bpf(BPF_PROG_LOAD, attr, 128);
            }
            if (fd >= 0) return fd;
            int err = LastErrno;
            verifier = Marshal.PtrToStringUTF8((nint)logp)?.Trim() ?? "";
            if (verifier.Length > 600) verifier = "..." + verifier[^600..];
            Marshal.SetLastPInvokeError(err);
            return -1;
        }
    }

    /// <summary>A BPF link of <paramref name="progFd"/> to hook <paramref name="attachType"/> of interface <paramref name="ifIndex"/>; its fd, or -errno. Closing the fd detaches the program.</summary>
    public static int LinkCreate(int progFd, int ifIndex, uint attachType)
    {
        byte* attr = stackalloc byte[64];
        new Span<byte>(attr, 64).Clear();
        *(uint*)(attr + 0) = (uint)progFd;
        *(uint*)(attr + 4) = (uint)ifIndex;
        *(uint*)(attr + 8) = attachType;
        int fd = Xdp.Bpf(BPF_LINK_CREATE, attr, 64);
        return fd >= 0 ? fd : -LastErrno;
    }

    private static int s_possibleCpus;

    /// <summary>How many values a per-CPU map lookup returns: the kernel's possible CPUs (/sys/devices/system/cpu/possible, "0-N").</summary>
    public static int PossibleCpus
    {
        get
        {
            if (s_possibleCpus > 0) return s_possibleCpus;
            int n = Environment.ProcessorCount;
            try
            {
                int max = -1;
                foreach (var part in File.ReadAllText("/sys/devices/system/cpu/possible").Trim().Split(','))
                {
                    var range = part.Split('-');
                    max = Math.Max(max, int.Parse(range[^1], System.Globalization.CultureInfo.InvariantCulture));
                }
                if (max >= 0) n = max + 1;
            }
            catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException) { }
            return s_possibleCpus = n;
        }
    }
}

/// <summary>
/// A small eBPF assembler: instructions as the kernel encodes them (8 bytes: opcode, registers,
/// offset, immediate) and jumps to named labels, resolved by <see cref="Build"/>, so a program
/// is written top to bottom without counting instructions by hand.
/// </summary>
internal sealed class BpfAssembler
{
    private readonly List<ulong> _insns = new();
    private readonly Dictionary<string, int> _labels = new(StringComparer.Ordinal);
    private readonly List<(int At, string Label)> _fixups = new();

    public int Count => _insns.Count;

    public BpfAssembler Emit(byte code, int dst, int src, short off, int imm)
    {
        _insns.Add(Xdp.Insn(code, dst, src, off, imm));
        return this;
    }

    public BpfAssembler Raw(ulong insn)
    {
        _insns.Add(insn);
        return this;
    }

    /// <summary>A conditional or unconditional jump whose offset is filled in by <see cref="Build"/>.</summary>
    public BpfAssembler Jump(byte code, int dst, int src, int imm, string label)
    {
        _fixups.Add((_insns.Count, label));
        _insns.Add(Xdp.Insn(code, dst, src, 0, imm));
        return this;
    }

    public BpfAssembler Label(string name)
    {
        if (!_labels.TryAdd(name, _insns.Count)) throw new InvalidOperationException($"BPF label '{name}' defined twice");
        return this;
    }

    /// <summary>reg = the map of <paramref name="mapFd"/> (lddw, BPF_PSEUDO_MAP_FD): two instructions.</summary>
    public BpfAssembler LoadMap(int reg, int mapFd)
    {
        Emit(0x18, reg, Bpf.PseudoMapFd, 0, mapFd);
        return Emit(0x00, 0, 0, 0, 0);
    }

    /// <summary>
    /// r0 = bpf_map_lookup_elem(map of <paramref name="mapFd"/>, fp + <paramref name="keyOffset"/>);
    /// to <paramref name="ifNull"/> when there is no such key. Clobbers r1-r5.
    /// </summary>
    public BpfAssembler MapLookup(int mapFd, short keyOffset, string ifNull)
    {
        LoadMap(1, mapFd);
        Emit(0xbf, 2, 10, 0, 0).Emit(0x07, 2, 0, 0, keyOffset);
        Emit(0x85, 0, 0, 0, Bpf.FnMapLookup);
        return Jump(0x15, 0, 0, 0, ifNull);
    }

    public ulong[] Build()
    {
        var code = _insns.ToArray();
        foreach (var (at, label) in _fixups)
        {
            if (!_labels.TryGetValue(label, out int target)) throw new InvalidOperationException($"BPF label '{label}' is not defined");
            int off = target - (at + 1);
            if (off is < short.MinValue or > short.MaxValue) throw new InvalidOperationException($"BPF jump to '{label}' is out of range");
            code[at] = (code[at] & ~0xFFFF_0000UL) | (ulong)(ushort)(short)off << 16;
        }
        return code;
    }
}
