using System.Buffers.Binary;
using HyperNF.Functions;
using HyperNF.Hypervisor;
using HyperNF.Netmap;
using Xunit;

namespace HyperNF.Tests.Hypervisor;

/// <summary>
/// Frames from a sender domain cross NF domains to a receiver domain, for every built-in NF
/// and every I/O model: counts exact, UDP payloads intact, IPv4 and UDP checksums valid after
/// whatever the NF rewrote. The sender keeps at most a window of frames in flight, so nothing
/// may be lost.
/// </summary>
public class NfChainTests
{
    private sealed class UdpFlow
    {
        public long Received, Corrupt, BadChecksum, OutOfOrder, LastSeq = -1;
        public uint LastSrcIp;
        public ushort LastSrcPort;
        public byte LastTtl;
    }

    private const int FrameLen = 200;

    private static void WriteUdp(Span<byte> b, long seq)
    {
        b[..6].Fill(0xff);
        byte[] src = [0x02, 0, 0, 0, 0xaa, 0x01];
        src.CopyTo(b[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(b[12..], 0x0800);
        var ip = b[14..34];
        ip.Clear();
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], FrameLen - 14);
        ip[8] = 64;
        ip[9] = 17;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], 0x0A000001);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], 0x0A010001);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Checksum.Compute(ip));
        var udp = b[34..FrameLen];
        BinaryPrimitives.WriteUInt16BigEndian(udp, 5000);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], 6000);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)udp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(udp[8..], seq);
        for (int i = 16; i < udp.Length; i++) udp[i] = (byte)(seq * 7 + i);
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], Checksum.ComputeL4(0x0A000001, 0x0A010001, 17, udp));
    }

    private static DelegateGuest Sender(long count, UdpFlow flow, int window) => new(ctx =>
    {
        var port = ctx.Ports[0];
        var ring = port.TxRing(0);
        long seq = 0;
        while (!ctx.Stopping)
        {
            ctx.Checkpoint();
            long room = window - (seq - Volatile.Read(ref flow.Received));
            if (seq >= count || room <= 0) { ctx.Cancellation.WaitHandle.WaitOne(1); continue; }
            uint cur = ring.Cur;
            uint k = (uint)Math.Min(Math.Min(ring.Space, 32), Math.Min(room, count - seq));
            if (k == 0) { port.Poll(PollEvents.Out, 20); continue; }
            for (uint i = 0; i < k; i++)
            {
                ref var s = ref ring.Slot(cur);
                WriteUdp(ring.Buffer(s), seq++);
                s.Len = FrameLen;
                s.Flags = 0;
                cur = ring.Next(cur);
            }
            ring.Head = ring.Cur = cur;
            port.TxSync();
        }
    });

    private static DelegateGuest Receiver(UdpFlow flow) => new(ctx =>
    {
        var port = ctx.Ports[0];
        var ring = port.RxRing(0);
        while (!ctx.Stopping)
        {
            ctx.Checkpoint();
            if (port.Poll(PollEvents.In, 50) == PollEvents.None) continue;
            uint cur = ring.Cur, tail = ring.Tail;
            long n = 0;
            while (cur != tail)
            {
                ref var s = ref ring.Slot(cur);
                Check(ring.Buffer(s)[..s.Len], flow);
                n++;
                cur = ring.Next(cur);
            }
            ring.Head = ring.Cur = cur;
            Interlocked.Add(ref flow.Received, n);
        }
    });

    private static void Check(ReadOnlySpan<byte> f, UdpFlow flow)
    {
        if (f.Length != FrameLen || BinaryPrimitives.ReadUInt16BigEndian(f[12..]) != 0x0800) { flow.Corrupt++; return; }
        var ip = f[14..34];
        var udp = f[34..];
        uint src = BinaryPrimitives.ReadUInt32BigEndian(ip[12..]), dst = BinaryPrimitives.ReadUInt32BigEndian(ip[16..]);
        if (!Checksum.IsValid(ip) || !Checksum.IsL4Valid(src, dst, 17, udp)) flow.BadChecksum++;
        long seq = BinaryPrimitives.ReadInt64LittleEndian(udp[8..]);
        for (int i = 16; i < udp.Length; i++)
            if (udp[i] != (byte)(seq * 7 + i)) { flow.Corrupt++; return; }
        if (seq != flow.LastSeq + 1) flow.OutOfOrder++;
        flow.LastSeq = seq;
        flow.LastSrcIp = src;
        flow.LastSrcPort = BinaryPrimitives.ReadUInt16BigEndian(udp);
        flow.LastTtl = ip[8];
    }

    public static IEnumerable<object[]> Cases()
    {
        foreach (string nf in new[] { "l2fwd", "firewall", "router", "nat", "cost", "encrypt" })
            foreach (var m in new[] { IoModel.Hypercall, IoModel.Split, IoModel.Merge })
                yield return [nf, m];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FramesCrossEveryNfInEveryModel(string nf, IoModel model)
    {
        using var host = new Host();
        var flow = new UdpFlow();
        const long count = 20_000;
        int nfCpu = Environment.ProcessorCount - 1;
        host.Create(new DomainSpec { Name = "rx", Vifs = [new VifSpec("valez:rx")], Guest = () => Receiver(flow), Cpus = [[0]] });
        string? args = nf switch
        {
            "firewall" => "rule=deny udp any -> any 53;allow udp 10.0.0.0/24 5000 -> 10.1.0.0/16 6000,default=deny",
            "router" => "mac0=02:00:00:00:01:00,mac1=02:00:00:00:01:01,route=10.1.0.0/16 via 02:00:00:00:0b:01 port 1",
            "nat" => "public=192.0.2.1,ports=20000-20099",
            "cost" => "cycles=200",
            "encrypt" => "passphrase=test",
            _ => null,
        };
        if (nf == "encrypt")
        {
            // encrypt on the way out of valex, decrypt in a second domain (frames enter its port 1)
            host.Create(new DomainSpec { Name = "enc", Vifs = [new VifSpec("valex:e0"), new VifSpec("valey:e1")], Nf = nf, NfArgs = args, IoModel = model, Cpus = [[nfCpu]] });
            host.Create(new DomainSpec { Name = "dec", Vifs = [new VifSpec("valez:d0"), new VifSpec("valey:d1")], Nf = nf, NfArgs = args, IoModel = model, Cpus = [[nfCpu]] });
        }
        else
        {
            host.Create(new DomainSpec { Name = "nf", Vifs = [new VifSpec("valex:n0"), new VifSpec("valez:n1")], Nf = nf, NfArgs = args, IoModel = model, Cpus = [[nfCpu]] });
        }
        host.Create(new DomainSpec { Name = "tx", Vifs = [new VifSpec("valex:tx")], Guest = () => Sender(count, flow, 256), Cpus = [[0]] });

        var until = DateTime.UtcNow.AddSeconds(60);
        while (Volatile.Read(ref flow.Received) < count && DateTime.UtcNow < until) Thread.Sleep(10);
        Thread.Sleep(50);
        Assert.Equal(count, Volatile.Read(ref flow.Received));
        Assert.Equal(0, flow.Corrupt);
        Assert.Equal(0, flow.BadChecksum);
        Assert.Equal(0, flow.OutOfOrder);
        foreach (var b in host.Switch.Bridges) Assert.Equal(0, b.GetStatistics().Unaccounted);
        switch (nf)
        {
            case "nat":
                Assert.Equal(0xC0000201u, flow.LastSrcIp); // 192.0.2.1
                Assert.InRange(flow.LastSrcPort, (ushort)20000, (ushort)20099);
                break;
            case "router":
                Assert.Equal(63, flow.LastTtl);
                break;
            default:
                Assert.Equal(0x0A000001u, flow.LastSrcIp);
                break;
        }
        Assert.All(host.Domains, d => Assert.Equal(DomainState.Running, d.State));
    }
}
