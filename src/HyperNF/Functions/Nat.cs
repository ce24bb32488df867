using System.Globalization;

namespace HyperNF.Functions;

/// <summary>
/// "nat": source NAT (NAPT) between an inside network on port 0 and the outside on port 1.
/// Each new inside flow (TCP or UDP 5-tuple, or ICMP echo by identifier) gets its own public
/// port from the configured range; packets going out have their source address and port
/// rewritten to the public ones, packets coming back to that public port from the same remote
/// address and port are rewritten back. IP and L4 checksums are patched incrementally
/// (RFC 1624), never recomputed over the payload.
/// </summary>
/// <remarks>
/// <para>Arguments (see <see cref="NetworkFunctions"/>): <c>public=A.B.C.D</c> (required),
/// <c>ports=LO-HI</c> (default 1024-65535; TCP, UDP and ICMP each have the whole range),
/// <c>timeout=DURATION</c> (idle time after which a mapping may be reused; default 60s; e.g.
/// <c>30</c>, <c>30s</c>, <c>500ms</c>, <c>5m</c>), <c>nonip=pass|drop</c> (default pass).</para>
/// <para>The table is preallocated for every public port of every protocol, and a mapping's
/// slot is its public port, so the reverse lookup is one array index and the forward lookup a
/// chained hash with preallocated links. Idle mappings sit in a per-protocol LRU list: the
/// oldest is reclaimed when a new flow finds no free port, and each batch also retires a few
/// expired ones so their ports return to the free list. Nothing is allocated per packet.</para>
/// <para>Dropped and counted: a new flow when every port is held by a live mapping
/// (<c>exhausted</c>); inbound packets with no live mapping, from a different remote endpoint, or
/// not addressed to the public IP (<c>unknown_inbound</c>); IP fragments (<c>fragments</c>: a
/// non-first fragment carries no ports to map, and translating only some fragments of a datagram
/// would be worse than dropping it); protocols other than TCP, UDP and ICMP echo, including ICMP
/// errors whose embedded headers this NAT does not rewrite (<c>unsupported</c>); malformed IPv4
/// (<c>malformed</c>). There is no TCP state tracking: a closed connection's mapping lives until
/// its timeout.</para>
/// </remarks>
public sealed class Nat : INetworkFunction
{
    private const int PTcp = 0, PUdp = 1, PIcmpEcho = 2, Protocols = 3;
    private const int ExpirePerBatch = 32;

    private readonly uint _publicIp;
    private readonly ushort _portLow;
    private readonly int _range;
    private readonly long _timeoutTicks;
    private readonly TimeProvider _time;
    private readonly bool _passNonIp;

    // Slot s = protocol * _range + (public port - _portLow).
    private readonly uint[] _inIp, _remoteIp;
    private readonly ushort[] _inPort, _remotePort;
    private readonly long[] _lastUsed;
    private readonly bool[] _active;
    private readonly int[] _hashNext, _buckets;
    private readonly int _bucketMask;
    // LRU list of live slots per protocol; free slots are chained through _lruNext as a stack.
    private readonly int[] _lruPrev, _lruNext;
    private readonly int[] _lruHead = new int[Protocols], _lruTail = new int[Protocols], _freeHead = new int[Protocols];

    private long _out, _in, _new, _expired, _exhausted, _unknownInbound, _unsupported, _fragments, _malformed, _nonIp;
    private long _activeCount;

