using HyperNF.Switch;
using HyperNF.Vmm;

namespace HyperNF.Hypervisor;

/// <summary>
/// A VM domain's guest (xl's <c>kernel=</c>): a KVM virtual machine booted from an ELF image,
/// whose vCPUs are run by the domain's own vCPU threads. <see cref="Run"/> is "KVM_RUN in a
/// loop" on that thread, so the domain's pinning, cgroup weight and cap and its CPU accounting
/// apply to guest execution and to the switching its hypercalls do. Pause, crash and destroy
/// kick the vCPUs out of KVM_RUN (<see cref="Interrupt"/>); a guest spinning forever is
/// legitimate and not a watchdog matter.
/// </summary>
public sealed class VmGuest : IGuest, IDisposable
{
    private readonly ElfImage _image;
    private VirtualMachine? _vm;
    private VCpuLoop[] _loops = [];
    private Domain? _domain;
    private int _exitedVCpus;
    private int? _exitStatus;

    public string KernelPath { get; }
    public string CommandLine { get; }
    public int MemoryMb { get; }
    public string Name => $"vm:{Path.GetFileName(KernelPath)}";
    /// <summary>What the guest wrote with PUTS.</summary>
    public GuestConsole Console { get; } = new();
    public VirtualMachine? Machine => _vm;
    public IReadOnlyList<VCpuLoop> Loops => _loops;
    /// <summary>The status of the EXIT hypercall (the first non-zero one over the vCPUs, else 0); null while running.</summary>
    public int? ExitStatus => _exitStatus;

    /// <summary>Loads and checks the image now, so a bad kernel= is an error at create, not a crash later.</summary>
    public VmGuest(string kernelPath, string? commandLine, int? memoryMb)
    {
        ArgumentNullException.ThrowIfNull(kernelPath);
        KernelPath = kernelPath;
        CommandLine = commandLine ?? "";
        MemoryMb = memoryMb ?? GuestAbi.DefaultMemoryMb;
        if (MemoryMb < 2 || MemoryMb > GuestAbi.MaxMemoryMb || MemoryMb % 2 != 0)
            throw new ArgumentException($"memory for a VM domain is guest RAM: an even number of MB in 2..{GuestAbi.MaxMemoryMb}, not {MemoryMb}");
        try { _image = ElfImage.Load(kernelPath); }
        catch (InvalidDataException e) { throw new ArgumentException(e.Message, e); }
        if (_image.End + VirtualMachine.StackPerVCpu > (ulong)MemoryMb << 20)
            throw new ArgumentException($"kernel '{kernelPath}' ({(_image.End - GuestAbi.ImageBase) >> 10} KiB loaded) does not fit in {MemoryMb} MB with its stack; raise memory=");
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters
    {
        get
        {
            long calls = 0, tx = 0, rx = 0, poll = 0, sleeps = 0, entries = 0, intr = 0;
            foreach (var l in _loops)
            {
                calls += Interlocked.Read(ref l.Hypercalls);
                tx += l.OpCount(GuestAbi.OpTxSync);
                rx += l.OpCount(GuestAbi.OpRxSync);
                poll += l.OpCount(GuestAbi.OpPoll);
                sleeps += Interlocked.Read(ref l.PollSleeps);
                entries += Interlocked.Read(ref l.VCpu.Entries);
                intr += Interlocked.Read(ref l.VCpu.Interrupts);
            }
            return
            [
                new("hypercalls", calls), new("txsync", tx), new("rxsync", rx), new("poll", poll), new("poll_sleeps", sleeps),
                new("kvm_entries", entries), new("kvm_interrupts", intr), new("console_bytes", Console.Written),
            ];
        }
    }

    /// <summary>Creates the VM over the domain's region and ports; called once, before the vCPU threads start.</summary>
    internal void Boot(Domain d)
    {
        if (_vm is not null) throw new InvalidOperationException("a VM guest boots once");
        _domain = d;
        // The guest's rxsync runs in the guest, with no exit (RxKring, "Self-served rings"; as
        // ptnetmap's CSB): the ring's release and publish words, in the netmap-reserved sem area.
        foreach (var p in d.Ports)
            if (p.Origin is ValePort vp)
                foreach (var k in vp.Rx) k.EnableSelfService();
        _vm = new VirtualMachine(new VmConfig
        {
            Image = _image,
            MemoryMb = MemoryMb,
            CommandLine = CommandLine,
            VCpus = d.Spec.VCpus,
            DomainId = d.Id,
            IoModel = (uint)d.IoModel,
            Region = d.Memory,
            PortAreas = d.Ports.Select(p => p.Area).ToArray(),
            RxSelfServed = d.Ports.Count > 0 && d.Ports.All(p => p.Origin is ValePort),
        });
        _loops = Enumerable.Range(0, d.Spec.VCpus).Select(i => new VCpuLoop(_vm, i, d.Ports, d.Wake, Console)).ToArray();
    }

    public void Run(GuestContext ctx)
    {
        var loop = _loops[ctx.VCpu];
        var d = _domain!;
        Func<bool> attention = () => d.Cancellation.IsCancellationRequested || d.PauseRequested;
        while (true)
        {
            ctx.Checkpoint(); // blocks here while the domain is paused
            if (ctx.Stopping) return;
            if (loop.Run(attention) == VCpuStop.Exited)
            {
                lock (_loops)
                {
                    if (_exitStatus is null or 0) _exitStatus = loop.ExitStatus;
                    _exitedVCpus++;
                    if (_exitedVCpus == _loops.Length) d.OnGuestExited(_exitStatus ?? 0);
                }
                return;
            }
        }
    }

    /// <summary>Gets every vCPU out of KVM_RUN now (the caller has set the flag it should notice).</summary>
    internal void Interrupt()
    {
        foreach (var l in _loops) l.VCpu.Kick();
    }

    /// <summary>Closes the VM (fds, guest RAM, vCPU pages). Only once every vCPU thread has ended.</summary>
    public void Dispose() => _vm?.Dispose();
}
