using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace HyperNF.Switch;

/// <summary>
/// The learning table of a bridge: VALE's direct-mapped hash of MAC addresses (Jenkins mix,
/// seed 0x9e3779b9), 1024 buckets by default. Senders on any core learn and look up without
/// a lock, as in VALE: each bucket is one 64-bit word holding the MAC (48 bits) and the port
/// index + 1 (8 bits), so a reader sees either the old or the new entry, never a mix. A
/// collision overwrites the older MAC.
///
/// Aging (VALE has none): each bucket carries a coarse time stamp (units of 1.024 s),
/// refreshed at most once per unit while a port keeps sending with the same source MAC.
/// An entry older than <see cref="AgingSeconds"/> is a miss (the frame is flooded and the
/// entry relearned). 0 disables aging. Default 300 s, the Linux bridge's ageing_time.
/// Entries of a port are removed when it detaches.
/// </summary>
public sealed unsafe class ForwardingTable
{
    public const int DefaultSize = 1024;
    public const int DefaultAgingSeconds = 300;
    public const byte Broadcast = 254; // NM_BDG_BROADCAST
    private const ulong MacMask = 0xFFFF_FFFF_FFFFUL;

    private readonly ulong[] _entries;   // pinned: mac | (port+1) << 48
    private readonly uint[] _stamps;
    private readonly ulong* _e;
    private readonly uint* _s;
    private readonly uint _mask;
    private uint _agingUnits;
    private int _agingSeconds;

    public int Capacity { get; }

