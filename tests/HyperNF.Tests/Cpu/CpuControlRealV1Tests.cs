using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Tests.Hypervisor;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Cpu;

/// <summary>Runs only where the cgroup v1 cpu hierarchy is mounted and writable; skipped with the reason otherwise.</summary>
public sealed class RealCgroupV1FactAttribute : FactAttribute
{
    public RealCgroupV1FactAttribute()
    {
        string? why = RealCgroupV1.Unavailable;
        if (why != null) Skip = why;
    }
}

internal static class RealCgroupV1
{
    public static readonly CgroupMounts Mounts = CpuControllers.ReadMounts();

    /// <summary>Null when usable, else why not.</summary>
    public static readonly string? Unavailable = Probe();

    private static string? Probe()
    {
        if (Mounts.V1Cpu is not { } root) return "no cgroup v1 hierarchy with the cpu controller in /proc/self/mountinfo (cgroup v2-only machine?)";
        if (!File.Exists(Path.Combine(root, "cpu.cfs_quota_us"))) return $"{root}/cpu.cfs_quota_us missing (kernel without CFS bandwidth control)";
        if (Environment.UserName != "root" && Native.WriteOnce(Path.Combine(root, "cpu.shares"), File.ReadAllText(Path.Combine(root, "cpu.shares")).Trim()) != 0)
            return $"{root} is not writable (needs root)";
        return null;
    }

    public static ICpuController Open()
    {
        var c = CpuControllers.Detect(new CpuControlOptions { Mode = CpuControlMode.CgroupV1 }, out var warning);
        Assert.True(c.Mode == CpuControlMode.CgroupV1, $"expected cgroup v1, got {c.Describe()}: {warning}");
        return c;
    }
}

[CollectionDefinition("real cgroup", DisableParallelization = true)]
public sealed class RealCgroupCollection;

/// <summary>The kernel really enforces caps and weights through the v1 cpu hierarchy (about 6 s).</summary>
[Collection("real cgroup")]
public class CpuControlRealV1Tests(ITestOutputHelper output)
{
    private static double Share(TestThread t, long startNs, long elapsedNs) => (double)(t.CpuNs - startNs) / elapsedNs;

    [Fact]
    public void Detect_reports_this_machines_mode()
    {
        using var c = CpuControllers.Detect(out var warning);
        output.WriteLine($"{c.Mode}: {c.Describe()} {warning}");
        if (RealCgroupV1.Unavailable == null && RealCgroupV1.Mounts.V2 is { } v2 && !File.ReadAllText(Path.Combine(v2, "cgroup.controllers")).Contains("cpu"))
            Assert.Equal(CpuControlMode.CgroupV1, c.Mode);
    }

    [RealCgroupV1Fact]
    public void Cap_30_percent_holds_a_busy_thread_near_30_percent()
    {
        using var c = RealCgroupV1.Open();
        var g = c.CreateGroup("cap-test");
        g.SetCap(30);
        Assert.Equal("30000", File.ReadAllText(Path.Combine(g.Path!, "cpu.cfs_quota_us")).Trim());
        string dir = g.Path!;
        using (var spin = new TestThread(spin: true))
        {
            g.AddThread(spin.Tid);
            Assert.Contains(spin.Tid.ToString(), File.ReadAllText(Path.Combine(dir, "tasks")));
            Thread.Sleep(200);
            long t0 = spin.CpuNs, w0 = Environment.TickCount64 * 1_000_000;
            Thread.Sleep(2000);
            double share = Share(spin, t0, Environment.TickCount64 * 1_000_000 - w0);
            output.WriteLine($"capped thread: {share:P1} of one CPU");
            Assert.InRange(share, 0.25, 0.35);
            c.Dispose();
            Assert.False(Directory.Exists(dir));
            // Back in the process's own cgroup, uncapped.
            Assert.Contains(spin.Tid.ToString(), File.ReadAllText(Path.Combine(((CgroupCpuController)c).HomePath, "tasks")));
        }
        Assert.False(Directory.Exists(((CgroupCpuController)c).ProcessPath));
    }

    [RealCgroupV1Fact]
    public void Weights_512_and_256_share_one_cpu_about_2_to_1()
    {
        int cpu = Environment.ProcessorCount - 1;
        using var c = RealCgroupV1.Open();
        var heavy = c.CreateGroup("dom1-heavy");
        var light = c.CreateGroup("dom2-light");
        heavy.SetWeight(512);
        light.SetWeight(256);
        Assert.Equal("2048", File.ReadAllText(Path.Combine(heavy.Path!, "cpu.shares")).Trim());
        Assert.Equal("1024", File.ReadAllText(Path.Combine(light.Path!, "cpu.shares")).Trim());
        using var a = new TestThread(spin: true, cpus: [cpu]);
        using var b = new TestThread(spin: true, cpus: [cpu]);
        heavy.AddThread(a.Tid);
        light.AddThread(b.Tid);
        Thread.Sleep(200);
        long a0 = a.CpuNs, b0 = b.CpuNs;
        Thread.Sleep(2000);
        double da = a.CpuNs - a0, db = b.CpuNs - b0;
        double ratio = da / Math.Max(1, db);
        output.WriteLine($"weight 512: {da / 1e6:F0} ms, weight 256: {db / 1e6:F0} ms, ratio {ratio:F2}");
        Assert.InRange(ratio, 1.5, 2.7);
        c.Dispose();
        Assert.False(Directory.Exists(heavy.Path));
        Assert.False(Directory.Exists(light.Path));
    }

    [RealCgroupV1Fact]
    public void Stale_empty_group_under_hypernf_is_removed_at_start()
    {
        string parent = Path.Combine(RealCgroupV1.Mounts.V1Cpu!, "hypernf");
        Directory.CreateDirectory(parent);
        string stale = Path.Combine(parent, "2000000000");           // a PID no process can have
        string group = Path.Combine(stale, "h1", "dom1-crashed");
        Directory.CreateDirectory(group);                              // cgroupfs mkdir: control files appear by themselves
        Assert.True(File.Exists(Path.Combine(group, "tasks")));
        using var c = RealCgroupV1.Open();
        Assert.False(Directory.Exists(stale));
        Assert.Contains(stale, ((CgroupCpuController)c).StaleRemoved);
    }

    [RealCgroupV1Fact]
    public void Domain_vcpus_land_in_their_group_and_leave_nothing_behind()
    {
        using var host = new Host();
        var cpu = new HostCpuControl(RealCgroupV1.Open());
        var idle = new DelegateGuest(ctx => { while (!ctx.Stopping) { ctx.Checkpoint(); ctx.WaitForInput(20); } });
        var d = host.Create(new DomainSpec { Name = "idle", Weight = 128, Cap = 50, Guest = () => idle });
        var b = cpu.Bind(d);
        string dir = b.Group.Path!;
        int tid = d.VCpuTids.Single();
        Assert.Equal("512", File.ReadAllText(Path.Combine(dir, "cpu.shares")).Trim());
        Assert.Equal("50000", File.ReadAllText(Path.Combine(dir, "cpu.cfs_quota_us")).Trim());
        string relative = dir[RealCgroupV1.Mounts.V1Cpu!.Length..];
        Assert.Contains($":cpu:{relative}", File.ReadAllText($"/proc/self/task/{tid}/cgroup"));
        string instance = cpu.Controller.InstancePath!;
        cpu.Dispose();                       // domain still running: its vCPU is moved back, then the group removed
        Assert.False(Directory.Exists(instance));
        Assert.DoesNotContain("hypernf", File.ReadAllText($"/proc/self/task/{tid}/cgroup"));
        host.Destroy(d);
    }
}
