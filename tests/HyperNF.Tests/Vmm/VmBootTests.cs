using HyperNF.Hypervisor;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>Bring-up: real VMs on /dev/kvm running micro guests (machine code), through the host.</summary>
public sealed class VmBootTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [KvmFact]
    public void Boots_writes_console_and_exits_with_status()
    {
        var g = MicroGuest.ForPlatform().Puts("hello from the guest\n", 0).Exit(7, 0x200);
        using var img = VmKit.Image(g);
        using var host = new Host();
        var d = host.Create(new DomainSpec { Name = "vmm-hello", Kernel = img.Path });
        Assert.Equal(DomainKind.Vm, d.Kind);
        VmKit.WaitState(d, DomainState.Exited, Wait);
        Assert.Equal(7, d.ExitStatus);
        Assert.Equal("hello from the guest\n", d.Vm!.Console.Read().Text);
        output.WriteLine(KvmPlatform.Current.Describe());
        Assert.True(host.Destroy(d));
        Assert.True(d.MemoryReleased);
    }
}
