using System.Runtime.InteropServices;
using System.Text;
using HyperNF.Linux;
using HyperNF.Memory;

namespace HyperNF.Vmm;

/// <summary>What a VM is booted with.</summary>
public sealed record VmConfig
{
    public required ElfImage Image { get; init; }
    /// <summary>Guest RAM in MB: a multiple of 2, 2..512.</summary>
    public int MemoryMb { get; init; } = GuestAbi.DefaultMemoryMb;
    public string CommandLine { get; init; } = "";
    public int VCpus { get; init; } = 1;
    public int DomainId { get; init; }
    /// <summary>0 hypercall, 1 split, 2 merge (boot_info.io_model).</summary>
    public uint IoModel { get; init; }
    /// <summary>The domain's region, mapped as memory slot 1 at <see cref="GuestAbi.RegionGpa"/>; null: none.</summary>
    public DomainMemory? Region { get; init; }
    /// <summary>Port area (netmap_if) index in the region of each port, in vif order.</summary>
    public IReadOnlyList<int> PortAreas { get; init; } = [];
    /// <summary>Null: the machine's (<see cref="KvmPlatform.Ring"/>).</summary>
    public int? Ring { get; init; }
    /// <summary>
    /// The ports' RX rings are self-served (boot_info.features HNF_FEAT_RX_SELF): the guest's
    /// rxsync needs no exit. The caller enabled them (RxKring.EnableSelfService) before boot.
    /// </summary>
    public bool RxSelfServed { get; init; }
}

/// <summary>
/// One KVM virtual machine: guest RAM (a private memfd) as memory slot 0 at GPA 0, the
/// domain's region as slot 1 at <see cref="GuestAbi.RegionGpa"/>, identity page tables, a GDT,
/// the boot info and the loaded image, and one <see cref="KvmVCpu"/> per vCPU already in
/// 64-bit long mode at the image's entry point (docs/guest-abi.md). Every fd and mapping is
/// released by <see cref="Dispose"/>, also when creation fails half-way.
/// </summary>
public sealed unsafe class VirtualMachine : IDisposable
{
    /// <summary>Stack reserved per vCPU below the top of RAM (vCPU i's stack top is RAM end - i * this).</summary>
    public const ulong StackPerVCpu = 256 << 10;
    public const int MaxVCpus = 16;
    /// <summary>Page table of the first 2 MiB (so the NULL page is not mapped).</summary>
    public const ulong LowPtGpa = 0xA000;

    private int _vmFd = -1;
    private int _ramFd = -1;
    private byte* _ram;
    private readonly KvmVCpu[] _vcpus;
    private int _disposed;

    public KvmPlatform Platform { get; }
    public int Ring { get; }
    public uint Transport => Ring == 0 ? GuestAbi.TransportPio : GuestAbi.TransportMmio;
    public ulong RamBytes { get; }
    public ulong RegionBytes { get; }
    public IReadOnlyList<KvmVCpu> VCpus => _vcpus;
    public VmConfig Config { get; }
    /// <summary>The split/merge kick (ioeventfd + needs-kick word); null in the hypercall model.</summary>
    public KickChannel? Kick { get; private set; }
    internal byte* Ram => _ram;
    internal byte* RegionBase { get; }

