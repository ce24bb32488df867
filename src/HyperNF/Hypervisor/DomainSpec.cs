namespace HyperNF.Hypervisor;

/// <summary>One port of a domain: a VALE port name (valex:lx0) and its MAC.</summary>
public sealed record VifSpec(string Port, string? Mac = null);

/// <summary>
/// Everything needed to create a domain (what an xl config says, already validated).
/// <see cref="Guest"/> or <see cref="Nf"/> says what runs on its vCPUs.
/// </summary>
public sealed record DomainSpec
{
    public required string Name { get; init; }
    public int VCpus { get; init; } = 1;
    /// <summary>CPUs per vCPU (index i for vCPU i; a single entry applies to all; empty: host's choice).</summary>
    public IReadOnlyList<IReadOnlyList<int>> Cpus { get; init; } = [];
    public IReadOnlyList<VifSpec> Vifs { get; init; } = [];
    /// <summary>Built-in NF name (l2fwd, firewall, router, nat, cost, encrypt, pkt-gen), when <see cref="Guest"/> is null.</summary>
    public string? Nf { get; init; }
    public string? NfArgs { get; init; }
    /// <summary>Code to run instead of a built-in NF (tests, embedding).</summary>
    public Func<IGuest>? Guest { get; init; }
    /// <summary>credit2-style weight (1..65535, default 256).</summary>
    public int Weight { get; init; } = 256;
    /// <summary>Cap in % of one CPU (0 = none).</summary>
    public int Cap { get; init; }
    /// <summary>null: the host's default model.</summary>
    public IoModel? IoModel { get; init; }
    /// <summary>Spare buffers per port for guests that keep frames (zero-copy stores).</summary>
    public int ExtraBuffersPerPort { get; init; }
    public int SlotsPerRing { get; init; } = Memory.RegionLayout.DefaultSlots;
    /// <summary>
    /// xl's <c>memory=</c> in MB: an upper bound on the domain's shared region (its rings and
    /// packet buffers, sized for its vifs); creating a domain whose region would not fit fails.
    /// Null: no bound.
    /// </summary>
    public int? MemoryMb { get; init; }

    /// <summary>
    /// Set for a process domain (docs/process-domains.md): the pid of the netmap program whose
    /// /dev/netmap registrations are this domain's ports. Its vCPUs are the host threads that
    /// serve the program's syncs, one per registered port; it has no guest.
    /// </summary>
    public int? ProcessId { get; init; }

    /// <summary>Port areas in a process domain's region: how many ports the program may register at once.</summary>
    public int ProcessPorts { get; init; } = 8;

    /// <summary>
    /// Ring pairs of every port of a process domain (1..<see cref="MaxProcessRings"/>): what the
    /// program's first registration asked for (netmap's nr_tx_rings/nr_rx_rings, e.g. pkt-gen's
    /// <c>@conf:rings=N</c>); the counts are a request in netmap, later registrations get these.
    /// </summary>
    public int ProcessRingsPerPort { get; init; } = 1;

    /// <summary>The most ring pairs a process domain's port has.</summary>
    public const int MaxProcessRings = 4;

    /// <summary>
    /// xl's <c>kernel=</c>: boot this guest image (an ELF built with the guest SDK) in a KVM
    /// virtual machine; the domain is then a VM domain and <see cref="MemoryMb"/> is its guest
    /// RAM (default 16). Null: a thread domain running <see cref="Nf"/>.
    /// </summary>
    public string? Kernel { get; init; }
    /// <summary>xl's <c>extra=</c> (or <c>cmdline=</c>): the VM guest's command line.</summary>
    public string? CommandLine { get; init; }
    /// <summary>
    /// A VM domain's split backend: microseconds it polls the rings after a round before it asks
    /// for a kick and sleeps. Null: <see cref="Domain.VmBackendSpinMicroseconds"/>; merge never spins.
    /// </summary>
    public int? BackendSpinMicroseconds { get; init; }

    public IReadOnlyList<int> CpusOf(int vcpu) =>
        Cpus.Count == 0 ? [] : Cpus.Count == 1 ? Cpus[0] : vcpu < Cpus.Count ? Cpus[vcpu] : Cpus[^1];
}
