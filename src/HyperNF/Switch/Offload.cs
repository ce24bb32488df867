using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace HyperNF.Switch;

/// <summary>
/// The virtio-net header a VALE port may carry in front of every frame (netmap's
/// <c>virt_hdr_len</c>, set with PORT_HDR_SET; Linux's <c>struct virtio_net_hdr</c>, and
/// <c>virtio_net_hdr_mrg_rxbuf</c> for 12 bytes). All fields little-endian.
/// </summary>
public static class VirtioNetHeader
{
    public const int FlagsOffset = 0, GsoTypeOffset = 1, HdrLenOffset = 2, GsoSizeOffset = 4, CsumStartOffset = 6, CsumOffsetOffset = 8, NumBuffersOffset = 10;
    /// <summary>VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum at csum_start + csum_offset is partial (pseudo-header only).</summary>
    public const byte FlagNeedsCsum = 1;
    /// <summary>VIRTIO_NET_HDR_F_DATA_VALID: the receiver already checked the checksum.</summary>
    public const byte FlagDataValid = 2;
    public const byte GsoNone = 0, GsoTcpV4 = 1, GsoUdp = 3, GsoTcpV6 = 4, GsoUdpL4 = 5, GsoEcn = 0x80;

    /// <summary>Header lengths a port may have: none, virtio_net_hdr (10), virtio_net_hdr_mrg_rxbuf (12).</summary>
    public static bool IsValidLength(int length) => length is 0 or 10 or 12;

    /// <summary>The message for a header length that is not 0, 10 or 12.</summary>
    public static string InvalidLengthMessage(int length) =>
        $"virtio-net header length {length} is not supported: use 0 (none), 10 (virtio_net_hdr) or 12 (virtio_net_hdr_mrg_rxbuf)";
}

/// <summary>What the offload datapath does with one frame, from <see cref="Offload.Plan"/>.</summary>
internal enum OffloadAction
{
    /// <summary>The header is invalid or asks for something we cannot do: a counted drop.</summary>
    Drop,
    /// <summary>Copy the frame as it is (the header, if any, says nothing to do).</summary>
    Copy,
    /// <summary>Copy and complete the partial checksum at csum_start + csum_offset.</summary>
    Checksum,
    /// <summary>Cut a TCP or UDP super-frame into segments of gso_size payload bytes, each with complete checksums.</summary>
    Segment,
}

/// <summary>The parsed layout of a frame with offload metadata.</summary>
internal struct OffloadPlan
{
    public OffloadAction Action;
    /// <summary>Output frames (1 unless segmenting).</summary>
    public int Segments;
    /// <summary>Offsets in the frame (after the virtio-net header): network header, transport header, payload.</summary>
    public int L3, L4, Payload;
    public bool Ipv6;
    public bool Tcp;
    public int Mss;
    public int CsumStart, CsumOffset;
}

/// <summary>
/// Software offloads for frames whose virtio-net header asks for work the destination cannot
/// do (netmap's offloading datapath: a port with a header forwarding to one without): TCP and
/// UDP segmentation (IPv4 and IPv6, with up to two VLAN tags) and checksum completion. Every
/// field the sender wrote is checked before it is used; a header that does not match the frame
/// is a <see cref="OffloadAction.Drop"/>, never an access outside the frame.
/// </summary>
internal static unsafe class Offload
{
    public const int EthHeader = 14;
    private const int MaxIpv6Extensions = 8;

    /// <summary>
    /// Validates the virtio-net header <paramref name="hdr"/> against the frame
    /// <paramref name="frame"/>[0..<paramref name="len"/>) and decides what to do with it.
    /// </summary>
    public static OffloadPlan Plan(byte* hdr, byte* frame, int len) => Plan(hdr, frame, len, len);

