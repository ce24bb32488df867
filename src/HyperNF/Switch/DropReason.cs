namespace HyperNF.Switch;

/// <summary>
/// Why a packet did not reach a destination. Every packet the switch takes from a TX ring
/// ends up delivered or counted under exactly one of these per destination it was meant for.
/// </summary>
public enum DropReason
{
    /// <summary>The destination RX ring had no free slot (the receiver is slower than the senders).</summary>
    RingFull,
    /// <summary>A slot named a buffer outside its domain's region (or was NS_INDIRECT).</summary>
    BadBufferIndex,
    /// <summary>A fragment longer than a buffer, a frame over the maximum frame size, or a broken MOREFRAG chain.</summary>
    BadLength,
    /// <summary>A frame shorter than an Ethernet header (14 bytes).</summary>
    Runt,
    /// <summary>A flood with no other port on the bridge to go to.</summary>
    NoDestination,
    /// <summary>The destination is the port the frame came from.</summary>
    Hairpin,
    /// <summary>The sending port is detached or the destination port is down.</summary>
    PortDown,
    /// <summary>Discarded on purpose: bridge_batch is 0 (netmap's drop-everything test mode).</summary>
    Discarded,
    /// <summary>
    /// The sender's virtio-net header does not match its frame or asks for an offload the switch
    /// cannot do (bad gso_size, csum_start, csum_offset, hdr_len or GSO type), on the way to a
    /// port without a header, where the switch would have to act on it.
    /// </summary>
    BadOffload,
}

public static class DropReasons
{
    public const int Count = 9;

    public static readonly DropReason[] All = Enum.GetValues<DropReason>();

    /// <summary>Snake-case name used in tables and JSON.</summary>
    public static string Key(this DropReason r) => r switch
    {
        DropReason.RingFull => "ring_full",
        DropReason.BadBufferIndex => "bad_buffer_index",
        DropReason.BadLength => "bad_length",
        DropReason.Runt => "runt",
        DropReason.NoDestination => "no_destination",
        DropReason.Hairpin => "hairpin",
        DropReason.PortDown => "port_down",
        DropReason.Discarded => "discarded",
        DropReason.BadOffload => "bad_offload",
        _ => r.ToString(),
    };
}
