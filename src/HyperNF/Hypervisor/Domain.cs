using HyperNF.Linux;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using HyperNF.Vmm;

namespace HyperNF.Hypervisor;

/// <summary>
/// An isolated NF: its own memory region and ports, its vCPU threads, its weight and cap.
/// NF code only ever holds views of its own rings. A fault in the guest (an exception, or a
/// vCPU that stops checking in) ends this domain only: its ports are detached, its threads
/// told to stop, and the host and the other domains keep forwarding.
/// </summary>
public sealed class Domain
{
    private readonly object _gate = new();
    private readonly CancellationTokenSource _cts = new();
    private readonly ManualResetEventSlim _unpaused = new(true);
    // Copy-on-write: a process domain adds and removes ports and vCPUs while others read them.
    private volatile NetmapPort[] _ports = [];
    private volatile VCpu[] _vcpus = [];
    private readonly List<ProcessPort> _processPorts = new();
    private long _retiredVCpuNs;
    private int _nextVCpu;
    private readonly Host _host;
    private IGuest? _guest;
    private volatile bool _pauseRequested;
    private volatile DomainState _state = DomainState.Created;
    private bool _portsClosed;
    private bool _memoryReleased;

    public int Id { get; }
    public string Name => Spec.Name;
    public DomainSpec Spec { get; }
    public DomainState State => _state;
    public string? CrashReason { get; private set; }
    /// <summary>The faulting vCPU's registers when a VM domain crashed on a guest fault; null otherwise.</summary>
    public string? CrashRegisters { get; private set; }
    /// <summary>A VM domain's EXIT status once it has exited (<see cref="DomainState.Exited"/>).</summary>
    public int? ExitStatus { get; private set; }
    /// <summary>Thread (NF code on host threads) or VM (a KVM virtual machine booted from kernel=).</summary>
    /// <summary>The VM of a VM domain; null for a thread domain.</summary>
    public VmGuest? Vm => _guest as VmGuest;
    public IoModel IoModel { get; }
    public DomainMemory Memory { get; }
    public WakeWord Wake { get; } = new();
    public IReadOnlyList<NetmapPort> Ports => _ports;
    public IReadOnlyList<VCpu> VCpus => _vcpus;
    public BackendThread? Backend { get; private set; }
    public IGuest? Guest => _guest;
    public int Weight { get; internal set; }
    public int Cap { get; internal set; }
    public DateTime CreatedAt { get; } = DateTime.UtcNow;
    /// <summary>Guest (an NF on vCPU threads) or process (a netmap program in its own process).</summary>
    public DomainKind Kind => Spec.ProcessId is not null ? DomainKind.Process : _guest is VmGuest ? DomainKind.Vm : DomainKind.Thread;
    /// <summary>The program's pid for a process domain, else null.</summary>
    public int? ProcessId => Spec.ProcessId;
    /// <summary>A process domain's registered ports, each with its host thread and control page.</summary>
    public IReadOnlyList<ProcessPort> ProcessPorts { get { lock (_gate) return _processPorts.ToArray(); } }
    internal CancellationToken Cancellation => _cts.Token;
    internal bool PauseRequested => _pauseRequested;

    internal Domain(Host host, int id, DomainSpec spec, IoModel model)
    {
        _host = host;
        Id = id;
        Spec = spec;
        IoModel = model;
        Weight = spec.Weight;
        Cap = spec.Cap;
        Memory = new DomainMemory(LayoutFor(spec), $"hypernf-dom{id}-{spec.Name}");
    }

    /// <summary>The region a domain of <paramref name="spec"/> gets: a port area per vif, its rings and buffers.</summary>
    public static RegionLayout LayoutFor(DomainSpec spec) => new()
    {
        MaxPorts = spec.ProcessId is null ? Math.Max(1, spec.Vifs.Count) : spec.ProcessPorts,
        RingsPerPort = spec.ProcessId is null ? 1 : Math.Clamp(spec.ProcessRingsPerPort, 1, DomainSpec.MaxProcessRings),
        SlotsPerRing = spec.SlotsPerRing,
        ExtraBuffersPerPort = spec.ExtraBuffersPerPort,
    };

