using HyperNF.Hypervisor;
using HyperNF.Tests.Control;
using Xunit;

namespace HyperNF.Tests.Processes;

/// <summary>
/// netmap pipes between programs (what netmap's lb does): our nm_tool registers a VALE port (the
/// parent), other nm_tool processes open the pipe's ends NAME{ID / NAME}ID (or the legacy
/// NR_REG_PIPE_MASTER/SLAVE with the id in nr_ringid) and move frames through the parent's
/// region; netmap's errnos; a hostile end; the parent's program dying first.
/// </summary>
public sealed class NetmapPipeProcessTests
{
    private static string Br(string tag) => $"vale{tag}{Environment.ProcessId % 1000}";
    private const int EINVAL = 22, ENXIO = 6, EBUSY = 16;

    private static NetmapProgram Hold(NetmapHost h, string name)
    {
        var p = new NetmapProgram(h.Socket, "hold", name);
        p.WaitReady();
        return p;
    }

    [Theory]
    [InlineData(IoModel.Hypercall, false)]
    [InlineData(IoModel.Split, false)]
    [InlineData(IoModel.Hypercall, true)]
    public void APipeBetweenTwoPrograms_InTheParentsRegion_DeliversEveryFrameIntactAndInOrder(IoModel model, bool legacy)
    {
        using var h = new NetmapHost(model);
        string parent = $"{Br("pp")}:par";
        using var holder = Hold(h, parent);
        string[] master = legacy ? [parent, "--legacy", "--mode", "5", "--ringid", "7"] : [$"{parent}{{7"];
        string[] slave = legacy ? [parent, "--legacy", "--mode", "6", "--ringid", "7"] : [$"{parent}}}7"];
        const int n = 20_000;
        using var rx = new NetmapProgram(h.Socket, ["rx", slave[0], $"{n}", .. slave[1..]]);
        rx.WaitReady();
        Assert.Equal(1, h.Daemon.PipeCount);
        // The other end's region is the parent's: the same nr_mem_id as the holder got.
        var info = NetmapProgram.Run(h.Socket, ["regerr", $"{parent}}}8"]);
        Assert.Equal(0, info.Long("errno"));
        Assert.Equal(holder.Long("mem_id"), info.Long("mem_id"));
        var tx = NetmapProgram.Run(h.Socket, ["tx", master[0], $"{n}", "--batch", "64", .. master[1..]]);
        Assert.Equal(n, tx.Long("sent"));
        Assert.Equal(0, rx.WaitExit());
        // A pipe does not drop: the sender waits for room, so every frame arrives, intact and in order.
        Assert.Equal(n, rx.Long("received"));
        Assert.Equal(0, rx.Long("bad"));
        Assert.Equal(0, rx.Long("out_of_order"));
        Assert.Equal(n - 1, rx.Long("last_seq"));
        Assert.True(NetmapHost.Eventually(() => h.Daemon.PipeCount == 0), h.LogText);
        Assert.Contains($"pipe {parent}{{7 closed: {n} frame(s) master->slave, 0 slave->master, 0 bad slot(s), 0 ring reset(s)", h.LogText);
    }

    [Fact]
    public void PipeRequests_GetNetmapsErrnos()
    {
        using var h = new NetmapHost();
        string parent = $"{Br("pe")}:par";
        int Errno(params string[] args) => (int)NetmapProgram.Run(h.Socket, ["regerr", .. args]).Long("errno");
        Assert.Equal(ENXIO, Errno($"{parent}{{0"));                      // no such parent registered
        using var holder = Hold(h, parent);
        Assert.Equal(EINVAL, Errno($"{parent}{{"));                      // an empty pipe id
        Assert.Equal(EINVAL, Errno($"{parent}{{a-b"));                   // not an identifier
        Assert.Equal(EINVAL, Errno($"{parent}{{0", "--mode", "4", "--ringid", "1")); // a pipe end has ring 0 only
        Assert.Equal(EINVAL, Errno($"{parent}{{0", "--mode", "2"));      // host rings: a pipe has none
        using var end = Hold(h, $"{parent}{{1");
        Assert.Equal(EBUSY, Errno($"{parent}{{1"));                      // that end is registered already
        Assert.Equal(EBUSY, Errno(parent, "--legacy", "--mode", "5", "--ringid", "1")); // the same end, legacy form
        Assert.Equal(0, Errno($"{parent}}}1"));                          // the other end is free
        Assert.Equal(1, h.Daemon.PipeCount);
    }

