namespace HyperNF.Hypervisor;

/// <summary>
/// One domain's CPU group: <c>dom&lt;id&gt;-&lt;name&gt;</c> holding its vCPU threads, with the
/// domain's weight and cap. Created by <see cref="HostCpuControl.Bind"/>.
/// </summary>
public sealed class DomainCpuBinding
{
    public Domain Domain { get; }
    public CpuGroup Group { get; }

    internal DomainCpuBinding(Domain domain, CpuGroup group)
    {
        Domain = domain;
        Group = group;
    }

    /// <summary>The group name for a domain: dom&lt;id&gt;-&lt;name&gt;, sanitised.</summary>
    public static string GroupName(Domain d) => CpuWeights.SanitizeName($"dom{d.Id}-{d.Name}");

    /// <summary>Writes the domain's weight and cap and adds its vCPU threads (those started).</summary>
    public void Apply()
    {
        Group.SetWeight(Domain.Weight);
        Group.SetCap(Domain.Cap);
        foreach (int tid in Domain.VCpuTids) AddIfAlive(Group, tid);
        // A process domain is its program too: the program's own threads share the group with
        // the host threads that serve its syncs, so the cap covers both and a sync hand-off
        // stays inside one group (docs/process-domains.md, "CPU").
        if (Domain.ProcessId is int pid) ProgramInGroup = Group.AddProcess(pid);
    }

    /// <summary>Process domains: whether the program's own threads are in the group (cgroup v1), not only its host threads.</summary>
    public bool ProgramInGroup { get; private set; }

    /// <summary>Adds a thread; one that has already ended (a guest that crashed at once) is skipped.</summary>
    internal static void AddIfAlive(CpuGroup group, int tid)
    {
        try { group.AddThread(tid); }
        catch (CpuControlException e) when (e.Errno == Linux.Native.ESRCH) { }
    }
}

/// <summary>
/// CPU allocation of one host: a controller, a <c>host</c> group for the host's own threads
/// (backend threads of the split/merge models: their CPU time is the host's, which is the
/// point of the fairness experiment), and a group per domain for its vCPUs.
/// Thread-safe. See docs/cpu-control.md for wiring.
/// </summary>
public sealed class HostCpuControl : IDisposable, IDomainCpuPolicy
{
    private readonly object _gate = new();
    private readonly Dictionary<Domain, DomainCpuBinding> _bindings = new();
    private bool _disposed;

    public const string HostGroupName = "host";

    public ICpuController Controller { get; }
    public CpuGroup HostGroup { get; }

    /// <summary>Takes ownership of <paramref name="controller"/> and creates the host group.</summary>
    public HostCpuControl(ICpuController controller)
    {
        Controller = controller ?? throw new ArgumentNullException(nameof(controller));
        HostGroup = controller.CreateGroup(HostGroupName);
    }

    /// <summary>Detects the controller (<see cref="CpuControllers.Detect(out string?)"/>). Never throws for a missing/unusable cgroup: falls back to accounting only and says so in <paramref name="warning"/>.</summary>
    public static HostCpuControl Detect(out string? warning) => Detect(new CpuControlOptions(), out warning);

    public static HostCpuControl Detect(CpuControlOptions options, out string? warning)
    {
        var c = CpuControllers.Detect(options, out warning);
        try
        {
            return new HostCpuControl(c);
        }
        catch (CpuControlException e)
        {
            c.Dispose();
            string w = $"warning: CPU weights and caps are not enforced (accounting only): {e.Message}";
            warning = warning == null ? w : warning + "; " + w;
            return new HostCpuControl(new AccountingOnlyCpuController(e.Message));
        }
    }

    public CpuControlMode Mode => Controller.Mode;

    /// <summary>
    /// Call after the domain has started (<see cref="Host.Create"/> returned): creates its group,
    /// applies weight and cap, adds the vCPU threads; the backend thread (split/merge) goes
    /// to the host group. Binding the same domain twice re-applies.
    /// </summary>
    public DomainCpuBinding Bind(Domain d)
    {
        ArgumentNullException.ThrowIfNull(d);
        DomainCpuBinding b;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_bindings.TryGetValue(d, out b!))
            {
                b = new DomainCpuBinding(d, Controller.CreateGroup(DomainCpuBinding.GroupName(d)));
                _bindings.Add(d, b);
            }
        }
        try
        {
            b.Apply();
            if (d.Backend is { Tid: > 0 } backend) DomainCpuBinding.AddIfAlive(HostGroup, backend.Tid);
        }
        catch
        {
            Unbind(d);
            throw;
        }
        return b;
    }

    public DomainCpuBinding? Find(Domain d)
    {
        lock (_gate) return _bindings.GetValueOrDefault(d);
    }

    /// <summary>
    /// xl sched-credit2 -d DOMAIN [-w WEIGHT] [-c CAP]: only the given values change. Validates
    /// (weight 1..65535, cap 0..100*vcpus), writes the group (if bound), then records the
    /// values on the domain. Returns the domain's (weight, cap) afterwards.
    /// </summary>
    public (int Weight, int Cap) SchedCredit2(Domain d, int? weight = null, int? cap = null)
    {
        ArgumentNullException.ThrowIfNull(d);
        if (weight is { } w) CpuWeights.ValidateWeight(w);
        if (cap is { } c && (c < 0 || c > 100 * d.Spec.VCpus))
            throw new ArgumentOutOfRangeException(nameof(cap), c, $"domain '{d.Name}': cap must be 0..{100 * d.Spec.VCpus} (% of one CPU), not {c}");
        var b = Find(d);
        if (weight is { } w2)
        {
            b?.Group.SetWeight(w2);
            d.Weight = w2;
        }
        if (cap is { } c2)
        {
            b?.Group.SetCap(c2);
            d.Cap = c2;
        }
        return (d.Weight, d.Cap);
    }

    /// <summary>Adds another host thread (e.g. a backend created later, the watchdog) to the host group.</summary>
    public void AddHostThread(int tid) => HostGroup.AddThread(tid);

    /// <summary>Call when the domain is destroyed: removes its group (surviving threads moved back first).</summary>
    public void Unbind(Domain d)
    {
        DomainCpuBinding? b;
        lock (_gate)
        {
            if (!_bindings.Remove(d, out b)) return;
        }
        b.Group.Remove();
        if (d.Backend is { Tid: > 0 } backend) HostGroup.RemoveThread(backend.Tid);
    }

    void IDomainCpuPolicy.Apply(Domain domain) => Bind(domain);

    void IDomainCpuPolicy.Release(Domain domain) => Unbind(domain);

    /// <summary>Mode line plus one line per group.</summary>
    public string Describe()
    {
        var lines = new List<string> { Controller.Describe(), HostGroup.Describe() };
        lock (_gate) lines.AddRange(_bindings.Values.OrderBy(b => b.Domain.Id).Select(b => b.Group.Describe()));
        return string.Join(Environment.NewLine, lines);
    }

    /// <summary>Removes every group and the controller's directories. Never throws.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _bindings.Clear();
        }
        Controller.Dispose();
    }
}
