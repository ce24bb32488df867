using System.Buffers.Binary;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests;

/// <summary>MAC addresses for tests, as frame bytes.</summary>
internal static class Macs
{
    /// <summary>A locally administered unicast address 02:00:00:00:hi:lo.</summary>
    public static byte[] Unicast(int id) => [0x02, 0x00, 0x00, 0x00, (byte)(id >> 8), (byte)id];
    public static readonly byte[] Broadcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    /// <summary>An IPv4 multicast MAC 01:00:5e:00:00:id (bit 0 of the first octet set).</summary>
    public static byte[] Multicast(int id) => [0x01, 0x00, 0x5e, 0x00, 0x00, (byte)id];

    /// <summary>The learning table's representation (first octet in the low byte).</summary>
    public static ulong ToTable(ReadOnlySpan<byte> mac)
    {
        ulong v = 0;
        for (int i = 0; i < 6; i++) v |= (ulong)mac[i] << (8 * i);
        return v;
    }
}

/// <summary>Builds Ethernet frames whose payload can be checked byte for byte.</summary>
internal static class TestFrames
{
    public const ushort EtherType = 0x88B5; // IEEE local experimental

    /// <summary>dst, src, ethertype, then a payload derived from <paramref name="tag"/>.</summary>
    public static byte[] Make(ReadOnlySpan<byte> dst, ReadOnlySpan<byte> src, int length, uint tag)
    {
        Assert.True(length >= 14);
        var f = new byte[length];
        dst.CopyTo(f);
        src.CopyTo(f.AsSpan(6));
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), EtherType);
        FillPayload(f.AsSpan(14), tag);
        return f;
    }

    public static void FillPayload(Span<byte> payload, uint tag)
    {
        uint x = tag * 2654435761u + 12345;
        for (int i = 0; i < payload.Length; i++)
        {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            payload[i] = (byte)x;
        }
    }
}

/// <summary>A received frame and the slots it arrived in.</summary>
internal sealed record Received(byte[] Bytes, (ushort Len, ushort Flags, uint BufIdx)[] Slots);

/// <summary>A domain with one port on a bridge: the small harness most tests use.</summary>
internal sealed class Node : IDisposable
{
    public DomainMemory Memory { get; }
    public NetmapPort Port { get; private set; }
    public byte[] Mac { get; }
    private readonly bool _ownsMemory;

    public ValePort Host => ValeSwitch.HostPortOf(Port)!;
    public NetmapRing Tx => Port.TxRing(0);
    public NetmapRing Rx => Port.RxRing(0);

    public Node(ValeSwitch sw, string name, byte[] mac, RegionLayout? layout = null)
    {
        Memory = new DomainMemory(layout ?? new RegionLayout { MaxPorts = 1 }, name);
        _ownsMemory = true;
        Port = sw.OpenPort(name, Memory);
        Mac = mac;
    }

    public Node(ValeSwitch sw, string name, byte[] mac, DomainMemory shared)
    {
        Memory = shared;
        Port = sw.OpenPort(name, shared);
        Mac = mac;
    }

    public PortStatistics Stats => Host.GetStatistics();

    /// <summary>Queues <paramref name="frames"/> (split into 2048-byte MOREFRAG fragments when larger) and syncs once.</summary>
    public void Send(params byte[][] frames)
    {
        Queue(frames);
        Port.TxSync();
    }

    /// <summary>Queues frames on TX ring 0 and advances head/cur, without syncing.</summary>
    public void Queue(IEnumerable<byte[]> frames, int fragmentSize = RegionLayout.DefaultBufferSize)
    {
        var ring = Tx;
        uint cur = ring.Cur;
        foreach (var f in frames)
        {
            int off = 0;
            do
            {
                Assert.True(RingRules.Distance(cur, ring.Tail, ring.NumSlots) > 0, "test harness: TX ring full");
                int n = Math.Min(fragmentSize, f.Length - off);
                ref var s = ref ring.Slot(cur);
                f.AsSpan(off, n).CopyTo(ring.Buffer(s));
                s.Len = (ushort)n;
                off += n;
                s.Flags = off < f.Length ? SlotFlags.MoreFrag : (ushort)0;
                cur = ring.Next(cur);
            } while (off < f.Length);
        }
        ring.Head = ring.Cur = cur;
    }

