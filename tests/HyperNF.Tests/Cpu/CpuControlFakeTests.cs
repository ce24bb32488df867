using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Tests.Hypervisor;
using Xunit;

namespace HyperNF.Tests.Cpu;

/// <summary>The cgroup layouts on a fake root: values reach the files, tids reach the membership files, nothing is left behind.</summary>
public class CpuControlFakeTests
{
    private static readonly int Pid = Environment.ProcessId;

    private static ICpuController Open(FakeCgroupFs fs, out string? warning) =>
        CpuControllers.Detect(fs.Version == 1
            ? new CpuControlOptions { V1Root = fs.Root, Fs = fs }
            : new CpuControlOptions { V2Root = fs.Root, Fs = fs }, out warning);

    [Fact]
    public void Mapping_follows_credit2()
    {
        Assert.Equal(1024, CpuWeights.V1Shares(256));
        Assert.Equal(2048, CpuWeights.V1Shares(512));
        Assert.Equal(4, CpuWeights.V1Shares(1));
        Assert.Equal(262140, CpuWeights.V1Shares(65535));
        Assert.Equal(100, CpuWeights.V2Weight(256));
        Assert.Equal(200, CpuWeights.V2Weight(512));
        Assert.Equal(1, CpuWeights.V2Weight(1));
        Assert.Equal(10000, CpuWeights.V2Weight(65535));
        Assert.Equal(-1, CpuWeights.QuotaUs(0));
        Assert.Equal(30000, CpuWeights.QuotaUs(30));
        Assert.Equal(250000, CpuWeights.QuotaUs(250));
        Assert.Equal("max 100000", CpuWeights.V2Max(0));
        Assert.Equal("30000 100000", CpuWeights.V2Max(30));
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuWeights.ValidateWeight(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuWeights.ValidateWeight(65536));
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuWeights.ValidateCap(-1));
        Assert.Equal("dom1-web____x_y", CpuWeights.SanitizeName("dom1-web/../x y"));
        Assert.Equal("_", CpuWeights.SanitizeName(""));
        Assert.Equal("tasks_", CpuWeights.SanitizeName("tasks"));
        Assert.Equal(64, CpuWeights.SanitizeName(new string('a', 100)).Length);
    }

    [Fact]
    public void Mountinfo_finds_v1_cpu_and_v2()
    {
        var m = CpuControllers.ParseMounts([
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
            "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct",
            "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset",
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu",
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
        ]);
        Assert.Equal("/sys/fs/cgroup/cpu", m.V1Cpu);
        Assert.Equal("/sys/fs/cgroup/unified", m.V2);
        var combined = CpuControllers.ParseMounts(["32 31 0:29 /docker/x /sys/fs/cgroup/cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct"]);
        Assert.Equal("/sys/fs/cgroup/cpu acct", combined.V1Cpu);
        Assert.Equal("/docker/x", combined.V1CpuMountRoot);
        Assert.Null(combined.V2);
    }

    [Fact]
    public void V1_weight_cap_and_tids_reach_the_files()
    {
        using var fs = new FakeCgroupFs(1);
        using var t1 = new TestThread(spin: false);
        using var t2 = new TestThread(spin: false);
        var c = Open(fs, out var warning);
        Assert.Null(warning);
        Assert.Equal(CpuControlMode.CgroupV1, c.Mode);
        string inst = Path.GetRelativePath(fs.Root, c.InstancePath!);
        Assert.StartsWith($"hypernf/{Pid}/h", inst);
        Assert.Contains(fs.Root, c.Describe());

        var g = c.CreateGroup("dom1-web");
        Assert.Equal("1024", fs.ReadText($"{inst}/dom1-web/cpu.shares"));
        Assert.Equal("-1", fs.ReadText($"{inst}/dom1-web/cpu.cfs_quota_us"));
        g.SetWeight(512);
        Assert.Equal("2048", fs.ReadText($"{inst}/dom1-web/cpu.shares"));
        g.SetCap(30);
        Assert.Equal("30000", fs.ReadText($"{inst}/dom1-web/cpu.cfs_quota_us"));
        Assert.Equal("100000", fs.ReadText($"{inst}/dom1-web/cpu.cfs_period_us"));
        g.SetCap(250);
        Assert.Equal("250000", fs.ReadText($"{inst}/dom1-web/cpu.cfs_quota_us"));
        g.SetCap(0);
        Assert.Equal("-1", fs.ReadText($"{inst}/dom1-web/cpu.cfs_quota_us"));
        g.AddThread(t1.Tid);
        g.AddThread(t2.Tid);
        Assert.Equal($"{t1.Tid}\n{t2.Tid}", fs.ReadText($"{inst}/dom1-web/tasks"));
        Assert.Equal([t1.Tid, t2.Tid], g.Threads);
        Assert.Contains("cpu.shares 2048", g.Describe());

        var ex = Assert.Throws<CpuControlException>(() => g.AddThread(int.MaxValue - 1));
        Assert.Equal(Native.ESRCH, ex.Errno);
        Assert.Contains("tasks", ex.Message);
        Assert.Throws<InvalidOperationException>(() => c.CreateGroup("dom1-web"));

        g.RemoveThread(t2.Tid);
        Assert.Equal($"{t1.Tid}", fs.ReadText($"{inst}/dom1-web/tasks"));
        Assert.Contains(t2.Tid.ToString(), fs.ReadText("tasks"));

        c.Dispose();
        // The live thread went back home first; only the parent directory remains.
        Assert.Contains(t1.Tid.ToString(), fs.ReadText("tasks"));
        Assert.Equal(["hypernf"], fs.Tree());
        Assert.True(g.Removed);
    }

    [Fact]
    public void V2_threaded_groups_get_weight_max_and_threads()
    {
        using var fs = new FakeCgroupFs(2);
        File.WriteAllText(Path.Combine(fs.Root, "cgroup.procs"), $"{Pid}\n");
        using var t1 = new TestThread(spin: false);
        var c = Open(fs, out var warning);
        Assert.Null(warning);
        Assert.Equal(CpuControlMode.CgroupV2, c.Mode);
        string inst = Path.GetRelativePath(fs.Root, c.InstancePath!);
        // The process lives in the threaded domain hypernf/PID; +cpu is enabled all the way down.
        Assert.Equal($"{Pid}", fs.ReadText($"hypernf/{Pid}/cgroup.procs"));
        Assert.Equal("", fs.ReadText("cgroup.procs"));
        Assert.Contains("cpu", fs.ReadText("cgroup.subtree_control"));
        Assert.Contains("cpu", fs.ReadText("hypernf/cgroup.subtree_control"));
        Assert.Contains("cpu", fs.ReadText($"hypernf/{Pid}/cgroup.subtree_control"));
        Assert.Contains("cpu", fs.ReadText($"{inst}/cgroup.subtree_control"));
        Assert.Equal("threaded", fs.ReadText($"{inst}/cgroup.type"));

        var g = c.CreateGroup("dom2-fw");
        var h = c.CreateGroup("host");
        Assert.Equal("threaded", fs.ReadText($"{inst}/dom2-fw/cgroup.type"));
        Assert.Equal("100", fs.ReadText($"{inst}/dom2-fw/cpu.weight"));
        Assert.Equal("max 100000", fs.ReadText($"{inst}/dom2-fw/cpu.max"));
        g.SetWeight(512);
        Assert.Equal("200", fs.ReadText($"{inst}/dom2-fw/cpu.weight"));
        g.SetWeight(65535);
        Assert.Equal("10000", fs.ReadText($"{inst}/dom2-fw/cpu.weight"));
        g.SetWeight(1);
        Assert.Equal("1", fs.ReadText($"{inst}/dom2-fw/cpu.weight"));
        g.SetCap(30);
        Assert.Equal("30000 100000", fs.ReadText($"{inst}/dom2-fw/cpu.max"));
        g.SetCap(150);
        Assert.Equal("150000 100000", fs.ReadText($"{inst}/dom2-fw/cpu.max"));
        g.SetCap(0);
        Assert.Equal("max 100000", fs.ReadText($"{inst}/dom2-fw/cpu.max"));
        g.AddThread(t1.Tid);
        Assert.Equal($"{t1.Tid}", fs.ReadText($"{inst}/dom2-fw/cgroup.threads"));
        h.AddThread(t1.Tid); // moving between groups
        Assert.Equal("", fs.ReadText($"{inst}/dom2-fw/cgroup.threads"));
        Assert.Equal($"{t1.Tid}", fs.ReadText($"{inst}/host/cgroup.threads"));
        g.Remove(); // the thread it once had is in another group now: left there
        Assert.Equal($"{t1.Tid}", fs.ReadText($"{inst}/host/cgroup.threads"));
        Assert.False(Directory.Exists(Path.Combine(fs.Root, inst, "dom2-fw")));
        Assert.Single(c.Groups);

        c.Dispose();
        Assert.Equal(["hypernf"], fs.Tree());
        Assert.Equal($"{Pid}", fs.ReadText("cgroup.procs")); // process moved back
    }

    [Fact]
    public void Two_instances_in_one_process_use_separate_directories()
    {
        using var fs = new FakeCgroupFs(2);
        var a = Open(fs, out _);
        var b = Open(fs, out _);
        Assert.NotEqual(a.InstancePath, b.InstancePath);
        a.CreateGroup("host");
        b.CreateGroup("host");
        a.Dispose();
        // b still running: the process stays in hypernf/PID.
        Assert.Equal($"{Pid}", fs.ReadText($"hypernf/{Pid}/cgroup.procs"));
        Assert.True(Directory.Exists(Path.Combine(b.InstancePath!, "host")));
        b.Dispose();
        Assert.Equal(["hypernf"], fs.Tree());
    }

    [Fact]
    public void Stale_groups_are_removed_at_start_and_live_ones_kept()
    {
        using var fs = new FakeCgroupFs(1);
        using var own = new TestThread(spin: false);
        const int deadPid = 2_000_000_000;                      // above any pid_max
        fs.MakeGroup($"hypernf/{deadPid}/h1/dom1-old");        // crashed run: empty
        fs.MakeGroup($"hypernf/{deadPid}/h1/host");
        fs.MakeGroup("hypernf/flat-old", own.Tid);              // holds a thread of ours: moved back, removed
        fs.MakeGroup($"hypernf/{Pid}/h999999/dom3-x");          // our PID, no live instance owns it
        fs.MakeGroup("hypernf/1/h1/dom1-live");                 // PID 1 is alive: never touched
        fs.MakeGroup($"hypernf/{deadPid + 1}/h1/dom1-foreign", 1); // a live thread of another process: kept

        var c = Open(fs, out var warning);
        Assert.Null(warning);
        var removed = ((CgroupCpuController)c).StaleRemoved.Select(d => Path.GetRelativePath(fs.Root, d)).ToList();
        Assert.Contains($"hypernf/{deadPid}", removed);
        Assert.Contains("hypernf/flat-old", removed);
        Assert.Contains($"hypernf/{Pid}/h999999", removed);
        Assert.Contains(own.Tid.ToString(), fs.ReadText("tasks"));
        var tree = fs.Tree();
        Assert.DoesNotContain($"hypernf/{deadPid}", tree);
        Assert.DoesNotContain("hypernf/flat-old", tree);
        Assert.DoesNotContain($"hypernf/{Pid}/h999999", tree);
        Assert.Contains("hypernf/1/h1/dom1-live", tree);
        Assert.Contains($"hypernf/{deadPid + 1}/h1/dom1-foreign", tree);
        c.Dispose();
        Assert.DoesNotContain($"hypernf/{Pid}", fs.Tree());
    }

    [Fact]
    public void V2_stale_threaded_groups_are_removed()
    {
        using var fs = new FakeCgroupFs(2);
        fs.MakeGroup("hypernf/2000000000/h4/dom1-old");
        using var c = Open(fs, out var warning);
        Assert.Null(warning);
        Assert.DoesNotContain("hypernf/2000000000", fs.Tree());
    }

    [Fact]
    public void V2_without_cpu_controller_falls_back_to_accounting_with_warning()
    {
        using var fs = new FakeCgroupFs(2, v2HasCpu: false);
        using var c = Open(fs, out var warning);
        Assert.Equal(CpuControlMode.AccountingOnly, c.Mode);
        Assert.False(c.Enforcing);
        Assert.NotNull(warning);
        Assert.DoesNotContain('\n', warning);
        Assert.Contains("cgroup.controllers", warning);
        Assert.Empty(fs.Tree());
    }

    [Fact]
    public void V2_refused_process_move_falls_back_and_leaves_nothing()
    {
        using var fs = new FakeCgroupFs(2);
        fs.FailWrites["cgroup.procs"] = Native.EOPNOTSUPP;   // e.g. the process is in someone's threaded subtree
        using var c = Open(fs, out var warning);
        Assert.Equal(CpuControlMode.AccountingOnly, c.Mode);
        Assert.Contains("cgroup.procs", warning);
        Assert.Contains("EOPNOTSUPP", warning);
        Assert.Equal(["hypernf"], fs.Tree());
    }

    [Fact]
    public void V1_permission_denied_names_the_file_and_host_control_falls_back()
    {
        using var fs = new FakeCgroupFs(1);
        fs.FailWrites["cpu.shares"] = Native.EACCES;
        var options = new CpuControlOptions { V1Root = fs.Root, Fs = fs };
        using (var c = CpuControllers.Detect(options, out _))
        {
            var ex = Assert.Throws<CpuControlException>(() => c.CreateGroup("dom1-a"));
            Assert.Equal(Native.EACCES, ex.Errno);
            Assert.Contains("cpu.shares", ex.Message);
            Assert.Contains("EACCES", ex.Message);
            Assert.EndsWith("cpu.shares", ex.FilePath);
        }
        using var hc = HostCpuControl.Detect(options, out var warning);
        Assert.Equal(CpuControlMode.AccountingOnly, hc.Mode);
        Assert.Contains("cpu.shares", warning);
        Assert.Equal(["hypernf"], fs.Tree());
    }

    [Fact]
    public void Missing_hierarchy_is_accounting_only()
    {
        string mi = Path.GetTempFileName();
        try
        {
            File.WriteAllText(mi, "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n");
            using var c = CpuControllers.Detect(new CpuControlOptions { MountInfoPath = mi }, out var warning);
            Assert.Equal(CpuControlMode.AccountingOnly, c.Mode);
            Assert.Contains("accounting only", warning);
            Assert.Contains("accounting only", c.Describe());
            var g = c.CreateGroup("dom1-x");
            g.SetWeight(512);
            g.SetCap(20);
            g.AddThread(Native.GetTid());
            Assert.Equal((512, 20), (g.Weight, g.Cap));
            Assert.Null(g.Path);
            Assert.Single(c.Groups);
            c.Dispose();
            Assert.Empty(c.Groups);
        }
        finally { File.Delete(mi); }
        using var forced = CpuControllers.Detect(new CpuControlOptions { Mode = CpuControlMode.AccountingOnly }, out var w2);
        Assert.Equal(CpuControlMode.AccountingOnly, forced.Mode);
        Assert.Null(w2);
    }

    [Fact]
    public void Domains_bind_to_groups_and_sched_credit2_changes_only_given_values()
    {
        using var fs = new FakeCgroupFs(1);
        using var host = new Host();
        using var cpu = HostCpuControl.Detect(new CpuControlOptions { V1Root = fs.Root, Fs = fs }, out var warning);
        Assert.Null(warning);
        Assert.Equal(CpuControlMode.CgroupV1, cpu.Mode);
        var idle = new DelegateGuest(ctx => { while (!ctx.Stopping) { ctx.Checkpoint(); ctx.WaitForInput(20); } });
        var d = host.Create(new DomainSpec
        {
            Name = "web fw", VCpus = 2, Weight = 512, Cap = 150, IoModel = IoModel.Split,
            Vifs = [new VifSpec("valecpu:a")], Guest = () => idle,
        });
        var b = cpu.Bind(d);
        string inst = Path.GetRelativePath(fs.Root, cpu.Controller.InstancePath!);
        string grp = $"{inst}/dom{d.Id}-web_fw";
        Assert.Equal($"dom{d.Id}-web_fw", b.Group.Name);
        Assert.Equal("2048", fs.ReadText($"{grp}/cpu.shares"));
        Assert.Equal("150000", fs.ReadText($"{grp}/cpu.cfs_quota_us"));
        Assert.Equal(d.VCpuTids.Order(), fs.ReadText($"{grp}/tasks").Split('\n').Select(int.Parse).Order());
        Assert.Equal($"{d.Backend!.Tid}", fs.ReadText($"{inst}/host/tasks"));
        Assert.Contains($"dom{d.Id}-web_fw", cpu.Describe());

        Assert.Equal((512, 40), cpu.SchedCredit2(d, cap: 40));
        Assert.Equal("40000", fs.ReadText($"{grp}/cpu.cfs_quota_us"));
        Assert.Equal("2048", fs.ReadText($"{grp}/cpu.shares"));
        Assert.Equal((128, 40), cpu.SchedCredit2(d, weight: 128));
        Assert.Equal("512", fs.ReadText($"{grp}/cpu.shares"));
        Assert.Equal((128, 40), (d.Weight, d.Cap));
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.SchedCredit2(d, cap: 201));
        Assert.Throws<ArgumentOutOfRangeException>(() => cpu.SchedCredit2(d, weight: 0));
        Assert.Equal((128, 40), (d.Weight, d.Cap));

        host.Destroy(d);
        cpu.Unbind(d);
        Assert.False(Directory.Exists(Path.Combine(fs.Root, grp)));
        cpu.Dispose();
        Assert.Equal(["hypernf"], fs.Tree());
    }
}
