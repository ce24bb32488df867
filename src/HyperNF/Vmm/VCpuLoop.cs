using System.Diagnostics;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Vmm;

/// <summary>A guest did something the VMM does not allow: its domain crashes with this reason and its registers.</summary>
public sealed class VmFaultException(string reason, string registers) : Exception(reason)
{
    public string Registers { get; } = registers;
}

/// <summary>Why <see cref="VCpuLoop.Run"/> returned.</summary>
public enum VCpuStop
{
    /// <summary>The caller's attention condition became true (stop, pause): re-check and call again.</summary>
    Interrupted,
    /// <summary>The guest made the EXIT hypercall; <see cref="VCpuLoop.ExitStatus"/> holds its status.</summary>
    Exited,
}

/// <summary>
/// The exit loop of one vCPU, run on the domain's vCPU thread: KVM_RUN, decode the exit, run
/// the hypercall right here (in the hypercall model TXSYNC is the VALE flush itself, billed to
/// this thread), re-enter. PIO (ring 0) and the MMIO doorbell (any ring) decode to the same
/// <see cref="Hypercall"/>. Every guest value is read once and checked before use; anything the
/// VMM does not expect is a <see cref="VmFaultException"/> for this domain only.
/// </summary>
public sealed unsafe class VCpuLoop
{
    private readonly VirtualMachine _vm;
    private readonly KvmVCpu _vcpu;
    private readonly IReadOnlyList<NetmapPort> _ports;
    private readonly WakeWord _wake;
    private readonly GuestConsole _console;
    private readonly long[] _opCounts = new long[GuestAbi.MaxOps];
    private readonly Func<bool> _pollReady;
    private Func<bool> _attention = static () => false;
    private uint _pollMask, _pollTxMask;
    private bool _exited;

    public KvmVCpu VCpu => _vcpu;
    public int ExitStatus { get; private set; }
    /// <summary>Hypercalls handled, all ops.</summary>
    public long Hypercalls;
    /// <summary>POLL calls that blocked (slept in the VMM).</summary>
    public long PollSleeps;

    public VCpuLoop(VirtualMachine vm, int vcpu, IReadOnlyList<NetmapPort> ports, WakeWord wake, GuestConsole console)
    {
        _vm = vm;
        _vcpu = vm.VCpus[vcpu];
        _ports = ports;
        _wake = wake;
        _console = console;
        _pollReady = () => _attention() || _vm.ShutdownRequested || AnyPublished(_pollMask) || AnyTxSpace(_pollTxMask);
    }

    /// <summary>Hypercalls of op <paramref name="op"/> handled so far.</summary>
    public long OpCount(int op) => (uint)op < GuestAbi.MaxOps ? Volatile.Read(ref _opCounts[op]) : 0;

    /// <summary>
    /// Runs the guest until <paramref name="attention"/> is true (checked before every entry and
    /// after every kick: set your flag, then <see cref="KvmVCpu.Kick"/>) or the guest exits.
    /// </summary>
    public VCpuStop Run(Func<bool> attention)
    {
        if (_exited) return VCpuStop.Exited;
        _attention = attention;
        _vcpu.Bind();
        try
        {
            while (true)
            {
                if (attention()) return VCpuStop.Interrupted;
                int r = _vcpu.Run();
                if (r < 0)
                {
                    if (r == -Kvm.EINTR || r == -Kvm.EAGAIN) continue;
                    throw Fault($"KVM_RUN failed: {System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(-r)} (errno {-r})");
                }
                switch ((uint)r)
                {
                    case Kvm.EXIT_MMIO: OnMmio(); break;
                    case Kvm.EXIT_IO: OnIo(); break;
                    case Kvm.EXIT_INTR: break;
                    case Kvm.EXIT_SHUTDOWN:
                        throw Fault("triple fault: the guest took an exception (there is no IDT) or reset the CPU");
                    case Kvm.EXIT_INTERNAL_ERROR:
                        throw Fault($"KVM internal error, suberror {*(uint*)(_vcpu.RunArea + Kvm.InternalSuberror)} (1 = instruction emulation failed)");
                    case Kvm.EXIT_FAIL_ENTRY:
                        throw Fault($"VM entry failed, hardware reason 0x{*(ulong*)(_vcpu.RunArea + Kvm.FailEntryReason):x}");
                    case Kvm.EXIT_HLT:
                        throw Fault("hlt: there are no interrupts, the vCPU would never wake (use POLL to wait)");
                    default:
                        throw Fault($"unexpected VM exit: {Kvm.ExitName((uint)r)}");
                }
                if (_exited) return VCpuStop.Exited;
            }
        }
        finally
        {
            _vcpu.Unbind();
        }
    }

