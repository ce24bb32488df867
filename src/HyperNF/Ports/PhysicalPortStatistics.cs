namespace HyperNF.Ports;

/// <summary>
/// Counters of one physical port at one moment. RX is wire to bridge, TX bridge to wire.
/// Every frame the switch delivered to the port ends up in <see cref="TxPackets"/> or in
/// <see cref="TxDrops"/> (exactly, once the port is quiescent or detached).
/// </summary>
public sealed record PhysicalPortStatistics
{
    public required string Name { get; init; }
    public required string Interface { get; init; }
    public required string Link { get; init; }
    public int Mtu { get; init; }
    /// <summary>The kernel's index of the interface the port is bound to (a new one after a re-bind).</summary>
    public int InterfaceIndex { get; init; }
    /// <summary>Times the port re-bound to a new interface of the same name after the old one was removed.</summary>
    public long Rebinds { get; init; }
    /// <summary>Frames taken from the interface and put into the bridge.</summary>
    public long RxPackets { get; init; }
    public long RxBytes { get; init; }
    /// <summary>Frames handed to the kernel for transmission.</summary>
    public long TxPackets { get; init; }
    public long TxBytes { get; init; }
    /// <summary>Per <see cref="PortDropReason"/>: frames from the wire not put into the bridge.</summary>
    public required long[] RxDrops { get; init; }
    /// <summary>Per <see cref="PortDropReason"/>: frames from the bridge not handed to the kernel.</summary>
    public required long[] TxDrops { get; init; }
    /// <summary>send() calls (doorbells).</summary>
    public long TxKicks { get; init; }
    /// <summary>TX rounds run on a sender's thread (the hypercall model).</summary>
    public long TxRoundsInSender { get; init; }
    /// <summary>TX rounds run on the port's driver thread (drvdom_txsync = 1).</summary>
    public long TxRoundsInDriver { get; init; }
    /// <summary>Receive rounds run by another port's driver thread right after it transmitted to this port, while ours slept.</summary>
    public long RxRoundsElsewhere { get; init; }
    /// <summary>Of <see cref="TxPackets"/> and the drops: frames the switch handed over still in the sending port's slots (cut-through from another physical port: one copy fewer).</summary>
    public long TxCutThrough { get; init; }
    /// <summary>The kernel fast path of the port: "on", "off" (captured, link down, or turned off), or why it is unavailable.</summary>
    public string KernelPath { get; init; } = "off";
    /// <summary>Frames from the wire the kernel forwarded to another physical port without the switch (docs/ports.md, Kernel fast path); not in <see cref="RxPackets"/>.</summary>
    public long KernelRxPackets { get; init; }
    public long KernelRxBytes { get; init; }
    /// <summary>Frames the kernel forwarded to this port's wire from another physical port; not in <see cref="TxPackets"/>.</summary>
    public long KernelTxPackets { get; init; }
    public long KernelTxBytes { get; init; }
    /// <summary>eventfd writes made to wake the driver thread.</summary>
    public long DriverWakeups { get; init; }
    /// <summary>CPU time of the driver thread (charged to the host), ns; -1 when it is gone.</summary>
    public long DriverCpuNs { get; init; }

    public long RxDrop(PortDropReason r) => RxDrops[(int)r];
    public long TxDrop(PortDropReason r) => TxDrops[(int)r];
    public long TotalRxDrops => RxDrops.Sum();
    public long TotalTxDrops => TxDrops.Sum();
}
