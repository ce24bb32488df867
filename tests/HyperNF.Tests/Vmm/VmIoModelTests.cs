using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Switch;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>
/// The paper's baselines on VM domains: split and merge backends kicked through KVM_IOEVENTFD
/// with the needs-kick handshake, next to the hypercall model, on real VMs and bridges.
/// </summary>
public sealed class VmIoModelTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private static DomainSpec Vm(string name, string image, string args, IoModel model, int[]? cpus, params string[] ports) => new()
    {
        Name = name, Kernel = GuestImages.Path(image), CommandLine = args, IoModel = model,
        Vifs = ports.Select(p => new VifSpec(p)).ToArray(), Cpus = cpus is null ? [] : [cpus],
    };

    private void Dump(params Domain[] ds)
    {
        foreach (var d in ds)
            output.WriteLine($"--- {d.Name} {d.IoModel} ({d.State}{(d.ExitStatus is { } s ? $" {s}" : "")}{d.CrashReason})" +
                             $"{(d.Backend is { } b ? $" backend rounds {b.Rounds} kicks {b.VmKick?.Kicks} wakeups {b.Notifications} late {b.LateRounds}" : "")}\n{d.Vm?.Console.Read().Text}");
    }

    private static int Cpu(int i) => i % Environment.ProcessorCount;

    [KvmTheory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void Tx_vm_to_nf_vm_to_rx_vm_exact_counts_and_payloads(IoModel model)
    {
        const int n = 3000;
        string k = model.Key()[..2];
        using var host = new Host { BackendCpus = [Cpu(1)] };
        // Rings deeper than the run: however the loaded machine schedules the three VMs, no ring can fill.
        var rx = host.Create(Vm($"vmio-rx-{k}", "pkt-gen", $"-f rx -n {n}", model, [Cpu(1)], $"valevib{k}:rx") with { SlotsPerRing = 4096 });
        var nf = host.Create(Vm($"vmio-nf-{k}", "l2fwd", "", model, [Cpu(1)], $"valevia{k}:in", $"valevib{k}:out") with { SlotsPerRing = 4096 });
        var tx = host.Create(Vm($"vmio-tx-{k}", "pkt-gen", $"-f tx -n {n} -R 20000 -l 60 -b 16", model, [Cpu(0)], $"valevia{k}:tx"));
        try
        {
            VmKit.WaitState(tx, DomainState.Exited, Wait);
            VmKit.WaitState(rx, DomainState.Exited, Wait);
        }
        finally
        {
            Dump(tx, nf, rx);
            foreach (var br in host.Switch.Bridges) { var st = br.GetStatistics(); output.WriteLine($"{br.Name}: sent {st.Sent} delivered {st.Delivered} dropped {st.Dropped} ring_full {st.Drops[(int)DropReason.RingFull]}"); }
        }
        Assert.Equal(0, tx.ExitStatus);
        Assert.Equal(0, rx.ExitStatus); // every frame of ours arrived once, payload checked by the guest
        Assert.Equal(n, VmDataPathTests.Field(tx, "pktgen-tx:", "sent"));
        Assert.Equal(n, VmDataPathTests.Field(rx, "pktgen-rx:", "received"));
        Assert.Equal(0, VmDataPathTests.Field(rx, "pktgen-rx:", "lost"));
        Assert.Equal(0, VmDataPathTests.Field(rx, "pktgen-rx:", "bad"));
        Assert.Equal(0, VmDataPathTests.Field(rx, "pktgen-rx:", "reordered"));
        foreach (var br in new[] { $"valevia{k}", $"valevib{k}" })
        {
            // The receiver can exit while the NF's flush that delivered its last frames is still
            // finishing (a flush counts its sent frames at its end): wait for the bridge to be quiescent.
            VmKit.WaitFor(() => host.Switch.FindBridge(br)!.GetStatistics() is { Sent: n, Unaccounted: 0 }, TimeSpan.FromSeconds(5));
            var s = host.Switch.FindBridge(br)!.GetStatistics();
            Assert.Equal(n, s.Sent);
            Assert.Equal(0, s.Dropped);
            Assert.Equal(0, s.Unaccounted);
        }
        if (model == IoModel.Hypercall)
        {
            Assert.Null(nf.Backend);
            Assert.True(tx.Vm!.Counters.First(c => c.Key == "txsync").Value > 0, "hypercall: TXSYNC exits");
        }
        else
        {
            // The flush ran on the backends, kicked through the ioeventfd; no TXSYNC exit was made.
            foreach (var d in new[] { tx, nf })
            {
                Assert.NotNull(d.Backend!.VmKick);
                Assert.True(d.Backend.Rounds > 0, $"{d.Name}: backend rounds");
                Assert.Equal(0, d.Vm!.Counters.First(c => c.Key == "txsync").Value);
                Assert.Equal(0, d.Backend.LateRounds);
            }
            Assert.True(tx.Backend!.VmKick!.Kicks > 0, "the sender kicked its backend");
            // merge: the backend shares the vCPU's core; split: the host's backend cores.
            Assert.Equal(model == IoModel.Merge ? [Cpu(0)] : [Cpu(1)], tx.Backend.Cpus);
        }
        Assert.True(host.Destroy(tx));
        Assert.True(host.Destroy(nf));
        Assert.True(host.Destroy(rx));
    }

    /// <summary>
    /// No kick lost: the sender sends single frames (one kick each), its backend never spins
    /// (every frame needs the needs-kick handshake) and shares its core with a busy thread, so
    /// kicks land while it works, while it is about to sleep and while it sleeps. Every frame
    /// arrives (paced below what the receiver's ring holds, so no ring can overflow), and the
    /// backend never found work only through its backstop timeout.
    /// </summary>
    [KvmTheory]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void Single_frames_with_a_slow_backend_lose_no_kick(IoModel model)
    {
        const int n = 1500;
        string k = model.Key()[..2];
        using var host = new Host();
        int backendCpu = Cpu(1);
        var rx = host.Create(Vm($"vmkick-rx-{k}", "pkt-gen", $"-f rx -n {n}", IoModel.Hypercall, [Cpu(0)], $"valevk{k}:rx"));
        var spec = Vm($"vmkick-tx-{k}", "pkt-gen", $"-f tx -n {n} -b 1 -l 60 -R 10000", model, [model == IoModel.Merge ? backendCpu : Cpu(0)], $"valevk{k}:tx")
            with { BackendSpinMicroseconds = 0 };
        host.BackendCpus = [backendCpu];
        using var hog = new CoreHog(backendCpu);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var tx = host.Create(spec);
        try
        {
            VmKit.WaitState(tx, DomainState.Exited, Wait);
            VmKit.WaitState(rx, DomainState.Exited, Wait);
        }
        finally { Dump(tx, rx); }
        output.WriteLine($"{n} single frames in {sw.Elapsed.TotalMilliseconds:F0} ms");
        Assert.Equal(0, rx.ExitStatus);
        Assert.Equal(n, VmDataPathTests.Field(rx, "pktgen-rx:", "received"));
        Assert.Equal(0, VmDataPathTests.Field(rx, "pktgen-rx:", "lost"));
        var b = tx.Backend!;
        Assert.Equal([backendCpu], b.Cpus);
        Assert.Equal(0, b.LateRounds);
        Assert.True(b.VmKick!.Kicks > 0 && b.Notifications > 0, "the backend slept and was kicked awake");
        Assert.True(host.Destroy(tx));
        Assert.True(host.Destroy(rx));
    }

    /// <summary>
    /// Split: the switching work happens on the backend thread, billed to the host; the vCPU
    /// thread's time is the domain's. Both read from the threads' schedstat, and with cgroups
    /// the backend is in the host's group and the vCPU in the domain's.
    /// </summary>
    [KvmFact]
    public void Backend_cpu_is_billed_to_the_host_and_vcpu_cpu_to_the_domain()
    {
        using var host = new Host();
        var rx = host.Create(Vm("vmbill-rx", "pkt-gen", "-f rx", IoModel.Hypercall, [Cpu(1)], "valevbill:rx"));
        var tx = host.Create(Vm("vmbill-tx", "pkt-gen", "-f tx -l 60 -b 256", IoModel.Split, [Cpu(0)], "valevbill:tx"));
        var b = tx.Backend!;
        Assert.NotEqual(0, b.Tid);
        Assert.DoesNotContain(b.Tid, tx.VCpuTids);
        Thread.Sleep(300);
        long v0 = CpuTime.ThreadNs(tx.VCpuTids[0]), b0 = CpuTime.ThreadNs(b.Tid), r0 = b.Rounds;
        var c0 = CpuAccounting.Sample([tx]);
        Thread.Sleep(1000);
        long v1 = CpuTime.ThreadNs(tx.VCpuTids[0]), b1 = CpuTime.ThreadNs(b.Tid), r1 = b.Rounds;
        var c = CpuAccounting.Between(c0, CpuAccounting.Sample([tx])).Single();
        output.WriteLine($"vCPU {(v1 - v0) / 1e6:F1} ms, backend {(b1 - b0) / 1e6:F1} ms, rounds {r1 - r0}; accounting: vCPU {c.VCpuPct}% backend {c.BackendPct}% host {c.ChargedToHostPct}%");
        Assert.True(tx.State == DomainState.Running, $"{tx.State} {tx.CrashReason}");
        Assert.True(r1 > r0, "the backend flushed");
        Assert.True(b1 - b0 > 10_000_000, $"backend thread ran {(b1 - b0) / 1e6:F1} ms in 1 s of traffic");
        Assert.True(v1 - v0 > 10_000_000, $"vCPU thread ran {(v1 - v0) / 1e6:F1} ms");
        // The accounting's two figures are those two threads' schedstat, not one split by rule.
        Assert.InRange(c.BackendPct, (b1 - b0) / 1e7 * 0.5, (b1 - b0) / 1e7 * 1.5 + 5);
        Assert.Equal(c.BackendPct, c.ChargedToHostPct);
        Assert.InRange(c.VCpuPct, (v1 - v0) / 1e7 * 0.5, (v1 - v0) / 1e7 * 1.5 + 5);
        Assert.True(host.Destroy(tx));
        Assert.True(host.Destroy(rx));
    }

    [KvmFact]
    public void Backend_cgroup_is_the_hosts_and_vcpu_cgroup_the_domains()
    {
        var control = HostCpuControl.Detect(out string? warning);
        if (control is not HostCpuControl hc || warning is not null)
        {
            (control as IDisposable)?.Dispose();
            output.WriteLine($"skipped: no cgroup CPU controller ({warning})");
            return;
        }
        using var host = new Host { CpuPolicy = control };
        var rx = host.Create(Vm("vmcg-rx", "pkt-gen", "-f rx", IoModel.Hypercall, [Cpu(1)], "valevcg:rx"));
        var tx = host.Create(Vm("vmcg-tx", "pkt-gen", "-f tx -l 60 -b 64 -R 100000", IoModel.Split, [Cpu(0)], "valevcg:tx"));
        int backendTid = tx.Backend!.Tid, vcpuTid = tx.VCpuTids.Single();
        Assert.Contains(backendTid, hc.HostGroup.Threads);
        Assert.DoesNotContain(vcpuTid, hc.HostGroup.Threads);
        var dom = hc.Find(tx)!.Group;
        Assert.Contains(vcpuTid, dom.Threads);
        Assert.DoesNotContain(backendTid, dom.Threads);
        if (hc.HostGroup.Path is { } hp && File.Exists(Path.Combine(hp, "tasks")))
        {
            // What the kernel holds, not only our record of it (cgroup v1 lists thread ids in tasks).
            var kernelHost = File.ReadAllLines(Path.Combine(hp, "tasks")).Select(int.Parse).ToArray();
            Assert.Contains(backendTid, kernelHost);
            Assert.DoesNotContain(vcpuTid, kernelHost);
            Assert.Contains(vcpuTid, File.ReadAllLines(Path.Combine(dom.Path!, "tasks")).Select(int.Parse));
        }
        Assert.True(host.Destroy(tx));
        Assert.True(host.Destroy(rx));
    }

    /// <summary>Destroy while the backend is in the middle of flushing a full-speed sender: quick, clean, nothing left.</summary>
    [KvmTheory]
    [InlineData(IoModel.Split)]
    [InlineData(IoModel.Merge)]
    public void Destroy_of_a_domain_whose_backend_is_busy(IoModel model)
    {
        string k = model.Key()[..2];
        using var host = new Host();
        var rx = host.Create(Vm($"vmbusy-rx-{k}", "pkt-gen", "-f rx", IoModel.Hypercall, [Cpu(1)], $"valevbz{k}:rx"));
        var tx = host.Create(Vm($"vmbusy-tx-{k}", "pkt-gen", "-f tx -l 1514 -b 512", model, [Cpu(0)], $"valevbz{k}:tx"));
        var b = tx.Backend!;
        int tid = b.Tid;
        Assert.True(VmKit.WaitFor(() => b.Rounds > 20, Wait), $"backend rounds {b.Rounds}");
        long r = b.Rounds;
        Assert.True(VmKit.WaitFor(() => b.Rounds > r, TimeSpan.FromSeconds(5)), "the backend is busy when destroy starts");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(host.Destroy(tx));
        output.WriteLine($"destroy took {sw.Elapsed.TotalMilliseconds:F0} ms after {b.Rounds} rounds");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"destroy took {sw.Elapsed.TotalMilliseconds:F0} ms");
        Assert.Equal(DomainState.Destroyed, tx.State);
        Assert.True(tx.MemoryReleased);
        // Join returns when the managed thread is done; the kernel task leaves /proc a moment later.
        Assert.True(VmKit.WaitFor(() => !Directory.Exists($"/proc/self/task/{tid}"), TimeSpan.FromSeconds(2)), "the backend thread ended");
        Assert.Null(host.Find(tx.Name));
        var s = host.Switch.FindBridge($"valevbz{k}")!.GetStatistics();
        Assert.True(s.Sent > 0);
        Assert.Equal(0, s.Unaccounted);
        Assert.Equal(DomainState.Running, rx.State);
        Assert.True(host.Destroy(rx));
    }

    /// <summary>In the hypercall model there is no kick channel: a store to the kick page still crashes the domain, with the reason.</summary>
    [KvmFact]
    public void Kick_page_store_in_the_hypercall_model_crashes_only_that_domain()
    {
        var g = new MicroGuest(KvmPlatform.Current.Ring);
        g.MovRbx(GuestAbi.KickGpa).MovEax(1).StoreEaxAtRbx().Exit(0, 0x100);
        using var img = VmKit.Image(g);
        using var host = new Host();
        var d = host.Create(new DomainSpec { Name = "vmkickpage", Kernel = img.Path, IoModel = IoModel.Hypercall });
        VmKit.WaitState(d, DomainState.Crashed, Wait);
        Assert.Contains("kick page", d.CrashReason);
        Assert.Contains("does not use", d.CrashReason);
        host.Destroy(d);
        // In split the same store is a kick (no exit to the VMM): the guest goes on and exits 0.
        var s = host.Create(new DomainSpec { Name = "vmkickpage2", Kernel = img.Path, IoModel = IoModel.Split, Vifs = [new VifSpec("valevkpg:p")] });
        VmKit.WaitState(s, DomainState.Exited, Wait);
        Assert.Equal(0, s.ExitStatus);
        host.Destroy(s);
    }

    /// <summary>A thread that keeps one core busy (a slow backend's competitor) until disposed.</summary>
    private sealed class CoreHog : IDisposable
    {
        private volatile bool _stop;
        private readonly Thread _t;

        public CoreHog(int cpu)
        {
            _t = new Thread(() =>
            {
                Native.SetAffinity(0, [cpu]);
                while (!_stop) Thread.SpinWait(1000);
            }) { IsBackground = true, Name = "vmkick-hog" };
            _t.Start();
        }

        public void Dispose()
        {
            _stop = true;
            _t.Join();
        }
    }
}
