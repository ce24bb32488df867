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
        if (Environment.UserName != "root") return $"{root}: creating cgroups needs root";
        int e = Native.Mkdir(Path.Combine(root, "hypernf"));
        if (e != 0 && e != Native.EEXIST) return $"cannot create {root}/hypernf: {Native.ErrnoName(e)} (read-only cgroup fs in a container?)";
        return null;
    }

    /// <summary>A v1 controller; its groups go under <paramref name="parentName"/> at the root.</summary>
    public static ICpuController Open(string parentName = "hypernf")
    {
        var c = CpuControllers.Detect(new CpuControlOptions { Mode = CpuControlMode.CgroupV1, ParentName = parentName }, out var warning);
        Assert.True(c.Mode == CpuControlMode.CgroupV1, $"expected cgroup v1, got {c.Describe()}: {warning}");
        return c;
    }
}

/// <summary>
/// Tests on the real cgroup hierarchies, and the ones that measure CPU shares: alone (no other
/// test class runs meanwhile), under the boosted parent <see cref="BoostedCgroupParent"/>.
/// </summary>
[CollectionDefinition("real cgroup", DisableParallelization = true)]
public sealed class RealCgroupCollection : ICollectionFixture<BoostedCgroupParent>;

/// <summary>The kernel really enforces caps and weights through the v1 cpu hierarchy (about 4 s).</summary>
[Collection("real cgroup")]
public class CpuControlRealV1Tests(ITestOutputHelper output, BoostedCgroupParent boosted)
{

    [Fact]
    public void Detect_reports_this_machines_mode()
    {
        using var c = CpuControllers.Detect(out var warning);
        output.WriteLine($"{c.Mode}: {c.Describe()} {warning}");
        if (RealCgroupV1.Unavailable == null && RealCgroupV1.Mounts.V2 is { } v2 && !File.ReadAllText(Path.Combine(v2, "cgroup.controllers")).Split(' ', '\n').Contains("cpu"))
            Assert.Equal(CpuControlMode.CgroupV1, c.Mode);
    }

