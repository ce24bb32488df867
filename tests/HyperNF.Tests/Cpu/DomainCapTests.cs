using HyperNF.Hypervisor;
using HyperNF.Tests.Hypervisor;
using Xunit;

namespace HyperNF.Tests.Cpu;

/// <summary>
/// Caps and weights of whole domains, enforced through the host's CPU policy (cgroup v1 here).
/// They measure CPU shares, so they run alone (the "real cgroup" collection), not next to
/// tests that load the same core.
/// </summary>
[Collection("real cgroup")]
public class DomainCapTests
{
    private static DomainSpec Busy(string name, int cpu, int weight = 256, int cap = 0) => new()
    {
        Name = name, Cpus = [[cpu]], Weight = weight, Cap = cap,
        Guest = () => new DelegateGuest(ctx =>
        {
            while (!ctx.Stopping)
            {
                ctx.Checkpoint();
                for (int i = 0; i < 20000; i++) Thread.SpinWait(1);
            }
        }),
    };

    private static double MeasurePct(Domain d, double seconds)
    {
        long a = d.VCpuTimeNs();
        var t = System.Diagnostics.Stopwatch.StartNew();
        Thread.Sleep(TimeSpan.FromSeconds(seconds));
        long b = d.VCpuTimeNs();
        return 100.0 * (b - a) / (t.Elapsed.TotalSeconds * 1e9);
    }

    [RealCgroupV1Fact]
    public void ACappedBusyDomainGetsItsCap()
    {
        using var host = new Host();
        Assert.Null(host.EnableCpuControl());
        int cpu = Environment.ProcessorCount - 1;
        var d = host.Create(Busy("capped", cpu, cap: 30));
        Thread.Sleep(300);
        double pct = MeasurePct(d, 2);
        Assert.InRange(pct, 25, 35);
        // sched-credit2 -c 60 raises it; only the cap changes
        host.SetSchedule(d, weight: null, cap: 60);
        Assert.Equal(256, d.Weight);
        Thread.Sleep(300);
        Assert.InRange(MeasurePct(d, 2), 53, 67);
    }

    [RealCgroupV1Fact]
    public void WeightsSplitASharedCore()
    {
        using var host = new Host();
        Assert.Null(host.EnableCpuControl());
        int cpu = Environment.ProcessorCount - 1;
        var heavy = host.Create(Busy("heavy", cpu, weight: 768));
        var light = host.Create(Busy("light", cpu, weight: 256));
        Thread.Sleep(300);
        long h0 = heavy.VCpuTimeNs(), l0 = light.VCpuTimeNs();
        Thread.Sleep(2000);
        double ratio = (double)(heavy.VCpuTimeNs() - h0) / Math.Max(1, light.VCpuTimeNs() - l0);
        Assert.InRange(ratio, 2.2, 4.0); // 3:1 by weight
    }

    [RealCgroupV1Fact]
    public void DestroyAndDisposeLeaveNoGroupBehind()
    {
        var root = RealCgroupV1.Mounts.V1Cpu!;
        string mine = Path.Combine(root, "hypernf", Environment.ProcessId.ToString());
        var host = new Host();
        host.EnableCpuControl();
        var d = host.Create(Busy("g", 0, cap: 10));
        var groupDirs = Directory.GetDirectories(mine, "dom*", SearchOption.AllDirectories);
        Assert.Contains(groupDirs, p => p.EndsWith("-g", StringComparison.Ordinal));
        host.Destroy(d);
        Assert.DoesNotContain(Directory.GetDirectories(mine, "dom*", SearchOption.AllDirectories), p => p.EndsWith("-g", StringComparison.Ordinal));
        string instance = ((HostCpuControl)host.CpuPolicy!).Controller.InstancePath!;
        Assert.True(Directory.Exists(instance));
        host.Dispose();
        Assert.False(Directory.Exists(instance), "the host's cgroup directories are removed on dispose");
    }
}
