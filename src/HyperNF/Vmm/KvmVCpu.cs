using System.Runtime.InteropServices;
using System.Text;
using HyperNF.Linux;

namespace HyperNF.Vmm;

/// <summary>
/// One KVM vCPU: its fd, its shared <c>kvm_run</c> page and the thread currently running it
/// (the domain's pinned vCPU thread). <see cref="Kick"/> gets that thread out of KVM_RUN.
/// </summary>
public sealed unsafe class KvmVCpu : IDisposable
{
    private readonly object _gate = new();
    private int _fd;
    private byte* _run;
    private readonly int _runSize;
    private int _tid;

    public int Index { get; }
    internal byte* RunArea => _run;
    internal int RunSize => _runSize;
    /// <summary>KVM_RUN calls made (each one an entry into the guest).</summary>
    public long Entries;
    /// <summary>KVM_RUN returns with EINTR or KVM_EXIT_INTR (kicks, runtime signals).</summary>
    public long Interrupts;

    internal KvmVCpu(int vmFd, int index, int runSize)
    {
        Index = index;
        _runSize = runSize;
        _fd = Kvm.Ioctl(vmFd, Kvm.CREATE_VCPU, index);
        if (_fd < 0) Native.ThrowLastError($"KVM_CREATE_VCPU({index})");
        nint p = Native.Mmap(0, (nuint)runSize, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _fd, 0);
        if (p == Native.MAP_FAILED)
        {
            int errno = Marshal.GetLastPInvokeError();
            Native.Close(_fd);
            _fd = -1;
            throw new IOException($"mmap(kvm_run of vCPU {index}) failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }
        _run = (byte*)p;
    }

    internal int Fd => _fd;

    internal void Ioctl(ulong request, void* arg, string what)
    {
        if (Kvm.Ioctl(_fd, request, (nint)arg) < 0) Native.ThrowLastError($"{what} (vCPU {Index})");
    }

    public KvmRegs GetRegs()
    {
        KvmRegs r;
        Ioctl(Kvm.GET_REGS, &r, "KVM_GET_REGS");
        return r;
    }

    public KvmSregs GetSregs()
    {
        KvmSregs s;
        Ioctl(Kvm.GET_SREGS, &s, "KVM_GET_SREGS");
        return s;
    }

    internal void SetRegs(in KvmRegs regs)
    {
        fixed (KvmRegs* p = &regs) Ioctl(Kvm.SET_REGS, p, "KVM_SET_REGS");
    }

    internal void SetSregs(in KvmSregs sregs)
    {
        fixed (KvmSregs* p = &sregs) Ioctl(Kvm.SET_SREGS, p, "KVM_SET_SREGS");
    }

    /// <summary>Binds the calling thread as the one that runs this vCPU (so kicks reach it).</summary>
    internal void Bind()
    {
        VCpuKick.UnblockOnThisThread();
        lock (_gate) _tid = Native.GetTid();
    }

    internal void Unbind()
    {
        lock (_gate) _tid = 0;
    }

    /// <summary>
    /// Gets the vCPU out of KVM_RUN within microseconds, whatever the guest does: sets
    /// immediate_exit (an entry that has not happened yet returns at once) and signals the
    /// thread (an entry in progress returns with EINTR). The caller sets its own flag first.
    /// </summary>
    public void Kick()
    {
        lock (_gate)
        {
            if (_run == null) return;
            Volatile.Write(ref _run[Kvm.RunImmediateExit], 1);
            if (_tid != 0) VCpuKick.Send(_tid);
        }
    }

    /// <summary>
    /// One KVM_RUN. Returns the exit reason, or -errno when the ioctl failed (EINTR: kicked;
    /// immediate_exit is cleared again before returning, so the caller re-checks its flags and
    /// re-enters).
    /// </summary>
    internal int Run()
    {
        Entries++;
        int r = Kvm.Ioctl(_fd, Kvm.RUN, 0);
        if (r < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Kvm.EINTR || errno == Kvm.EAGAIN)
            {
                Interrupts++;
                Volatile.Write(ref _run[Kvm.RunImmediateExit], 0);
                Interlocked.MemoryBarrier(); // the flag checks that follow see what the kicker set before it kicked
            }
            return -errno;
        }
        uint reason = *(uint*)(_run + Kvm.RunExitReason);
        if (reason == Kvm.EXIT_INTR)
        {
            Interrupts++;
            Volatile.Write(ref _run[Kvm.RunImmediateExit], 0);
            Interlocked.MemoryBarrier();
        }
        return (int)reason;
    }

    /// <summary>The registers, for a crash record (best effort: the vCPU may be unusable).</summary>
    public string DumpRegisters()
    {
        try
        {
            var r = GetRegs();
            var s = GetSregs();
            var b = new StringBuilder();
            b.Append($"rip={r.Rip:x16} rsp={r.Rsp:x16} rflags={r.Rflags:x8} cs={s.Cs.Selector:x2} ss={s.Ss.Selector:x2}\n");
            b.Append($"rax={r.Rax:x16} rbx={r.Rbx:x16} rcx={r.Rcx:x16} rdx={r.Rdx:x16}\n");
            b.Append($"rsi={r.Rsi:x16} rdi={r.Rdi:x16} rbp={r.Rbp:x16} r8={r.R8:x16}\n");
            b.Append($"r9={r.R9:x16} r10={r.R10:x16} r11={r.R11:x16} r12={r.R12:x16}\n");
            b.Append($"r13={r.R13:x16} r14={r.R14:x16} r15={r.R15:x16}\n");
            b.Append($"cr0={s.Cr0:x8} cr2={s.Cr2:x16} cr3={s.Cr3:x8} cr4={s.Cr4:x8} efer={s.Efer:x}");
            return b.ToString();
        }
        catch (IOException e)
        {
            return $"(registers unavailable: {e.Message})";
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_run != null)
            {
                Native.Munmap((nint)_run, (nuint)_runSize);
                _run = null;
            }
            if (_fd >= 0)
            {
                Native.Close(_fd);
                _fd = -1;
            }
        }
    }
}
