using System.Buffers.Binary;
using HyperNF.Netmap;

namespace HyperNF.Bench;

/// <summary>Small helpers to build Ethernet/IPv4/UDP frames for tools and benchmarks.</summary>
public static class Frames
{
    public static byte[] Mac(byte a, byte b, byte c, byte d, byte e, byte f) => [a, b, c, d, e, f];

    /// <summary>Writes an Ethernet/IPv4/UDP frame of <paramref name="frameSize"/> bytes with a sequence number in the payload.</summary>
    public static void WriteUdp(Span<byte> buf, ReadOnlySpan<byte> dst, ReadOnlySpan<byte> src, int frameSize, uint seq)
    {
        dst.CopyTo(buf);
        src.CopyTo(buf[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(buf[12..], 0x0800);
        if (frameSize < 42) { buf[14..frameSize].Clear(); return; }
        var ip = buf[14..];
        ip[0] = 0x45; ip[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(frameSize - 14));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000);
        ip[8] = 64; ip[9] = 17;
        ip[10] = 0; ip[11] = 0;
        ip[12] = 10; ip[13] = 0; ip[14] = 0; ip[15] = 1;
        ip[16] = 10; ip[17] = 0; ip[18] = 0; ip[19] = 2;
        uint sum = 0;
        for (int i = 0; i < 20; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(ip[i..]);
        while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~sum);
        var udp = ip[20..];
        BinaryPrimitives.WriteUInt16BigEndian(udp, 1234);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], 4321);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(frameSize - 34));
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0); // checksum optional for UDP over IPv4
        if (frameSize >= 46) BinaryPrimitives.WriteUInt32BigEndian(udp[8..], seq);
    }

    /// <summary>Queues one frame on TX ring 0 and syncs.</summary>
    public static void SendOne(NetmapPort port, ReadOnlySpan<byte> dst, ReadOnlySpan<byte> src, int frameSize)
    {
        var ring = port.TxRing(0);
        uint cur = ring.Cur;
        ref var slot = ref ring.Slot(cur);
        WriteUdp(ring.Buffer(slot), dst, src, frameSize, 0);
        slot.Len = (ushort)frameSize;
        slot.Flags = 0;
        ring.Head = ring.Cur = ring.Next(cur);
        port.TxSync();
    }
}