    public Nat(uint publicIp, ushort portLow, ushort portHigh, TimeSpan timeout, bool passNonIp = true, TimeProvider? time = null)
    {
        if (portHigh < portLow) throw new ArgumentException($"nat port range {portLow}-{portHigh} is backwards; write {portHigh}-{portLow}");
        if (timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "nat timeout must be positive");
        _publicIp = publicIp;
        _portLow = portLow;
        _range = portHigh - portLow + 1;
        _time = time ?? TimeProvider.System;
        _timeoutTicks = (long)Math.Ceiling(timeout.TotalSeconds * _time.TimestampFrequency);
        _passNonIp = passNonIp;
        Timeout = timeout;

        int slots = Protocols * _range;
        _inIp = new uint[slots];
        _remoteIp = new uint[slots];
        _inPort = new ushort[slots];
        _remotePort = new ushort[slots];
        _lastUsed = new long[slots];
        _active = new bool[slots];
        _hashNext = new int[slots];
        _lruPrev = new int[slots];
        _lruNext = new int[slots];
        _buckets = new int[(int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)slots)];
        _bucketMask = _buckets.Length - 1;
        _buckets.AsSpan().Fill(-1);
        for (int p = 0; p < Protocols; p++)
        {
            _lruHead[p] = _lruTail[p] = -1;
            // Stack built from the top so the lowest port is handed out first: predictable for tests and captures.
            _freeHead[p] = -1;
            for (int s = (p + 1) * _range - 1; s >= p * _range; s--) PushFree(s);
        }
    }

    public string Name => "nat";
    public uint PublicAddress => _publicIp;
    public TimeSpan Timeout { get; }
    /// <summary>Live mappings (all protocols), including expired ones not yet reclaimed.</summary>
    public long ActiveMappings => _activeCount;

    public void Process(ref FrameBatch batch)
    {
        long now = _time.GetTimestamp();
        ExpireSome(now);
        bool outbound = batch.InputPort == 0;
        for (int i = 0; i < batch.Count; i++)
        {
            var frame = batch.Frame(i);
            var status = PacketInfo.Parse(frame, out var p);
            bool ok;
            if (status == ParseStatus.NotIpv4) { _nonIp++; ok = _passNonIp; }
            else if (status == ParseStatus.Malformed) { _malformed++; ok = false; }
            else if (p.IsFragment) { _fragments++; ok = false; }
            else ok = outbound ? TranslateOut(frame, in p, now) : TranslateIn(frame, in p, now);
            batch.SetVerdict(i, ok ? Verdict.Forward : Verdict.Drop);
        }
    }

    private static int ProtocolIndex(in PacketInfo p, bool outbound) => p.Protocol switch
    {
        Ipv4.ProtocolTcp => PTcp,
        Ipv4.ProtocolUdp => PUdp,
        // Requests go out, replies come back; the other direction would be an inside server, which SNAT does not expose.
        Ipv4.ProtocolIcmp when p.HasIcmp && p.IcmpType == (outbound ? Icmp.TypeEchoRequest : Icmp.TypeEchoReply) => PIcmpEcho,
        _ => -1,
    };

    private bool TranslateOut(Span<byte> frame, in PacketInfo p, long now)
    {
        int proto = ProtocolIndex(p, outbound: true);
        if (proto < 0) { _unsupported++; return false; }
        ushort inPort = proto == PIcmpEcho ? p.IcmpIdentifier : p.SourcePort;
        ushort remotePort = proto == PIcmpEcho ? (ushort)0 : p.DestinationPort;

        int s = Find(proto, p.Source, inPort, p.Destination, remotePort);
        if (s >= 0 && now - _lastUsed[s] >= _timeoutTicks)
        {
            // Expired but not yet reclaimed: treat as gone so the flow gets a fresh mapping, as it would after reclaim.
            Release(s);
            s = -1;
        }
        if (s < 0)
        {
            s = Allocate(proto, now);
            if (s < 0) { _exhausted++; return false; }
            _inIp[s] = p.Source;
            _inPort[s] = inPort;
            _remoteIp[s] = p.Destination;
            _remotePort[s] = remotePort;
            _active[s] = true;
            int b = Bucket(proto, p.Source, inPort, p.Destination, remotePort);
            _hashNext[s] = _buckets[b];
            _buckets[b] = s;
            LruAppend(proto, s);
            _activeCount++;
            _new++;
        }
        Touch(proto, s, now);

        ushort publicPort = (ushort)(_portLow + (s - proto * _range));
        var ip = frame[p.L3Offset..];
        var l4 = frame.Slice(p.L4Offset, p.L4Length);
        Ipv4.RewriteSource(ip, _publicIp);
        switch (proto)
        {
            case PTcp:
                Tcp.SetChecksum(l4, Checksum.Update16(Checksum.Update32(Tcp.GetChecksum(l4), p.Source, _publicIp), inPort, publicPort));
                Tcp.SetSourcePort(l4, publicPort);
                break;
            case PUdp:
                Udp.SetChecksum(l4, Checksum.UpdateUdp16(Checksum.UpdateUdp32(Udp.GetChecksum(l4), p.Source, _publicIp), inPort, publicPort));
                Udp.SetSourcePort(l4, publicPort);
                break;
            default:
                // The ICMP checksum has no pseudo-header: only the identifier change counts.
                Icmp.SetChecksum(l4, Checksum.Update16(Icmp.GetChecksum(l4), inPort, publicPort));
                Icmp.SetIdentifier(l4, publicPort);
                break;
        }
        _out++;
        return true;
    }

    private bool TranslateIn(Span<byte> frame, in PacketInfo p, long now)
    {
        int proto = ProtocolIndex(p, outbound: false);
        if (proto < 0) { _unsupported++; return false; }
        ushort publicPort = proto == PIcmpEcho ? p.IcmpIdentifier : p.DestinationPort;
        ushort remotePort = proto == PIcmpEcho ? (ushort)0 : p.SourcePort;
        int offset = publicPort - _portLow;
        if (p.Destination != _publicIp || (uint)offset >= (uint)_range) { _unknownInbound++; return false; }
        int s = proto * _range + offset;
        if (!_active[s] || _remoteIp[s] != p.Source || _remotePort[s] != remotePort) { _unknownInbound++; return false; }
        if (now - _lastUsed[s] >= _timeoutTicks)
        {
            Release(s);
            _unknownInbound++;
            return false;
        }
        Touch(proto, s, now);

        uint inIp = _inIp[s];
        ushort inPort = _inPort[s];
        var ip = frame[p.L3Offset..];
        var l4 = frame.Slice(p.L4Offset, p.L4Length);
        Ipv4.RewriteDestination(ip, inIp);
        switch (proto)
        {
            case PTcp:
                Tcp.SetChecksum(l4, Checksum.Update16(Checksum.Update32(Tcp.GetChecksum(l4), _publicIp, inIp), publicPort, inPort));
                Tcp.SetDestinationPort(l4, inPort);
                break;
            case PUdp:
                Udp.SetChecksum(l4, Checksum.UpdateUdp16(Checksum.UpdateUdp32(Udp.GetChecksum(l4), _publicIp, inIp), publicPort, inPort));
                Udp.SetDestinationPort(l4, inPort);
                break;
            default:
                Icmp.SetChecksum(l4, Checksum.Update16(Icmp.GetChecksum(l4), publicPort, inPort));
                Icmp.SetIdentifier(l4, inPort);
                break;
        }
        _in++;
        return true;
    }

    private int Bucket(int proto, uint inIp, ushort inPort, uint remoteIp, ushort remotePort)
    {
        ulong h = (((ulong)inIp << 32) | remoteIp) * 0x9E3779B97F4A7C15UL;
        h ^= (((ulong)inPort << 32) | ((ulong)remotePort << 8) | (uint)proto) * 0xC2B2AE3D27D4EB4FUL;
        h ^= h >> 31;
        return (int)(h & (uint)_bucketMask);
    }

    private int Find(int proto, uint inIp, ushort inPort, uint remoteIp, ushort remotePort)
    {
        int lo = proto * _range, hi = lo + _range;
        for (int s = _buckets[Bucket(proto, inIp, inPort, remoteIp, remotePort)]; s >= 0; s = _hashNext[s])
            if (s >= lo && s < hi && _inIp[s] == inIp && _inPort[s] == inPort && _remoteIp[s] == remoteIp && _remotePort[s] == remotePort)
                return s;
        return -1;
    }

    private int Allocate(int proto, long now)
    {
        int s = _freeHead[proto];
        if (s >= 0)
        {
            _freeHead[proto] = _lruNext[s];
            return s;
        }
        s = _lruHead[proto];
        if (s < 0 || now - _lastUsed[s] < _timeoutTicks) return -1;
        Release(s);
        s = _freeHead[proto];
        _freeHead[proto] = _lruNext[s];
        return s;
    }

    /// <summary>Retires up to a few expired mappings per protocol, oldest first, so idle ports go back to the free list.</summary>
    private void ExpireSome(long now)
    {
        for (int proto = 0; proto < Protocols; proto++)
        {
            for (int n = 0; n < ExpirePerBatch; n++)
            {
                int s = _lruHead[proto];
                if (s < 0 || now - _lastUsed[s] < _timeoutTicks) break;
                Release(s);
            }
        }
    }

    /// <summary>Removes live slot <paramref name="s"/> from the hash chain and the LRU list, and frees its port.</summary>
    private void Release(int s)
    {
        int proto = s / _range;
        ref int link = ref _buckets[Bucket(proto, _inIp[s], _inPort[s], _remoteIp[s], _remotePort[s])];
        while (link != s) link = ref _hashNext[link];
        link = _hashNext[s];

        int prev = _lruPrev[s], next = _lruNext[s];
        if (prev >= 0) _lruNext[prev] = next; else _lruHead[proto] = next;
        if (next >= 0) _lruPrev[next] = prev; else _lruTail[proto] = prev;

        _active[s] = false;
        _activeCount--;
        _expired++;
        PushFree(s);
    }

    private void PushFree(int s)
    {
        int proto = s / _range;
        _lruNext[s] = _freeHead[proto];
        _freeHead[proto] = s;
    }

    private void LruAppend(int proto, int s)
    {
        _lruPrev[s] = _lruTail[proto];
        _lruNext[s] = -1;
        if (_lruTail[proto] >= 0) _lruNext[_lruTail[proto]] = s; else _lruHead[proto] = s;
        _lruTail[proto] = s;
    }

    private void Touch(int proto, int s, long now)
    {
        _lastUsed[s] = now;
        if (_lruTail[proto] == s) return;
        int prev = _lruPrev[s], next = _lruNext[s];
        if (prev >= 0) _lruNext[prev] = next; else _lruHead[proto] = next;
        _lruPrev[next] = prev;
        LruAppend(proto, s);
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters =>
    [
        new("translated_out", _out), new("translated_in", _in), new("new_mappings", _new), new("active_mappings", _activeCount),
        new("expired", _expired), new("exhausted", _exhausted), new("unknown_inbound", _unknownInbound),
        new("unsupported", _unsupported), new("fragments", _fragments), new("malformed", _malformed),
        new(_passNonIp ? "non_ipv4_passed" : "non_ipv4_dropped", _nonIp),
    ];

    /// <summary>Builds a NAT from its <c>key=value</c> arguments (see the class remarks).</summary>
    public static Nat FromArgs(string? args, TimeProvider? time = null)
    {
        var a = NfArgs.Parse("nat", args, ["public", "ports", "timeout", "nonip"]);
        var pub = a.Get("public") ?? throw new ArgumentException("nat: public= is required: the public IPv4 address inside flows are mapped to, e.g. public=192.0.2.1");
        if (!Addresses.TryParseIpv4(pub, out uint publicIp)) throw a.Error("public", pub, "expected an IPv4 address like 192.0.2.1");
        ushort lo = 1024, hi = 65535;
        var ports = a.Get("ports");
        if (ports is not null)
        {
            int dash = ports.IndexOf('-');
            if (dash < 0
                || !ushort.TryParse(ports.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out lo)
                || !ushort.TryParse(ports.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out hi)
                || lo == 0)
                throw a.Error("ports", ports, "expected a range LO-HI with 1 <= LO <= HI <= 65535, e.g. 20000-29999");
            if (hi < lo) throw a.Error("ports", ports, $"the range is backwards; write {hi}-{lo}");
        }
        var timeout = a.GetDuration("timeout", TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(1), TimeSpan.FromDays(1));
        bool passNonIp = a.GetChoice("nonip", "pass", "pass", "drop") == "pass";
        return new Nat(publicIp, lo, hi, timeout, passNonIp, time);
    }
}
