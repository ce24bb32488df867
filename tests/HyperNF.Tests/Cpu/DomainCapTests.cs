using HyperNF.Hypervisor;
using HyperNF.Tests.Hypervisor;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Cpu;

/// <summary>
/// Caps and weights of whole domains, enforced through the host's CPU policy (cgroup v1 here).
/// They measure CPU shares, so they run alone (the "real cgroup" collection), not next to
/// tests that load the same core.
/// </summary>
[Collection("real cgroup")]
public class DomainCapTests(ITestOutputHelper output, BoostedCgroupParent boosted)
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

    /// <summary>A domain that stopped (the watchdog, a fault) measures 0%: say so instead.</summary>
    private static void Running(Domain d) => Assert.True(d.State == DomainState.Running, $"domain {d.Name} is {d.State}: {d.CrashReason}");

    /// <summary>A host whose domains are bound to groups under the boosted test parent.</summary>
    private Host BoostedHost()
    {
        var host = new Host();
        host.CpuPolicy = HostCpuControl.Detect(boosted.Options, out string? warning);
        Assert.Null(warning);
        return host;
    }

    [RealCgroupV1Fact]
    public void ACappedBusyDomainGetsItsCap()
    {
        using var host = BoostedHost();
        int cpu = Environment.ProcessorCount - 1;
        var d = host.Create(Busy("capped", cpu, cap: 30));
        // Never above the cap in any window; at the cap (within 5 points) in some window.
        using var boost = boosted.Boost();
        CpuShareMeasure.Until(output, "cap 30", [d.VCpuTimeNs],
            hard: s => { Running(d); Assert.True(s[0] <= 0.35, $"cap 30% not enforced: {s[0]:P1}"); },
            target: s => s[0] >= 0.25, window: TimeSpan.FromSeconds(2), settle: TimeSpan.FromMilliseconds(300));
        // sched-credit2 -c 60 raises it; only the cap changes
        host.SetSchedule(d, weight: null, cap: 60);
        Assert.Equal(256, d.Weight);
        CpuShareMeasure.Until(output, "cap 60", [d.VCpuTimeNs],
            hard: s => { Running(d); Assert.True(s[0] <= 0.67, $"cap 60% not enforced: {s[0]:P1}"); },
            target: s => s[0] >= 0.53, window: TimeSpan.FromSeconds(2), settle: TimeSpan.FromMilliseconds(300));
    }

    [RealCgroupV1Fact]
    public void WeightsSplitASharedCore()
    {
        using var host = BoostedHost();
        int cpu = Environment.ProcessorCount - 1;
        var heavy = host.Create(Busy("heavy", cpu, weight: 768));
        var light = host.Create(Busy("light", cpu, weight: 256));
        // 3:1 by weight, whatever share of the CPU the pair gets together; equal or inverted
        // weights miss 2.2..4.0 in every window.
        using var boost = boosted.Boost(); // only now: both vCPUs are in their groups
        CpuShareMeasure.Until(output, "weight 768, weight 256", [heavy.VCpuTimeNs, light.VCpuTimeNs],
            hard: s => { Running(heavy); Running(light); Assert.True(s[0] + s[1] <= 1.05, $"two vCPUs pinned to one CPU got {s[0] + s[1]:P1} of it"); },
            target: s => s[0] + s[1] >= 0.3 && s[0] / Math.Max(1e-9, s[1]) is >= 2.2 and <= 4.0,
            settle: TimeSpan.FromMilliseconds(300));
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