    private VmFaultException Fault(string reason) =>
        new($"vCPU {_vcpu.Index}: {reason}", _vcpu.DumpRegisters());

    private void OnMmio()
    {
        byte* run = _vcpu.RunArea;
        ulong addr = *(ulong*)(run + Kvm.MmioPhysAddr);
        uint len = *(uint*)(run + Kvm.MmioLen);
        bool write = run[Kvm.MmioIsWrite] != 0;
        ulong off = addr - GuestAbi.DoorbellGpa;
        if (off < GuestAbi.PageSize)
        {
            if (!write) throw Fault($"read of the hypercall doorbell at 0x{addr:x} (only 4-byte stores are hypercalls)");
            if (len != 4) throw Fault($"{len}-byte store to the hypercall doorbell at 0x{addr:x} (a hypercall is a 4-byte store)");
            if ((off & 7) != 0) throw Fault($"store to the hypercall doorbell at 0x{addr:x}, not at a multiple of 8");
            Hypercall((int)(off >> 3), *(uint*)(run + Kvm.MmioData));
            return;
        }
        string what = addr >= GuestAbi.RegionGpa && addr < GuestAbi.RegionGpa + GuestAbi.RegionMaxBytes
            ? $"past the end of the domain's region (0x{GuestAbi.RegionGpa:x} + 0x{_vm.RegionBytes:x})"
            : addr - GuestAbi.KickGpa < GuestAbi.PageSize
                ? _vm.Kick is null ? "on the kick page, which this domain's I/O model does not use"
                : $"on the kick page (a kick is a store to 0x{GuestAbi.KickGpa:x} itself{(_vm.Kick.Length == 0 ? "" : $", {_vm.Kick.Length} bytes")})"
            : "outside the guest's memory";
        throw Fault($"{(write ? "write" : "read")} of {len} bytes at GPA 0x{addr:x}, {what}");
    }

    private void OnIo()
    {
        byte* run = _vcpu.RunArea;
        byte dir = run[Kvm.IoDirection];
        byte size = run[Kvm.IoSize];
        ushort port = *(ushort*)(run + Kvm.IoPort);
        uint count = *(uint*)(run + Kvm.IoCount);
        ulong dataOff = *(ulong*)(run + Kvm.IoDataOffset);
        uint op = (uint)port - GuestAbi.PioBase;
        if (dir != Kvm.IoOut || size != 4 || count != 1 || op >= GuestAbi.MaxOps || dataOff > (ulong)_vcpu.RunSize - 4)
            throw Fault($"port I/O {(dir == Kvm.IoOut ? "out" : "in")} size {size} count {count} at port 0x{port:x} (hypercalls are outl to 0x{GuestAbi.PioBase:x}+op)");
        Hypercall((int)op, *(uint*)(run + dataOff));
    }

