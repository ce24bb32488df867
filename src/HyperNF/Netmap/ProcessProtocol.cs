using System.Buffers.Binary;
using System.Text;

namespace HyperNF.Netmap;

/// <summary>
/// The private protocol between libhypernf-netmap.so and the daemon (src/preload/hnf_proto.h,
/// docs/process-domains.md): message types, body sizes and field offsets, and netmap's request
/// constants the daemon interprets. Everything here is read from an untrusted peer: parse
/// with the helpers below, never by casting.
/// </summary>
public static class ProcessProtocol
{
    /// <summary>2: RX rings of switch ports are self-served, split/merge kicks come from the library (REGISTER reply features).</summary>
    public const int Version = 2;
    public const uint CtlMagic = 0x4c43464e;

    // message types
    public const uint MsgRegister = 1, MsgPortInfo = 2, MsgVale = 3, MsgReply = 0x80;
    public const int HeaderBytes = 8;
    public const int RegisterReqBytes = 96, RegisterRepBytes = 64, InfoReqBytes = 72, InfoRepBytes = 88,
        ValeReqBytes = 80, ValeRepBytes = 80;

    // control page (struct hnf_ctl): one page
    public const int CtlBytes = 4096;
    public const int CtlMagicOfs = 0, CtlVersionOfs = 4, CtlReqSeq = 64, CtlOp = 68, CtlCpu = 72, CtlHostIdle = 76,
        CtlDoneSeq = 128, CtlResult = 132, CtlCallerWaiting = 136, CtlRxWaiting = 192;
    public const uint OpTxSync = 1, OpRxSync = 2, OpBoth = 3;

    /// <summary>REGISTER reply features (offset 60): the library runs rxsync itself through the ring's sem words.</summary>
    public const uint FeatRxSelf = 1;
    /// <summary>
    /// REGISTER reply features: split/merge. TXSYNC is a kick the library makes itself (an eventfd,
    /// the reply's third descriptor, written only while its TX ring's needs-kick word is set).
    /// </summary>
    public const uint FeatTxKick = 2;

    // netmap's constants (netmap.h, API 14)
    public const int NetmapApi = 14;
    public const uint RegDefault = 0, RegAllNic = 1, RegSw = 2, RegNicSw = 3, RegOneNic = 4, RegPipeMaster = 5,
        RegPipeSlave = 6, RegNull = 7, RegOneSw = 8;
    public const ulong FlagMonitorTx = 0x100, FlagMonitorRx = 0x200, FlagZcopyMon = 0x400, FlagExclusive = 0x800,
        FlagRxRingsOnly = 0x2000, FlagTxRingsOnly = 0x4000, FlagAcceptVnetHdr = 0x8000, FlagDoRxPoll = 0x10000, FlagNoTxPoll = 0x20000;
    public const ushort ReqValeAttach = 3, ReqValeDetach = 4, ReqValeList = 5, ReqPortHdrSet = 6, ReqPortHdrGet = 7,
        ReqValeNewIf = 8, ReqValeDelIf = 9;

    // errno values netmap answers with
    public const int ENOENT = 2, EIO = 5, ENXIO = 6, ENOMEM = 12, EBUSY = 16, EEXIST = 17, ENODEV = 19, EINVAL = 22,
        ENOSPC = 28, ENAMETOOLONG = 36, EOPNOTSUPP = 95, EACCES = 13, EPERM = 1;

    /// <summary>A NUL-terminated name field, cut at the first NUL, at most <paramref name="max"/> bytes; non-ASCII is refused as null.</summary>
    public static string? ReadName(ReadOnlySpan<byte> field)
    {
        int n = field.IndexOf((byte)0);
        if (n < 0) n = field.Length;
        var bytes = field[..n];
        foreach (byte b in bytes) if (b < 0x21 || b > 0x7e) return null;
        return Encoding.ASCII.GetString(bytes);
    }

    public static void WriteName(Span<byte> field, string name)
    {
        field.Clear();
        int n = Encoding.ASCII.GetBytes(name.AsSpan(0, Math.Min(name.Length, field.Length - 1)), field);
        field[n..].Clear();
    }

    public static byte[] Reply(uint type, int bodyBytes, out Span<byte> body)
    {
        var msg = new byte[HeaderBytes + bodyBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(msg, type | MsgReply);
        BinaryPrimitives.WriteUInt32LittleEndian(msg.AsSpan(4), (uint)bodyBytes);
        body = msg.AsSpan(HeaderBytes);
        return msg;
    }
}
