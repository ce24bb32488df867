using System.Globalization;

namespace HyperNF.Functions;

/// <summary>
/// One stateless 5-tuple rule of <see cref="Firewall"/>; the text syntax is documented there.
/// Kept as a small value type so the rule array is scanned without pointer chasing.
/// </summary>
public readonly struct FirewallRule
{
    /// <summary>0 = any protocol, else the IPv4 protocol number to match.</summary>
    public byte Protocol { get; init; }
    public uint SourceNet { get; init; }
    public uint SourceMask { get; init; }
    public uint DestinationNet { get; init; }
    public uint DestinationMask { get; init; }
    public ushort SourcePortLow { get; init; }
    public ushort SourcePortHigh { get; init; }
    public ushort DestinationPortLow { get; init; }
    public ushort DestinationPortHigh { get; init; }
    public bool AnySourcePort { get; init; }
    public bool AnyDestinationPort { get; init; }
    public bool Allow { get; init; }
    /// <summary>Canonical text of the rule, for counters and listings.</summary>
    public string Text { get; init; }

    public bool Matches(in PacketInfo p)
    {
        if (Protocol != 0 && Protocol != p.Protocol) return false;
        if ((p.Source & SourceMask) != SourceNet || (p.Destination & DestinationMask) != DestinationNet) return false;
        // A port condition needs ports: ICMP, other protocols and non-first fragments never meet one.
        if (!AnySourcePort && (!p.HasPorts || p.SourcePort < SourcePortLow || p.SourcePort > SourcePortHigh)) return false;
        if (!AnyDestinationPort && (!p.HasPorts || p.DestinationPort < DestinationPortLow || p.DestinationPort > DestinationPortHigh)) return false;
        return true;
    }

    /// <summary>
    /// Parses the tokens of one rule line (comment and blank lines are the caller's business).
    /// <paramref name="where"/> ("rules.txt line 4") starts every error message.
    /// </summary>
    public static FirewallRule Parse(string[] tokens, string where)
    {
        int arrow = Array.IndexOf(tokens, "->");
        if (arrow < 0)
            throw new ArgumentException($"{where}: missing '->' between source and destination; expected: allow|deny PROTO SRC [SPORT] -> DST [DPORT]");
        // action proto src [sport] -> dst [dport]
        if (arrow is < 3 or > 4)
            throw new ArgumentException($"{where}: expected 'allow|deny PROTO SRC [SPORT]' before '->', got '{string.Join(' ', tokens[..arrow])}'");
        int right = tokens.Length - arrow - 1;
        if (right is < 1 or > 2)
            throw new ArgumentException(right == 0
                ? $"{where}: missing destination after '->'; expected DST [DPORT]"
                : $"{where}: unexpected token '{tokens[arrow + 3]}' after the destination port");

        bool allow = tokens[0].ToLowerInvariant() switch
        {
            "allow" => true,
            "deny" => false,
            _ => throw new ArgumentException($"{where}: bad token '{tokens[0]}': action must be allow or deny"),
        };
        byte proto = tokens[1].ToLowerInvariant() switch
        {
            "any" => 0,
            "tcp" => Ipv4.ProtocolTcp,
            "udp" => Ipv4.ProtocolUdp,
            "icmp" => Ipv4.ProtocolIcmp,
            _ => throw new ArgumentException($"{where}: bad token '{tokens[1]}': protocol must be any, tcp, udp or icmp"),
        };
        var (sNet, sMask) = ParseAddress(tokens[2], where);
        var (sAny, sLo, sHi) = arrow == 4 ? ParsePorts(tokens[3], proto, where) : (true, (ushort)0, (ushort)0);
        var (dNet, dMask) = ParseAddress(tokens[arrow + 1], where);
        var (dAny, dLo, dHi) = right == 2 ? ParsePorts(tokens[arrow + 2], proto, where) : (true, (ushort)0, (ushort)0);

        return new FirewallRule
        {
            Allow = allow, Protocol = proto,
            SourceNet = sNet, SourceMask = sMask, DestinationNet = dNet, DestinationMask = dMask,
            AnySourcePort = sAny, SourcePortLow = sLo, SourcePortHigh = sHi,
            AnyDestinationPort = dAny, DestinationPortLow = dLo, DestinationPortHigh = dHi,
            Text = string.Join(' ', tokens).ToLowerInvariant(),
        };
    }

    private static (uint Net, uint Mask) ParseAddress(string token, string where)
    {
        if (token.Equals("any", StringComparison.OrdinalIgnoreCase)) return (0, 0);
        if (!Addresses.TryParsePrefix(token, out uint net, out int len, out string? error))
            throw new ArgumentException($"{where}: bad token '{token}': {error}; or use any");
        return (net, Addresses.Mask(len));
    }

    private static (bool Any, ushort Low, ushort High) ParsePorts(string token, byte proto, string where)
    {
        if (token.Equals("any", StringComparison.OrdinalIgnoreCase)) return (true, 0, 0);
        if (proto == Ipv4.ProtocolIcmp)
            throw new ArgumentException($"{where}: bad token '{token}': icmp has no ports; use any or leave the port out");
        int dash = token.IndexOf('-');
        string lo = dash < 0 ? token : token[..dash], hi = dash < 0 ? token : token[(dash + 1)..];
        if (!ushort.TryParse(lo, NumberStyles.None, CultureInfo.InvariantCulture, out ushort l) ||
            !ushort.TryParse(hi, NumberStyles.None, CultureInfo.InvariantCulture, out ushort h))
            throw new ArgumentException($"{where}: bad token '{token}': a port is any, N or N-M with N, M in 0..65535");
        if (l > h)
            throw new ArgumentException($"{where}: bad token '{token}': port range is backwards; write {h}-{l}");
        return (false, l, h);
    }
}
