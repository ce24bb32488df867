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

/// <summary>Pause, unpause and destroy of a guest that never exits to the VMM.</summary>
public sealed class VmControlTests(ITestOutputHelper output)
{
    private static long CpuNs(Domain d) => d.VCpuTimeNs();

    [KvmFact]
    public void Spinning_guest_pauses_unpauses_and_is_destroyed_within_a_second()
    {
        using var img = VmKit.Image(MicroGuest.ForPlatform().SpinForever());
        using var host = new Host { WatchdogTimeout = TimeSpan.FromMilliseconds(300) };
        var d = host.Create(new DomainSpec { Name = "vmm-spin", Kernel = img.Path });
        var v = d.VCpus[0];
        // It runs guest code: its thread burns CPU (under others' load it still gets a fair part).
        // (Waits for 40 ms of CPU rather than measuring a share: under others' load a thread may get little.)
        long c0 = CpuNs(d);
        Assert.True(VmKit.WaitFor(() => CpuNs(d) - c0 > 40_000_000, TimeSpan.FromSeconds(10)), $"spinning guest used only {(CpuNs(d) - c0) / 1e6:F1} ms of CPU in 10 s");
        Assert.Equal(DomainState.Running, d.State); // the watchdog (300 ms) leaves a VM alone

        var t = System.Diagnostics.Stopwatch.StartNew();
        d.Pause();
        Assert.True(VmKit.WaitFor(() => v.InPause, TimeSpan.FromSeconds(1)), "vCPU did not leave KVM_RUN within 1 s of pause");
        output.WriteLine($"pause took effect in {t.Elapsed.TotalMilliseconds:F2} ms");
        long p0 = CpuNs(d);
        Thread.Sleep(300);
        long paused = CpuNs(d) - p0;
        Assert.True(paused < 20_000_000, $"paused guest still used {paused / 1e6:F1} ms of CPU in 300 ms");

        d.Unpause();
        Assert.True(VmKit.WaitFor(() => !v.InPause, TimeSpan.FromSeconds(1)));
        long u0 = CpuNs(d);
        Assert.True(VmKit.WaitFor(() => CpuNs(d) - u0 > 40_000_000, TimeSpan.FromSeconds(10)), "guest did not run again after unpause");

        t.Restart();
        Assert.True(host.Destroy(d));
        output.WriteLine($"destroy took {t.Elapsed.TotalMilliseconds:F2} ms");
        Assert.True(t.Elapsed < TimeSpan.FromSeconds(1), $"destroy took {t.Elapsed}");
        Assert.Equal(DomainState.Destroyed, d.State);
        Assert.True(d.MemoryReleased);
    }
}

/// <summary>Guest actions the VMM does not allow crash that domain only, with the reason and the registers.</summary>
public sealed class VmFaultTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases() => new()
    {
        { "ud2", "triple fault" },
        { "wild-write", "triple fault" }, // not mapped by the page tables: a page fault with no IDT
        { "mmio-hole", "outside the guest's memory" }, // mapped, not backed: an MMIO exit the VMM refuses
        { "region-tail", "past the end of the domain's region" },
        { "unknown-op", "unknown hypercall op 9" },
        { "block-outside-ram", "outside guest RAM" },
        { "block-unaligned", "not 8-byte aligned" },
        { "puts-wild", "PUTS: buffer" },
        { "puts-long", "PUTS of 100000 bytes" },
        { "doorbell-read", "read" },
        { "hlt", "hlt" },
    };

    private static MicroGuest Build(string what)
    {
        var g = MicroGuest.ForPlatform();
        var built = what switch
        {
            "ud2" => g.Ud2(),
            "wild-write" => g.MovRbx(0x8000_0000).StoreEaxAtRbx(),
            "mmio-hole" => g.MovRbx(0xFEA0_0000).StoreEaxAtRbx(),
            "region-tail" => g.MovRbx(GuestAbi.RegionGpa + RegionTail()).StoreEaxAtRbx(),
            "unknown-op" => g.Hypercall(9, (uint)MicroGuest.Data),
            "block-outside-ram" => g.Hypercall(GuestAbi.OpClock, 0x7FFF_FFF8),
            "block-unaligned" => g.Hypercall(GuestAbi.OpClock, (uint)MicroGuest.Data + 4),
            "puts-wild" => PutsBlock(g, 0xFFFF_0000, 16),
            "puts-long" => PutsBlock(g, MicroGuest.Data, 100000),
            "doorbell-read" => g.MovRbx(GuestAbi.DoorbellGpa + 8 * GuestAbi.OpClock).LoadEaxFromRbx(),
            "hlt" => g.Hlt(),
            _ => throw new ArgumentException(what),
        };
        return built.SpinForever();
    }

    private static readonly DomainSpec Spec1 = new() { Name = "x", Vifs = [new VifSpec("valevmm:a")] };

    // The last bytes of the region's last 2 MiB page: mapped by the page tables, past the region, not backed.
    private static ulong RegionTail()
    {
        ulong size = (ulong)Domain.LayoutFor(Spec1).TotalBytes;
        ulong mapped = (size + GuestAbi.LargePage - 1) & ~(GuestAbi.LargePage - 1);
        Assert.True(mapped - size >= 8, "region fills its last 2 MiB page exactly; pick another tail");
        return mapped - 8;
    }

    private static MicroGuest PutsBlock(MicroGuest g, ulong data, ulong len)
    {
        g.PutU64(0, data);
        g.PutU64(8, len);
        return g.Hypercall(GuestAbi.OpPuts, (uint)MicroGuest.Data);
    }

    [KvmTheory]
    [MemberData(nameof(Cases))]
    public void Fault_crashes_the_domain_with_reason_and_registers(string what, string reason)
    {
        if (what == "hlt" && KvmPlatform.Current.Ring == 3) return; // hlt at ring 3 is a #GP: covered by the triple-fault case
        using var img = VmKit.Image(Build(what));
        using var host = new Host();
        var d = host.Create(new DomainSpec { Name = $"vmm-fault-{what}", Kernel = img.Path, Vifs = [new VifSpec("valevmm:a")] });
        VmKit.WaitState(d, DomainState.Crashed, TimeSpan.FromSeconds(10));
        output.WriteLine($"{d.CrashReason}\n{d.CrashRegisters}");
        Assert.Contains(reason, d.CrashReason);
        Assert.NotNull(d.CrashRegisters);
        Assert.Contains("rip=", d.CrashRegisters);
        Assert.True(VmKit.WaitFor(() => d.MemoryReleased, TimeSpan.FromSeconds(5)), "crashed VM's memory was not released");
        Assert.True(host.Destroy(d));
    }
}
