using System.Globalization;

namespace HyperNF.Tools;

/// <summary>
/// pkt-gen's <c>-s</c>/<c>-d</c> argument: <c>10.0.0.1[-10.0.0.100][:port[-port]]</c>, an
/// IPv4 address range and a UDP port range. Addresses are host-order <see cref="uint"/>s.
/// </summary>
public readonly record struct EndpointRange(uint FirstAddress, uint LastAddress, ushort FirstPort, ushort LastPort)
{
    /// <summary>pkt-gen's port when the text names none.</summary>
    public const ushort DefaultPort = 1234;

    private const string Syntax = "want A.B.C.D[-A.B.C.D][:PORT[-PORT]], e.g. 10.0.0.1-10.0.0.100:1234";

    /// <summary>Distinct (address, port) pairs the range cycles through.</summary>
    public ulong Count => ((ulong)LastAddress - FirstAddress + 1) * ((ulong)LastPort - FirstPort + 1);

    public bool IsSingle => FirstAddress == LastAddress && FirstPort == LastPort;

    /// <summary>Parses <paramref name="text"/>; throws <see cref="FormatException"/> saying what is wrong.</summary>
    public static EndpointRange Parse(string text) =>
        TryParse(text, out var r, out string error) ? r : throw new FormatException(error);

    public static bool TryParse(string? text, out EndpointRange range, out string error)
    {
        range = default;
        error = "";
        if (string.IsNullOrWhiteSpace(text)) { error = $"empty address range ({Syntax})"; return false; }
        string t = text.Trim();
        string addrPart = t, portPart = "";
        int colon = t.IndexOf(':');
        if (colon >= 0) { addrPart = t[..colon]; portPart = t[(colon + 1)..]; }

        int dash = addrPart.IndexOf('-');
        string a0 = dash < 0 ? addrPart : addrPart[..dash], a1 = dash < 0 ? addrPart : addrPart[(dash + 1)..];
        if (!TryIpv4(a0, out uint first)) { error = $"'{a0}' in '{t}' is not an IPv4 address ({Syntax})"; return false; }
        if (!TryIpv4(a1, out uint last)) { error = $"'{a1}' in '{t}' is not an IPv4 address ({Syntax})"; return false; }
        if (last < first) { error = $"address range '{addrPart}' in '{t}' runs backwards; write {a1}-{a0}"; return false; }

        ushort p0 = DefaultPort, p1 = DefaultPort;
        if (colon >= 0)
        {
            int pd = portPart.IndexOf('-');
            string s0 = pd < 0 ? portPart : portPart[..pd], s1 = pd < 0 ? portPart : portPart[(pd + 1)..];
            if (!ushort.TryParse(s0, NumberStyles.None, CultureInfo.InvariantCulture, out p0) ||
                !ushort.TryParse(s1, NumberStyles.None, CultureInfo.InvariantCulture, out p1))
            {
                error = $"'{portPart}' in '{t}' is not a UDP port or port range 0..65535 ({Syntax})";
                return false;
            }
            if (p1 < p0) { error = $"port range '{portPart}' in '{t}' runs backwards; write {s1}-{s0}"; return false; }
        }
        range = new EndpointRange(first, last, p0, p1);
        return true;
    }

    /// <summary>Strict dotted quad: "10.1" or "010.0.0.1" are typos here, not shorthand.</summary>
    private static bool TryIpv4(string s, out uint address)
    {
        address = 0;
        var parts = s.Split('.');
        if (parts.Length != 4) return false;
        foreach (string p in parts)
        {
            if (p.Length is 0 or > 3 || (p.Length > 1 && p[0] == '0') ||
                !byte.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out byte b)) return false;
            address = (address << 8) | b;
        }
        return true;
    }

    public static string FormatAddress(uint a) => $"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}";

    public override string ToString()
    {
        string addr = FirstAddress == LastAddress ? FormatAddress(FirstAddress) : $"{FormatAddress(FirstAddress)}-{FormatAddress(LastAddress)}";
        string port = FirstPort == LastPort ? FirstPort.ToString(CultureInfo.InvariantCulture) : $"{FirstPort}-{LastPort}";
        return $"{addr}:{port}";
    }
}