    public ForwardingTable(int size = DefaultSize, int agingSeconds = DefaultAgingSeconds)
    {
        if (size < 16 || size > (1 << 20) || (size & (size - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, "the learning table size must be a power of two in 16..1048576");
        Capacity = size;
        _mask = (uint)size - 1;
        _entries = GC.AllocateArray<ulong>(size, pinned: true);
        _stamps = GC.AllocateArray<uint>(size, pinned: true);
        _e = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_entries));
        _s = (uint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_stamps));
        AgingSeconds = agingSeconds;
    }

    public int AgingSeconds
    {
        get => _agingSeconds;
        set
        {
            if (value < 0) throw new ArgumentOutOfRangeException(nameof(value), value, "aging must be >= 0 seconds (0 = never)");
            _agingUnits = value == 0 ? uint.MaxValue : (uint)Math.Max(1, value * 1000L / 1024);
            _agingSeconds = value;
        }
    }

    /// <summary>The coarse clock the table uses (1.024 s units); read once per flush.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Now() => (uint)(Environment.TickCount64 >> 10);

    /// <summary>VALE's bucket function: Bob Jenkins' mix over the six address bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Hash(ulong mac)
    {
        uint a = 0x9e3779b9, b = 0x9e3779b9, c = 0;
        // byte i of the address is bits 8i..8i+7 of mac (little-endian load of the frame)
        b += (uint)((mac >> 40) & 0xff) << 8;
        b += (uint)((mac >> 32) & 0xff);
        a += (uint)((mac >> 24) & 0xff) << 24;
        a += (uint)((mac >> 16) & 0xff) << 16;
        a += (uint)((mac >> 8) & 0xff) << 8;
        a += (uint)(mac & 0xff);
        a -= b; a -= c; a ^= c >> 13;
        b -= c; b -= a; b ^= a << 8;
        c -= a; c -= b; c ^= b >> 13;
        a -= b; a -= c; a ^= c >> 12;
        b -= c; b -= a; b ^= a << 16;
        c -= a; c -= b; c ^= b >> 5;
        a -= b; a -= c; a ^= c >> 3;
        b -= c; b -= a; b ^= a << 10;
        c -= a; c -= b; c ^= b >> 15;
        return c;
    }

    /// <summary>
    /// Records that <paramref name="mac"/> (unicast) lives behind port <paramref name="port"/>.
    /// True when what a lookup answers changed: a new or moved address, or one that had aged out.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Learn(ulong mac, int port, uint now)
    {
        uint h = Hash(mac) & _mask;
        ulong word = (mac & MacMask) | ((ulong)(uint)(port + 1) << 48);
        // Plain stores: a racing reader sees the old or the new 64-bit word (aligned stores are
        // atomic on x64); a stale stamp only makes an entry age a little early or late.
        bool changed = false;
        if (_e[h] != word)
        {
            _e[h] = word;
            changed = true;
        }
        else if (now - _s[h] > _agingUnits) changed = true;
        _s[h] = now;
        return changed;
    }

    /// <summary>Appends every entry a lookup would answer now (not aged out): the address and its port.</summary>
    internal void CollectLive(List<(ulong Mac, int Port)> into)
    {
        uint now = Now();
        for (int i = 0; i < Capacity; i++)
        {
            ulong w = _e[i];
            if ((w >> 48) == 0 || now - _s[i] > _agingUnits) continue;
            into.Add((w & MacMask, (int)(w >> 48) - 1));
        }
    }

    /// <summary>The port <paramref name="mac"/> was learned on, or <see cref="Broadcast"/> on a miss.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Lookup(ulong mac, uint now)
    {
        uint h = Hash(mac) & _mask;
        ulong word = _e[h];
        if ((word & MacMask) != (mac & MacMask) || (word >> 48) == 0) return Broadcast;
        if (now - _s[h] > _agingUnits) return Broadcast;
        return (int)(word >> 48) - 1;
    }

    /// <summary>Removes every entry of <paramref name="port"/> (on detach, once no sender can still write it).</summary>
    internal void Purge(int port)
    {
        ulong tag = (ulong)(uint)(port + 1);
        for (int i = 0; i < Capacity; i++)
            if ((_e[i] >> 48) == tag) _e[i] = 0;
    }

    public void Clear()
    {
        for (int i = 0; i < Capacity; i++) _e[i] = 0;
    }

    public int Occupancy
    {
        get
        {
            int n = 0;
            for (int i = 0; i < Capacity; i++) if ((_e[i] >> 48) != 0) n++;
            return n;
        }
    }

    /// <summary>A copy of the live entries (MAC, port index, age in seconds), for listings.</summary>
    public IReadOnlyList<(ulong Mac, int Port, int AgeSeconds)> Entries()
    {
        uint now = Now();
        var list = new List<(ulong, int, int)>();
        for (int i = 0; i < Capacity; i++)
        {
            ulong w = _e[i];
            if ((w >> 48) == 0) continue;
            list.Add((w & MacMask, (int)(w >> 48) - 1, (int)((now - _s[i]) * 1024L / 1000)));
        }
        return list;
    }

    /// <summary>Formats a MAC held as in the table (first octet in the low byte).</summary>
    public static string FormatMac(ulong mac)
    {
        Span<char> s = stackalloc char[17];
        for (int i = 0; i < 6; i++)
        {
            byte b = (byte)(mac >> (8 * i));
            s[3 * i] = "0123456789abcdef"[b >> 4];
            s[3 * i + 1] = "0123456789abcdef"[b & 15];
            if (i < 5) s[3 * i + 2] = ':';
        }
        return new string(s);
    }

    /// <summary>Parses "aa:bb:cc:dd:ee:ff" into the table's representation.</summary>
    public static ulong ParseMac(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 6) throw new FormatException($"'{text}' is not a MAC address (want six hex octets like 00:16:3e:af:12:00)");
        ulong mac = 0;
        for (int i = 0; i < 6; i++)
        {
            if (!byte.TryParse(parts[i], System.Globalization.NumberStyles.HexNumber, null, out byte b) || parts[i].Length is 0 or > 2)
                throw new FormatException($"'{text}' is not a MAC address (octet {i + 1} '{parts[i]}' is not hex)");
            mac |= (ulong)b << (8 * i);
        }
        return mac;
    }
}
