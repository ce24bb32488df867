using HyperNF.Linux;
using Xunit;

namespace HyperNF.Tests.Ports;

/// <summary>
/// The order counters of a generic-mode af_xdp port (Linux/XdpPassOrder.cs) on a real BPF array
/// map: what the reader writes is what the XDP program reads (the map's memory, mapped a second
/// time here in place of the program), and the heal rule closes a gap only when the socket was
/// empty at two checks in a row and nothing was passed in between.
/// </summary>
public unsafe class XdpPassOrderTests
{
    [NetnsFact] // root, as for the af_xdp tests: BPF maps need CAP_BPF
    public void TakenIsVisibleInTheMapAndAGapHealsOnlyWhenTheSocketStayedEmptyAndNothingMoved()
    {
        using var order = XdpPassOrder.Create("test");
        nint view = Native.Mmap(0, 4096, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, order.MapFd, 0);
        Assert.NotEqual(-1, view);
        try
        {
            ref ulong passed = ref *(ulong*)((byte*)view + XdpPassOrder.PassedOffset);
            ref ulong taken = ref *(ulong*)((byte*)view + XdpPassOrder.TakenOffset);
            order.PassAbove = 1522;
            Assert.Equal(1522L, *(long*)((byte*)view + XdpPassOrder.PassAboveOffset));

            passed = 5;                       // the program passed five frames
            order.Took(3);                    // the reader took three
            Assert.Equal(3UL, taken);         // ... and the program sees it
            Assert.Equal(5UL, order.Passed);

            Assert.False(order.Heal(socketEmpty: true), "one empty check is not enough");
            passed = 7;                       // frames still flowing
            Assert.False(order.Heal(socketEmpty: true), "passed moved since the last check");
            Assert.False(order.Heal(socketEmpty: false), "the socket holds frames");
            Assert.False(order.Heal(socketEmpty: true), "empty now, but not at the check before");
            Assert.Equal(0, order.Heals);
            Assert.True(order.Heal(socketEmpty: true), "empty twice, nothing passed in between, a gap of four");
            Assert.Equal(7UL, taken);
            Assert.Equal(1, order.Heals);
            Assert.False(order.Heal(socketEmpty: true), "no gap left");

            order.Took(0);
            order.Took(-1);                   // nothing to take: no change
            Assert.Equal(7UL, taken);
        }
        finally
        {
            Native.Munmap(view, 4096);
        }
    }
}
