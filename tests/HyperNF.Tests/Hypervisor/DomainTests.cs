using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Hypervisor;

public class DomainTests
{
    private static readonly byte[] MacTx = [0x02, 0, 0, 0, 0, 0x01];
    private static readonly byte[] MacRx = [0x02, 0, 0, 0, 0, 0x02];

    private static (Domain tx, Domain nf, Domain rx) Chain(Host host, Flow flow, long count, int frameSize, IoModel model)
    {
        int last = Environment.ProcessorCount - 1;
        var rx = host.Create(new DomainSpec
        {
            Name = "rx", Vifs = [new VifSpec("valey:rx")], Cpus = [[0]], Guest = () => new SeqReceiver(flow, frameSize),
        });
        var nf = host.Create(new DomainSpec
        {
            Name = "nf", Vifs = [new VifSpec("valex:nf0"), new VifSpec("valey:nf1")], Cpus = [[last]], Nf = "l2fwd", IoModel = model,
        });
        var tx = host.Create(new DomainSpec
        {
            Name = "tx", Vifs = [new VifSpec("valex:tx")], Cpus = [[0]], IoModel = model,
            Guest = () => new SeqSender(flow, count, frameSize, MacRx, MacTx),
        });
        return (tx, nf, rx);
    }

    private static void WaitFor(Func<bool> cond, int seconds, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!cond())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(10);
        }
    }

    [Theory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void FramesCrossAnNfDomainIntactInEveryIoModel(IoModel model)
    {
        using var host = new Host();
        var flow = new Flow();
        const long count = 100_000;
        var (tx, nf, rx) = Chain(host, flow, count, 128, model);
        WaitFor(() => Volatile.Read(ref flow.Received) >= count, 60, $"{count} frames in {model}");
        Thread.Sleep(50);
        Assert.Equal(count, Volatile.Read(ref flow.Received));
        Assert.Equal(0, flow.Corrupt);
        Assert.Equal(0, flow.OutOfOrder);
        var x = host.Switch.FindBridge("valex")!.GetStatistics();
        var y = host.Switch.FindBridge("valey")!.GetStatistics();
        Assert.Equal(0, x.Unaccounted);
        Assert.Equal(0, y.Unaccounted);
        Assert.Equal(0, x.Dropped + y.Dropped);
        Assert.Equal(model, nf.IoModel);
        if (model == IoModel.Hypercall) Assert.Null(nf.Backend);
        else
        {
            Assert.NotNull(nf.Backend);
            Assert.True(nf.Backend!.Rounds > 0, "the backend thread did the flushes");
            Assert.True(nf.BackendTimeNs() > 0);
        }
        Assert.All(host.Domains, d => Assert.Equal(DomainState.Running, d.State));

        // Destroy releases the ports and the learning-table entries the traffic created.
        Assert.True(host.Switch.FindBridge("valex")!.Forwarding.Occupancy > 0, "the senders' MACs were learned");
        foreach (var d in host.Domains) Assert.True(host.Destroy(d));
        foreach (string name in new[] { "valex", "valey" })
        {
            var bridge = host.Switch.FindBridge(name)!;
            Assert.Empty(bridge.Ports);
            Assert.Equal(0, bridge.Forwarding.Occupancy);
        }
        Assert.True(tx.MemoryReleased && nf.MemoryReleased && rx.MemoryReleased);
    }

    /// <summary>
    /// Split: the backend thread goes to cores no vCPU is pinned to, else core 0; merge: to the
    /// domain vCPU's own core (seen in the kernel's affinity of the backend's tid). Per-interval
    /// accounting from schedstat: the NF's vCPU time is charged to the domain, its backend's to
    /// the host; in the hypercall model there is no backend and all switching is the domain's.
    /// </summary>
    [Theory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void BackendsArePlacedByModelAndBilledToTheHost(IoModel model)
    {
        using var host = new Host();
        var flow = new Flow();
        var (tx, nf, rx) = Chain(host, flow, long.MaxValue, 256, model);
        int last = Environment.ProcessorCount - 1;
        if (model == IoModel.Hypercall) Assert.Null(nf.Backend);
        else
        {
            var backend = nf.Backend!;
            // vCPUs at the NF's creation: rx on core 0, the NF itself on the last core
            int[] free = Enumerable.Range(0, Environment.ProcessorCount).Where(c => c != 0 && c != last).ToArray();
            int[] expected = model == IoModel.Merge ? [last] : free.Length > 0 ? free : [0];
            Assert.Equal(expected, backend.Cpus);
            Assert.NotEqual(0, backend.Tid);
            Assert.DoesNotContain(backend.Tid, nf.VCpuTids);
            Assert.Equal(expected, Native.GetAffinity(backend.Tid));
        }
        WaitFor(() => Volatile.Read(ref flow.Received) > 20_000, 60, "traffic through the NF");
        var a = CpuAccounting.Sample(host.Domains);
        long r0 = Volatile.Read(ref flow.Received);
        WaitFor(() => Volatile.Read(ref flow.Received) > r0 + 50_000, 60, "more traffic");
        var b = CpuAccounting.Sample(host.Domains);
        var cpu = CpuAccounting.Between(a, b).ToDictionary(c => c.Domain);
        Assert.Equal(["nf", "rx", "tx"], cpu.Keys.Order(StringComparer.Ordinal).ToArray());
        var n = cpu["nf"];
        Assert.Equal(model, n.IoModel);
        Assert.True(n.VCpuPct > 0, $"the NF's vCPU ran: {n}");
        Assert.Equal(n.VCpuPct, n.ChargedToDomainPct);
        Assert.Equal(n.BackendPct, n.ChargedToHostPct);
        if (model == IoModel.Hypercall) Assert.Equal(0, n.BackendPct);
        else Assert.True(n.BackendPct > 0, $"the backend flushed for the NF: {n}");
        Assert.Equal(0, cpu["rx"].BackendPct); // the receiver is a hypercall domain
        Assert.Equal(0, flow.Corrupt);
    }

    [Fact]
    public void VCpusRunOnTheirPinnedCpus()
    {
        using var host = new Host();
        int last = Environment.ProcessorCount - 1;
        var seen = new System.Collections.Concurrent.ConcurrentBag<int>();
        var d = host.Create(new DomainSpec
        {
            Name = "pinned", VCpus = 2, Cpus = [[last], [0]], Vifs = [],
            Guest = () => new DelegateGuest(ctx =>
            {
                while (!ctx.Stopping)
                {
                    ctx.Checkpoint();
                    seen.Add(ctx.VCpu * 1000 + Native.SchedGetCpu());
                    Thread.Sleep(1);
                }
            }),
        });
        Thread.Sleep(200);
        Assert.Equal(last, d.VCpus[0].ObservedCpu);
        Assert.Equal(0, d.VCpus[1].ObservedCpu);
        Assert.All(seen.Where(v => v < 1000), v => Assert.Equal(last, v));
        Assert.All(seen.Where(v => v >= 1000), v => Assert.Equal(0, v - 1000));
        Assert.Equal([last], Native.GetAffinity(d.VCpus[0].Tid));
        Assert.NotEqual(0, d.VCpus[0].Tid);
        Assert.NotEqual(d.VCpus[0].Tid, d.VCpus[1].Tid);
    }

    [Fact]
    public void AThrowingNfCrashesOnlyItsOwnDomain()
    {
        using var host = new Host();
        var flow = new Flow();
        const long count = 50_000;
        Chain(host, flow, count, 64, IoModel.Hypercall);
        var bad = host.Create(new DomainSpec
        {
            Name = "bad", Vifs = [new VifSpec("valex:bad")],
            Guest = () => new DelegateGuest(ctx =>
            {
                ctx.Checkpoint();
                throw new InvalidDataException("boom from the guest");
            }),
        });
        WaitFor(() => bad.State == DomainState.Crashed, 30, "the bad domain to crash");
        Assert.Contains("boom from the guest", bad.CrashReason);
        WaitFor(() => Volatile.Read(ref flow.Received) >= count, 60, "the other domains to keep forwarding");
        Assert.Equal(0, flow.Corrupt);
        Assert.All(host.Domains.Where(d => d != bad), d => Assert.Equal(DomainState.Running, d.State));
        // The crash marks the domain first and then detaches its ports (from the crashing
        // thread, which a busy machine may preempt in between): wait for it, bounded.
        WaitFor(() => host.Switch.FindBridge("valex")!.FindPort("bad") is null, 30, "the crashed domain's port to be detached");
        WaitFor(() => bad.MemoryReleased, 30, "the crashed domain's memory to be released");
        Assert.True(host.TryDequeueEvent(out var ev));
        Assert.Contains("bad", ev);
    }

    [Fact]
    public void AHungGuestIsEndedByTheWatchdog()
    {
        // The "ok" domain checks in every 10 ms and must be left alone. With a 400 ms timeout a
        // busy machine that kept its thread off the CPU for 400 ms would have it crashed too;
        // 2 s leaves a wide margin, and a watchdog that never fires still fails (30 s wait).
        using var host = new Host { WatchdogTimeout = TimeSpan.FromSeconds(2), DestroyTimeout = TimeSpan.FromMilliseconds(200) };
        var release = new ManualResetEventSlim();
        var hung = host.Create(new DomainSpec
        {
            Name = "hung", Vifs = [new VifSpec("valex:h")],
            Guest = () => new DelegateGuest(ctx =>
            {
                ctx.Checkpoint();
                release.Wait(); // never checks in again until released
            }),
        });
        var ok = host.Create(new DomainSpec
        {
            Name = "ok", Vifs = [new VifSpec("valex:o")],
            Guest = () => new DelegateGuest(ctx => { while (!ctx.Stopping) { ctx.Checkpoint(); Thread.Sleep(10); } }),
        });
        WaitFor(() => hung.State == DomainState.Crashed, 30, "the watchdog");
        Assert.Contains("watchdog", hung.CrashReason);
        Assert.False(hung.MemoryReleased, "memory must stay mapped while the hung thread lives");
        Assert.Equal(DomainState.Running, ok.State);
        release.Set();
        WaitFor(() => hung.MemoryReleased, 30, "memory release after the thread ended");
    }

    [Fact]
    public void PausedDomainForwardsNothingUntilUnpaused()
    {
        using var host = new Host();
        var flow = new Flow { Window = 100 };
        var (tx, nf, rx) = Chain(host, flow, long.MaxValue, 64, IoModel.Hypercall);
        WaitFor(() => Volatile.Read(ref flow.Received) > 1000, 20, "traffic");
        nf.Pause();
        // Pause takes effect at the vCPU's next checkpoint, and frames the NF forwarded just
        // before may still be on their way to rx: wait (bounded) until the vCPU is parked and
        // rx has everything the NF put on valey. A pause that never parks the vCPU, or an NF
        // that keeps forwarding, times out here or moves the counts below.
        var valey = host.Switch.FindBridge("valey")!;
        WaitFor(() => nf.VCpus.All(v => v.InPause), 20, "the NF's vCPU to park");
        WaitFor(() => Volatile.Read(ref flow.Received) == valey.GetStatistics().Delivered, 20, "rx to take what the NF forwarded before the pause");
        long a = Volatile.Read(ref flow.Received), delivered = valey.GetStatistics().Delivered;
        Thread.Sleep(300);
        long b = Volatile.Read(ref flow.Received);
        Assert.Equal(a, b);
        Assert.Equal(delivered, valey.GetStatistics().Delivered);
        Assert.True(nf.VCpus.All(v => v.InPause));
        Assert.Equal(DomainState.Paused, nf.State);
        nf.Unpause();
        WaitFor(() => Volatile.Read(ref flow.Received) > b + 1000, 20, "traffic after unpause");
        Assert.Throws<InvalidOperationException>(() => nf.Unpause());
    }

    [Fact]
    public void DestroyLeavesNoThreadOrMemoryBehind()
    {
        using var host = new Host();
        // Count only what this test's domains create: threads "dN-vcpuK"/"dN-backend" (named
        // after the domain) and the memfd regions "hypernf-domID-dN". xunit runs other test
        // classes in parallel, so process-wide counts move on their own.
        static int Threads() => Directory.GetDirectories("/proc/self/task").Count(t =>
        {
            try { return System.Text.RegularExpressions.Regex.IsMatch(File.ReadAllText(Path.Combine(t, "comm")).Trim(), @"^(d\d+|warm)-(vcpu|backend)"); }
            catch (IOException) { return false; } // the thread ended while we listed it
        });
        static int Mappings() => File.ReadAllLines("/proc/self/maps").Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"memfd:hypernf-dom\d+-(d\d+|warm)( |$)"));
        // A destroyed domain's threads have finished their managed code when Destroy returns,
        // but the kernel thread still has to run its exit path, which a loaded machine can
        // delay. Wait for it (bounded): a thread that is really left behind never goes away,
        // so this still fails on a leak, only later.
        static void Eventually(Func<int> count, int want, string what)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            int n;
            while ((n = count()) != want && clock.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(20);
            Assert.True(n == want, $"{what}: {n} after {clock.Elapsed.TotalSeconds:F1} s, expected {want}");
        }
        Assert.Equal(0, Mappings());
        // warm up once so lazily created runtime threads do not count
        host.Destroy(host.Create(new DomainSpec { Name = "warm", Vifs = [new VifSpec("valex:w0"), new VifSpec("valey:w1")], Nf = "l2fwd", IoModel = IoModel.Split }));
        Eventually(Threads, 0, "threads of the warm-up domain");
        Eventually(Mappings, 0, "regions of the warm-up domain");
        for (int i = 0; i < 200; i++)
        {
            var model = (IoModel)(i % 3);
            var d = host.Create(new DomainSpec { Name = $"d{i}", Vifs = [new VifSpec("valex:a"), new VifSpec("valey:b")], Nf = "l2fwd", IoModel = model });
            if (i < 3)
            {
                Assert.True(Threads() >= 1, $"the live domain's threads must be visible by name ({model})");
                Assert.True(Mappings() >= 1, $"the live domain's region must be visible by name ({model})");
            }
            Assert.True(host.Destroy(d), $"destroy {i} ({model})");
            Assert.Equal(DomainState.Destroyed, d.State);
            Assert.True(d.MemoryReleased);
        }
        Eventually(Mappings, 0, "regions of destroyed domains still mapped");
        Eventually(Threads, 0, "threads of destroyed domains still alive");
        Assert.Empty(host.Domains);
        Assert.Empty(host.Switch.FindBridge("valex")!.Ports);
        Assert.Equal(0, host.Switch.FindBridge("valex")!.Forwarding.Occupancy);
    }

    [Fact]
    public void BadSpecsAreRefusedWithClearErrors()
    {
        using var host = new Host();
        Assert.Contains("unknown nf", Assert.Throws<ArgumentException>(() => host.Create(new DomainSpec { Name = "x", Nf = "nope" })).Message);
        Assert.Contains("CPU 99", Assert.Throws<ArgumentException>(() => host.Create(new DomainSpec { Name = "x", Cpus = [[99]] })).Message);
        Assert.Contains("weight", Assert.Throws<ArgumentException>(() => host.Create(new DomainSpec { Name = "x", Weight = 0 })).Message);
        var twoVifs = new DomainSpec { Name = "x", Vifs = [new VifSpec("valem:m0"), new VifSpec("valen:m1")], MemoryMb = 4 };
        long needMb = (Domain.LayoutFor(twoVifs).TotalBytes + (1 << 20) - 1) >> 20;
        Assert.True(needMb > 4, $"two vifs need {needMb} MB");
        Assert.Contains($"memory 4 MB is less than the {needMb} MB", Assert.Throws<ArgumentException>(() => host.Create(twoVifs)).Message);
        Assert.Null(host.Switch.FindBridge("valem")); // nothing was opened
        Assert.Contains("at least 1 MB", Assert.Throws<ArgumentException>(() => host.Create(twoVifs with { MemoryMb = 0 })).Message);
        host.Destroy(host.Create(twoVifs with { MemoryMb = (int)needMb })); // exactly enough is enough
        var one = host.Create(new DomainSpec { Name = "one", Guest = () => new DelegateGuest(c => { while (!c.Stopping) { c.Checkpoint(); Thread.Sleep(5); } }) });
        Assert.Contains("already exists", Assert.Throws<InvalidOperationException>(() => host.Create(new DomainSpec { Name = "one" })).Message);
        var err = Assert.Throws<ArgumentException>(() => host.Create(new DomainSpec { Name = "two", Vifs = [new VifSpec("nobridge")] }));
        Assert.Contains("BRIDGE:PORT", err.Message);
        // A guest's port needs are checked at create, not discovered by a crash on its vCPU.
        Assert.Equal("domain 'lone': nf 'firewall' sits between two ports; give the domain two vifs (it has 1)",
            Assert.Throws<ArgumentException>(() => host.Create(new DomainSpec { Name = "lone", Vifs = [new VifSpec("valelone:l0")], Nf = "firewall", NfArgs = "default=allow" })).Message);
        Assert.Equal("domain 'gen': nf 'pkt-gen' needs 1 vif(s) (the domain has 0)",
            Assert.Throws<ArgumentException>(() => host.Create(new DomainSpec { Name = "gen", Nf = "pkt-gen", NfArgs = "-f rx" })).Message);
        Assert.Null(host.Switch.FindBridge("valelone"));
        Assert.Single(host.Domains);
        Assert.Equal(one, host.Find("one"));
    }
}
