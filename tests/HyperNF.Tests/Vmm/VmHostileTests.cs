using HyperNF.Hypervisor;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>
/// The SDK's hostile guest, every mode, each on the same bridge while a tx VM keeps sending
/// to an rx VM: the hostile domain ends as the mode says (refused and counted, or crashed
/// with a reason, or stopped by destroy within a second), the pair keeps forwarding, and the
/// bridge's accounting invariant holds afterwards.
/// </summary>
public sealed class VmHostileTests(ITestOutputHelper output)
{
    /// <summary>Modes whose bad input the host refuses and counts: the guest checks and exits 0.</summary>
    private static readonly string[] Survive = ["ring-index", "slot-fields", "bad-port", "kick"];
    /// <summary>Modes that must crash the domain.</summary>
    private static readonly string[] Crash =
    [
        "wild-block", "block-past-ram", "misaligned", "puts-wild", "puts-len", "unknown-op", "read-doorbell", "doorbell-byte",
        "write-past-ram", "write-region-end", "write-unmapped", "null", "ud", "gp", "stack-overflow",
    ];
    /// <summary>Modes where the guest may legitimately survive (SSE runs natively at ring 3; a zeroed PML4 may still be cached in the TLB).</summary>
    private static readonly string[] CrashOrExit = ["sse", "pagetable"];
    /// <summary>Modes that never end: destroy must stop them.</summary>
    private static readonly string[] Endless = ["loop", "block"];

    [KvmFact]
    public void Every_hostile_mode_while_another_vm_forwards()
    {
        using var host = new Host();
        var rx = host.Create(new DomainSpec { Name = "vmm-hrx", Kernel = GuestImages.Path("pkt-gen"), CommandLine = "-f rx", Vifs = [new VifSpec("valevmh:rx")] });
        var tx = host.Create(new DomainSpec { Name = "vmm-htx", Kernel = GuestImages.Path("pkt-gen"), CommandLine = "-f tx -R 20000 -l 60", Vifs = [new VifSpec("valevmh:tx")] });
        long Received() => rx.PortStatistics().Single().RxPackets;
        Assert.True(VmKit.WaitFor(() => Received() > 100, TimeSpan.FromSeconds(10)), "the forwarding pair does not forward");

        int n = 0;
        foreach (string mode in Survive.Concat(Crash).Concat(CrashOrExit).Concat(Endless))
        {
            long before = Received();
            var h = host.Create(new DomainSpec
            {
                Name = $"vmm-hostile{n++}", Kernel = GuestImages.Path("hostile"), CommandLine = $"mode={mode} rounds=50",
                Vifs = [new VifSpec($"valevmh:h{n}")],
            });
            string outcome;
            if (Endless.Contains(mode))
            {
                Thread.Sleep(200);
                Assert.Equal(DomainState.Running, h.State);
                var t = System.Diagnostics.Stopwatch.StartNew();
                Assert.True(host.Destroy(h), $"{mode}: destroy failed");
                Assert.True(t.Elapsed < TimeSpan.FromSeconds(1), $"{mode}: destroy took {t.Elapsed}");
                outcome = $"destroyed in {t.Elapsed.TotalMilliseconds:F1} ms";
            }
            else
            {
                Assert.True(VmKit.WaitFor(() => h.State is DomainState.Crashed or DomainState.Exited, TimeSpan.FromSeconds(10)),
                    $"{mode}: still {h.State} after 10 s; console: {h.Vm!.Console.Read().Text}");
                outcome = h.State == DomainState.Crashed ? $"crashed: {h.CrashReason}" : $"exited({h.ExitStatus})";
                if (Survive.Contains(mode))
                {
                    Assert.True(h.State == DomainState.Exited && h.ExitStatus == 0, $"{mode}: {outcome}; console: {h.Vm!.Console.Read().Text}");
                }
                else if (Crash.Contains(mode))
                {
                    Assert.True(h.State == DomainState.Crashed, $"{mode}: {outcome}; console: {h.Vm!.Console.Read().Text}");
                    Assert.False(string.IsNullOrEmpty(h.CrashReason));
                    Assert.Contains("rip=", h.CrashRegisters);
                }
                Assert.True(host.Destroy(h));
            }
            output.WriteLine($"{mode,-17} {outcome.Split('\n')[0]}");
            Assert.True(VmKit.WaitFor(() => Received() > before + 50, TimeSpan.FromSeconds(10)), $"{mode}: the other VM domains stopped forwarding");
            Assert.Equal(DomainState.Running, tx.State);
            Assert.Equal(DomainState.Running, rx.State);
        }

        Assert.True(host.Destroy(tx));
        Thread.Sleep(100);
        var b = host.Switch.FindBridge("valevmh")!.GetStatistics();
        output.WriteLine($"bridge: sent {b.Sent} delivered {b.Delivered} dropped {b.Dropped} unaccounted {b.Unaccounted}");
        Assert.Equal(0, b.Unaccounted);
        Assert.True(host.Destroy(rx));
    }
}
