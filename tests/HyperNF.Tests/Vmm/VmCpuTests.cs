using HyperNF.Hypervisor;
using HyperNF.Tests.Cpu;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>The domain's cgroup weight applies to guest execution: the VM runs on the domain's vCPU thread.</summary>
[Collection("real cgroup")]
public sealed class VmCpuTests(ITestOutputHelper output, BoostedCgroupParent boosted)
{
    [KvmCgroupFact]
    public void Two_busy_vm_domains_on_one_core_share_it_2_to_1_by_weight()
    {
        using var img = VmKit.Image(MicroGuest.ForPlatform().SpinForever());
        using var host = new Host();
        host.CpuPolicy = HostCpuControl.Detect(boosted.Options, out string? warning);
        Assert.Null(warning);
        int cpu = Environment.ProcessorCount - 1;
        var heavy = host.Create(new DomainSpec { Name = "vmm-heavy", Kernel = img.Path, Cpus = [[cpu]], Weight = 512 });
        var light = host.Create(new DomainSpec { Name = "vmm-light", Kernel = img.Path, Cpus = [[cpu]], Weight = 256 });
        // Guest code spins in KVM_RUN on each vCPU thread; the kernel splits the core by the
        // groups' shares. Within 5 % of 2:1 in some window; equal weights give 1:1 in every one.
        using var boost = boosted.Boost();
        CpuShareMeasure.Until(output, "VMs weight 512, weight 256", [heavy.VCpuTimeNs, light.VCpuTimeNs],
            hard: s =>
            {
                Assert.Equal(DomainState.Running, heavy.State);
                Assert.Equal(DomainState.Running, light.State);
                Assert.True(s[0] + s[1] <= 1.05, $"two vCPUs pinned to one CPU got {s[0] + s[1]:P1} of it");
            },
            target: s => s[0] + s[1] >= 0.3 && s[0] / Math.Max(1e-9, s[1]) is >= 1.9 and <= 2.1,
            window: TimeSpan.FromSeconds(2), settle: TimeSpan.FromMilliseconds(300));
    }
}

/// <summary>Needs /dev/kvm and the real cgroup v1 cpu hierarchy; skipped with the reason otherwise.</summary>
public sealed class KvmCgroupFactAttribute : FactAttribute
{
    public KvmCgroupFactAttribute()
    {
        if (KvmPlatform.Current.Unavailable is { } kvm) Skip = $"needs KVM: {kvm}";
        else if (RealCgroupV1.Unavailable is { } cg) Skip = cg;
    }
}
