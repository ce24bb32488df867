using System.Collections.Concurrent;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Hypervisor;

/// <summary>
/// The trusted layer (Xen + dom0 in the original): the switch, the domains, their vCPU and
/// backend threads, placement, the watchdog. One per process.
/// </summary>
public sealed class Host : IDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<int, Domain> _domains = new();
    private readonly ConcurrentQueue<string> _events = new();
    private readonly Thread _watchdog;
    private readonly Dictionary<(Domain, int), (long Beats, long Since)> _lastBeats = new();
    private volatile bool _disposed;
    private int _nextId = 1;

    public ValeSwitch Switch { get; }
    public IoModel DefaultIoModel { get; set; } = IoModel.Hypercall;
    /// <summary>A vCPU that does not check in for this long crashes its domain.</summary>
    public TimeSpan WatchdogTimeout { get; set; } = TimeSpan.FromSeconds(5);
    public TimeSpan DestroyTimeout { get; set; } = TimeSpan.FromSeconds(3);
    /// <summary>Cores for split-model backend threads; null: cores no vCPU is pinned to, else core 0.</summary>
    public IReadOnlyList<int>? BackendCpus { get; set; }
    public GuestRegistry Guests { get; } = new();

    public Host(ValeSwitch? sw = null)
    {
        Switch = sw ?? new ValeSwitch();
        _watchdog = new Thread(WatchdogMain) { IsBackground = true, Name = "hypernf-watchdog" };
        _watchdog.Start();
    }

    public IReadOnlyList<Domain> Domains
    {
        get { lock (_gate) return _domains.Values.OrderBy(d => d.Id).ToArray(); }
    }

    public Domain? Find(string nameOrId)
    {
        lock (_gate)
        {
            if (int.TryParse(nameOrId, out int id) && _domains.TryGetValue(id, out var byId)) return byId;
            return _domains.Values.FirstOrDefault(d => d.Name == nameOrId);
        }
    }

    /// <summary>Notices (crashes, watchdog) in the order they happened; drained by the caller.</summary>
    public bool TryDequeueEvent(out string? text) => _events.TryDequeue(out text);

    /// <summary>Creates and starts a domain (xl create).</summary>
    public Domain Create(DomainSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (spec.VCpus is < 1 or > 64) throw new ArgumentException($"domain '{spec.Name}': vcpus must be 1..64, not {spec.VCpus}");
        if (spec.Weight is < 1 or > 65535) throw new ArgumentException($"domain '{spec.Name}': weight must be 1..65535, not {spec.Weight}");
        if (spec.Cap < 0 || spec.Cap > 100 * spec.VCpus) throw new ArgumentException($"domain '{spec.Name}': cap must be 0..{100 * spec.VCpus} (% of one CPU), not {spec.Cap}");
        int ncpu = Environment.ProcessorCount;
        foreach (var set in spec.Cpus)
            foreach (int c in set)
                if ((uint)c >= (uint)ncpu) throw new ArgumentException($"domain '{spec.Name}': CPU {c} does not exist (this machine has CPUs 0..{ncpu - 1})");
        if (spec.MemoryMb is < 1) throw new ArgumentException($"domain '{spec.Name}': memory must be at least 1 MB, not {spec.MemoryMb}");
        if (Domain.CheckMemory(spec) is { } memory) throw new ArgumentException($"domain '{spec.Name}': memory {memory}");
        foreach (var vif in spec.Vifs)
        {
            try { Bridge.ParsePortName(vif.Port); }
            catch (ArgumentException e) { throw new ArgumentException($"domain '{spec.Name}': vif {vif.Port}: {e.Message}", e); }
        }
        var guest = Guests.Resolve(spec);
        Domain d;
        IReadOnlyList<int> backendCpus;
        lock (_gate)
        {
            if (_domains.Values.Any(x => x.Name == spec.Name && x.State != DomainState.Destroyed))
                throw new InvalidOperationException($"a domain named '{spec.Name}' already exists; destroy it first or pick another name");
            if (PortShortage(guest, spec.Vifs.Count) is { } ports) throw new ArgumentException($"domain '{spec.Name}': {ports}");
            var model = spec.IoModel ?? DefaultIoModel;
            d = new Domain(this, _nextId++, spec, model);
            backendCpus = model switch
            {
                IoModel.Merge => spec.CpusOf(0).Count > 0 ? spec.CpusOf(0) : [0],
                IoModel.Split => BackendCpus ?? SplitBackendCpus(spec),
                _ => [],
            };
            _domains.Add(d.Id, d);
        }
        try
        {
            d.Start(guest, backendCpus);
        }
        catch
        {
            lock (_gate) _domains.Remove(d.Id);
            throw;
        }
        try { CpuPolicy?.Apply(d); }
        catch (IOException e) { _events.Enqueue($"domain '{d.Name}': CPU control: {e.Message}"); }
        return d;
    }

    /// <summary>
    /// Creates a process domain for the netmap program <paramref name="spec"/>.ProcessId
    /// (docs/process-domains.md): a region, a CPU group, no ports and no threads yet; each
    /// registration of the program adds a port and its host thread
    /// (<see cref="OpenProcessPort"/>).
    /// </summary>
    public Domain CreateProcessDomain(DomainSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (spec.ProcessId is not > 0) throw new ArgumentException($"domain '{spec.Name}': a process domain needs the program's pid");
        if (spec.Weight is < 1 or > 65535) throw new ArgumentException($"domain '{spec.Name}': weight must be 1..65535, not {spec.Weight}");
        if (spec.Cap < 0 || spec.Cap > 100) throw new ArgumentException($"domain '{spec.Name}': cap must be 0..100 (% of one CPU), not {spec.Cap}");
        if (spec.ProcessPorts is < 1 or > 64) throw new ArgumentException($"domain '{spec.Name}': a process domain holds 1..64 ports, not {spec.ProcessPorts}");
        int ncpu = Environment.ProcessorCount;
        foreach (var set in spec.Cpus)
            foreach (int c in set)
                if ((uint)c >= (uint)ncpu) throw new ArgumentException($"domain '{spec.Name}': CPU {c} does not exist (this machine has CPUs 0..{ncpu - 1})");
        Domain d;
        lock (_gate)
        {
            if (_domains.Values.Any(x => x.Name == spec.Name && x.State != DomainState.Destroyed))
                throw new InvalidOperationException($"a domain named '{spec.Name}' already exists; destroy it first or pick another name");
            d = new Domain(this, _nextId++, spec, spec.IoModel ?? DefaultIoModel);
            _domains.Add(d.Id, d);
        }
        d.StartProcess();
        try { CpuPolicy?.Apply(d); }
        catch (IOException e) { _events.Enqueue($"domain '{d.Name}': CPU control: {e.Message}"); }
        return d;
    }

    /// <summary>Registers a port for a process domain's program and puts its host thread in the domain's CPU group.</summary>
    /// <param name="persistent">A persistent port to use instead of opening <paramref name="name"/> in the domain's region.</param>
    /// <param name="pipeEnd">What to register instead of a port of its own: a netmap pipe's end (its rings are in its parent's region) or one ring of a shared port.</param>
    public ProcessPort OpenProcessPort(Domain d, string name, int extraBuffers, int eventFd, PersistentPort? persistent = null, IProcessPortSource? pipeEnd = null)
    {
        IReadOnlyList<int> backendCpus;
        lock (_gate)
        {
            backendCpus = d.IoModel switch
            {
                IoModel.Merge => d.Spec.CpusOf(0).Count > 0 ? d.Spec.CpusOf(0) : [0],
                IoModel.Split => BackendCpus ?? SplitBackendCpus(d.Spec),
                _ => [],
            };
        }
        var pp = d.OpenProcessPort(name, extraBuffers, eventFd, backendCpus, persistent, pipeEnd);
        try { CpuPolicy?.Apply(d); }
        catch (IOException e) { _events.Enqueue($"domain '{d.Name}': CPU control: {e.Message}"); }
        if ((pp.Backend ?? (pp.Port.Origin as SharedRingPort.View)?.Port.Backend) is { Tid: > 0 } b && CpuPolicy is HostCpuControl hc)
        {
            try { DomainCpuBinding.AddIfAlive(hc.HostGroup, b.Tid); }
            catch (Exception e) when (e is IOException or CpuControlException) { _events.Enqueue($"domain '{d.Name}': CPU control: {e.Message}"); }
        }
        return pp;
    }

    /// <summary>Null when <paramref name="vifs"/> ports are enough for <paramref name="guest"/>, else why not.</summary>
    public static string? PortShortage(IGuest guest, int vifs) =>
        vifs >= guest.MinimumPorts ? null
            : guest.MinimumPorts == 2 ? $"nf '{guest.Name}' sits between two ports; give the domain two vifs (it has {vifs})"
            : $"nf '{guest.Name}' needs {guest.MinimumPorts} vif(s) (the domain has {vifs})";

    private IReadOnlyList<int> SplitBackendCpus(DomainSpec incoming)
    {
        var used = new HashSet<int>();
        foreach (var d in _domains.Values)
            if (d.State is DomainState.Running or DomainState.Paused)
                for (int i = 0; i < d.Spec.VCpus; i++) used.UnionWith(d.Spec.CpusOf(i));
        for (int i = 0; i < incoming.VCpus; i++) used.UnionWith(incoming.CpusOf(i));
        var free = Enumerable.Range(0, Environment.ProcessorCount).Where(c => !used.Contains(c)).ToArray();
        return free.Length > 0 ? free : [0];
    }

    /// <summary>
    /// xl sched-credit2 -d D [-w W] [-c C]: changes only what is given. Applied to the kernel
    /// through <see cref="CpuPolicy"/> when one is installed (cgroups), else recorded only.
    /// </summary>
    public void SetSchedule(Domain d, int? weight, int? cap)
    {
        if (weight is { } w && (w < 1 || w > 65535)) throw new ArgumentException($"weight must be 1..65535, not {w}");
        if (cap is { } c && (c < 0 || c > 100 * d.Spec.VCpus)) throw new ArgumentException($"cap must be 0..{100 * d.Spec.VCpus} (% of one CPU; 0 = none), not {c}");
        lock (_gate)
        {
            if (weight is { } w2) d.Weight = w2;
            if (cap is { } c2) d.Cap = c2;
        }
        CpuPolicy?.Apply(d);
    }

    /// <summary>Applies weights and caps to the kernel scheduler (cgroups); null = accounting only. Disposed with the host.</summary>
    public IDomainCpuPolicy? CpuPolicy { get; set; }

    /// <summary>
    /// Detects the kernel's CPU controller (cgroup v2 or v1) and installs it as
    /// <see cref="CpuPolicy"/>; returns a one-line warning when only accounting is possible.
    /// </summary>
    public string? EnableCpuControl()
    {
        var control = HostCpuControl.Detect(out string? warning);
        CpuPolicy = control;
        if (warning is not null) _events.Enqueue(warning);
        return warning;
    }

    /// <summary>Switch-wide knobs set by ctl ops and named settings.</summary>
    public HostSettings Settings { get; } = new();

    /// <summary>Destroys a domain (xl destroy): threads, ports, learning entries, memory.</summary>
    public bool Destroy(Domain d)
    {
        bool clean = d.Destroy(DestroyTimeout);
        try { CpuPolicy?.Release(d); }
        catch (IOException e) { _events.Enqueue($"domain '{d.Name}': CPU control: {e.Message}"); }
        lock (_gate)
        {
            if (clean) _domains.Remove(d.Id);
        }
        return clean;
    }

    internal void OnDomainCrashed(Domain d, string reason) =>
        _events.Enqueue($"domain '{d.Name}' (id {d.Id}) crashed: {reason}");

    private void WatchdogMain()
    {
        while (!_disposed)
        {
            Thread.Sleep(100);
            long now = Environment.TickCount64;
            Domain[] doms;
            lock (_gate) doms = _domains.Values.ToArray();
            foreach (var d in doms)
            {
                if (d.State != DomainState.Running) continue;
                if (d.Kind == DomainKind.Vm) continue; // a spinning guest is legitimate; pause and destroy kick it out of KVM_RUN
                foreach (var v in d.VCpus)
                {
                    if (v.Exited || v.InPause) continue;
                    long beats = v.Heartbeats;
                    var key = (d, v.Index);
                    if (!_lastBeats.TryGetValue(key, out var last) || last.Beats != beats)
                    {
                        _lastBeats[key] = (beats, now);
                        continue;
                    }
                    if (now - last.Since > WatchdogTimeout.TotalMilliseconds)
                    {
                        d.Crash($"watchdog: vCPU {v.Index} made no progress for {WatchdogTimeout.TotalSeconds:F1} s (hung guest)");
                        break;
                    }
                }
            }
            foreach (var k in _lastBeats.Keys.Where(k => k.Item1.State != DomainState.Running).ToList()) _lastBeats.Remove(k);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        foreach (var d in Domains) Destroy(d);
        _disposed = true;
        (CpuPolicy as IDisposable)?.Dispose();
        _watchdog.Join(TimeSpan.FromSeconds(1));
    }
}