    /// <summary>
    /// Null when the domain's region fits its <see cref="DomainSpec.MemoryMb"/> (or it has none),
    /// else why not, with the size it needs.
    /// </summary>
    public static string? CheckMemory(DomainSpec spec)
    {
        if (spec.Kernel is not null) return null; // a VM domain's memory= is its guest RAM, not a bound on the region
        if (spec.MemoryMb is not { } mb) return null;
        long need = LayoutFor(spec).TotalBytes;
        long needMb = (need + (1 << 20) - 1) >> 20;
        return need <= (long)mb << 20 ? null
            : $"{mb} MB is less than the {needMb} MB the domain's region needs ({spec.Vifs.Count} vif(s): rings and 2048-byte buffers); raise memory to at least {needMb}";
    }

    /// <summary>Opens the ports, wires the I/O model, creates the guest and starts the vCPUs.</summary>
    /// <summary>How long a split VM backend polls the rings after its last round before it asks for a kick (merge: 0).</summary>
    public static int VmBackendSpinMicroseconds { get; set; } = 20;

    internal void Start(IGuest guest, IReadOnlyList<int> backendCpus)
    {
        try
        {
            var ports = new List<NetmapPort>();
            foreach (var vif in Spec.Vifs)
            {
                ports.Add(_host.Switch.OpenPort(vif.Port, Memory, Wake));
                _ports = ports.ToArray();
            }
            _guest = guest;
            // A VM boots first: in split/merge its backend is kicked through the VM's ioeventfd.
            var vm = guest as VmGuest;
            vm?.Boot(this);
            if (IoModel != IoModel.Hypercall && _ports.Length > 0)
            {
                var vps = _ports.Select(p => (ValePort)p.Origin).ToList();
                var kick = vm?.Machine?.Kick;
                Backend = new BackendThread($"{Name}-backend", vps, Wake, backendCpus, kick,
                    kick is not null && IoModel == IoModel.Split ? Spec.BackendSpinMicroseconds ?? VmBackendSpinMicroseconds : 0);
                foreach (var p in _ports) p.Backend = new BackendPort((ValePort)p.Origin, Backend);
            }
            _vcpus = Enumerable.Range(0, Spec.VCpus).Select(i => new VCpu(this, i, Spec.CpusOf(i))).ToArray();
            _nextVCpu = Spec.VCpus;
            _state = DomainState.Running;
            foreach (var v in _vcpus) v.Start();
        }
        catch
        {
            _cts.Cancel();
            (guest as VmGuest)?.Interrupt();
            foreach (var v in _vcpus) v.Join(TimeSpan.FromSeconds(2));
            _guest ??= guest;
            ClosePorts();
            lock (_gate) ReleaseMemoryIfIdle();
            _state = DomainState.Destroyed;
            throw;
        }
    }

    /// <summary>A process domain starts empty: its ports (and their host threads) come with the program's registrations.</summary>
    internal void StartProcess()
    {
        lock (_gate) _state = DomainState.Running;
    }

