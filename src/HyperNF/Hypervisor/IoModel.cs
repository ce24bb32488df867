namespace HyperNF.Hypervisor;

/// <summary>Where the switching work of a domain's TxSync runs (the paper's three models).</summary>
public enum IoModel
{
    /// <summary>HyperNF: the flush runs on the calling vCPU thread, billed to the domain.</summary>
    Hypercall,
    /// <summary>A backend thread per domain on other cores (Xen netback, vhost) does the flush; billed to the host.</summary>
    Split,
    /// <summary>The same backend thread, pinned to the domain's own core, time-shared with it; billed to the host.</summary>
    Merge,
}

public static class IoModels
{
    public static IoModel Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "hypercall" or "hyper" or "hypernf" => IoModel.Hypercall,
        "split" => IoModel.Split,
        "merge" => IoModel.Merge,
        _ => throw new ArgumentException($"'{text}' is not an I/O model: use hypercall, split or merge"),
    };

    public static string Key(this IoModel m) => m.ToString().ToLowerInvariant();
}

public enum DomainState
{
    Created,
    Running,
    Paused,
    Destroyed,
    Crashed,
    /// <summary>A VM domain whose guest made the EXIT hypercall (its status is <see cref="Domain.ExitStatus"/>); kept until destroyed.</summary>
    Exited,
}

/// <summary>
/// What runs a domain: NF code on host threads (thread), a KVM virtual machine (vm, xl's
/// kernel=), or an unmodified netmap program in its own process (process, docs/process-domains.md).
/// </summary>
public enum DomainKind
{
    Thread,
    Vm,
    Process,
}
