namespace HyperNF.Ports;

/// <summary>
/// Why a frame between a physical interface and its bridge port was not passed on. Frames the
/// switch itself drops (ring full, unknown destination...) are the switch's counters, not these.
/// </summary>
public enum PortDropReason
{
    /// <summary>Larger than the interface MTU plus the Ethernet header (and a VLAN tag if it has one).</summary>
    Oversize,
    /// <summary>The interface was down or had no carrier.</summary>
    LinkDown,
    /// <summary>The interface was deleted while attached.</summary>
    InterfaceRemoved,
    /// <summary>TX: no free frame in the kernel's TX ring. RX: the kernel found the RX ring full (PACKET_STATISTICS).</summary>
    KernelRingFull,
    /// <summary>send() failed for another reason (the errno is in <see cref="PhysicalPort.LastError"/>).</summary>
    SendError,
    /// <summary>TX: the frame's virtio-net header does not match the frame (the kernel would refuse or mis-send it).</summary>
    BadOffload,
}

public static class PortDropReasons
{
    public const int Count = 6;

    public static readonly PortDropReason[] All = Enum.GetValues<PortDropReason>();

    /// <summary>Snake-case name used in tables and JSON.</summary>
    public static string Key(this PortDropReason r) => r switch
    {
        PortDropReason.Oversize => "oversize",
        PortDropReason.LinkDown => "link_down",
        PortDropReason.InterfaceRemoved => "interface_removed",
        PortDropReason.KernelRingFull => "kernel_ring_full",
        PortDropReason.SendError => "send_error",
        PortDropReason.BadOffload => "bad_offload",
        _ => r.ToString(),
    };
}
