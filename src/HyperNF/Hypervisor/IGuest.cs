using HyperNF.Netmap;

namespace HyperNF.Hypervisor;

/// <summary>
/// The code a domain runs on its vCPUs: an NF written against the netmap port API. Run is
/// called once per vCPU on that vCPU's pinned thread and returns when
/// <see cref="GuestContext.Cancellation"/> is cancelled. It must call
/// <see cref="GuestContext.Checkpoint"/> at least every few hundred milliseconds (each batch,
/// and between Poll timeouts): that is the heartbeat the watchdog checks and where pause takes hold.
/// </summary>
public interface IGuest
{
    string Name { get; }
    void Run(GuestContext context);
    /// <summary>Guest-specific counters for listings (NF rule hits, pkt-gen totals ...).</summary>
    IReadOnlyList<KeyValuePair<string, long>> Counters { get; }
    /// <summary>Vifs the guest needs at least; a domain with fewer is refused when it is created, not crashed later.</summary>
    int MinimumPorts => 0;
}

/// <summary>What a guest sees of its domain: its ports, its vCPU number, stop and pause.</summary>
public sealed class GuestContext
{
    private readonly Domain _domain;
    private readonly VCpu _vcpu;

    internal GuestContext(Domain domain, VCpu vcpu)
    {
        _domain = domain;
        _vcpu = vcpu;
    }

    public string DomainName => _domain.Name;
    public int DomainId => _domain.Id;
    public int VCpu => _vcpu.Index;
    public int VCpuCount => _domain.VCpus.Count;
    /// <summary>The domain's ports, in vif order.</summary>
    public IReadOnlyList<NetmapPort> Ports => _domain.Ports;
    public CancellationToken Cancellation => _domain.Cancellation;
    public bool Stopping => _domain.Cancellation.IsCancellationRequested;
    /// <summary>The I/O model behind the ports (for guests that report it; the port API is the same).</summary>
    public IoModel IoModel => _domain.IoModel;

    /// <summary>
    /// poll() on all the domain's ports for input: sleeps until a frame is published on any of
    /// them or <paramref name="timeoutMs"/> passes. Call <see cref="Checkpoint"/> between waits.
    /// </summary>
    public void WaitForInput(int timeoutMs) => _domain.WaitForInput(timeoutMs);

    /// <summary>Heartbeat for the watchdog; blocks while the domain is paused.</summary>
    public void Checkpoint()
    {
        _vcpu.Beat();
        if (_domain.PauseRequested) _domain.WaitWhilePaused(_vcpu);
    }
}
