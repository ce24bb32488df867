namespace HyperNF.Hypervisor;

/// <summary>Applies a domain's weight, cap and pinning to the kernel (e.g. cgroups).</summary>
public interface IDomainCpuPolicy
{
    /// <summary>Called after a domain started and whenever its weight or cap changed.</summary>
    void Apply(Domain domain);
    /// <summary>Called when a domain is destroyed.</summary>
    void Release(Domain domain);
}

/// <summary>
/// Host-wide settings, named after xennet_ctrl's ops. Values the host cannot honour are
/// refused with a reason rather than silently accepted.
/// </summary>
public sealed class HostSettings
{
    private volatile bool _driverDomainTxSync;

    /// <summary>ctl op 5 (drvdom_txsync): NIC transmission by the port's driver thread instead of the sender's context.</summary>
    public bool DriverDomainTxSync { get => _driverDomainTxSync; set => _driverDomainTxSync = value; }
}
