using System.Collections.Immutable;

using HyperNF.Hypervisor;

namespace HyperNF.Control;

/// <summary>
/// A domain as an xl config describes it, validated: what <see cref="XlConfig.Parse"/>
/// returns. Immutable; the lists are <see cref="ImmutableArray{T}"/>.
/// </summary>
public sealed record DomainConfig
{
    public const int DefaultWeight = 256;
    public const int DefaultMemoryMb = 128;
    public const int MaxVCpus = 64;

    /// <summary>File the config came from (as given), for messages.</summary>
    public string FileName { get; init; } = "";

    /// <summary>Domain name (<c>name=</c>, required).</summary>
    public required string Name { get; init; }

    /// <summary><c>vcpus=</c>: 1..<see cref="MaxVCpus"/>, default 1.</summary>
    public int VCpus { get; init; } = 1;

    /// <summary>
    /// <c>cpus=</c>, one entry per vCPU (always <see cref="VCpus"/> entries): the host CPUs
    /// vCPU <c>i</c> may run on, sorted. An empty set means not pinned (any CPU, xl's "all").
    /// </summary>
    public ImmutableArray<ImmutableArray<int>> Cpus { get; init; } = [];

    /// <summary>
    /// <c>memory=</c> in MB, default <see cref="DefaultMemoryMb"/>. When the config sets it, it
    /// bounds the domain's shared region (rings and buffers for its vifs): a domain that would
    /// need more is refused (<see cref="DomainSpecs.ForHost"/>).
    /// </summary>
    public int MemoryMb { get; init; } = DefaultMemoryMb;

    /// <summary>The <c>type=nmif</c> entries of <c>vif=</c>, in config order; other vifs are left out (see <see cref="Notices"/>).</summary>
    public ImmutableArray<VifConfig> Vifs { get; init; } = [];

    /// <summary><c>nf=</c>: which network function runs on the vCPUs; null when the config names none.</summary>
    public string? Nf { get; init; }

    /// <summary><c>nf_args=</c>: the NF's argument string, passed through unparsed.</summary>
    public string? NfArgs { get; init; }

    /// <summary>
    /// <c>kernel=</c>: a guest image to boot in a VM domain (as given; relative paths are resolved
    /// against the config file's directory by <see cref="DomainSpecs"/>). Null: a thread domain.
    /// </summary>
    public string? Kernel { get; init; }

    /// <summary><c>extra=</c> or <c>cmdline=</c>: the VM guest's command line.</summary>
    public string? CommandLine { get; init; }

    /// <summary><c>weight=</c>: credit2-style share, 1..65535, default 256.</summary>
    public int Weight { get; init; } = DefaultWeight;

    /// <summary><c>cap=</c>: at most this % of one CPU (0..100*vcpus); 0 = no cap.</summary>
    public int Cap { get; init; }

    /// <summary><c>io_model=</c>; null: the host's default.</summary>
    public IoModel? IoModel { get; init; }

    /// <summary>
    /// One line per setting that was accepted but has no effect here (xl's kernel, disk, a
    /// management vif ...), already prefixed with file:line:, for the user to read.
    /// </summary>
    public ImmutableArray<string> Notices { get; init; } = [];

    /// <summary>The line each setting was given on (key -> 1-based line), for messages about values checked later (nf, nf_args, cpus).</summary>
    public ImmutableDictionary<string, int> Lines { get; init; } = ImmutableDictionary<string, int>.Empty;

    /// <summary>A problem with setting <paramref name="key"/>, as file:line: key: reason (line 1 when the config did not set it).</summary>
    public XlConfigException Error(string key, string reason) => new(FileName, Lines.GetValueOrDefault(key, 1), key, reason);

    /// <summary>CPUs vCPU <paramref name="vcpu"/> may run on; empty: any.</summary>
    public ImmutableArray<int> CpusOf(int vcpu)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(vcpu);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(vcpu, VCpus);
        return vcpu < Cpus.Length ? Cpus[vcpu] : [];
    }
}
