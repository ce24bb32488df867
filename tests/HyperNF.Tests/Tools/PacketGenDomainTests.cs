using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Tools;

/// <summary>
/// pkt-gen as a domain's NF, the way a user writes it: <c>nf = "pkt-gen"</c> and its flags in
/// <c>nf_args</c> of an xl config, created on a real host (vCPU threads, shared-memory rings).
/// </summary>
public class PacketGenDomainTests
{
    private static Domain Create(Host host, string text)
    {
        var config = XlConfig.Parse(text, "pg.cfg");
        return host.Create(DomainSpecs.ForHost(config, host));
    }

    private static void WaitFor(Func<bool> cond, string what, int seconds = 60)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!cond())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out waiting for {what}");
            Thread.Sleep(10);
        }
    }

    [Fact]
    public void Tx_and_rx_pkt_gen_domains_from_xl_configs_exchange_numbered_frames()
    {
        using var host = new Host();
        const int Count = 20_000;
        int last = Environment.ProcessorCount - 1;
        var rx = Create(host, $"name = \"pgrx\"\nvif = [ \"type=nmif,bridge=valepg:rx\" ]\ncpus = \"{last}\"\nnf = \"pkt-gen\"\nnf_args = \"-f rx\"\n");
        var tx = Create(host, $"name = \"pgtx\"\nvif = [ \"type=nmif,bridge=valepg:tx\" ]\ncpus = \"0\"\nnf = \"pkt-gen\"\n" +
                              $"nf_args = \"-f tx -n {Count} -l 128 -R 200000 -s 10.0.0.1-10.0.0.4:1000 -d 10.1.0.1:2000\"\n");
        var txGuest = Assert.IsType<PacketGenGuest>(tx.Guest);
        var rxGuest = Assert.IsType<PacketGenGuest>(rx.Guest);
        Assert.Equal(PacketGenFunction.Tx, txGuest.Options.Function);
        Assert.Equal(128, txGuest.Options.FrameLength);

        WaitFor(() => txGuest.Summary is not null, "the tx domain to send its count");
        Assert.Equal(Count, txGuest.Summary!.Sent);
        var bridge = host.Switch.FindBridge("valepg")!;
        // Every frame arrives or is a counted drop (the receiver may be descheduled on a busy machine).
        WaitFor(() => rxGuest.Frames + bridge.GetStatistics().Dropped >= Count, "every frame to arrive or be counted");
        Thread.Sleep(50);
        var st = bridge.GetStatistics();
        Assert.Equal(0, st.Unaccounted);
        Assert.Equal(Count, st.Sent);
        Assert.Equal(Count, rxGuest.Frames + st.Dropped);
        Assert.True(rxGuest.Frames > 0);
        Assert.Equal(st.Dropped, st.Drops[(int)DropReason.RingFull]);

        Assert.True(host.Destroy(rx));
        var sum = rxGuest.Summary!;
        Assert.Equal(PacketGenFunction.Rx, sum.Function);
        Assert.Equal(rxGuest.Frames, sum.Received);
        Assert.Equal(128L * sum.Received, sum.Bytes);
        Assert.Equal(0, sum.Foreign);
        Assert.Equal(0, sum.Duplicates);
        Assert.Equal(0, sum.Reordered);
        Assert.True(sum.Lost <= st.Dropped, $"rx reports {sum.Lost} lost, the switch dropped {st.Dropped}");
        Assert.NotNull(sum.Latency);
        Assert.True(sum.Latency!.P99Us >= sum.Latency.P50Us && sum.Latency.P50Us > 0);
        Assert.True(host.Destroy(tx));
    }
}
