using System.Runtime.InteropServices;
using HyperNF.Linux;

namespace HyperNF.Vmm;

/// <summary>What /dev/kvm is on this machine: hardware virtualisation (VMX/SVM) or PVM.</summary>
public enum KvmKind
{
    None,
    Hardware,
    Pvm,
}

/// <summary>
/// The machine's KVM, probed once: whether /dev/kvm opens, which kind it is, the ring guests
/// run at and the sizes every VM needs (vCPU mmap size, supported CPUID). PVM (kvm_pvm)
/// emulates ring-0 guest code (about 1000x slower) and faults port I/O at ring 3, so there
/// guests run at ring 3 and make hypercalls through the MMIO doorbell; with hardware KVM they
/// run at ring 0 with port I/O. HYPERNF_VM_RING=0|3 forces the ring.
/// </summary>
public sealed unsafe class KvmPlatform
{
    private static readonly Lazy<KvmPlatform> Probed = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The probe result (cached for the process).</summary>
    public static KvmPlatform Current => Probed.Value;

    public KvmKind Kind { get; private init; }
    /// <summary>Why KVM cannot be used; null when it can.</summary>
    public string? Unavailable { get; private init; }
    public bool Available => Unavailable is null;
    /// <summary>The CPL guests run at: 0 (hardware) or 3 (PVM).</summary>
    public int Ring { get; private init; }
    public uint Transport => Ring == 0 ? GuestAbi.TransportPio : GuestAbi.TransportMmio;
    internal int VCpuMmapSize { get; private init; }
    internal byte[] Cpuid { get; private init; } = [];
    internal bool ImmediateExit { get; private init; }
    /// <summary>KVM_CAP_IOEVENTFD_ANY_LENGTH: a length-0 ioeventfd (any store size, the fast MMIO path).</summary>
    internal bool IoEventFdAnyLength { get; private init; }

    /// <summary>"PVM (kvm_pvm), guests at ring 3, MMIO doorbell" or "hardware KVM, ring 0, PIO"; what every output with figures names.</summary>
    public string Describe() => Kind switch
    {
        KvmKind.None => $"no KVM ({Unavailable})",
        KvmKind.Pvm => $"PVM (kvm_pvm, software virtualisation), guests at ring {Ring}, {(Ring == 0 ? "PIO" : "MMIO doorbell")} hypercalls",
        _ => $"hardware KVM (VMX/SVM), guests at ring {Ring}, {(Ring == 0 ? "PIO" : "MMIO doorbell")} hypercalls",
    };

    /// <summary>Short form for tables and JSON: "pvm" or "hardware".</summary>
    public string KindName => Kind switch { KvmKind.Pvm => "pvm", KvmKind.Hardware => "hardware", _ => "none" };

    private static KvmPlatform Probe()
    {
        int fd = Kvm.Open("/dev/kvm", Kvm.O_RDWR | Kvm.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return new KvmPlatform { Unavailable = $"/dev/kvm cannot be opened: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})" };
        }
        try
        {
            int api = Kvm.Ioctl(fd, Kvm.GET_API_VERSION, 0);
            if (api != Kvm.ApiVersion) return new KvmPlatform { Unavailable = $"KVM API version {api}, need {Kvm.ApiVersion}" };
            int mmap = Kvm.Ioctl(fd, Kvm.GET_VCPU_MMAP_SIZE, 0);
            if (mmap < 4096) return new KvmPlatform { Unavailable = $"KVM_GET_VCPU_MMAP_SIZE returned {mmap}" };
            bool pvm = Directory.Exists("/sys/module/kvm_pvm");
            var kind = pvm ? KvmKind.Pvm : KvmKind.Hardware;
            int ring = pvm ? 3 : 0;
            if (Environment.GetEnvironmentVariable("HYPERNF_VM_RING") is { Length: > 0 } forced)
            {
                ring = forced.Trim() switch
                {
                    "0" => 0,
                    "3" => 3,
                    _ => throw new InvalidOperationException($"HYPERNF_VM_RING must be 0 or 3, not '{forced}'"),
                };
            }
            return new KvmPlatform
            {
                Kind = kind,
                Ring = ring,
                VCpuMmapSize = mmap,
                Cpuid = SupportedCpuid(fd),
                ImmediateExit = Kvm.Ioctl(fd, Kvm.CHECK_EXTENSION, Kvm.CAP_IMMEDIATE_EXIT) > 0,
                IoEventFdAnyLength = Kvm.Ioctl(fd, Kvm.CHECK_EXTENSION, Kvm.CAP_IOEVENTFD_ANY_LENGTH) > 0,
            };
        }
        finally
        {
            Native.Close(fd);
        }
    }

    // struct kvm_cpuid2: u32 nent, u32 pad, then 40-byte entries. Grown while the kernel says E2BIG.
    private static byte[] SupportedCpuid(int fd)
    {
        for (int nent = 128; nent <= 4096; nent *= 2)
        {
            var buf = new byte[8 + 40 * nent];
            fixed (byte* p = buf)
            {
                *(uint*)p = (uint)nent;
                if (Kvm.Ioctl(fd, Kvm.GET_SUPPORTED_CPUID, (nint)p) == 0)
                {
                    uint n = *(uint*)p;
                    return buf.AsSpan(0, 8 + 40 * (int)n).ToArray();
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno != 7 /* E2BIG */) throw new IOException($"KVM_GET_SUPPORTED_CPUID failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
            }
        }
        throw new IOException("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
    }
}
