using System.Globalization;

namespace HyperNF.Functions;

/// <summary>
/// "router": an IPv4 router between its two ports. Looks up the destination in a
/// longest-prefix-match table (<see cref="LpmTable"/>), rewrites the Ethernet addresses for the
/// next hop (destination = next-hop MAC, source = the MAC of the output port), decrements the
/// TTL with an incremental checksum update (RFC 1624), and sends the frame out of the route's
/// port: <see cref="Verdict.Forward"/> if that is the other port, <see cref="Verdict.Reflect"/>
/// if it is the port the frame came in on.
/// </summary>
/// <remarks>
/// <para>Route text, one route per line; <c>#</c> starts a comment:</para>
/// <code>
/// # PREFIX via NEXT-HOP-MAC port N
/// 10.0.1.0/24 via 00:16:3e:00:00:02 port 1
/// 10.0.0.0/8  via 00:16:3e:00:00:01 port 0
/// 0.0.0.0/0   via 00:16:3e:00:00:09 port 1
/// </code>
/// <para>A prefix may appear once; host bits below the length must be zero. Arguments (see
/// <see cref="NetworkFunctions"/>): <c>mac0=MAC</c> and <c>mac1=MAC</c> (the router's own port
/// addresses, required), <c>routes=PATH</c> (a route file), <c>route=TEXT</c> (inline routes,
/// repeatable, several separated by ';'), <c>nonip=drop|pass</c>.</para>
/// <para>Dropped and counted: no route (<c>no_route</c>), TTL of 0 or 1 on arrival
/// (<c>ttl_expired</c>; no ICMP time-exceeded is sent), malformed IPv4 or a wrong header
/// checksum (<c>bad_header</c>, RFC 1812 §5.2.2). Frames that are not IPv4 (ARP, IPv6) are dropped by
/// default (<c>non_ipv4</c>) because a router does not bridge them; <c>nonip=pass</c> forwards them
/// unchanged to the other port instead. The destination MAC of arriving frames is not checked:
/// as a bump in the wire the router takes whatever the wire carries.</para>
/// </remarks>
public sealed class Router : INetworkFunction
{
    /// <summary>One route: traffic to <see cref="Prefix"/>/<see cref="Length"/> goes to <see cref="NextHop"/> via <see cref="Port"/>.</summary>
    public sealed record Route(uint Prefix, int Length, byte[] NextHop, int Port)
    {
        public override string ToString() =>
            $"{Addresses.FormatIpv4(Prefix)}/{Length} via {Addresses.FormatMac(NextHop)} port {Port}";
    }

    private readonly LpmTable _lpm = new();
    private readonly Route[] _routes;
    // Per route: next-hop MAC then output-port MAC, 12 bytes, i.e. the Ethernet address pair to
    // write, so the rewrite is one 12-byte copy.
    private readonly byte[] _rewrite;
    private readonly byte[] _port;
    private readonly bool _passNonIp;
    private long _routed, _noRoute, _ttlExpired, _badHeader, _nonIp;

    public Router(IReadOnlyList<Route> routes, ReadOnlySpan<byte> mac0, ReadOnlySpan<byte> mac1, bool passNonIp = false)
    {
        if (mac0.Length != 6 || mac1.Length != 6) throw new ArgumentException("router port MACs must be 6 bytes");
        _routes = [.. routes];
        _rewrite = new byte[_routes.Length * 12];
        _port = new byte[_routes.Length];
        _passNonIp = passNonIp;
        for (int r = 0; r < _routes.Length; r++)
        {
            var route = _routes[r];
            if (route.Port is not (0 or 1)) throw new ArgumentException($"route {route}: port must be 0 or 1");
            route.NextHop.AsSpan(0, 6).CopyTo(_rewrite.AsSpan(r * 12));
            (route.Port == 0 ? mac0 : mac1).CopyTo(_rewrite.AsSpan(r * 12 + 6));
            _port[r] = (byte)route.Port;
            _lpm.Add(route.Prefix, route.Length, r);
        }
    }

    public string Name => "router";
    public IReadOnlyList<Route> Routes => _routes;

    /// <summary>The route chosen for <paramref name="destination"/>, or null: for tests and diagnostics.</summary>
    public Route? Lookup(uint destination) => _lpm.TryLookup(destination, out int r) ? _routes[r] : null;

