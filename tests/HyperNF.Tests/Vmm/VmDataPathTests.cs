using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>Frames between VM domains (the SDK's pkt-gen and l2fwd images) through real bridges.</summary>
public sealed class VmDataPathTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private static DomainSpec Vm(string name, string image, string args, params string[] ports) => new()
    {
        Name = name, Kernel = GuestImages.Path(image), CommandLine = args, Vifs = ports.Select(p => new VifSpec(p)).ToArray(),
    };

    private void Dump(Domain d) => output.WriteLine($"--- {d.Name} ({d.State}{(d.ExitStatus is { } s ? $" {s}" : "")}{d.CrashReason})\n{d.Vm?.Console.Read().Text}");

    /// <summary>The value of key=N in the last console line that starts with <paramref name="prefix"/>.</summary>
    internal static long Field(Domain d, string prefix, string key)
    {
        string line = d.Vm!.Console.Read().Text.Split('\n').Last(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains($" {key}=", StringComparison.Ordinal));
        string v = line[(line.IndexOf($" {key}=", StringComparison.Ordinal) + key.Length + 2)..];
        int end = v.IndexOf(' ');
        return long.Parse(end < 0 ? v : v[..end], System.Globalization.CultureInfo.InvariantCulture);
    }

    [KvmFact]
    public void Tx_vm_to_rx_vm_exact_counts_and_intact_payloads()
    {
        const int n = 3000;
        using var host = new Host();
        var rx = host.Create(Vm("vmm-rx", "pkt-gen", $"-f rx -n {n}", "valevmd:rx"));
        var tx = host.Create(Vm("vmm-tx", "pkt-gen", $"-f tx -n {n} -R 30000 -l 60", "valevmd:tx"));
        try
        {
            VmKit.WaitState(tx, DomainState.Exited, Wait);
            VmKit.WaitState(rx, DomainState.Exited, Wait);
        }
        finally { Dump(tx); Dump(rx); }
        Assert.Equal(0, tx.ExitStatus);
        Assert.Equal(0, rx.ExitStatus); // pkt-gen rx: 0 = every frame of ours arrived once, intact (payload checked)
        Assert.Equal(n, Field(tx, "pktgen-tx:", "sent"));
        Assert.Equal(n, Field(rx, "pktgen-rx:", "received"));
        Assert.Equal(0, Field(rx, "pktgen-rx:", "lost"));
        Assert.Equal(0, Field(rx, "pktgen-rx:", "bad"));
        var b = host.Switch.FindBridge("valevmd")!.GetStatistics();
        Assert.Equal(n, b.Sent);
        Assert.Equal(0, b.Unaccounted);
        // Self-served RX rings (guest ABI 3): the receiver got 3000 frames without one RXSYNC exit,
        // and with fewer POLL exits than frames (a POLL that finds frames synced returns in the guest).
        var counters = ((VmGuest)rx.Guest!).Counters.ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(0, counters["rxsync"]);
        Assert.True(counters["poll"] < n, $"{counters["poll"]} POLL exits for {n} frames");
        Assert.True(host.Destroy(rx));
        Assert.True(host.Destroy(tx));
    }

    [KvmFact]
    public void Vm_and_thread_domains_on_one_bridge_both_directions()
    {
        const int n = 2000;
        using var host = new Host();
        // thread pkt-gen -> VM pkt-gen
        var vmRx = host.Create(Vm("vmm-mrx", "pkt-gen", $"-f rx -n {n}", "valevmm:vrx"));
        var thTx = host.Create(new DomainSpec { Name = "vmm-mtx", Nf = "pkt-gen", NfArgs = $"-f tx -n {n} -R 30000 -l 60", Vifs = [new VifSpec("valevmm:ttx")] });
        try { VmKit.WaitState(vmRx, DomainState.Exited, Wait); }
        finally { Dump(vmRx); }
        Assert.Equal(0, vmRx.ExitStatus);
        Assert.Equal(n, Field(vmRx, "pktgen-rx:", "received"));
        Assert.Equal(0, Field(vmRx, "pktgen-rx:", "lost"));
        Assert.True(host.Destroy(thTx));
        Assert.True(host.Destroy(vmRx));

        // VM pkt-gen -> thread pkt-gen
        var thRxGuest = new PacketGenGuest(global::HyperNF.Tools.PacketGenArgs.Parse($"-f rx -n {n}"));
        var thRx = host.Create(new DomainSpec { Name = "vmm-mrx2", Guest = () => thRxGuest, Vifs = [new VifSpec("valevmm:trx")] });
        var vmTx = host.Create(Vm("vmm-mtx2", "pkt-gen", $"-f tx -n {n} -R 30000 -l 60", "valevmm:vtx"));
        VmKit.WaitState(vmTx, DomainState.Exited, Wait);
        Assert.True(VmKit.WaitFor(() => thRxGuest.Frames >= n, Wait), $"thread rx got {thRxGuest.Frames} of {n}");
        Assert.True(host.Destroy(thRx));
        var sum = thRxGuest.Summary!;
        Assert.Equal(n, sum.Received);
        Assert.Equal(0, sum.Lost);
        Assert.Equal(0, sum.Foreign);
        Assert.Equal(0, host.Switch.FindBridge("valevmm")!.GetStatistics().Unaccounted);
        Assert.True(host.Destroy(vmTx));
    }
}