    [RealCgroupV1Fact]
    public void Cap_30_percent_holds_a_busy_thread_near_30_percent()
    {
        using var c = boosted.Open();
        var g = c.CreateGroup("cap-test");
        g.SetCap(30);
        Assert.Equal("30000", File.ReadAllText(Path.Combine(g.Path!, "cpu.cfs_quota_us")).Trim());
        string dir = g.Path!;
        using (var spin = new TestThread(spin: true))
        {
            g.AddThread(spin.Tid);
            Assert.Contains(spin.Tid.ToString(), File.ReadAllText(Path.Combine(dir, "tasks")));
            // Every window: never above the cap (enforcement; 5 points for period edges). Some
            // window within the budget: at the cap, which the boosted parent makes reachable on
            // a busy machine. A cap not enforced fails the first; a cap that holds the thread
            // well below 30% (wrong unit, wrong period) fails the second.
            using (boosted.Boost())
                CpuShareMeasure.Until(output, "capped thread", [() => spin.CpuNs],
                    hard: s => Assert.True(s[0] <= 0.35, $"cap 30% not enforced: the thread got {s[0]:P1}"),
                    target: s => s[0] >= 0.25, window: TimeSpan.FromSeconds(2));
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
        using var c = boosted.Open();
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
        // The two groups are siblings on one CPU: whatever CPU they get together is split by
        // weight. A window counts once the pair got a good part of a CPU (fewer slices make
        // the ratio noisy); equal or inverted weights miss 1.5..2.7 in every window.
        using (boosted.Boost())
            CpuShareMeasure.Until(output, "weight 512, weight 256", [() => a.CpuNs, () => b.CpuNs],
                hard: s => Assert.True(s[0] + s[1] <= 1.05, $"two threads pinned to one CPU got {s[0] + s[1]:P1} of it"),
                target: s => s[0] + s[1] >= 0.3 && s[0] / Math.Max(1e-9, s[1]) is >= 1.5 and <= 2.7);
        c.Dispose();
        Assert.False(Directory.Exists(heavy.Path));
        Assert.False(Directory.Exists(light.Path));
    }

    [RealCgroupV1Fact]
    public void Stale_empty_group_under_the_parent_is_removed_at_start()
    {
        // Under this process's own parent, not the shared "hypernf": every controller that
        // starts on the machine (other test runs, a daemon) clears dead PIDs' groups under
        // "hypernf", and could take this one away before the controller under test sees it.
        string parent = Path.Combine(RealCgroupV1.Mounts.V1Cpu!, boosted.Name);
        Directory.CreateDirectory(parent);
        string stale = Path.Combine(parent, "2000000000");           // a PID no process can have
        string group = Path.Combine(stale, "h1", "dom1-crashed");
        Directory.CreateDirectory(group);                              // cgroupfs mkdir: control files appear by themselves
        Assert.True(File.Exists(Path.Combine(group, "tasks")));
        using var c = boosted.Open();
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

/// <summary>
/// The v2 threaded mechanics on the real cgroup2 mount: process moved into hypernf/PID, groups
/// made threaded, thread ids through cgroup.threads, everything moved back and removed. Where
/// cgroup2 lacks the cpu controller (hybrid machines) only the cpu files are imitated.
/// </summary>
[Collection("real cgroup")]
public class CpuControlRealV2Tests(ITestOutputHelper output)
{
    /// <summary>The real file system, except that a missing cpu controller is pretended (its files recorded, not written).</summary>
    private sealed class CpuPretendingFs(bool pretend) : CgroupFs
    {
        public readonly List<(string, string)> Pretended = new();
        public override string Read(string file) =>
            pretend && Path.GetFileName(file) == "cgroup.controllers" ? base.Read(file) + " cpu" : base.Read(file);
        public override void Write(string file, string value)
        {
            string name = Path.GetFileName(file);
            if (pretend && (value == "+cpu" || name is "cpu.weight" or "cpu.max")) { lock (Pretended) Pretended.Add((file, value)); return; }
            base.Write(file, value);
        }
    }

    public sealed class RealCgroupV2FactAttribute : FactAttribute
    {
        public RealCgroupV2FactAttribute()
        {
            var v2 = RealCgroupV1.Mounts.V2;
            if (v2 == null) Skip = "no cgroup2 mount in /proc/self/mountinfo";
            else if (!File.Exists(Path.Combine(v2, "cgroup.threads"))) Skip = $"{v2} has no threaded mode (kernel < 4.14)";
            else if (Environment.UserName != "root") Skip = $"{v2}: moving the process needs root";
        }
    }

    [RealCgroupV2Fact]
    public void Threads_move_into_threaded_groups_and_back()
    {
        var mounts = RealCgroupV1.Mounts;
        string root = mounts.V2!;
        bool hasCpu = File.ReadAllText(Path.Combine(root, "cgroup.controllers")).Split(' ', '\n').Contains("cpu");
        var fs = new CpuPretendingFs(pretend: !hasCpu);
        string home = CpuControllers.HomeDirectory("/proc/self/cgroup", root, mounts.V2MountRoot, v2: true);
        string before = OwnV2Cgroup("self");
        using var t = new TestThread(spin: false);
        var c = CpuControllers.Detect(new CpuControlOptions { V2Root = root, Home = home, Fs = fs }, out var warning);
        output.WriteLine($"{c.Describe()} {warning} (cpu controller {(hasCpu ? "real" : "pretended")})");
        Assert.Equal(CpuControlMode.CgroupV2, c.Mode);
        var v2 = (CgroupCpuController)c;
        try
        {
            string rel(string dir) => "/" + Path.GetRelativePath(root, dir);
            Assert.Equal(rel(v2.ProcessPath), OwnV2Cgroup("self"));
            var g = c.CreateGroup("dom1-v2");
            Assert.Equal("threaded", File.ReadAllText(Path.Combine(g.Path!, "cgroup.type")).Trim());
            g.AddThread(t.Tid);
            Assert.Equal(rel(g.Path!), OwnV2Cgroup($"self/task/{t.Tid}"));
            g.SetWeight(512);
            g.SetCap(30);
            if (hasCpu) Assert.Equal("200", File.ReadAllText(Path.Combine(g.Path!, "cpu.weight")).Trim());
            else Assert.Contains((Path.Combine(g.Path!, "cpu.max"), "30000 100000"), fs.Pretended);
        }
        finally { c.Dispose(); }
        Assert.Empty(v2.Warnings);
        Assert.Equal(before, OwnV2Cgroup("self"));
        Assert.Equal(before, OwnV2Cgroup($"self/task/{t.Tid}"));
        Assert.False(Directory.Exists(v2.ProcessPath));
    }

    private static string OwnV2Cgroup(string proc) =>
        File.ReadAllLines($"/proc/{proc}/cgroup").Single(l => l.StartsWith("0::", StringComparison.Ordinal))[3..];
}
