using System.Runtime.InteropServices;

namespace HyperNF.Vmm;

/// <summary>
/// The KVM API (Documentation/virt/kvm/api.rst) for x86-64: ioctl numbers, the structures we
/// pass, and the offsets of <c>struct kvm_run</c> we read. Numbers and layouts are those of
/// linux/kvm.h (see ../shared/reference/vm-domains.md §1); nothing here interprets them.
/// </summary>
internal static unsafe partial class Kvm
{
    private const string Libc = "libc";

    // system fd
    public const ulong GET_API_VERSION = 0xAE00, CREATE_VM = 0xAE01, CHECK_EXTENSION = 0xAE03,
        GET_VCPU_MMAP_SIZE = 0xAE04, GET_SUPPORTED_CPUID = 0xC008AE05;
    // VM fd
    public const ulong CREATE_VCPU = 0xAE41, SET_USER_MEMORY_REGION = 0x4020AE46, SET_TSS_ADDR = 0xAE47,
        IOEVENTFD = 0x4040AE79, ENABLE_CAP = 0x4068AEA3;
    // vCPU fd
    public const ulong RUN = 0xAE80, GET_REGS = 0x8090AE81, SET_REGS = 0x4090AE82, GET_SREGS = 0x8138AE83,
        SET_SREGS = 0x4138AE84, SET_CPUID2 = 0x4008AE90, GET_TSC_KHZ = 0xAEA3;

    public const int ApiVersion = 12;
    public const int CAP_IMMEDIATE_EXIT = 136, CAP_GET_TSC_KHZ = 61, CAP_HALT_POLL = 182, CAP_IOEVENTFD_ANY_LENGTH = 122;

    // exit reasons
    public const uint EXIT_UNKNOWN = 0, EXIT_EXCEPTION = 1, EXIT_IO = 2, EXIT_HYPERCALL = 3, EXIT_DEBUG = 4,
        EXIT_HLT = 5, EXIT_MMIO = 6, EXIT_SHUTDOWN = 8, EXIT_FAIL_ENTRY = 9, EXIT_INTR = 10,
        EXIT_INTERNAL_ERROR = 17, EXIT_SYSTEM_EVENT = 24;

    // struct kvm_run
    public const int RunImmediateExit = 1, RunExitReason = 8, RunExit = 32;
    public const int IoDirection = 32, IoSize = 33, IoPort = 34, IoCount = 36, IoDataOffset = 40;
    public const int MmioPhysAddr = 32, MmioData = 40, MmioLen = 48, MmioIsWrite = 52;
    public const int InternalSuberror = 32, InternalNData = 36, InternalData = 40;
    public const int FailEntryReason = 32;
    public const byte IoOut = 1;

    public const int O_RDWR = 2, O_CLOEXEC = 0x80000;
    public const int PROT_EXEC = 0x4;
    public const int EINTR = 4, EAGAIN = 11;

    public static string ExitName(uint reason) => reason switch
    {
        EXIT_UNKNOWN => "unknown", EXIT_EXCEPTION => "exception", EXIT_IO => "io", EXIT_HYPERCALL => "hypercall",
        EXIT_DEBUG => "debug", EXIT_HLT => "hlt", EXIT_MMIO => "mmio", EXIT_SHUTDOWN => "shutdown (triple fault)",
        EXIT_FAIL_ENTRY => "fail_entry", EXIT_INTR => "intr", EXIT_INTERNAL_ERROR => "internal_error",
        EXIT_SYSTEM_EVENT => "system_event", _ => $"exit {reason}",
    };

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    // ioctl(2) is variadic; the argument is an integer or a pointer, passed in the same register either way.
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, ulong request, nint arg);

    [LibraryImport(Libc, EntryPoint = "sigaction", SetLastError = true)]
    public static partial int Sigaction(int signum, SigAction* act, SigAction* oldact);

    [LibraryImport(Libc, EntryPoint = "pthread_sigmask")]
    public static partial int PthreadSigmask(int how, ulong* set, ulong* oldset);

    [LibraryImport(Libc, EntryPoint = "__libc_current_sigrtmin")]
    public static partial int CurrentSigRtMin();

    [LibraryImport(Libc, EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint len, int prot);

    public const long SYS_tgkill = 234;

    /// <summary>glibc's struct sigaction on x86-64 (152 bytes); glibc adds SA_RESTORER itself.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 152)]
    public struct SigAction
    {
        [FieldOffset(0)] public nint Handler;
        [FieldOffset(8)] public fixed ulong Mask[16];
        [FieldOffset(136)] public int Flags;
        [FieldOffset(144)] public nint Restorer;
    }

    public const int SA_RESTART = 0x10000000;
    public const int SIG_UNBLOCK = 1;
}

/// <summary>struct kvm_userspace_memory_region (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvmMemoryRegion
{
    public uint Slot;
    public uint Flags;
    public ulong GuestPhysAddr;
    public ulong MemorySize;
    public ulong UserspaceAddr;
}

/// <summary>struct kvm_regs (144 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmRegs
{
    public ulong Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rsp, Rbp, R8, R9, R10, R11, R12, R13, R14, R15, Rip, Rflags;
}

/// <summary>struct kvm_segment (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSegment
{
    public ulong Base;
    public uint Limit;
    public ushort Selector;
    public byte Type, Present, Dpl, Db, S, L, G, Avl, Unusable, Padding;
}

/// <summary>struct kvm_dtable (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDtable
{
    public ulong Base;
    public ushort Limit;
    public ushort Pad0, Pad1, Pad2;
}

/// <summary>struct kvm_sregs (312 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmSregs
{
    public KvmSegment Cs, Ds, Es, Fs, Gs, Ss, Tr, Ldt;
    public KvmDtable Gdt, Idt;
    public ulong Cr0, Cr2, Cr3, Cr4, Cr8, Efer, ApicBase;
    public fixed ulong InterruptBitmap[4];
}