    /// <summary>Frame with this node as source.</summary>
    public byte[] FrameTo(ReadOnlySpan<byte> dst, int length = 60, uint tag = 0) => TestFrames.Make(dst, Mac, length, tag);

    /// <summary>Announces the node's MAC to the bridge (a broadcast frame), then drains the other nodes.</summary>
    public void Announce() => Send(FrameTo(Macs.Broadcast, 60, 0xA11));

    /// <summary>RxSync, collect every frame in [cur, tail) (joining MOREFRAG chains), release them, RxSync again.</summary>
    public List<Received> Receive()
    {
        Port.RxSync();
        var ring = Rx;
        var list = new List<Received>();
        uint cur = ring.Cur, tail = ring.Tail;
        var bytes = new List<byte>();
        var slots = new List<(ushort, ushort, uint)>();
        while (cur != tail)
        {
            ref var s = ref ring.Slot(cur);
            slots.Add((s.Len, s.Flags, s.BufIdx));
            bytes.AddRange(ring.Frame(s).ToArray());
            if ((s.Flags & SlotFlags.MoreFrag) == 0)
            {
                list.Add(new Received(bytes.ToArray(), slots.ToArray()));
                bytes.Clear();
                slots.Clear();
            }
            cur = ring.Next(cur);
        }
        Assert.True(slots.Count == 0, "a MOREFRAG chain was left open at the end of the published RX slots");
        ring.Head = ring.Cur = cur;
        Port.RxSync();
        return list;
    }

    /// <summary>Releases everything received without looking at it.</summary>
    public void Drain()
    {
        Port.RxSync();
        var ring = Rx;
        ring.Head = ring.Cur = ring.Tail;
        Port.RxSync();
    }

    public void Dispose()
    {
        Port.Dispose();
        if (_ownsMemory) Memory.Dispose();
    }
}

internal static class StatsAssert
{
    /// <summary>The bridge's accounting invariant at a quiescent point.</summary>
    public static BridgeStatistics Balanced(ValeSwitch sw, string bridge)
    {
        var s = sw.FindBridge(bridge)!.GetStatistics();
        Assert.True(s.Unaccounted == 0,
            $"bridge {bridge}: sent {s.Sent} + flood copies {s.FloodCopies} != delivered {s.Delivered} + dropped {s.Dropped} " +
            $"[{string.Join(", ", DropReasons.All.Select(r => $"{r.Key()}={s.Drops[(int)r]}"))}]");
        return s;
    }

    /// <summary>
    /// <see cref="Balanced"/> once the bridge is quiescent: after real traffic (TCP's last
    /// segments, retransmits) a driver thread's flush may still be running, and a flush counts
    /// its sent frames at its end. Waits up to <paramref name="seconds"/> for that, then asserts.
    /// </summary>
    public static BridgeStatistics BalancedWhenQuiet(ValeSwitch sw, string bridge, double seconds = 5)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (sw.FindBridge(bridge)!.GetStatistics().Unaccounted != 0 && DateTime.UtcNow < until) Thread.Sleep(50);
        return Balanced(sw, bridge);
    }

    /// <summary>Every drop counter of <paramref name="s"/> is zero except the ones listed.</summary>
    public static void OnlyDrops(long[] drops, params (DropReason Reason, long Count)[] expected)
    {
        foreach (var r in DropReasons.All)
        {
            long want = expected.Where(e => e.Reason == r).Sum(e => e.Count);
            Assert.True(drops[(int)r] == want, $"drop counter {r.Key()}: expected {want}, got {drops[(int)r]}");
        }
    }
}