/// <summary>
/// Creating and destroying VM domains leaves nothing behind. In the non-parallel collection:
/// fds, threads and mappings are the whole process's, so no other test may run meanwhile.
/// </summary>
[Collection("real cgroup")]
public sealed class VmLifecycleTests(ITestOutputHelper output)
{
    private static int Fds() => Directory.GetFiles("/proc/self/fd").Length;
    private static int Threads() => Directory.GetDirectories("/proc/self/task").Length;
    private static int Mappings() => File.ReadAllLines("/proc/self/maps").Length;
    private static int MemfdMappings() => File.ReadAllLines("/proc/self/maps").Count(l => l.Contains("memfd:hypernf", StringComparison.Ordinal));

    [KvmFact]
    public void Create_and_destroy_100_times_leaves_no_fd_thread_mapping_or_cgroup()
    {
        using var img = VmKit.Image(MicroGuest.ForPlatform().Puts("x", 0).SpinForever());
        using var host = new Host();
        string? warning = host.EnableCpuControl();
        output.WriteLine(warning ?? "cgroups: on");
        var spec = new DomainSpec { Name = "vmm-cycle", Kernel = img.Path, Vifs = [new VifSpec("valevmc:a")], Weight = 300 };
        // Warm-up: the first VM installs the kick signal, probes KVM, loads code.
        for (int i = 0; i < 3; i++) { var w = host.Create(spec); Assert.True(host.Destroy(w)); }
        GC.Collect(); GC.WaitForPendingFinalizers();
        int fds = Fds(), threads = Threads(), maps = Mappings(), memfds = MemfdMappings();
        string cgroupDir = CgroupDirs(host);
        int groups = cgroupDir.Length == 0 ? 0 : Directory.GetDirectories(cgroupDir).Length;
        for (int i = 0; i < 100; i++)
        {
            var d = host.Create(spec with { CommandLine = $"cycle={i}" });
            Assert.True(VmKit.WaitFor(() => d.Vm!.Console.Written > 0, TimeSpan.FromSeconds(5)), $"cycle {i}: the guest did not run");
            Assert.True(host.Destroy(d), $"cycle {i}: destroy failed");
            Assert.True(d.MemoryReleased);
        }
        GC.Collect(); GC.WaitForPendingFinalizers();
        Thread.Sleep(100); // thread exits are reaped asynchronously
        output.WriteLine($"fds {fds}->{Fds()} threads {threads}->{Threads()} mappings {maps}->{Mappings()} memfd mappings {memfds}->{MemfdMappings()} cgroups {groups}");
        Assert.Equal(fds, Fds());
        Assert.Equal(memfds, MemfdMappings());
        // The runtime's own workers come and go (only fewer is fine); 100 leaked vCPU threads would show.
        Assert.True(Threads() <= threads + 2, $"threads {threads} -> {Threads()}");
        Assert.InRange(Mappings(), maps - 40, maps + 40);     // 100 leaked VMs would leave 300+ mappings (RAM, kvm_run, region)
        if (cgroupDir.Length > 0) Assert.Equal(groups, Directory.GetDirectories(cgroupDir).Length);
    }

    private static string CgroupDirs(Host host)
    {
        var d = host.Create(new DomainSpec { Name = "vmm-probe", Guest = () => new Tests.Hypervisor.DelegateGuest(ctx => { while (!ctx.Stopping) { ctx.Checkpoint(); ctx.Cancellation.WaitHandle.WaitOne(50); } }) });
        try
        {
            int tid = d.VCpus[0].Tid;
            // The host's group (hypernf/<pid>/h<N>) holds one group per domain: count those.
            string line = File.ReadAllLines($"/proc/self/task/{tid}/cgroup").FirstOrDefault(l => l.Contains(":cpu:", StringComparison.Ordinal) && l.Contains("hypernf", StringComparison.Ordinal)) ?? "";
            if (line.Length == 0) return "";
            string rel = line[(line.LastIndexOf(':') + 1)..];
            return Path.GetDirectoryName("/sys/fs/cgroup/cpu" + rel) ?? "";
        }
        finally { host.Destroy(d); }
    }
}