    [Fact]
    public void AHostileEnd_NeverHurtsTheDaemonOrAnotherPipe()
    {
        using var h = new NetmapHost();
        string parent = $"{Br("ph")}:par";
        using var holder = Hold(h, parent);
        using var peer = Hold(h, $"{parent}}}2");                         // syncs both ways all the time
        using var hostile = new NetmapProgram(h.Socket, "hostile", $"{parent}{{2", "3");
        hostile.WaitReady();
        const int n = 5000;
        using var rx = new NetmapProgram(h.Socket, "rx", $"{parent}}}3", $"{n}");
        rx.WaitReady();
        var tx = NetmapProgram.Run(h.Socket, "tx", $"{parent}{{3", $"{n}");
        Assert.Equal(0, rx.WaitExit());
        Assert.Equal(n, rx.Long("received"));
        Assert.Equal(0, rx.Long("bad"));
        Assert.Equal(0, hostile.WaitExit());
        peer.Dispose();
        Assert.True(NetmapHost.Eventually(() => h.Daemon.PipeCount == 0), h.LogText);
        var line = h.LogText.Split('\n').Single(l => l.Contains($"pipe {parent}{{2 closed"));
        Assert.Matches(@"[1-9][0-9]* ring reset\(s\)", line); // the garbage indices were seen and repaired
        Assert.Single(h.ProcessDomains); // the holder; the daemon serves on
        Assert.Equal(0, NetmapProgram.Run(h.Socket, "regerr", $"{parent}{{4").Long("errno"));
    }

    [Fact]
    public void WhenTheParentsProgramDies_TheOtherEndsAreClosed_AndNothingIsLeft()
    {
        using var h = new NetmapHost();
        string parent = $"{Br("pk")}:par";
        var holder = Hold(h, parent);
        using var end = new NetmapProgram(h.Socket, "rx", $"{parent}}}5", "1000", "--timeout", "30000");
        end.WaitReady();
        Assert.Equal(1, h.Daemon.PipeCount);
        Assert.Equal(2, h.ProcessDomains.Length);
        holder.Dispose(); // SIGKILL
        // The other program's end goes with the region it lives in: its next wait fails (EIO), it exits.
        Assert.NotEqual(0, end.WaitExit(20_000));
        Assert.True(NetmapHost.Eventually(() => h.Daemon.PipeCount == 0 && h.ProcessDomains.Length == 0), h.LogText);
        Assert.Contains("closing", h.LogText);
    }

    [Fact]
    public void AnEndWaitingInEpoll_WakesWithEpollErrAndHup_WhenItsConnectionHangsUp()
    {
        using var h = new NetmapHost();
        string parent = $"{Br("pe")}:par";
        var holder = Hold(h, parent);
        // The program's own epoll loop on its pipe end; nothing will ever arrive there.
        using var end = new NetmapProgram(h.Socket, "epollhup", $"{parent}}}5", "--timeout", "30000");
        end.WaitReady();
        Thread.Sleep(1000); // asleep in epoll_wait
        holder.Dispose(); // SIGKILL: the daemon closes the other end's connection
        Assert.Equal(0, end.WaitExit(20_000));
        Assert.Equal(1, end.Long("woke"));
        Assert.Equal("5a5a", end.Value("data"));
        long ev = end.Long("events");
        Assert.True((ev & 0x008) != 0 && (ev & 0x010) != 0, $"events {ev}: EPOLLERR|EPOLLHUP expected"); // EPOLLERR, EPOLLHUP
        // Woken by the hang-up, long before its 30 s timeout, asleep until then.
        Assert.InRange(end.Double("waited_ms"), 900, 15_000);
        Assert.True(end.Double("cpu_ms") < 100, $"the waiting program used {end.Value("cpu_ms")} ms of CPU");
        Assert.Equal(1, end.Long("again"));     // level-triggered: the error stays reported
        Assert.Equal(-1, end.Long("sync"));
        Assert.Equal(5, end.Long("sync_errno")); // EIO
    }

    [Fact]
    public void DestroyingTheParentsDomain_KeepsItsRegionMappedForAnotherProgramsEnd_UntilThatEndCloses()
    {
        using var h = new NetmapHost();
        string parent = $"{Br("pd")}:par";
        using var holder = Hold(h, parent);
        var owner = h.ProcessDomains.Single();
        var end = new NetmapProgram(h.Socket, "hold", $"{parent}}}6"); // syncs its end all the time
        end.WaitReady();
        Assert.Equal(1, h.Daemon.PipeCount);
        // The toolstack's destroy: the other program's end lives in this region, so the region
        // stays mapped (it used to throw here, refusing to unmap under an open port).
        Assert.True(h.Host.Destroy(owner));
        Assert.False(owner.Memory.IsDisposed);
        Thread.Sleep(200); // the end keeps syncing on the still-mapped rings
        Assert.False(end.Process.HasExited, end.ToString());
        end.Dispose(); // SIGKILL: its end closes, the pipe goes, and with it the region
        Assert.True(NetmapHost.Eventually(() => h.Daemon.PipeCount == 0 && owner.Memory.IsDisposed), h.LogText);
    }
}