    public void Process(ref FrameBatch batch)
    {
        int inPort = batch.InputPort;
        for (int i = 0; i < batch.Count; i++)
        {
            var frame = batch.Frame(i);
            if (!Ethernet.TryGetNetworkHeader(frame, out ushort etherType, out int l3))
            {
                _badHeader++;
                batch.SetVerdict(i, Verdict.Drop);
                continue;
            }
            if (etherType != Ethernet.TypeIpv4)
            {
                _nonIp++;
                batch.SetVerdict(i, _passNonIp ? Verdict.Forward : Verdict.Drop);
                continue;
            }
            var ip = frame[l3..];
            // Only the IP header matters for routing, so this skips PacketInfo's L4 parsing.
            if (ip.Length < Ipv4.MinHeaderLength || Ipv4.Version(ip) != 4 || Ipv4.HeaderLength(ip) < Ipv4.MinHeaderLength
                || Ipv4.HeaderLength(ip) > ip.Length || Ipv4.TotalLength(ip) > ip.Length || Ipv4.TotalLength(ip) < Ipv4.HeaderLength(ip)
                || !Ipv4.IsChecksumValid(ip))
            {
                _badHeader++;
                batch.SetVerdict(i, Verdict.Drop);
                continue;
            }
            if (!_lpm.TryLookup(Ipv4.Destination(ip), out int r))
            {
                _noRoute++;
                batch.SetVerdict(i, Verdict.Drop);
                continue;
            }
            if (Ipv4.Ttl(ip) <= 1)
            {
                _ttlExpired++;
                batch.SetVerdict(i, Verdict.Drop);
                continue;
            }
            Ipv4.DecrementTtl(ip);
            _rewrite.AsSpan(r * 12, 12).CopyTo(frame);
            _routed++;
            batch.SetVerdict(i, _port[r] == inPort ? Verdict.Reflect : Verdict.Forward);
        }
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters =>
    [
        new("routed", _routed), new("no_route", _noRoute), new("ttl_expired", _ttlExpired),
        new("bad_header", _badHeader), new(_passNonIp ? "non_ipv4_passed" : "non_ipv4", _nonIp),
    ];

    /// <summary>
    /// Parses route text (syntax in the class remarks), appending to <paramref name="routes"/>.
    /// <paramref name="source"/> names the text in errors.
    /// </summary>
    public static void ParseRoutes(string text, string source, List<Route> routes, int firstLine = 1)
    {
        foreach (var (lineNo, t) in NfArgs.TokenizedLines(text, firstLine))
        {
            string where = $"{source} line {lineNo}";
            const string Expected = "expected 'PREFIX via MAC port N', e.g. '10.0.1.0/24 via 00:16:3e:00:00:02 port 1'";
            if (t.Length != 5)
                throw new ArgumentException($"{where}: {t.Length} tokens; {Expected}");
            if (!Addresses.TryParsePrefix(t[0], out uint prefix, out int len, out string? error))
                throw new ArgumentException($"{where}: bad token '{t[0]}': {error}");
            if (!t[1].Equals("via", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"{where}: bad token '{t[1]}': {Expected}");
            var mac = new byte[6];
            if (!Addresses.TryParseMac(t[2], mac))
                throw new ArgumentException($"{where}: bad token '{t[2]}': next hop must be a MAC like 00:16:3e:00:00:02");
            if (!t[3].Equals("port", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"{where}: bad token '{t[3]}': {Expected}");
            if (!int.TryParse(t[4], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 1)
                throw new ArgumentException($"{where}: bad token '{t[4]}': port must be 0 or 1");
            foreach (var existing in routes)
                if (existing.Prefix == prefix && existing.Length == len)
                    throw new ArgumentException($"{where}: bad token '{t[0]}': a route for this prefix already exists ({existing}); keep one");
            routes.Add(new Route(prefix, len, mac, port));
        }
    }

    /// <summary>Builds a router from its <c>key=value</c> arguments (see the class remarks).</summary>
    public static Router FromArgs(string? args)
    {
        var a = NfArgs.Parse("router", args, ["mac0", "mac1", "routes", "route", "nonip"], repeatable: ["routes", "route"]);
        var macs = new byte[2][];
        for (int p = 0; p < 2; p++)
        {
            string key = $"mac{p}";
            var v = a.Get(key) ?? throw new ArgumentException($"nf 'router': {key}= is required: the MAC address of router port {p}, e.g. {key}=02:00:00:00:00:0{p + 1}");
            macs[p] = new byte[6];
            if (!Addresses.TryParseMac(v, macs[p])) throw a.Error(key, v, "expected a MAC address like 02:00:00:00:00:01");
        }
        var routes = new List<Route>();
        int inlineLine = 1;
        foreach (var (key, value) in a.Items)
        {
            if (key == "routes") ParseRoutes(NetworkFunctions.ReadArgFile(a, key, value), value, routes);
            else if (key == "route")
            {
                string text = value.Replace(';', '\n');
                ParseRoutes(text, "router route=", routes, inlineLine);
                inlineLine += text.Count(c => c == '\n') + 1;
            }
        }
        bool passNonIp = a.GetChoice("nonip", "drop", "drop", "pass") == "pass";
        return new Router(routes, macs[0], macs[1], passNonIp);
    }
}
