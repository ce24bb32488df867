using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Vmm;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Vmm;

/// <summary>Frames between VM domains (the SDK's pkt-gen and l2fwd images) through real bridges.</summary>
public sealed class VmDataPathTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private static DomainSpec Vm(string name, string image, string args, params string[] ports) => new()
    {
        Name = name, Kernel = GuestImages.Path(image), CommandLine = args, Vifs = ports.Select(p => new VifSpec(p)).ToArray(),
    };

    private void Dump(Domain d) => output.WriteLine($"--- {d.Name} ({d.State}{(d.ExitStatus is { } s ? $" {s}" : "")}{d.CrashReason})\n{d.Vm?.Console.Read().Text}");

    /// <summary>The value of key=N in the last console line that starts with <paramref name="prefix"/>.</summary>
    internal static long Field(Domain d, string prefix, string key)
    {
        string line = d.Vm!.Console.Read().Text.Split('\n').Last(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains($" {key}=", StringComparison.Ordinal));
        string v = line[(line.IndexOf($" {key}=", StringComparison.Ordinal) + key.Length + 2)..];
        int end = v.IndexOf(' ');
        return long.Parse(end < 0 ? v : v[..end], System.Globalization.CultureInfo.InvariantCulture);
    }

    [KvmFact]
    public void Tx_vm_to_rx_vm_exact_counts_and_intact_payloads()
    {
        const int n = 3000;
        using var host = new Host();
        var rx = host.Create(Vm("vmm-rx", "pkt-gen", $"-f rx -n {n}", "valevmd:rx"));
        var tx = host.Create(Vm("vmm-tx", "pkt-gen", $"-f tx -n {n} -R 30000 -l 60", "valevmd:tx"));
        try
        {
            VmKit.WaitState(tx, DomainState.Exited, Wait);
            VmKit.WaitState(rx, DomainState.Exited, Wait);
        }
        finally { Dump(tx); Dump(rx); }
        Assert.Equal(0, tx.ExitStatus);
        Assert.Equal(0, rx.ExitStatus); // pkt-gen rx: 0 = every frame of ours arrived once, intact (payload checked)
        Assert.Equal(n, Field(tx, "pktgen-tx:", "sent"));
        Assert.Equal(n, Field(rx, "pktgen-rx:", "received"));
        Assert.Equal(0, Field(rx, "pktgen-rx:", "lost"));
        Assert.Equal(0, Field(rx, "pktgen-rx:", "bad"));
        var b = host.Switch.FindBridge("valevmd")!.GetStatistics();
        Assert.Equal(n, b.Sent);
        Assert.Equal(0, b.Unaccounted);
        Assert.True(host.Destroy(rx));
        Assert.True(host.Destroy(tx));
    }
}
