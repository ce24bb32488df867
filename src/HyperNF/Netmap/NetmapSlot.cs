using System.Runtime.InteropServices;

namespace HyperNF.Netmap;

/// <summary>netmap_slot: 16 bytes, exactly netmap's layout.</summary>
[StructLayout(LayoutKind.Explicit, Size = NetmapAbi.SlotSize)]
public struct NetmapSlot
{
    /// <summary>Index of the packet buffer, inside the owning domain's region.</summary>
    [FieldOffset(0)] public uint BufIdx;
    /// <summary>Bytes of the frame (or fragment) in the buffer.</summary>
    [FieldOffset(4)] public ushort Len;
    [FieldOffset(6)] public ushort Flags;
    /// <summary>Unused by the switch (netmap's NS_INDIRECT pointer / offset field).</summary>
    [FieldOffset(8)] public ulong Ptr;
}

/// <summary>Slot flags (netmap's NS_*).</summary>
public static class SlotFlags
{
    /// <summary>Ask for a notification when the slot is transmitted (accepted, ignored: the switch is synchronous).</summary>
    public const ushort Report = 0x0002;
    /// <summary>The slot's buffer index was changed by the domain (zero-copy swap).</summary>
    public const ushort BufChanged = 0x0001;
    /// <summary>Indirect buffers are not supported; such slots are dropped as bad buffer index.</summary>
    public const ushort Indirect = 0x0010; // netmap's NS_INDIRECT
    /// <summary>The frame continues in the next slot (netmap's NS_MOREFRAG; must stay out of the high byte, which holds the fragment count).</summary>
    public const ushort MoreFrag = 0x0020;
    /// <summary>On received fragments, the fragment count is stored in the high byte (netmap's cnt&lt;&lt;8).</summary>
    public const int FragmentCountShift = 8;
}

[Flags]
public enum PollEvents
{
    None = 0,
    In = 1,
    Out = 4,
}