    public VirtualMachine(VmConfig config, KvmPlatform? platform = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        Platform = platform ?? KvmPlatform.Current;
        if (!Platform.Available) throw new InvalidOperationException($"VM domains need KVM: {Platform.Unavailable}");
        Config = config;
        Ring = config.Ring ?? Platform.Ring;
        if (Ring is not (0 or 3)) throw new ArgumentException($"ring must be 0 or 3, not {Ring}");
        if (config.MemoryMb < 2 || config.MemoryMb > GuestAbi.MaxMemoryMb || config.MemoryMb % 2 != 0)
            throw new ArgumentException($"memory must be an even number of MB in 2..{GuestAbi.MaxMemoryMb} (2 MiB pages), not {config.MemoryMb}");
        if (config.VCpus is < 1 or > MaxVCpus) throw new ArgumentException($"a VM domain has 1..{MaxVCpus} vCPUs, not {config.VCpus}");
        if (config.PortAreas.Count > GuestAbi.MaxPorts) throw new ArgumentException($"a VM domain has at most {GuestAbi.MaxPorts} vifs, not {config.PortAreas.Count}");
        if (Encoding.UTF8.GetByteCount(config.CommandLine) > GuestAbi.CmdlineMax) throw new ArgumentException($"the command line is longer than {GuestAbi.CmdlineMax} bytes");
        RamBytes = (ulong)config.MemoryMb << 20;
        ulong stackFloor = RamBytes - StackPerVCpu * (ulong)config.VCpus;
        if (config.Image.End > stackFloor)
            throw new ArgumentException($"kernel '{config.Image.Path}' ends at 0x{config.Image.End:x}, above the {config.VCpus} vCPU stack(s) below 0x{RamBytes:x}; raise memory= to at least {((config.Image.End + StackPerVCpu * (ulong)config.VCpus) >> 20) + 2} MB");
        RegionBytes = config.Region is { } reg ? (ulong)reg.Size : 0;
        if (RegionBytes > GuestAbi.RegionMaxBytes) throw new ArgumentException($"the domain's region ({RegionBytes >> 20} MB) is larger than 1 GiB");
        RegionBase = config.Region is { } r ? r.Base : null;
        _vcpus = new KvmVCpu[config.VCpus];
        try
        {
            CreateRam();
            CreateVm();
            if (config.IoModel != 0)
                Kick = new KickChannel(_vmFd, (uint*)(_ram + GuestAbi.NeedsKickGpa), Platform.IoEventFdAnyLength);
            WriteTables();
            config.Image.CopyTo(new Span<byte>(_ram, checked((int)RamBytes)), stackFloor);
            WriteCommandLine();
            for (int i = 0; i < config.VCpus; i++)
            {
                WriteBootInfo(i);
                _vcpus[i] = new KvmVCpu(_vmFd, i, Platform.VCpuMmapSize);
                SetupVCpu(_vcpus[i], i);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private void CreateRam()
    {
        _ramFd = Native.MemfdCreate($"hypernf-vm{Config.DomainId}-ram", Native.MFD_CLOEXEC);
        if (_ramFd < 0) Native.ThrowLastError("memfd_create(guest RAM)");
        if (Native.Ftruncate(_ramFd, (long)RamBytes) != 0) Native.ThrowLastError($"ftruncate(guest RAM, {RamBytes})");
        nint p = Native.Mmap(0, (nuint)RamBytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _ramFd, 0);
        if (p == Native.MAP_FAILED) Native.ThrowLastError($"mmap(guest RAM, {RamBytes})");
        HugePages.Advise(p, (long)RamBytes); // the guest's 2 MiB pages then sit on 2 MiB host pages
        _ram = (byte*)p;
    }

    private void CreateVm()
    {
        int sys = Kvm.Open("/dev/kvm", Kvm.O_RDWR | Kvm.O_CLOEXEC);
        if (sys < 0) Native.ThrowLastError("open(/dev/kvm)");
        try
        {
            _vmFd = Kvm.Ioctl(sys, Kvm.CREATE_VM, 0);
            if (_vmFd < 0) Native.ThrowLastError("KVM_CREATE_VM");
        }
        finally
        {
            Native.Close(sys);
        }
        Kvm.Ioctl(_vmFd, Kvm.SET_TSS_ADDR, unchecked((nint)0xfffbd000)); // needed by VMX without unrestricted guest; harmless elsewhere
        SetMemory(0, 0, RamBytes, (nint)_ram);
        if (RegionBytes > 0) SetMemory(1, GuestAbi.RegionGpa, RegionBytes, (nint)RegionBase);
    }

    private void SetMemory(uint slot, ulong gpa, ulong size, nint host)
    {
        var m = new KvmMemoryRegion { Slot = slot, GuestPhysAddr = gpa, MemorySize = size, UserspaceAddr = (ulong)host };
        if (Kvm.Ioctl(_vmFd, Kvm.SET_USER_MEMORY_REGION, (nint)(&m)) < 0)
            Native.ThrowLastError($"KVM_SET_USER_MEMORY_REGION(slot {slot}, GPA 0x{gpa:x}, {size} bytes)");
    }

    private void WriteTables()
    {
        ulong u = Ring == 3 ? 4UL : 0; // user bit in every level for a ring-3 guest
        const ulong P = 1, RW = 2, PS = 0x80;
        // GDT: null, code64 (0x08), data (0x10), ring-3 code64 (0x18), ring-3 data (0x20).
        ulong* gdt = (ulong*)(_ram + GuestAbi.GdtGpa);
        gdt[0] = 0;
        gdt[1] = 0x00af9b000000ffff;
        gdt[2] = 0x00cf93000000ffff;
        gdt[3] = 0x00affb000000ffff;
        gdt[4] = 0x00cff3000000ffff;
        ulong* pml4 = (ulong*)(_ram + GuestAbi.Pml4Gpa);
        ulong* pdpt = (ulong*)(_ram + GuestAbi.PdptGpa);
        pml4[0] = GuestAbi.PdptGpa | P | RW | u;
        for (int i = 0; i < 4; i++) pdpt[i] = (GuestAbi.PdGpa + (ulong)i * 0x1000) | P | RW | u;
        ulong* pd0 = (ulong*)(_ram + GuestAbi.PdGpa);
        // The first 2 MiB through a page table, without page 0: a NULL dereference faults.
        ulong* pt = (ulong*)(_ram + LowPtGpa);
        for (ulong i = 1; i < 512; i++) pt[i] = (i << 12) | P | RW | u;
        pd0[0] = LowPtGpa | P | RW | u;
        for (ulong k = 1; k < RamBytes / GuestAbi.LargePage; k++) pd0[k] = (k * GuestAbi.LargePage) | P | RW | PS | u;
        ulong* pd1 = (ulong*)(_ram + GuestAbi.PdGpa + 0x1000);
        ulong regionPages = (RegionBytes + GuestAbi.LargePage - 1) / GuestAbi.LargePage;
        for (ulong k = 0; k < regionPages; k++) pd1[k] = (GuestAbi.RegionGpa + k * GuestAbi.LargePage) | P | RW | PS | u;
        // The doorbell and kick pages (MMIO, unbacked): their 2 MiB page in PD3.
        ulong doorbell2M = GuestAbi.DoorbellGpa & ~(GuestAbi.LargePage - 1);
        ulong* pd3 = (ulong*)(_ram + GuestAbi.PdGpa + 0x3000);
        pd3[(doorbell2M - 0xC000_0000) / GuestAbi.LargePage] = doorbell2M | P | RW | PS | u;
    }

    private void WriteCommandLine()
    {
        var dst = new Span<byte>(_ram + GuestAbi.CmdlineGpa, GuestAbi.CmdlineMax + 1);
        dst.Clear();
        Encoding.UTF8.GetBytes(Config.CommandLine, dst);
    }

    /// <summary>GPA of vCPU <paramref name="vcpu"/>'s boot info (256 bytes apart in the boot-info page).</summary>
    public static ulong BootInfoOf(int vcpu) => GuestAbi.BootInfoGpa + 256UL * (ulong)vcpu;

    private void WriteBootInfo(int vcpu)
    {
        byte* b = _ram + BootInfoOf(vcpu);
        new Span<byte>(b, 256).Clear();
        *(uint*)(b + GuestAbi.BiMagic) = GuestAbi.BootMagic;
        *(uint*)(b + GuestAbi.BiVersion) = GuestAbi.Version;
        *(uint*)(b + GuestAbi.BiTransport) = Transport;
        *(uint*)(b + GuestAbi.BiRing) = (uint)Ring;
        *(ulong*)(b + GuestAbi.BiMemSize) = RamBytes;
        *(ulong*)(b + GuestAbi.BiKernelEnd) = Config.Image.End;
        *(ulong*)(b + GuestAbi.BiCmdline) = GuestAbi.CmdlineGpa;
        *(ulong*)(b + GuestAbi.BiRegionGpa) = RegionBytes > 0 ? GuestAbi.RegionGpa : 0;
        *(ulong*)(b + GuestAbi.BiRegionSize) = RegionBytes;
        *(uint*)(b + GuestAbi.BiNports) = (uint)Config.PortAreas.Count;
        *(uint*)(b + GuestAbi.BiIoModel) = Config.IoModel;
        for (int k = 0; k < Config.PortAreas.Count; k++)
            *(ulong*)(b + GuestAbi.BiNifp + 8 * k) = GuestAbi.RegionGpa + (ulong)Config.Region!.Layout.PortAreaOffset(Config.PortAreas[k]);
        if (Kick is not null)
        {
            *(ulong*)(b + GuestAbi.BiKickGpa) = GuestAbi.KickGpa;
            *(ulong*)(b + GuestAbi.BiNeedsKickGpa) = GuestAbi.NeedsKickGpa;
        }
        *(uint*)(b + GuestAbi.BiDomid) = (uint)Config.DomainId;
        *(uint*)(b + GuestAbi.BiVcpu) = (uint)vcpu;
        *(ulong*)(b + GuestAbi.BiShutdownGpa) = GuestAbi.ShutdownGpa;
        *(uint*)(b + GuestAbi.BiFeatures) = Config.RxSelfServed ? GuestAbi.FeatRxSelf : 0u;
    }

    /// <summary>
    /// Asks the guest to stop (xl shutdown): sets the shutdown word in the VMM page. The guest
    /// sees it at its next check or POLL; the caller wakes vCPUs blocked in POLL. Whether the
    /// guest obeys is the guest's business: destroy is the forced path.
    /// </summary>
    public void RequestShutdown() => Interlocked.Exchange(ref *(int*)(_ram + GuestAbi.ShutdownGpa), 1);

    /// <summary>The shutdown word is set (the guest's page: only ever read as a hint).</summary>
    public bool ShutdownRequested => Volatile.Read(ref *(int*)(_ram + GuestAbi.ShutdownGpa)) != 0;

    private void SetupVCpu(KvmVCpu v, int index)
    {
        var cpuid = Platform.Cpuid;
        fixed (byte* c = cpuid) v.Ioctl(Kvm.SET_CPUID2, c, "KVM_SET_CPUID2");
        int khz = Kvm.Ioctl(v.Fd, Kvm.GET_TSC_KHZ, 0);
        if (khz > 0)
            for (int i = 0; i < Config.VCpus; i++) *(ulong*)(_ram + BootInfoOf(i) + GuestAbi.BiTscKhz) = (ulong)khz;

        var s = v.GetSregs();
        bool user = Ring == 3;
        var code = new KvmSegment
        {
            Base = 0, Limit = 0xffffffff, Selector = (ushort)(user ? 0x1b : 0x08), Type = 11, Present = 1,
            Dpl = (byte)(user ? 3 : 0), Db = 0, S = 1, L = 1, G = 1,
        };
        var data = new KvmSegment
        {
            Base = 0, Limit = 0xffffffff, Selector = (ushort)(user ? 0x23 : 0x10), Type = 3, Present = 1,
            Dpl = (byte)(user ? 3 : 0), Db = 1, S = 1, L = 0, G = 1,
        };
        s.Cs = code;
        s.Ds = s.Es = s.Fs = s.Gs = s.Ss = data;
        s.Tr = new KvmSegment { Base = 0, Limit = 0, Selector = 0, Type = 11, Present = 1 };
        s.Ldt = new KvmSegment { Unusable = 1 };
        s.Gdt = new KvmDtable { Base = GuestAbi.GdtGpa, Limit = 5 * 8 - 1 };
        s.Idt = new KvmDtable { Base = 0, Limit = 0 };
        s.Cr0 = 0x80000021;  // PE | NE | PG
        s.Cr3 = GuestAbi.Pml4Gpa;
        s.Cr4 = 0x620;       // PAE | OSFXSR | OSXMMEXCPT
        s.Efer = 0x500;      // LME | LMA
        v.SetSregs(s);

        var r = new KvmRegs
        {
            Rip = Config.Image.Entry,
            Rsp = RamBytes - StackPerVCpu * (ulong)index - 8,
            Rdi = BootInfoOf(index),
            Rflags = 0x2,
        };
        v.SetRegs(r);
    }

    /// <summary>
    /// A host pointer to <paramref name="size"/> bytes of guest RAM at <paramref name="gpa"/>, or
    /// null when any of it lies outside RAM (one overflow-safe check).
    /// </summary>
    internal byte* RamAt(ulong gpa, ulong size) =>
        size <= RamBytes && gpa <= RamBytes - size ? _ram + gpa : null;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var v in _vcpus) v?.Dispose();
        if (_vmFd >= 0) { Native.Close(_vmFd); _vmFd = -1; }
        Kick?.Dispose();
        if (_ram != null) { Native.Munmap((nint)_ram, (nuint)RamBytes); _ram = null; }
        if (_ramFd >= 0) { Native.Close(_ramFd); _ramFd = -1; }
    }

    public override string ToString() => $"VM dom{Config.DomainId} ({RamBytes >> 20} MB, ring {Ring}, {_vcpus.Length} vCPU)";

    internal static string Errno() { int e = Marshal.GetLastPInvokeError(); return $"{Marshal.GetPInvokeErrorMessage(e)} (errno {e})"; }
}
