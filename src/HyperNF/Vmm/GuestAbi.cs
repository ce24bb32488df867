namespace HyperNF.Vmm;

/// <summary>
/// The guest ABI, version 3 (docs/guest-abi.md; its C side is guest/include/hnf.h). The two
/// must change together, and <see cref="Version"/> with any change.
/// </summary>
public static class GuestAbi
{
    public const uint BootMagic = 0x42464E48; // "HNFB"
    public const uint Version = 3;

    // guest-physical memory map
    public const ulong GdtGpa = 0x1000, Pml4Gpa = 0x2000, PdptGpa = 0x3000, PdGpa = 0x4000;
    public const ulong BootInfoGpa = 0x8000, CmdlineGpa = 0x9000;
    /// <summary>The VMM-owned page holding the split/merge backend's needs-kick word (u32 at its start).</summary>
    public const ulong NeedsKickGpa = 0xB000;
    /// <summary>
    /// In the same page: the u32 the VMM sets to 1 to ask the guest to stop (xl shutdown; the
    /// guest polls it with one load, and a POLL returns early once it is set).
    /// </summary>
    public const ulong ShutdownGpa = 0xB004;
    public const int CmdlineMax = 4095;
    public const ulong ImageBase = 0x100000;
    public const ulong RegionGpa = 0x4000_0000;
    public const ulong RegionMaxBytes = 0x4000_0000; // the region's gigabyte: PD1
    public const ulong DoorbellGpa = 0xFEB0_0000, KickGpa = 0xFEB0_1000;
    public const ulong PageSize = 4096, LargePage = 2 << 20;
    public const int DefaultMemoryMb = 16, MaxMemoryMb = 512;
    public const ushort PioBase = 0x500, KickPort = 0x600;
    public const int MaxOps = 0x40;

    // transports
    public const uint TransportPio = 0, TransportMmio = 1;

    // ops
    public const int OpWalltime = 1, OpPuts = 2, OpPoll = 3, OpClock = 4, OpExit = 8, OpTxSync = 16, OpRxSync = 17;
    public const int MaxPuts = 4096;
    public const uint AllRings = 0xFFFFFFFF;
    public const int EINVAL = -22;

    // struct hnf_boot_info
    public const int BiMagic = 0, BiVersion = 4, BiTransport = 8, BiRing = 12, BiMemSize = 16, BiKernelEnd = 24,
        BiTscKhz = 32, BiCmdline = 40, BiRegionGpa = 48, BiRegionSize = 56, BiNports = 64, BiIoModel = 68,
        BiNifp = 72, BiKickGpa = 136, BiNeedsKickGpa = 144, BiDomid = 152, BiVcpu = 156, BiShutdownGpa = 160, BiFeatures = 168,
        BootInfoSize = 176;
    /// <summary>boot_info.features: the RX rings are self-served (RxKring; the guest's rxsync makes no exit).</summary>
    public const uint FeatRxSelf = 1;
    public const int MaxPorts = 8;

    /// <summary>Bytes of each op's argument block (what is range-checked before it is touched).</summary>
    public static int BlockSize(int op) => op switch
    {
        OpWalltime => 8,
        OpPuts => 16,
        OpPoll => 24,
        OpClock => 8,
        OpExit => 4,
        OpTxSync or OpRxSync => 12,
        _ => 0,
    };

    public static string OpName(int op) => op switch
    {
        OpWalltime => "WALLTIME", OpPuts => "PUTS", OpPoll => "POLL", OpClock => "CLOCK", OpExit => "EXIT",
        OpTxSync => "TXSYNC", OpRxSync => "RXSYNC", _ => $"op {op}",
    };
}