    /// <summary>As <see cref="Plan(byte*, byte*, int)"/> when only the first <paramref name="readable"/> bytes of the frame are at <paramref name="frame"/> (headers beyond them: a drop).</summary>
    public static OffloadPlan Plan(byte* hdr, byte* frame, int len, int readable)
    {
        var p = new OffloadPlan { Action = OffloadAction.Drop, Segments = 1 };
        byte flags = hdr[VirtioNetHeader.FlagsOffset];
        byte gso = hdr[VirtioNetHeader.GsoTypeOffset];
        int hdrLen = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hdr + VirtioNetHeader.HdrLenOffset, 2));
        int gsoSize = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hdr + VirtioNetHeader.GsoSizeOffset, 2));
        int csumStart = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hdr + VirtioNetHeader.CsumStartOffset, 2));
        int csumOffset = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hdr + VirtioNetHeader.CsumOffsetOffset, 2));
        if ((flags & ~(VirtioNetHeader.FlagNeedsCsum | VirtioNetHeader.FlagDataValid)) != 0) return p;
        if (hdrLen > len) return p;
        bool needsCsum = (flags & VirtioNetHeader.FlagNeedsCsum) != 0;
        if (needsCsum && (csumStart < EthHeader || csumOffset > len || csumStart > len - 2 - csumOffset)) return p;
        p.CsumStart = csumStart;
        p.CsumOffset = csumOffset;
        int gsoKind = gso & ~VirtioNetHeader.GsoEcn;
        if (gsoKind == VirtioNetHeader.GsoNone)
        {
            if (gso != VirtioNetHeader.GsoNone) return p; // ECN bit without a GSO type
            p.Action = needsCsum ? OffloadAction.Checksum : OffloadAction.Copy;
            return p;
        }
        if (gsoKind is not (VirtioNetHeader.GsoTcpV4 or VirtioNetHeader.GsoTcpV6 or VirtioNetHeader.GsoUdpL4)) return p; // UFO (3) and unknown types
        if (gsoSize == 0) return p;
        if (!ParseHeaders(frame, len, Math.Min(len, readable), ref p)) return p;
        if (gsoKind == VirtioNetHeader.GsoTcpV4 && (p.Ipv6 || !p.Tcp)) return p;
        if (gsoKind == VirtioNetHeader.GsoTcpV6 && (!p.Ipv6 || !p.Tcp)) return p;
        if (gsoKind == VirtioNetHeader.GsoUdpL4 && (p.Tcp || !needsCsum)) return p; // as Linux: UDP GSO always has a partial checksum
        // A partial checksum, when announced, must be the transport checksum we are going to write.
        if (needsCsum && (csumStart != p.L4 || csumOffset != (p.Tcp ? 16 : 6))) return p;
        int payload = len - p.Payload;
        p.Mss = gsoSize;
        p.Segments = payload <= gsoSize ? 1 : (payload + gsoSize - 1) / gsoSize;
        p.Action = p.Segments == 1 ? (needsCsum ? OffloadAction.Checksum : OffloadAction.Copy) : OffloadAction.Segment;
        return p;
    }

    /// <summary>Ethernet (up to two VLAN tags), IPv4 or IPv6 (with extension headers), TCP or UDP. False when the frame is not one of those or is cut short.</summary>
    private static bool ParseHeaders(byte* f, int len, int readable, ref OffloadPlan p)
    {
        // Header fields are read within the first `readable` bytes; lengths are checked against `len`.
        int frameLen = len;
        len = readable;
        if (len < EthHeader) return false;
        int off = 12;
        int type = f[off] << 8 | f[off + 1];
        for (int tags = 0; (type == 0x8100 || type == 0x88A8) && tags < 2; tags++)
        {
            off += 4;
            if (off + 2 > len) return false;
            type = f[off] << 8 | f[off + 1];
        }
        int l3 = off + 2;
        int proto;
        int l4;
        if (type == 0x0800)
        {
            if (l3 + 20 > len || f[l3] >> 4 != 4) return false;
            int ihl = (f[l3] & 15) * 4;
            if (ihl < 20 || l3 + ihl > len) return false;
            int totLen = f[l3 + 2] << 8 | f[l3 + 3];
            if (totLen < ihl || l3 + totLen != frameLen) return false; // no trailing padding in a super-frame
            if ((f[l3 + 6] & 0x3F) != 0 || f[l3 + 7] != 0) return false; // a fragment (MF or offset): not segmentable
            proto = f[l3 + 9];
            l4 = l3 + ihl;
            p.Ipv6 = false;
        }
        else if (type == 0x86DD)
        {
            if (l3 + 40 > len || f[l3] >> 4 != 6) return false;
            int payloadLen = f[l3 + 4] << 8 | f[l3 + 5];
            if (l3 + 40 + payloadLen != frameLen) return false;
            proto = f[l3 + 6];
            l4 = l3 + 40;
            for (int i = 0; proto is 0 or 43 or 60; i++)
            {
                // hop-by-hop, routing, destination options: next header, length in 8-byte units (after the first 8)
                if (i == MaxIpv6Extensions || l4 + 8 > len) return false;
                int extLen = (f[l4 + 1] + 1) * 8;
                proto = f[l4];
                l4 += extLen;
                if (l4 > len) return false;
            }
            p.Ipv6 = true;
        }
        else return false;
        if (proto == 6)
        {
            if (l4 + 20 > len) return false;
            int doff = (f[l4 + 12] >> 4) * 4;
            if (doff < 20 || l4 + doff > len) return false;
            p.Tcp = true;
            p.Payload = l4 + doff;
        }
        else if (proto == 17)
        {
            if (l4 + 8 > len) return false;
            p.Tcp = false;
            p.Payload = l4 + 8;
        }
        else return false;
        p.L3 = l3;
        p.L4 = l4;
        return true;
    }

    /// <summary>Bytes of output segment <paramref name="k"/> (without any virtio-net header).</summary>
    public static int SegmentLength(in OffloadPlan p, int len, int k)
    {
        if (p.Action != OffloadAction.Segment) return len;
        int payload = len - p.Payload;
        int start = k * p.Mss;
        return p.Payload + Math.Min(p.Mss, payload - start);
    }

    /// <summary>
    /// Writes output frame <paramref name="k"/> of <paramref name="src"/> (the frame after its
    /// header, <paramref name="len"/> bytes, planned by <see cref="Plan"/>) to <paramref name="dst"/>
    /// with complete checksums. Returns its length.
    /// </summary>
    public static int Write(in OffloadPlan p, byte* src, int len, int k, byte* dst)
    {
        switch (p.Action)
        {
            case OffloadAction.Copy:
                Buffer.MemoryCopy(src, dst, len, len);
                return len;
            case OffloadAction.Checksum:
                Buffer.MemoryCopy(src, dst, len, len);
                CompletePartial(dst, len, p.CsumStart, p.CsumOffset);
                return len;
        }
        int payload = len - p.Payload;
        int start = k * p.Mss;
        int n = Math.Min(p.Mss, payload - start);
        bool last = start + n == payload;
        int hl = p.Payload;
        Buffer.MemoryCopy(src, dst, hl, hl);
        Buffer.MemoryCopy(src + hl + start, dst + hl, n, n);
        int segLen = hl + n;
        int l4Len = segLen - p.L4;
        if (p.Ipv6)
        {
            // payload length: everything after the fixed 40-byte header (extension headers included)
            BinaryPrimitives.WriteUInt16BigEndian(new Span<byte>(dst + p.L3 + 4, 2), (ushort)(segLen - p.L3 - 40));
        }
        else
        {
            byte* ip = dst + p.L3;
            BinaryPrimitives.WriteUInt16BigEndian(new Span<byte>(ip + 2, 2), (ushort)(segLen - p.L3));
            ushort id = BinaryPrimitives.ReadUInt16BigEndian(new ReadOnlySpan<byte>(ip + 4, 2));
            BinaryPrimitives.WriteUInt16BigEndian(new Span<byte>(ip + 4, 2), (ushort)(id + k));
            ip[10] = 0; ip[11] = 0;
            int ihl = (ip[0] & 15) * 4;
            *(ushort*)(ip + 10) = (ushort)~Fold(Sum(ip, ihl, 0));
        }
        byte* l4 = dst + p.L4;
        int csumAt;
        if (p.Tcp)
        {
            uint seq = BinaryPrimitives.ReadUInt32BigEndian(new ReadOnlySpan<byte>(l4 + 4, 4));
            BinaryPrimitives.WriteUInt32BigEndian(new Span<byte>(l4 + 4, 4), seq + (uint)start);
            byte fl = l4[13];
            if (!last) fl &= unchecked((byte)~0x09); // FIN and PSH only on the last segment
            if (k > 0) fl &= unchecked((byte)~0x80); // CWR only on the first
            l4[13] = fl;
            csumAt = 16;
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(new Span<byte>(l4 + 4, 2), (ushort)l4Len);
            csumAt = 6;
        }
        l4[csumAt] = 0; l4[csumAt + 1] = 0;
        ulong sum = PseudoHeader(dst, p, l4Len, p.Tcp ? 6 : 17);
        ushort c = (ushort)~Fold(Sum(l4, l4Len, sum));
        if (c == 0) c = 0xFFFF; // UDP: 0 means "no checksum"; for TCP 0xFFFF is the same value
        *(ushort*)(l4 + csumAt) = c;
        return segLen;
    }

    /// <summary>What skb_checksum_help does: sum from csum_start to the end (the field holds the pseudo-header sum) and store the complement there.</summary>
    public static void CompletePartial(byte* f, int len, int csumStart, int csumOffset)
    {
        ushort c = (ushort)~Fold(Sum(f + csumStart, len - csumStart, 0));
        if (c == 0) c = 0xFFFF;
        *(ushort*)(f + csumStart + csumOffset) = c;
    }

    /// <summary>The pseudo-header's one's-complement sum in memory byte order (addresses, protocol, transport length).</summary>
    private static ulong PseudoHeader(byte* f, in OffloadPlan p, int l4Len, int proto)
    {
        ulong sum = p.Ipv6 ? Sum(f + p.L3 + 8, 32, 0) : Sum(f + p.L3 + 12, 8, 0);
        sum += BinaryPrimitives.ReverseEndianness((ushort)proto);
        if (p.Ipv6) sum += BinaryPrimitives.ReverseEndianness((uint)l4Len);
        else sum += BinaryPrimitives.ReverseEndianness((ushort)l4Len);
        return sum;
    }

    /// <summary>One's-complement sum of <paramref name="n"/> bytes in memory order (RFC 1071), added to <paramref name="sum"/>; not folded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ulong Sum(byte* p, int n, ulong sum)
    {
        // 32-bit words into a 64-bit accumulator cannot overflow below 2^32 words.
        while (n >= 16)
        {
            sum += Unsafe.ReadUnaligned<uint>(p);
            sum += Unsafe.ReadUnaligned<uint>(p + 4);
            sum += Unsafe.ReadUnaligned<uint>(p + 8);
            sum += Unsafe.ReadUnaligned<uint>(p + 12);
            p += 16;
            n -= 16;
        }
        while (n >= 4)
        {
            sum += Unsafe.ReadUnaligned<uint>(p);
            p += 4;
            n -= 4;
        }
        if (n >= 2)
        {
            sum += Unsafe.ReadUnaligned<ushort>(p);
            p += 2;
            n -= 2;
        }
        if (n == 1) sum += *p; // the odd byte is the high-order byte of a big-endian word: the low byte in memory order
        return sum;
    }

    /// <summary>Folds a 64-bit one's-complement sum to 16 bits.</summary>
    public static ushort Fold(ulong sum)
    {
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>
    /// True when the TCP or UDP checksum of <paramref name="frame"/> (no virtio-net header) is
    /// correct, or the frame is not TCP/UDP over IP; used by tests and receivers that verify.
    /// </summary>
    public static bool TransportChecksumValid(ReadOnlySpan<byte> frame)
    {
        fixed (byte* f = frame)
        {
            var p = new OffloadPlan();
            if (!ParseHeaders(f, frame.Length, frame.Length, ref p)) return true;
            int l4Len = frame.Length - p.L4;
            if (!p.Tcp && !p.Ipv6 && f[p.L4 + 6] == 0 && f[p.L4 + 7] == 0) return true; // UDP over IPv4 without a checksum
            ulong sum = PseudoHeader(f, p, l4Len, p.Tcp ? 6 : 17);
            return Fold(Sum(f + p.L4, l4Len, sum)) == 0xFFFF;
        }
    }

    /// <summary>
    /// A frame whose transport checksum holds only the pseudo-header sum (what a sender with
    /// checksum offload leaves for the device): completes it and returns true. Frames with a
    /// correct checksum, or not TCP/UDP, are left alone (false). Used where frames arrive without
    /// offload metadata (AF_XDP).
    /// </summary>
    public static bool CompleteIfPartial(Span<byte> frame)
    {
        fixed (byte* f = frame)
        {
            var p = new OffloadPlan();
            if (!ParseHeaders(f, frame.Length, frame.Length, ref p)) return false;
            int l4Len = frame.Length - p.L4;
            int at = p.Tcp ? 16 : 6;
            ushort field = *(ushort*)(f + p.L4 + at);
            if (!p.Tcp && !p.Ipv6 && field == 0) return false;
            ulong pseudo = PseudoHeader(f, p, l4Len, p.Tcp ? 6 : 17);
            if (Fold(Sum(f + p.L4, l4Len, pseudo)) == 0xFFFF) return false; // already complete
            if (field != Fold(pseudo)) return false; // wrong, but not a partial sum: the receiver drops it
            CompletePartial(f, frame.Length, p.L4, at);
            return true;
        }
    }
}
