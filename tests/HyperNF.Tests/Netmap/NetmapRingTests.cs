using System.Runtime.InteropServices;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Netmap;

/// <summary>The domain's view of a ring: ABI layout, index helpers, and bounds it cannot be talked out of.</summary>
public class NetmapRingTests
{
    [Fact]
    public void Slot_is_netmaps_16_byte_layout_and_flags_are_netmaps_values()
    {
        Assert.Equal(16, Marshal.SizeOf<NetmapSlot>());
        Assert.Equal(0, (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.BufIdx)));
        Assert.Equal(4, (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.Len)));
        Assert.Equal(6, (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.Flags)));
        Assert.Equal(8, (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.Ptr)));
        // netmap: NS_BUF_CHANGED 0x1, NS_REPORT 0x2, NS_MOREFRAG 0x20, fragment count in the high byte
        Assert.Equal(0x0001, SlotFlags.BufChanged);
        Assert.Equal(0x0002, SlotFlags.Report);
        Assert.Equal(0x0020, SlotFlags.MoreFrag);
        Assert.Equal(8, SlotFlags.FragmentCountShift);
        Assert.Equal(0, SlotFlags.MoreFrag >> SlotFlags.FragmentCountShift);
        Assert.Equal(0, SlotFlags.Indirect >> SlotFlags.FragmentCountShift);
    }

    [Fact]
    public void Space_Next_and_IsEmpty_follow_netmap()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valering:a", Macs.Unicast(1), new RegionLayout { MaxPorts = 1, SlotsPerRing = 8 });
        var tx = a.Tx;
        Assert.Equal(7u, tx.Space);
        Assert.False(tx.IsEmpty);
        Assert.Equal(1u, tx.Next(0));
        Assert.Equal(0u, tx.Next(7));
        tx.Cur = 7;
        Assert.True(tx.IsEmpty);
        tx.Cur = 3;
        Assert.Equal(4u, tx.Space);
        tx.Cur = 0;
        var rx = a.Rx;
        Assert.Equal(0u, rx.Space);
        Assert.True(rx.IsEmpty);
        Assert.Equal(2048, tx.BufferSize);
    }

    [Fact]
    public void The_view_refuses_slots_and_buffers_outside_the_domain()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valering:a", Macs.Unicast(1), new RegionLayout { MaxPorts = 1, SlotsPerRing = 8 });
        var tx = a.Tx;
        Assert.Throws<ArgumentOutOfRangeException>(() => tx.Slot(8));
        Assert.Throws<ArgumentOutOfRangeException>(() => tx.Slot(uint.MaxValue));
        foreach (uint bad in new[] { 0u, 1u, a.Memory.BufferCount, uint.MaxValue })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => tx.Buffer(bad));
            Assert.Contains("not a buffer of this domain", e.Message);
        }
        Assert.Equal(2048, tx.Buffer(a.Memory.BufferCount - 1).Length);
        // the view keeps its own copy of the ring size: scribbling over num_slots changes nothing
        unsafe
        {
            *(uint*)(a.Memory.RingAddress(0, 0) + NetmapAbi.RingNumSlots) = 1_000_000;
        }
        Assert.Equal(8u, tx.NumSlots);
        Assert.Throws<ArgumentOutOfRangeException>(() => tx.Slot(8));
        // Frame() never reaches past the buffer, whatever len says
        ref var s = ref tx.Slot(0);
        s.Len = 65535;
        Assert.Equal(2048, tx.Frame(s).Length);
    }
}
