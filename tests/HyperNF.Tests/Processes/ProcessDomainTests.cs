using HyperNF.Hypervisor;
using HyperNF.Netmap;
using HyperNF.Switch;
using HyperNF.Tests.Control;
using Xunit;

namespace HyperNF.Tests.Processes;

/// <summary>
/// Unmodified netmap programs (our own C program, tests/native/nm_tool.c, built by the test
/// project with gcc) as process domains: libhypernf-netmap.so preloaded, the daemon in this
/// process. Real processes, real shared memory, real futexes and eventfds.
/// </summary>
public sealed class ProcessDomainTests
{
    private static string Bridge(string tag) => $"vale{tag}{Environment.ProcessId % 1000}";

    [Fact]
    public void Offsets_OfEveryFieldMatchNetmapAbi()
    {
        var p = NetmapProgram.Run("/nonexistent", "offsets");
        var expect = new Dictionary<string, long>
        {
            ["netmap_slot.buf_idx"] = NetmapAbi.SlotBufIdx, ["netmap_slot.len"] = NetmapAbi.SlotLen,
            ["netmap_slot.flags"] = NetmapAbi.SlotFlags, ["netmap_slot.ptr"] = NetmapAbi.SlotPtr, ["netmap_slot.size"] = NetmapAbi.SlotSize,
            ["netmap_ring.buf_ofs"] = NetmapAbi.RingBufOffset, ["netmap_ring.num_slots"] = NetmapAbi.RingNumSlots,
            ["netmap_ring.nr_buf_size"] = NetmapAbi.RingBufSize, ["netmap_ring.ringid"] = NetmapAbi.RingId,
            ["netmap_ring.dir"] = NetmapAbi.RingDir, ["netmap_ring.head"] = NetmapAbi.RingHead, ["netmap_ring.cur"] = NetmapAbi.RingCur,
            ["netmap_ring.tail"] = NetmapAbi.RingTail, ["netmap_ring.flags"] = NetmapAbi.RingFlags, ["netmap_ring.ts"] = NetmapAbi.RingTimestamp,
            ["netmap_ring.offset_mask"] = NetmapAbi.RingOffsetMask, ["netmap_ring.buf_align"] = NetmapAbi.RingBufAlign,
            ["netmap_ring.sem"] = NetmapAbi.RingSem, ["netmap_ring.slot"] = NetmapAbi.RingSlots,
            ["netmap_if.ni_name"] = NetmapAbi.IfName, ["netmap_if.ni_version"] = NetmapAbi.IfVersion, ["netmap_if.ni_flags"] = NetmapAbi.IfFlags,
            ["netmap_if.ni_tx_rings"] = NetmapAbi.IfTxRings, ["netmap_if.ni_rx_rings"] = NetmapAbi.IfRxRings,
            ["netmap_if.ni_bufs_head"] = NetmapAbi.IfBufsHead, ["netmap_if.ni_host_tx_rings"] = NetmapAbi.IfHostTxRings,
            ["netmap_if.ni_host_rx_rings"] = NetmapAbi.IfHostRxRings, ["netmap_if.ni_spare1"] = NetmapAbi.IfSpare,
            ["netmap_if.ring_ofs"] = NetmapAbi.IfRingOffsets,
            // netmap API 14's request structures (the preload library's side of the ABI)
            ["nmreq_header.nr_name"] = 8, ["nmreq_header.nr_options"] = 72, ["nmreq_header.nr_body"] = 80, ["nmreq_header.size"] = 88,
            ["nmreq_register.nr_offset"] = 0, ["nmreq_register.nr_memsize"] = 8, ["nmreq_register.nr_tx_slots"] = 16,
            ["nmreq_register.nr_host_tx_rings"] = 28, ["nmreq_register.nr_mem_id"] = 32, ["nmreq_register.nr_ringid"] = 34,
            ["nmreq_register.nr_mode"] = 36, ["nmreq_register.nr_extra_bufs"] = 40, ["nmreq_register.nr_flags"] = 48, ["nmreq_register.size"] = 56,
            ["nmreq.size"] = 60, ["nmreq.nr_version"] = 16, ["nmreq.nr_offset"] = 20, ["nmreq.nr_ringid"] = 40, ["nmreq.nr_arg2"] = 46,
            ["nmreq.nr_arg3"] = 48, ["nmreq.nr_flags"] = 52,
            // Linux _IOWR('i', n, size) = 3<<30 | size<<16 | 'i'<<8 | n; _IO = 'i'<<8 | n
            ["ioctl.NIOCCTRL"] = (3L << 30) | (88L << 16) | ('i' << 8) | 151, ["ioctl.NIOCREGIF"] = (3L << 30) | (60L << 16) | ('i' << 8) | 146,
            ["ioctl.NIOCGINFO"] = (3L << 30) | (60L << 16) | ('i' << 8) | 145, ["ioctl.NIOCTXSYNC"] = ('i' << 8) | 148, ["ioctl.NIOCRXSYNC"] = ('i' << 8) | 149,
        };
        foreach (var (field, offset) in expect) Assert.True(offset == p.Long(field), $"{field}: C says {p.Value(field)}, we say {offset}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Register_GivesNetmapsLayoutReadableWithNetmapsMacros(bool legacy)
    {
        using var h = new NetmapHost();
        string port = $"{Bridge("reg")}:a";
        var p = NetmapProgram.Run(h.Socket, ["info", port, "--extra", "16", .. legacy ? new[] { "--legacy" } : []]);
        Assert.Equal(0, p.Long("bad"));
        Assert.Equal(port, p.Value("name"));
        Assert.Equal(14, p.Long("version"));
        Assert.Equal(1, p.Long("tx_rings"));
        Assert.Equal(1, p.Long("rx_rings"));
        Assert.Equal(0, p.Long("host_tx_rings"));
        Assert.Equal(1024, p.Long("slots"));
        Assert.Equal(16, p.Long("extra"));
        Assert.Equal(16, p.Long("chained")); // the ni_bufs_head list, walked through NETMAP_BUF
        // The program exited: its domain went with it.
        Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText);
    }

    [Fact]
    public void ProcessDomain_IsListedWithItsPidPortsAndThread()
    {
        using var h = new NetmapHost();
        string a = $"{Bridge("lst")}:a", b = $"{Bridge("lst2")}:b";
        using var p1 = new NetmapProgram(h.Socket, "fwd", a, b, "1000000", "--timeout", "20000");
        p1.WaitReady();
        var d = Assert.Single(h.ProcessDomains);
        Assert.Equal(p1.Process.Id, d.ProcessId);
        Assert.Equal(DomainKind.Process, d.Kind);
        Assert.Equal(new[] { a, b }.Order(StringComparer.Ordinal), d.Ports.Select(x => x.Name).Order(StringComparer.Ordinal));
        Assert.Equal(2, d.VCpus.Count(v => !v.Exited)); // one host thread per registration
        Assert.Equal("1", p1.Value("zerocopy")); // both ports in the process's one region
        string list = Cli.Run(h.Socket, "list", "--json").Out;
        Assert.Contains("\"kind\": \"process\"", list);
        Assert.Contains($"\"pid\": {p1.Process.Id}", list);
        Assert.Contains(a, list);
    }

    [Theory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void TxToRx_BetweenTwoProcesses_ExactCountsIntactPayloads(IoModel model)
    {
        using var h = new NetmapHost(model);
        string br = Bridge("tr" + model.Key()[0]);
        // Fewer frames than the receiver's ring holds: nothing may be lost.
        using (var rx = new NetmapProgram(h.Socket, "rx", $"{br}:r", "900", "--timeout", "20000"))
        {
            rx.WaitReady();
            var tx = NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "900", "1514");
            Assert.Equal(900, tx.Long("sent"));
            Assert.Equal(0, rx.WaitExit());
            Assert.Equal(900, rx.Long("received"));
            Assert.Equal(0, rx.Long("bad"));
            Assert.Equal(0, rx.Long("out_of_order"));
        }
        // Many more: every frame delivered or counted as a ring_full drop at the receiver.
        // The receiver stops after --timeout ms without a frame: longer than the sender can be
        // descheduled on a loaded 2-CPU CI machine (3 s once cut a stream short: delivered frames
        // arrived after the receiver had gone).
        using (var rx = new NetmapProgram(h.Socket, "rx", $"{br}:r2", "200000", "--timeout", "6000"))
        {
            rx.WaitReady();
            var before = h.Host.Switch.FindBridge(br)!.GetStatistics();
            NetmapProgram.Run(h.Socket, "tx", $"{br}:t2", "200000", "60");
            rx.WaitExit();
            Assert.Equal(0, rx.Long("bad"));
            Assert.Equal(0, rx.Long("out_of_order"));
            var s = h.Host.Switch.FindBridge(br)!.GetStatistics();
            Assert.Equal(200000, s.Sent - before.Sent);
            Assert.Equal(rx.Long("received"), s.Delivered - before.Delivered);
            Assert.Equal(200000, rx.Long("received") + s.Drops[(int)DropReason.RingFull] - before.Drops[(int)DropReason.RingFull]);
            Assert.Equal(0, s.Unaccounted);
        }
    }

    /// <summary>
    /// Which syncs reach a host thread: only a hypercall-model TXSYNC (the flush runs there, on the
    /// caller's CPU, billed to the domain). A receiver's poll/rxsync never does (self-served RX
    /// rings; poll skips txsync with nothing queued), and in split/merge the sender kicks its
    /// backend itself through the kick eventfd (HNF_FEAT_TX_KICK), as a VM does through KVM.
    /// </summary>
    [Theory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void OnlyAHypercallTxSync_IsHandedToAHostThread(IoModel model)
    {
        using var h = new NetmapHost(model);
        string br = Bridge("ho" + model.Key()[0]);
        using var rx = new NetmapProgram(h.Socket, "rx", $"{br}:r", "100000000", "--timeout", "5000");
        rx.WaitReady();
        using var tx = new NetmapProgram(h.Socket, "tx", $"{br}:t", "100000000", "60");
        Assert.True(NetmapHost.Eventually(() => h.Host.Switch.FindBridge(br)!.GetStatistics().Delivered > 20_000), h.LogText);
        ProcessPort PortOf(NetmapProgram p) => h.ProcessDomains.Single(d => d.ProcessId == p.Process.Id).ProcessPorts.Single();
        var sender = PortOf(tx);
        var receiver = PortOf(rx);
        Assert.True(receiver.RxSelfServed);
        Assert.Equal(0, receiver.Channel.Requests);
        if (model == IoModel.Hypercall)
        {
            Assert.Null(sender.Kick);
            Assert.True(sender.Channel.Requests > 0);
        }
        else
        {
            Assert.NotNull(sender.Kick);
            Assert.Equal(0, sender.Channel.Requests);
            Assert.True(sender.Backend!.Rounds > 0);
        }
        tx.Dispose(); // SIGKILL mid-traffic: once quiet, every frame is accounted for
        Assert.True(NetmapHost.Eventually(() => h.Host.Switch.FindBridge(br)!.GetStatistics().Unaccounted == 0),
            $"{h.Host.Switch.FindBridge(br)!.GetStatistics()}");
    }

    [Fact]
    public void Busy_And_Select_Loops_Work_Too()
    {
        using var h = new NetmapHost();
        string br = Bridge("bsy");
        using var rx = new NetmapProgram(h.Socket, "rx", $"{br}:r", "700", "--select", "--timeout", "20000");
        rx.WaitReady();
        var tx = NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "700", "100", "--busy", "--legacy");
        Assert.Equal(700, tx.Long("sent"));
        Assert.Equal(0, rx.WaitExit());
        Assert.Equal(700, rx.Long("received"));
    }

    [Fact]
    public void Forwarder_BetweenTwoPorts_SwapsBuffersZeroCopy()
    {
        using var h = new NetmapHost();
        string a = Bridge("fwa"), b = Bridge("fwb");
        using var rx = new NetmapProgram(h.Socket, "rx", $"{b}:r", "800", "--timeout", "20000");
        rx.WaitReady();
        using var fwd = new NetmapProgram(h.Socket, "fwd", $"{a}:f0", $"{b}:f1", "800", "--timeout", "20000");
        fwd.WaitReady();
        NetmapProgram.Run(h.Socket, "tx", $"{a}:t", "800", "200");
        Assert.Equal(0, fwd.WaitExit());
        Assert.Equal("1", fwd.Value("zerocopy"));
        Assert.Equal(800, fwd.Long("forwarded"));
        Assert.Equal(800, fwd.Long("swaps"));
        Assert.Equal(0, rx.WaitExit());
        Assert.Equal(800, rx.Long("received"));
        Assert.Equal(0, rx.Long("bad")); // the swapped buffers carried the frames intact
        Assert.Equal(0, h.Host.Switch.FindBridge(b)!.GetStatistics().Dropped);
    }

    [Fact]
    public void Poll_WakesWhenAFrameArrives_AndTheWaiterUsesNoCpu()
    {
        using var h = new NetmapHost();
        string br = Bridge("pol");
        using var w = new NetmapProgram(h.Socket, "wait", $"{br}:w", "--timeout", "30000");
        w.WaitReady();
        Thread.Sleep(1500); // the program sits in poll()
        long signalsBefore = h.ProcessDomains.Single(d => d.ProcessId == w.Process.Id).ProcessPorts.Single().Channel.Signals;
        Assert.Equal(0, signalsBefore);
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "1", "60");
        Assert.Equal(0, w.WaitExit(30_000));
        Assert.Equal(1, w.Long("woke"));
        Assert.Equal(1, w.Long("frames"));
        Assert.Equal(1, w.Long("again")); // level-triggered: the frame is still there after the eventfd was drained
        // It woke because of the frame, long before its 30 s timeout, and slept meanwhile: its
        // CPU over a wait of >= 1.5 s is a few syncs, not a busy loop (which would be ~1500 ms).
        Assert.InRange(w.Double("waited_ms"), 1400, 25_000);
        Assert.True(w.Double("cpu_ms") < 100, $"the waiting program used {w.Value("cpu_ms")} ms of CPU");
    }

