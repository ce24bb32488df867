using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>
/// xl shutdown on VM domains: the shutdown word of the guest ABI (docs/guest-abi.md). A guest
/// asked to stop finishes, prints its summary and exits; vCPUs blocked in POLL are woken to see
/// the request; a guest that ignores it keeps running until destroyed.
/// </summary>
public sealed class VmShutdownTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private static DomainSpec Vm(string name, string image, string args, params string[] ports) => new()
    {
        Name = name, Kernel = GuestImages.Path(image), CommandLine = args, IoModel = IoModel.Hypercall,
        Vifs = ports.Select(p => new VifSpec(p)).ToArray(),
    };

    private void Dump(params Domain[] ds)
    {
        foreach (var d in ds)
            output.WriteLine($"--- {d.Name} ({d.State}{(d.ExitStatus is { } s ? $" {s}" : "")}{d.CrashReason})\n{d.Vm?.Console.Read().Text}");
    }

    [KvmFact]
    public void A_sink_asked_to_shut_down_reports_every_frame_it_received_and_exits_cleanly()
    {
        const int n = 2000;
        using var host = new Host();
        // The sink has no count and no run time: only the shutdown request ends it.
        var rx = host.Create(Vm("vmsd-rx", "pkt-gen", "-f rx", "valevsd:rx") with { SlotsPerRing = 4096 });
        var tx = host.Create(Vm("vmsd-tx", "pkt-gen", $"-f tx -n {n} -R 20000 -b 16", "valevsd:tx"));
        var port = (ValePort)rx.Ports[0].Origin;
        try
        {
            VmKit.WaitState(tx, DomainState.Exited, Wait);
            Assert.True(VmKit.WaitFor(() => port.GetStatistics().RxPackets == n, Wait), $"the sink's port got {port.GetStatistics().RxPackets} of {n}");
            Assert.Equal(DomainState.Running, rx.State);
            Assert.True(rx.RequestShutdown(), "a running VM domain can be asked to shut down");
            Assert.True(rx.ShutdownRequested);
            VmKit.WaitState(rx, DomainState.Exited, Wait);
        }
        finally
        {
            Dump(tx, rx);
        }
        Assert.Equal(0, rx.ExitStatus); // nothing lost, bad or duplicated
        Assert.Equal(n, VmDataPathTests.Field(rx, "pktgen-rx:", "received"));
        Assert.Equal(0, VmDataPathTests.Field(rx, "pktgen-rx:", "lost"));
        Assert.False(rx.RequestShutdown(), "an exited domain cannot be asked again");
    }

    [KvmFact]
    public void Shutdown_wakes_every_vcpu_blocked_in_poll_and_the_domain_exits()
    {
        using var host = new Host();
        // vCPU 1 waits in a POLL of an hour (the runtime's secondary loop); l2fwd on vCPU 0 idles
        // in POLL too. Only the wake-up that comes with the request gets vCPU 1 out in time.
        var d = host.Create(Vm("vmsd-2cpu", "l2fwd", "", "valevsd2:a", "valevsd2:b") with { VCpus = 2 });
        try
        {
            Assert.True(VmKit.WaitFor(() => d.Vm!.Counters.First(c => c.Key == "poll_sleeps").Value > 2, Wait), "both vCPUs reach POLL");
            Assert.True(d.RequestShutdown());
            VmKit.WaitState(d, DomainState.Exited, Wait);
        }
        finally
        {
            Dump(d);
        }
        Assert.Equal(0, d.ExitStatus);
        Assert.Contains("l2fwd: frames=", d.Vm!.Console.Read().Text, StringComparison.Ordinal); // its summary, printed on the way out
    }

    [KvmFact]
    public void A_guest_that_ignores_the_request_keeps_running_until_destroyed()
    {
        using var host = new Host();
        var d = host.Create(Vm("vmsd-deaf", "hostile", "mode=loop"));
        try
        {
            Assert.True(d.RequestShutdown());
            Thread.Sleep(500);
            Assert.Equal(DomainState.Running, d.State); // asking is not forcing
            Assert.True(host.Destroy(d));
            Assert.Equal(DomainState.Destroyed, d.State);
        }
        finally
        {
            Dump(d);
        }
    }

    [Fact]
    public void Thread_domains_have_no_guest_kernel_to_ask()
    {
        using var host = new Host();
        var d = host.Create(new DomainSpec { Name = "thsd", Nf = "l2fwd", Vifs = [new VifSpec("valethsd:a"), new VifSpec("valethsd:b")] });
        Assert.False(d.RequestShutdown());
        Assert.False(d.ShutdownRequested);
        Assert.Equal(DomainState.Running, d.State);
    }
}
