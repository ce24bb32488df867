using System.Buffers;
using System.Buffers.Binary;
using HyperNF.Switch;

namespace HyperNF.Tools;

/// <summary>
/// The classic libpcap file format (what tcpdump -w writes and tcpdump, tshark and Wireshark
/// read): a 24-byte file header, then per frame a 16-byte record header and the captured
/// bytes. Little-endian, microsecond time stamps, link type Ethernet.
/// </summary>
public static class Pcap
{
    public const uint Magic = 0xA1B2C3D4;
    public const int FileHeaderBytes = 24;
    public const int RecordHeaderBytes = 16;
    public const uint LinkTypeEthernet = 1;

    public static byte[] FileHeader(int snapLength)
    {
        var h = new byte[FileHeaderBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(h, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 2);  // version 2.4
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), 4);
        // thiszone 0, sigfigs 0
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(16), (uint)snapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), LinkTypeEthernet);
        return h;
    }

    /// <summary>Appends one record (header and bytes) for <paramref name="frame"/>.</summary>
    public static void AppendRecord(IBufferWriter<byte> output, in CapturedFrame frame)
    {
        var bytes = frame.Bytes.Span;
        var span = output.GetSpan(RecordHeaderBytes + bytes.Length);
        long us = frame.TimeUnixNs / 1000;
        BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)(us / 1_000_000));
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], (uint)(us % 1_000_000));
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], (uint)bytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[12..], (uint)frame.OriginalLength);
        bytes.CopyTo(span[RecordHeaderBytes..]);
        output.Advance(RecordHeaderBytes + bytes.Length);
    }

    /// <summary>A record as read back: time (µs since the epoch), captured bytes, original length.</summary>
    public readonly record struct Record(long TimeUnixUs, byte[] Bytes, int OriginalLength);

    /// <summary>Reads the records that follow a file header in <paramref name="data"/> (records only, no file header).</summary>
    public static IEnumerable<Record> ReadRecords(byte[] data)
    {
        int off = 0;
        while (off + RecordHeaderBytes <= data.Length)
        {
            var s = data.AsSpan(off);
            long sec = BinaryPrimitives.ReadUInt32LittleEndian(s), usec = BinaryPrimitives.ReadUInt32LittleEndian(s[4..]);
            int incl = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[8..]), orig = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[12..]);
            if (incl < 0 || off + RecordHeaderBytes + incl > data.Length) throw new FormatException($"truncated pcap record at byte {off}");
            yield return new Record(sec * 1_000_000 + usec, data.AsSpan(off + RecordHeaderBytes, incl).ToArray(), orig);
            off += RecordHeaderBytes + incl;
        }
        if (off != data.Length) throw new FormatException($"{data.Length - off} trailing bytes after the last pcap record");
    }
}