    [Fact]
    public void Epoll_TheApplicationsOwnLoop_WakesOnFrames_AndUsesNoCpuWhileWaiting()
    {
        using var h = new NetmapHost();
        string br = Bridge("epl");
        using var w = new NetmapProgram(h.Socket, "epoll", $"{br}:w", "501", "--timeout", "30000");
        w.WaitReady();
        Assert.Equal(17, w.Long("dup_add"));  // EEXIST: the descriptor is in the set already
        Assert.Equal(9, w.Long("bad_epfd"));  // EBADF: no such epoll descriptor
        Thread.Sleep(1500); // the program sits in epoll_wait
        Assert.Equal(0, h.ProcessDomains.Single(d => d.ProcessId == w.Process.Id).ProcessPorts.Single().Channel.Signals);
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "1", "60");
        Assert.True(NetmapHost.Eventually(() => w.Output.Contains("woke=")), w.ToString());
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t2", "500", "200");
        Assert.Equal(0, w.WaitExit(30_000));
        Assert.Equal(1, w.Long("woke"));
        Assert.Equal("abcdef", w.Value("first_data")); // the application's epoll_data came back
        Assert.Equal(1, w.Long("first_events") & 1); // EPOLLIN
        // Woken by the frame long before its 30 s timeout, asleep meanwhile (a busy loop would be ~1500 ms).
        Assert.InRange(w.Double("waited_ms"), 1400, 25_000);
        Assert.True(w.Double("cpu_ms") < 100, $"the waiting program used {w.Value("cpu_ms")} ms of CPU");
        Assert.Equal(501, w.Long("received"));
        Assert.Equal(0, w.Long("bad"));
        Assert.Equal(0, w.Long("foreign")); // the pipe in the same set was never reported
        Assert.Equal(0, w.Long("after"));   // consumed: level-triggered, nothing more to report
    }

    [Fact]
    public void Epoll_EdgeTriggered_ReportsEachArrivalOnce_AndWakesForTheNext()
    {
        using var h = new NetmapHost();
        string br = Bridge("ept");
        using var w = new NetmapProgram(h.Socket, "epollet", $"{br}:e", "--timeout", "20000");
        w.WaitReady();
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "5", "60"); // one txsync: one arrival
        Assert.True(NetmapHost.Eventually(() => w.Output.Contains("waiting2=1")), w.ToString());
        Assert.Equal(1, w.Long("first"));
        Assert.Equal(1, w.Long("first_events") & 1);  // EPOLLIN
        Assert.Equal(5, w.Long("frames1"));
        Assert.Equal(0, w.Long("second"));            // same frames, not consumed: no second report
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t2", "7", "60");
        Assert.Equal(0, w.WaitExit(30_000));
        Assert.Equal(1, w.Long("third"));             // the new frames are a new edge: woken
        Assert.True(w.Double("third_ms") < 15_000, w.ToString());
        Assert.Equal(12, w.Long("frames3"));
        Assert.Equal(0, w.Long("fourth"));            // all consumed, nothing new
        Assert.Equal(0, w.Long("after_mod"));
    }

    [Fact]
    public void PollAndEpollWait_InterruptedByASignal_FailWithEintr()
    {
        // A waiting program's signal handler runs (no SA_RESTART): the wait returns -1 with
        // EINTR, not the EAGAIN of the library's own eventfd read (nm-pktgen died on that).
        using var h = new NetmapHost();
        var p = NetmapProgram.Run(h.Socket, "eintr", $"{Bridge("int")}:w");
        Assert.Equal(-1, p.Long("poll_rc"));
        Assert.Equal(4, p.Long("poll_errno"));   // EINTR
        Assert.Equal(-1, p.Long("epoll_rc"));
        Assert.Equal(4, p.Long("epoll_errno"));
    }

    [Cpu.RealCgroupV1Fact]
    public void CpuControl_TheProgramJoinsItsDomainsGroup_AndLeavesItWithTheDomain()
    {
        using var h = new NetmapHost(cpuControl: true);
        using var p = new NetmapProgram(h.Socket, "hold", $"{Bridge("cg")}:h", "--close-after", "1500");
        p.WaitReady();
        string CpuCgroup() => File.ReadAllLines($"/proc/{p.Process.Id}/cgroup").Single(l => l.Split(':')[1].Split(',').Contains("cpu")).Split(':', 3)[2];
        var d = h.ProcessDomains.Single();
        var binding = (h.Host.CpuPolicy as HostCpuControl)?.Find(d);
        Assert.NotNull(binding);
        string group = binding.Group.Path!;
        // The program's own thread and the host thread serving its syncs: one group, one cap.
        Assert.True(binding.ProgramInGroup);
        var tasks = File.ReadAllLines(Path.Combine(group, "tasks")).Select(int.Parse).ToHashSet();
        Assert.Contains(p.Process.Id, tasks);
        Assert.All(d.VCpuTids, t => Assert.Contains(t, tasks));
        Assert.EndsWith(Path.GetFileName(group), CpuCgroup());
        // The program closes /dev/netmap and lives on: its domain ends, the program goes back home.
        Assert.True(NetmapHost.Eventually(() => p.Output.Contains("closed=1")), p.ToString());
        Assert.True(NetmapHost.Eventually(() => d.State == DomainState.Destroyed), h.LogText);
        Assert.True(NetmapHost.Eventually(() => !Directory.Exists(group)), $"{group} is still there");
        Assert.DoesNotContain("dom", CpuCgroup());
        Assert.False(p.Process.HasExited);
    }

    [Fact]
    public void KillMinus9_MidTraffic_LeavesNoDomainPortThreadOrCgroup()
    {
        using var h = new NetmapHost(cpuControl: true);
        string br = Bridge("k9");
        using var victim = new NetmapProgram(h.Socket, "rx", $"{br}:v", "100000000", "--timeout", "60000");
        victim.WaitReady();
        var d = h.ProcessDomains.Single();
        var threads = d.VCpus.ToArray();
        string? group = (h.Host.CpuPolicy as HostCpuControl)?.Find(d)?.Group.Path;
        using var tx = new NetmapProgram(h.Socket, "tx", $"{br}:t", "100000000", "60");
        Assert.True(NetmapHost.Eventually(() => h.Host.Switch.FindBridge(br)!.GetStatistics().Delivered > 1000), h.LogText);
        Cli.Signal(victim.Process, Cli.SIGKILL);
        Assert.True(NetmapHost.Eventually(() => d.State == DomainState.Destroyed), h.LogText);
        Assert.DoesNotContain(h.Host.Switch.FindBridge(br)!.Ports, p => p.PortName == "v");
        Assert.All(threads, v => Assert.True(v.Exited));
        Assert.True(d.MemoryReleased);
        // Destroyed is set before the host releases the CPU group (which waits for the killed
        // program's zombie threads to be reaped): the group goes right after, not with the state.
        if (group is not null) Assert.True(NetmapHost.Eventually(() => !Directory.Exists(group)), $"cgroup {group} is still there");
        // The sender keeps running into a bridge without the victim; the victim's counters stay in the totals.
        var s = h.Host.Switch.FindBridge(br)!.GetStatistics();
        Assert.True(s.Delivered > 1000);
        Assert.Equal(0, s.Unaccounted);
        Assert.Single(h.ProcessDomains); // only the sender's
    }

    [Fact]
    public void ThirtyTwoPrograms_AtOnce()
    {
        using var h = new NetmapHost();
        var rxs = new List<NetmapProgram>();
        var txs = new List<NetmapProgram>();
        try
        {
            for (int i = 0; i < 16; i++) rxs.Add(new NetmapProgram(h.Socket, "rx", $"{Bridge("m" + i)}:r", "300", "--timeout", "60000"));
            foreach (var r in rxs) r.WaitReady(60_000);
            for (int i = 0; i < 16; i++) txs.Add(new NetmapProgram(h.Socket, "tx", $"{Bridge("m" + i)}:t", "300", "128"));
            foreach (var t in txs) Assert.True(t.WaitExit() == 0, t.ToString());
            foreach (var r in rxs)
            {
                Assert.True(r.WaitExit() == 0, r.ToString());
                Assert.Equal(300, r.Long("received"));
            }
            Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText);
        }
        finally
        {
            foreach (var p in rxs.Concat(txs)) p.Dispose();
        }
    }

    [Fact]
    public void HostileProgram_NeverHurtsTheHostOrAnotherDomain()
    {
        using var h = new NetmapHost();
        string bad = Bridge("hos"), good = Bridge("hgd");
        using var rx = new NetmapProgram(h.Socket, "rx", $"{good}:r", "900", "--timeout", "30000");
        rx.WaitReady();
        using var hostile = new NetmapProgram(h.Socket, "hostile", $"{bad}:h", "3");
        hostile.WaitReady();
        Thread.Sleep(500);
        NetmapProgram.Run(h.Socket, "tx", $"{good}:t", "900", "300");
        Assert.Equal(0, rx.WaitExit());
        Assert.Equal(900, rx.Long("received"));
        Assert.Equal(0, rx.Long("bad"));
        Assert.Equal(0, hostile.WaitExit());
        Assert.True(hostile.Long("refused") > 0);
        // Its garbage was caught and counted, not forwarded into a crash.
        var s = h.Host.Switch.FindBridge(bad)!.GetStatistics();
        Assert.True(s.CorruptRingIndex > 0 || s.Dropped > 0, $"nothing counted: {s}");
        Assert.Equal(0, s.Unaccounted);
        Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText);
        Assert.DoesNotContain("failed", h.LogText);
    }

    /// <summary>
    /// A hostile program as a receiver: it scribbles over its RX ring's release and publish words
    /// (the self-served rxsync's, in the ring's sem area), head, cur and tail while a sender floods
    /// it and a good receiver on the same bridge. The good receiver gets every frame, the bad
    /// release values are counted as corrupt ring indices, and every frame is accounted for.
    /// </summary>
    [Fact]
    public void HostileReceiver_ItsReleaseWordGarbageIsCountedAndHurtsNobodyElse()
    {
        using var h = new NetmapHost();
        string br = Bridge("hrx");
        using var rx = new NetmapProgram(h.Socket, "rx", $"{br}:r", "900", "--timeout", "30000", "--only-test"); // the hostile one sends garbage too
        rx.WaitReady();
        using var hostile = new NetmapProgram(h.Socket, "hostile", $"{br}:h", "4", "--rx-only");
        hostile.WaitReady();
        Thread.Sleep(300); // the hostile program is scribbling
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "900", "60");
        Assert.True(rx.WaitExit() == 0, rx.ToString());
        Assert.Equal(900, rx.Long("received"));
        Assert.Equal(0, rx.Long("bad"));
        Assert.Equal(0, hostile.WaitExit());
        var s = h.Host.Switch.FindBridge(br)!.GetStatistics();
        Assert.True(s.CorruptRingIndex > 0, $"no bad release counted: {s}");
        Assert.Equal(0, s.Unaccounted);
        Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText);
        Assert.DoesNotContain("failed", h.LogText);
    }

    [Fact]
    public void Misuse_GetsNetmapsErrnos()
    {
        using var h = new NetmapHost();
        var p = NetmapProgram.Run(h.Socket, "errors", $"{Bridge("err")}:e");
        long einval = p.Long("EINVAL"), enxio = p.Long("ENXIO"), ebusy = p.Long("EBUSY"), eopnotsupp = p.Long("EOPNOTSUPP");
        Assert.Equal(enxio, p.Long("sync_unregistered"));
        Assert.Equal(einval, p.Long("mmap_unregistered"));
        Assert.Equal(einval, p.Long("unsupported_request"));
        Assert.Equal(einval, p.Long("bad_version"));
        Assert.Equal(eopnotsupp, p.Long("unknown_ioctl"));
        Assert.Equal(einval, p.Long("mmap_too_big"));
        Assert.Equal(ebusy, p.Long("register_twice"));
        Assert.Equal(einval, p.Long("bad_ring"));
        Assert.Equal(einval, p.Long("host_rings"));
    }

    [Fact]
    public void WithoutADaemon_OpenFailsLikeAMissingDevice()
    {
        using var tmp = new TempDir();
        using var p = new NetmapProgram(tmp.File("nobody.sock"), "info", "valex:a");
        Assert.Equal(1, p.WaitExit());
        Assert.Contains("open /dev/netmap: No such file or directory", p.Errors);
        Assert.Contains("cannot reach the HyperNF daemon", p.Errors);
    }

    [Fact]
    public void Exec_RunsTheProgramAsAProcessDomainWithItsOptions()
    {
        using var h = new NetmapHost();
        string br = Bridge("exe");
        var psi = Cli.Start(h.Socket, "exec", "--socket", h.Socket, "--io-model", "split", "--weight", "512", "--cap", "50",
            "--name", "execd", "--", NetmapProgram.Tool, "wait", $"{br}:w", "--timeout", "30000");
        using var proc = System.Diagnostics.Process.Start(psi)!;
        try
        {
            // The domain is listed at REGISTER, its port a moment later.
            Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Any(d => d.Name == "execd" && d.Ports.Count == 1)), h.LogText);
            var d = h.ProcessDomains.Single(x => x.Name == "execd");
            Assert.Equal(proc.Id, d.ProcessId); // exec keeps the pid: SO_PEERCRED names the program
            Assert.Equal(IoModel.Split, d.IoModel);
            Assert.Equal(512, d.Weight);
            Assert.Equal(50, d.Cap);
            Assert.Equal($"{br}:w", Assert.Single(d.Ports).Name);
            NetmapProgram.Run(h.Socket, "tx", $"{br}:t", "1", "60");
            Assert.True(proc.WaitForExit(30_000));
            Assert.Equal(0, proc.ExitCode);
            Assert.Contains("frames=1", proc.StandardOutput.ReadToEnd());
        }
        finally
        {
            if (!proc.HasExited) Cli.Signal(proc, Cli.SIGKILL);
        }
    }
}