    /// <summary>
    /// Registers port <paramref name="name"/> for the domain's program: formats a port area in
    /// the region (with <paramref name="extraBuffers"/> spare buffers), attaches it (the bridge
    /// is created on first use), wires the I/O model, and starts the port's host thread (a vCPU
    /// of the domain) on the control page. <paramref name="eventFd"/> (the program's eventfd)
    /// belongs to the returned port from now on, and is closed on failure.
    /// </summary>
    internal ProcessPort OpenProcessPort(string name, int extraBuffers, int eventFd, IReadOnlyList<int> backendCpus, PersistentPort? persistent = null,
        IProcessPortSource? pipeEnd = null)
    {
        if (Kind != DomainKind.Process) throw new InvalidOperationException($"domain '{Name}' is not a process domain");
        SyncChannel channel;
        try { channel = new SyncChannel($"hypernf-dom{Id}-ctl", eventFd); }
        catch
        {
            Native.Close(eventFd);
            throw;
        }
        NetmapPort? port = null;
        BackendThread? backend = null;
        PersistentPort? borrowed = null;
        try
        {
            lock (_gate)
                if (_state is not (DomainState.Running or DomainState.Paused))
                    throw new InvalidOperationException($"domain '{Name}' is {_state.ToString().ToLowerInvariant()}");
            WakeWord wake;
            if (persistent is not null)
            {
                // The daemon's persistent port: used, not owned (closing releases it, it stays on its bridge).
                if (!persistent.TryAcquire(Name, channel.Signal))
                    throw new InvalidOperationException($"persistent port {persistent.Name} is in use by '{persistent.User}' or not attached");
                borrowed = persistent;
                port = persistent.Attached!;
                wake = ((ValePort)port.Origin).Wake;
            }
            else if (pipeEnd is not null)
            {
                // A pipe's end (in its parent's region, maybe another domain's) or one ring of a shared port.
                wake = new WakeWord { External = channel.Signal };
                port = pipeEnd.Bind(wake);
            }
            else
            {
                wake = new WakeWord { External = channel.Signal };
                port = _host.Switch.OpenPort(name, Memory, wake, extraBuffers);
            }
            // A pipe's syncs only swap slots (no switch work to defer): always synchronous.
            // split/merge: the program kicks the backend itself through an eventfd, as a VM's
            // store reaches its backend through KVM's ioeventfd (no hand-off, no host thread).
            KickChannel? kick = null;
            int spin = IoModel == IoModel.Split ? Spec.BackendSpinMicroseconds ?? VmBackendSpinMicroseconds : 0;
            if (IoModel != IoModel.Hypercall && port.Origin is ValePort vp)
            {
                kick = KickChannel.ForProcessPort(vp);
                backend = new BackendThread($"{Name}-backend-{vp.PortName}", [vp], wake, backendCpus, kick, spin);
                port.Backend = new BackendPort(vp, backend);
            }
            else if (IoModel != IoModel.Hypercall && port.Origin is SharedRingPort.View view)
            {
                // One ring of a port several registrations share: the port's one backend, kicked by any of them.
                kick = view.Port.EnsureBackend($"{Name}-backend-{view.Port.SwitchPort.PortName}", backendCpus, spin);
            }
            // The program's rxsync runs in its own library, without a hand-off (RxKring, "Self-served
            // rings"): every switch ring it can receive on. A pipe's rings are moved by its syncs.
            RxKring[] selfServed = port.Origin switch
            {
                ValePort sp => sp.Rx,
                SharedRingPort.View view => [view.Port.SwitchPort.Rx[view.Ring]],
                _ => [],
            };
            foreach (var k in selfServed) k.EnableSelfService();
            var pp = new ProcessPort(this, port, channel, backend, persistent) { RxSelfServed = selfServed.Length > 0, Kick = kick };
            VCpu v;
            lock (_gate)
            {
                if (_state is not (DomainState.Running or DomainState.Paused))
                    throw new InvalidOperationException($"domain '{Name}' is {_state.ToString().ToLowerInvariant()}");
                v = new VCpu(this, _nextVCpu++, Spec.CpusOf(0), pp.Serve);
                pp.VCpu = v;
                _ports = [.. _ports, port];
                _vcpus = [.. _vcpus, v];
                _processPorts.Add(pp);
            }
            v.Start();
            return pp;
        }
        catch
        {
            backend?.Dispose();
            if (borrowed is not null)
            {
                port!.Backend = port.Origin;
                borrowed.Release();
            }
            else port?.Dispose();
            channel.Dispose();
            throw;
        }
    }

    /// <summary>The program closed a registration: its host thread stops, its port is detached and its area freed.</summary>
    internal void CloseProcessPort(ProcessPort pp)
    {
        pp.Close();
        lock (_gate)
        {
            _processPorts.Remove(pp);
            _ports = _ports.Where(p => p != pp.Port).ToArray();
            if (pp.VCpu is { Exited: true } v) _vcpus = _vcpus.Where(x => x != v).ToArray();
        }
    }

    /// <summary>A process port's host thread ends: its CPU time stays the domain's.</summary>
    internal void RetireVCpuTime(long ns) => Interlocked.Add(ref _retiredVCpuNs, Math.Max(0, ns));

    private Func<bool>? _anyInput;

    internal void WaitForInput(int timeoutMs)
    {
        _anyInput ??= () =>
        {
            foreach (var p in _ports)
                if (p.Origin is ValePort vp && vp.AnyRxPublished()) return true;
            return _cts.IsCancellationRequested;
        };
        Wake.Wait(_anyInput, timeoutMs);
    }