    /// <summary>One hypercall: op and the GPA of its argument block.</summary>
    private void Hypercall(int op, uint gpa)
    {
        int size = GuestAbi.BlockSize(op);
        if (size == 0) throw Fault($"unknown hypercall op {op} (argument 0x{gpa:x})");
        if ((gpa & 7) != 0) throw Fault($"{GuestAbi.OpName(op)}: argument block at 0x{gpa:x} is not 8-byte aligned");
        byte* b = _vm.RamAt(gpa, (ulong)size);
        if (b == null) throw Fault($"{GuestAbi.OpName(op)}: argument block at 0x{gpa:x} + {size} is outside guest RAM (0x{_vm.RamBytes:x} bytes)");
        Hypercalls++;
        _opCounts[op]++;
        switch (op)
        {
            case GuestAbi.OpTxSync: *(int*)(b + 8) = Sync(tx: true, Volatile.Read(ref *(uint*)b), Volatile.Read(ref *(uint*)(b + 4))); break;
            case GuestAbi.OpRxSync: *(int*)(b + 8) = Sync(tx: false, Volatile.Read(ref *(uint*)b), Volatile.Read(ref *(uint*)(b + 4))); break;
            case GuestAbi.OpPoll: Poll(b); break;
            case GuestAbi.OpClock: *(ulong*)b = (ulong)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency)); break;
            case GuestAbi.OpWalltime: *(ulong*)b = (ulong)((DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100); break;
            case GuestAbi.OpPuts: Puts(b); break;
            case GuestAbi.OpExit:
                ExitStatus = Volatile.Read(ref *(int*)b);
                _exited = true;
                break;
        }
    }

    private int Sync(bool tx, uint port, uint ring)
    {
        if (port >= (uint)_ports.Count) return GuestAbi.EINVAL;
        var p = _ports[(int)port];
        int rings = tx ? p.TxRingCount : p.RxRingCount;
        if (ring != GuestAbi.AllRings && ring >= (uint)rings) return GuestAbi.EINVAL;
        if (ring == GuestAbi.AllRings || rings == 1 || p.Backend is not ValePort vp)
        {
            if (tx) p.TxSync(); else p.RxSync();
        }
        else if (tx) vp.Tx[ring].Sync();
        else vp.Rx[ring].Sync();
        return 0;
    }

    private void Puts(byte* b)
    {
        ulong data = Volatile.Read(ref *(ulong*)b);
        ulong len = Volatile.Read(ref *(ulong*)(b + 8));
        if (len > GuestAbi.MaxPuts) throw Fault($"PUTS of {len} bytes (at most {GuestAbi.MaxPuts})");
        byte* src = _vm.RamAt(data, len);
        if (src == null) throw Fault($"PUTS: buffer at 0x{data:x} + {len} is outside guest RAM");
        _console.Append(new ReadOnlySpan<byte>(src, (int)len));
    }

    private void Poll(byte* b)
    {
        ulong timeoutNs = Volatile.Read(ref *(ulong*)b);
        uint rxMask = Volatile.Read(ref *(uint*)(b + 8));
        uint txMask = Volatile.Read(ref *(uint*)(b + 12));
        uint valid = _ports.Count >= 32 ? uint.MaxValue : (1u << _ports.Count) - 1;
        if (((rxMask | txMask) & ~valid) != 0)
        {
            *(uint*)(b + 16) = 0;
            *(int*)(b + 20) = GuestAbi.EINVAL;
            return;
        }
        for (int k = 0; k < _ports.Count; k++)
            if ((txMask & (1u << k)) != 0) _ports[k].TxSync();
        long deadline = timeoutNs == 0 ? 0
            : Environment.TickCount64 + (long)Math.Min((timeoutNs + 999_999) / 1_000_000, int.MaxValue);
        // Split/merge: the backend frees TX slots later, on its own thread; a tx_mask port is
        // also ready (POLLOUT) once its TX ring has room again. (Hypercall: the flush above
        // handed every slot back already.)
        uint txWait = _vm.Kick is not null ? txMask : 0;
        uint ready;
        while (true)
        {
            ready = 0;
            for (int k = 0; k < _ports.Count; k++)
            {
                if ((rxMask & (1u << k)) == 0) continue;
                // The sync decides readiness (ring memory is read only inside it: ValePort, "Port state changes").
                if (_ports[k].Origin is ValePort vp && vp.RxSyncReady()) ready |= 1u << k;
            }
            if (ready != 0 || AnyTxSpace(txWait) || timeoutNs == 0 || _attention() || _vm.ShutdownRequested) break;
            long left = deadline - Environment.TickCount64;
            if (left <= 0) break;
            _pollMask = rxMask;
            _pollTxMask = txWait;
            PollSleeps++;
            _wake.Wait(_pollReady, (int)Math.Min(left, int.MaxValue));
        }
        *(uint*)(b + 16) = ready;
        *(int*)(b + 20) = System.Numerics.BitOperations.PopCount(ready);
    }

    /// <summary>Some port of <paramref name="mask"/> has TX room (advisory reads of the guest's own ring), or is gone.</summary>
    private bool AnyTxSpace(uint mask)
    {
        if (mask == 0) return false;
        for (int k = 0; k < _ports.Count; k++)
            if ((mask & (1u << k)) != 0 && _ports[k].Origin is ValePort vp && (vp.Retired || vp.AnyTxSpace())) return true;
        return false;
    }

    private bool AnyPublished(uint mask)
    {
        for (int k = 0; k < _ports.Count; k++)
            if ((mask & (1u << k)) != 0 && _ports[k].Origin is ValePort vp && (vp.Retired || vp.AnyRxPublished())) return true;
        return false;
    }
}
