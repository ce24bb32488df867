using System.Runtime.InteropServices;
using HyperNF.Linux;

namespace HyperNF.Vmm;

/// <summary>
/// Gets a vCPU thread out of KVM_RUN: the kicker sets <c>kvm_run.immediate_exit</c> and sends
/// the thread a real-time signal whose handler does nothing. A guest that is running returns
/// from KVM_RUN with EINTR at once; one about to enter returns at once because of
/// immediate_exit. The signal is SIGRTMIN+4, not SIGRTMIN, which CoreCLR uses to suspend
/// threads; it is installed once per process with a handler that is a single <c>ret</c>
/// instruction on an executable page of its own (no managed code runs in signal context).
/// </summary>
internal static unsafe class VCpuKick
{
    private static readonly object Gate = new();
    private static int _signal;

    /// <summary>The kick signal number, installing its handler on first use.</summary>
    public static int Signal
    {
        get
        {
            if (Volatile.Read(ref _signal) != 0) return _signal;
            lock (Gate)
            {
                if (_signal == 0) _signal = Install();
                return _signal;
            }
        }
    }

    private static int Install()
    {
        nint page = Native.Mmap(0, 4096, Native.PROT_READ | Native.PROT_WRITE, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
        if (page == Native.MAP_FAILED) Native.ThrowLastError("mmap(signal handler page)");
        *(byte*)page = 0xC3; // ret
        if (Kvm.Mprotect(page, 4096, Native.PROT_READ | Kvm.PROT_EXEC) != 0) Native.ThrowLastError("mprotect(signal handler page)");
        int rtmin = Kvm.CurrentSigRtMin();
        // SIGRTMIN is CoreCLR's activation signal; take the first of SIGRTMIN+4.. that nobody handles.
        for (int sig = rtmin + 4; sig <= rtmin + 12; sig++)
        {
            Kvm.SigAction old;
            if (Kvm.Sigaction(sig, null, &old) != 0) continue;
            if (old.Handler != 0) continue; // SIG_DFL is 0; anything else belongs to someone
            Kvm.SigAction act = default;
            act.Handler = page;
            act.Flags = Kvm.SA_RESTART;
            if (Kvm.Sigaction(sig, &act, null) != 0) Native.ThrowLastError($"sigaction({sig})");
            return sig;
        }
        throw new IOException($"no free real-time signal in SIGRTMIN+4..SIGRTMIN+12 to kick vCPUs with");
    }

    /// <summary>Makes sure the calling thread does not block the kick signal (threads inherit masks).</summary>
    public static void UnblockOnThisThread()
    {
        int sig = Signal;
        ulong* set = stackalloc ulong[16];
        new Span<ulong>(set, 16).Clear();
        set[(sig - 1) / 64] = 1UL << ((sig - 1) % 64);
        Kvm.PthreadSigmask(Kvm.SIG_UNBLOCK, set, null);
    }

    /// <summary>Sends the kick signal to thread <paramref name="tid"/> of this process.</summary>
    public static void Send(int tid)
    {
        long r = Native.Syscall(Kvm.SYS_tgkill, Environment.ProcessId, tid, Signal, 0, 0, 0);
        if (r != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != 3 /* ESRCH: the thread has just ended */) throw new IOException($"tgkill({tid}) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }
    }
}