    internal void RunGuest(VCpu vcpu) => _guest!.Run(new GuestContext(this, vcpu));

    public void Pause()
    {
        lock (_gate)
        {
            if (_state != DomainState.Running) throw new InvalidOperationException($"domain '{Name}' is {_state.ToString().ToLowerInvariant()}, not running");
            _unpaused.Reset();
            _pauseRequested = true;
            _state = DomainState.Paused;
        }
        // A VM's vCPU may be inside KVM_RUN or blocked in POLL: get it out to where it waits.
        if (_guest is VmGuest vm)
        {
            vm.Interrupt();
            Wake.WakeAll();
        }
    }

    public void Unpause()
    {
        lock (_gate)
        {
            if (_state != DomainState.Paused) throw new InvalidOperationException($"domain '{Name}' is {_state.ToString().ToLowerInvariant()}, not paused");
            _pauseRequested = false;
            _state = DomainState.Running;
            _unpaused.Set();
        }
    }

    internal void WaitWhilePaused(VCpu vcpu)
    {
        vcpu.SetPaused(true);
        try { _unpaused.Wait(_cts.Token); }
        catch (OperationCanceledException) { }
        finally { vcpu.SetPaused(false); }
    }

    /// <summary>
    /// xl shutdown: asks a VM domain's guest to stop (the shutdown word of the guest ABI; vCPUs
    /// blocked in POLL are woken to see it). The guest finishes, returns from main and its
    /// vCPUs exit: the domain shows exited. False when there is no guest kernel to ask (thread
    /// and process domains, whose shutdown is destroy) or the domain is not running or paused.
    /// </summary>
    public bool RequestShutdown()
    {
        if (_guest is not VmGuest { Machine: { } vm }) return false;
        lock (_gate)
        {
            if (_state is not (DomainState.Running or DomainState.Paused)) return false;
            ShutdownRequested = true;
        }
        vm.RequestShutdown();
        Wake.WakeAll();
        return true;
    }

    /// <summary>A shutdown was asked of this domain's guest (<see cref="RequestShutdown"/>).</summary>
    public bool ShutdownRequested { get; private set; }

    /// <summary>A vCPU's guest threw: the domain crashes, nothing else does.</summary>
    internal void OnVCpuFault(VCpu vcpu, string reason) => Crash(reason);

    /// <summary>A VM guest did something the VMM does not allow: crash with the reason and its registers.</summary>
    internal void OnVmFault(VCpu vcpu, string reason, string registers)
    {
        lock (_gate)
        {
            if (_state is DomainState.Crashed or DomainState.Destroyed or DomainState.Exited) return;
            CrashRegisters = registers;
        }
        Crash(reason);
    }

    /// <summary>Every vCPU of a VM domain made the EXIT hypercall: the domain stops (ports detached) and stays listed as exited.</summary>
    internal void OnGuestExited(int status)
    {
        lock (_gate)
        {
            if (_state is not (DomainState.Running or DomainState.Paused)) return;
            ExitStatus = status;
            _state = DomainState.Exited;
            _pauseRequested = false;
            _unpaused.Set();
            _cts.Cancel();
        }
        ClosePorts();
        Wake.WakeAll();
    }

    internal void OnVCpuExit(VCpu vcpu)
    {
        lock (_gate)
        {
            if (_state is DomainState.Crashed or DomainState.Destroyed or DomainState.Exited) ReleaseMemoryIfIdle();
        }
    }

    /// <summary>Ends the domain with <paramref name="reason"/>: stop the guest, detach its ports, keep the record.</summary>
    public void Crash(string reason)
    {
        lock (_gate)
        {
            if (_state is DomainState.Crashed or DomainState.Destroyed or DomainState.Exited) return;
            CrashReason = reason;
            _state = DomainState.Crashed;
            _pauseRequested = false;
            _unpaused.Set();
            _cts.Cancel();
        }
        foreach (var pp in ProcessPorts) pp.Channel.WakeHost();
        (_guest as VmGuest)?.Interrupt();
        _host.OnDomainCrashed(this, reason);
        // Not under _gate: detaching waits for in-flight flushes, which never take _gate.
        ClosePorts();
        Wake.WakeAll();
        lock (_gate) ReleaseMemoryIfIdle();
    }

