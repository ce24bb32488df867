using System.Runtime.InteropServices;

namespace HyperNF.Linux;

/// <summary>
/// The few Linux system calls the host needs, declared once. Everything here is a thin
/// <c>LibraryImport</c>; callers turn a negative return into an exception with
/// <see cref="ThrowLastError"/> so the errno text names the failing call.
/// </summary>
internal static unsafe partial class Native
{
    private const string Libc = "libc";

    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x01;
    public const uint MFD_CLOEXEC = 0x1;
    public static readonly nint MAP_FAILED = -1;

    private const long SYS_futex = 202;   // x86_64
    private const long SYS_gettid = 186;  // x86_64
    private const int FUTEX_WAIT_PRIVATE = 0 | 128;
    private const int FUTEX_WAKE_PRIVATE = 1 | 128;

    /// <summary>setpriority(PRIO_PROCESS, tid, nice): the nice value of one thread (Linux). Returns 0 or the errno.</summary>
    public static int SetThreadNice(int tid, int nice) => SetPriority(0, (uint)tid, nice) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, uint who, int prio);

    [LibraryImport(Libc, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MemfdCreate(string name, uint flags);

    [LibraryImport(Libc, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);


    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Libc, EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    public const int MADV_HUGEPAGE = 14;
    /// <summary>madvise: allocate every page of the range now, as a write fault would (Linux 5.14+).</summary>
    public const int MADV_POPULATE_WRITE = 23;

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport(Libc, EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int prio);

    /// <summary>Sets the nice value of one thread (Linux applies PRIO_PROCESS to a single tid). Returns false if not permitted.</summary>
    public static bool SetNice(int tid, int nice) => SetPriority(0 /* PRIO_PROCESS */, tid, nice) == 0;

    public const int SCHED_OTHER = 0, SCHED_FIFO = 1;

    [LibraryImport(Libc, EntryPoint = "sched_setscheduler", SetLastError = true)]
    private static partial int SchedSetScheduler(int pid, int policy, ref int param);

    [LibraryImport(Libc, EntryPoint = "sched_getscheduler", SetLastError = true)]
    public static partial int SchedGetScheduler(int pid);

    /// <summary>
    /// sched_setscheduler for thread <paramref name="tid"/> (0: the caller): SCHED_FIFO with
    /// <paramref name="priority"/> 1..99, or SCHED_OTHER with 0 (the thread's nice value is kept).
    /// Returns 0 or the errno (EPERM without CAP_SYS_NICE).
    /// </summary>
    public static int SetScheduler(int tid, int policy, int priority) =>
        SchedSetScheduler(tid, policy, ref priority) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport(Libc, EntryPoint = "sched_getcpu")]
    public static partial int SchedGetCpu();

    [LibraryImport(Libc, EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nuint cpusetsize, ulong* mask);

    [LibraryImport(Libc, EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nuint cpusetsize, ulong* mask);

    // syscall(2) is variadic; every argument here is an integer or pointer, which the
    // x86_64 SysV convention passes in the same registers either way.
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall6(long number, nint a1, nint a2, nint a3, nint a4, nint a5, nint a6);

    /// <summary>A raw system call (x86_64 numbers); -1 and errno on failure.</summary>
    public static long Syscall(long number, nint a1, nint a2, nint a3, nint a4, nint a5, nint a6) => Syscall6(number, a1, a2, a3, a4, a5, a6);

    /// <summary>The kernel thread id of the calling thread (what /proc/self/task lists).</summary>
    public static int GetTid() => (int)Syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);

    /// <summary>
    /// Sleeps while <c>*address == expected</c>, at most <paramref name="timeoutMs"/> (negative: forever).
    /// Returns false on timeout. Spurious wake-ups are possible; callers re-check their condition.
    /// </summary>
    public static bool FutexWait(int* address, int expected, int timeoutMs)
    {
        long* ts = stackalloc long[2];
        nint tsp = 0;
        if (timeoutMs >= 0)
        {
            ts[0] = timeoutMs / 1000;
            ts[1] = (timeoutMs % 1000) * 1_000_000L;
            tsp = (nint)ts;
        }
        long r = Syscall6(SYS_futex, (nint)address, FUTEX_WAIT_PRIVATE, expected, tsp, 0, 0);
        if (r == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        return errno != 110; // ETIMEDOUT; EAGAIN (value changed) and EINTR count as a wake-up
    }

    /// <summary>Wakes every thread sleeping in <see cref="FutexWait"/> on this address.</summary>
    public static void FutexWakeAll(int* address) =>
        Syscall6(SYS_futex, (nint)address, FUTEX_WAKE_PRIVATE, int.MaxValue, 0, 0, 0);

    /// <summary>
    /// <see cref="FutexWait"/> on a word in memory shared with another process (a MAP_SHARED
    /// memfd page): the non-private futex, keyed by the page rather than the address space.
    /// </summary>
    public static bool FutexWaitShared(int* address, int expected, int timeoutMs)
    {
        long* ts = stackalloc long[2];
        nint tsp = 0;
        if (timeoutMs >= 0)
        {
            ts[0] = timeoutMs / 1000;
            ts[1] = (timeoutMs % 1000) * 1_000_000L;
            tsp = (nint)ts;
        }
        long r = Syscall6(SYS_futex, (nint)address, 0 /* FUTEX_WAIT */, expected, tsp, 0, 0);
        if (r == 0) return true;
        return Marshal.GetLastPInvokeError() != 110;
    }

    /// <summary>Wakes every waiter on a shared futex word (any process).</summary>
    public static void FutexWakeShared(int* address) =>
        Syscall6(SYS_futex, (nint)address, 1 /* FUTEX_WAKE */, int.MaxValue, 0, 0, 0);

    /// <summary>Pins thread <paramref name="tid"/> (0 = the caller) to the given CPUs.</summary>
    public static void SetAffinity(int tid, ReadOnlySpan<int> cpus)
    {
        ulong* mask = stackalloc ulong[16];
        new Span<ulong>(mask, 16).Clear();
        foreach (int cpu in cpus)
        {
            if ((uint)cpu >= 1024) throw new ArgumentOutOfRangeException(nameof(cpus), cpu, "CPU numbers must be 0..1023");
            mask[cpu >> 6] |= 1UL << (cpu & 63);
        }
        if (SchedSetAffinity(tid, 16 * sizeof(ulong), mask) != 0) ThrowLastError($"sched_setaffinity(tid {tid}, cpus {string.Join(',', cpus.ToArray())})");
    }

    /// <summary>The CPUs thread <paramref name="tid"/> (0 = the caller) may run on.</summary>
    public static int[] GetAffinity(int tid)
    {
        ulong* mask = stackalloc ulong[16];
        if (SchedGetAffinity(tid, 16 * sizeof(ulong), mask) != 0) ThrowLastError("sched_getaffinity");
        var list = new List<int>();
        for (int i = 0; i < 1024; i++)
            if ((mask[i >> 6] & (1UL << (i & 63))) != 0) list.Add(i);
        return list.ToArray();
    }

    public static void ThrowLastError(string what)
    {
        int errno = Marshal.GetLastPInvokeError();
        throw new IOException($"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }
}
