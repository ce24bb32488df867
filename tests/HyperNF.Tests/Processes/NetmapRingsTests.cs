using HyperNF.Hypervisor;
using Xunit;

namespace HyperNF.Tests.Processes;

/// <summary>
/// Ports with more than one ring pair in a process domain: the program's first registration's
/// nr_tx_rings/nr_rx_rings (netmap's request, e.g. pkt-gen's <c>@conf:rings=N</c>) set the ring
/// pairs of its region's ports; traffic uses every ring; NR_REG_ONE_NIC binds one ring and its
/// netmap_if lists only that ring, as netmap's does (libnetmap finds the rings by their offsets).
/// </summary>
public sealed class NetmapRingsTests
{
    private static string Br(string tag) => $"vale{tag}{Environment.ProcessId % 1000}";
    private const int EINVAL = 22, EBUSY = 16;

    [Fact]
    public void APortWithTwoRingPairs_CarriesTrafficOnBothRings_AndEveryFrameIsAccounted()
    {
        using var h = new NetmapHost();
        string br = Br("rg");
        const int n = 20_000;
        using var rx = new NetmapProgram(h.Socket, "rx", $"{br}:b", $"{n}", "--rings", "2", "--timeout", "3000");
        rx.WaitReady();
        var tx = NetmapProgram.Run(h.Socket, "tx", $"{br}:a", $"{n}", "--rings", "2", "--batch", "64");
        Assert.Equal(n, tx.Long("sent"));
        rx.WaitExit(); // frames of two rings may interleave: the order check does not apply
        Assert.Equal(2, rx.Long("rx_rings"));
        Assert.Equal(2, rx.Long("rx_rings_used"));
        Assert.Equal(0, rx.Long("bad"));
        var s = h.Host.Switch.FindBridge(br)!.GetStatistics();
        Assert.Equal(n, s.Sent);
        Assert.Equal(rx.Long("received"), s.Delivered);
        Assert.Equal(n, s.Delivered + s.Dropped);
        Assert.Equal(0, s.Unaccounted);
    }

    [Fact]
    public void OneNicRing_IsTheOnlyRingItsNetmapIfLists_AndRingIdsPastThePortAreEinval()
    {
        using var h = new NetmapHost();
        string br = Br("r1");
        NetmapProgram Reg(params string[] a) => NetmapProgram.Run(h.Socket, ["regerr", .. a]);
        var one = Reg($"{br}:c", "--rings", "2", "--mode", "4", "--ringid", "1");
        Assert.Equal(0, one.Long("errno"));
        Assert.Equal(2, one.Long("tx_rings"));
        Assert.Equal("t1r1", one.Value("listed"));
        Assert.Equal(EINVAL, Reg($"{br}:c", "--rings", "2", "--mode", "4", "--ringid", "2").Long("errno"));
        var all = Reg($"{br}:c", "--rings", "3");
        Assert.Equal("t0t1t2r0r1r2", all.Value("listed"));
        Assert.Equal(4, Reg($"{br}:c", "--rings", "9").Long("tx_rings")); // at most 4 ring pairs
        Assert.Equal("t0r0", Reg($"{br}:c").Value("listed"));             // netmap's default: one
        Assert.Equal(EINVAL, Reg($"{br}:c", "--mode", "4", "--ringid", "1").Long("errno"));
    }

    [Theory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void TwoRegistrationsOfOnePort_EachHoldOneRing_ThePortStaysUntilTheLastCloses(IoModel model)
    {
        // What pkt-gen -p 2 does: a thread per ring, each registering the port with NR_REG_ONE_NIC.
        // In split/merge the port has one backend, kicked by either registration's program.
        using var h = new NetmapHost(model);
        string br = Br("r2" + model.Key()[0]);
        const int count = 3000;
        using var rx = new NetmapProgram(h.Socket, "rx", $"{br}:b", $"{2 * count}", "--rings", "2", "--timeout", "3000");
        rx.WaitReady();
        var p = NetmapProgram.Run(h.Socket, "onenic", $"{br}:a", $"{count}", "--rings", "2");
        Assert.Equal("t0r0", p.Value("listed0"));          // each descriptor's netmap_if lists its ring only
        Assert.Equal("t1r1", p.Value("listed1"));
        Assert.Equal(1, p.Long("same_mem"));
        Assert.Equal(EBUSY, p.Long("again_errno"));          // ring 1 is held
        Assert.Equal(2 * count, p.Long("sent"));             // ring 0's descriptor closed halfway: the port stayed
        rx.WaitExit();
        Assert.Equal(1, rx.Long("rx_rings_used"));           // TX ring 1 -> RX ring 1 only
        var s = h.Host.Switch.FindBridge(br)!.GetStatistics();
        Assert.Equal(2 * count, s.Sent);
        Assert.Equal(rx.Long("received"), s.Delivered);
        Assert.Equal(0, s.Unaccounted);
        Assert.True(NetmapHost.Eventually(() => h.Host.Switch.FindBridge(br)!.FindPort("a") is null), "port a is detached after its last ring's registration closed");
    }

    [Fact]
    public void AHostileRingRegistration_NeverHurtsTheDaemonOrAnotherPort()
    {
        using var h = new NetmapHost();
        string br = Br("rh");
        // garbage ring indices, slot fields, ioctls on ring 1 of a two-ring port (its netmap_if lists ring 1 only)
        using var hostile = new NetmapProgram(h.Socket, "hostile", $"{br}:x", "2", "--rings", "2", "--mode", "4", "--ringid", "1");
        hostile.WaitReady();
        const int n = 5000;
        // the receiver skips the hostile program's garbage frames (--only-test) and counts ours
        using var rx = new NetmapProgram(h.Socket, "rx", $"{br}:b", $"{n}", "--rings", "2", "--only-test", "--timeout", "3000");
        rx.WaitReady();
        var tx = NetmapProgram.Run(h.Socket, "tx", $"{br}:a", $"{n}", "--rings", "2", "--batch", "64");
        Assert.Equal(n, tx.Long("sent"));
        rx.WaitExit();
        Assert.Equal(0, rx.Long("bad"));
        Assert.True(rx.Long("received") > 0, rx.ToString());
        Assert.Equal(0, hostile.WaitExit());
        var s = h.Host.Switch.FindBridge(br)!.GetStatistics();
        Assert.True(s.Sent >= n);
        Assert.Equal(0, s.Unaccounted);
        Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText); // every program gone, nothing left
    }
}