    /// <summary>
    /// Stops the vCPUs (waiting up to <paramref name="timeout"/>), detaches the ports, stops the
    /// backend and frees the region. A vCPU that does not stop in time leaves the domain
    /// crashed with its memory held until that thread ends (never unmapped under a live thread).
    /// </summary>
    internal bool Destroy(TimeSpan timeout)
    {
        lock (_gate)
        {
            if (_state == DomainState.Destroyed) return true;
            _pauseRequested = false;
            _unpaused.Set();
            _cts.Cancel();
        }
        (_guest as VmGuest)?.Interrupt();
        Wake.WakeAll();
        foreach (var pp in ProcessPorts) pp.Channel.WakeHost();
        var deadline = DateTime.UtcNow + timeout;
        bool allStopped = true;
        foreach (var v in _vcpus)
        {
            var left = deadline - DateTime.UtcNow;
            if (!v.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero)) allStopped = false;
        }
        ClosePorts();
        lock (_gate)
        {
            if (!allStopped)
            {
                CrashReason ??= $"vCPU did not stop within {timeout.TotalSeconds:F0} s of destroy; its memory is held until it does";
                _state = DomainState.Crashed;
                return false;
            }
            _state = DomainState.Destroyed;
            ReleaseMemoryIfIdle();
            return true;
        }
    }

    private void ClosePorts()
    {
        List<NetmapPort> ports;
        BackendThread? backend;
        lock (_gate)
        {
            if (_portsClosed) return;
            _portsClosed = true;
            ports = _ports.ToList();
            backend = Backend;
        }
        // Process ports first: each stops its host thread before its port, backend and page go.
        var processPorts = ProcessPorts;
        foreach (var pp in processPorts) pp.Close();
        if (backend is not null)
        {
            // split/merge: what the guest queued before it ended (a VM's EXIT right after its
            // last kick) is still flushed, as a synchronous txsync would have done: stop the
            // backend, then one last flush here, before the ports go.
            backend.Dispose();
            foreach (var p in ports)
                if (p.Origin is ValePort vp && !vp.Retired) vp.TxSync();
        }
        // A persistent port the program had registered stays the daemon's (pp.Close released it).
        foreach (var p in ports) if (!processPorts.Any(pp => pp.Persistent is not null && pp.Port == p)) p.Dispose();
    }

    // Called under _gate.
    private void ReleaseMemoryIfIdle()
    {
        if (_memoryReleased || !_portsClosed) return;
        if (_vcpus.Any(v => !v.Exited)) return;
        _memoryReleased = true;
        (_guest as IDisposable)?.Dispose(); // a VM: its fds and guest RAM, before the region its memory slot maps
        // A pipe end another program registered (in this region) keeps it mapped until that end closes.
        Memory.DisposeWhenIdle();
    }

    public bool MemoryReleased { get { lock (_gate) return _memoryReleased; } }

    /// <summary>CPU time of this domain's vCPU threads (ns), from schedstat.</summary>
    public long VCpuTimeNs() =>
        Interlocked.Read(ref _retiredVCpuNs) + _vcpus.Where(v => v.Tid != 0 && !v.Exited).Sum(v => Math.Max(0, CpuTime.ThreadNs(v.Tid)));

    /// <summary>CPU time the backend thread spent for this domain (ns); 0 in the hypercall model.</summary>
    public long BackendTimeNs() => Backend is { Tid: not 0 } b ? Math.Max(0, CpuTime.ThreadNs(b.Tid)) : 0;

    /// <summary>Thread ids of the vCPUs (for cgroup placement).</summary>
    public IReadOnlyList<int> VCpuTids => _vcpus.Where(v => !v.Exited).Select(v => v.Tid).Where(t => t != 0).ToArray();

    public IEnumerable<PortStatistics> PortStatistics() =>
        _ports.Select(p => p.Origin).OfType<ValePort>().Select(vp => vp.GetStatistics());

    public override string ToString() => $"{Name} (id {Id}, {State})";
}
