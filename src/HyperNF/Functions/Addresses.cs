using System.Globalization;

namespace HyperNF.Functions;

/// <summary>
/// Parsing and formatting of IPv4 addresses, prefixes and MAC addresses for rule, route and
/// argument text. Addresses are host-order <see cref="uint"/>s, as the header accessors return them.
/// </summary>
/// <remarks>
/// Hand-written rather than <c>IPAddress.Parse</c>, which accepts forms like "10.1" (= 10.0.0.1)
/// that in a rule file are almost always a typo and should be rejected.
/// </remarks>
public static class Addresses
{
    /// <summary>Network mask for a prefix length 0..32.</summary>
    public static uint Mask(int length) => length == 0 ? 0u : uint.MaxValue << (32 - length);

    /// <summary>Strict dotted quad: exactly four decimal octets 0..255.</summary>
    public static bool TryParseIpv4(ReadOnlySpan<char> s, out uint address)
    {
        address = 0;
        int octets = 0;
        while (true)
        {
            int dot = s.IndexOf('.');
            var part = dot < 0 ? s : s[..dot];
            if (part.Length is 0 or > 3 || !byte.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out byte b)) return false;
            address = (address << 8) | b;
            octets++;
            if (dot < 0) break;
            if (octets == 4) return false;
            s = s[(dot + 1)..];
        }
        return octets == 4;
    }

    /// <summary>
    /// "A.B.C.D/N" or "A.B.C.D" (= /32). On failure <paramref name="error"/> says what is wrong,
    /// including host bits set below the mask, which usually means a mistyped network.
    /// </summary>
    public static bool TryParsePrefix(ReadOnlySpan<char> s, out uint prefix, out int length, out string? error)
    {
        prefix = 0;
        length = 32;
        error = null;
        int slash = s.IndexOf('/');
        var addr = slash < 0 ? s : s[..slash];
        if (!TryParseIpv4(addr, out prefix))
        {
            error = $"'{s}' is not an IPv4 address or prefix (expected A.B.C.D or A.B.C.D/N)";
            return false;
        }
        if (slash >= 0)
        {
            var len = s[(slash + 1)..];
            if (len.Length is 0 or > 2 || !int.TryParse(len, NumberStyles.None, CultureInfo.InvariantCulture, out length) || length > 32)
            {
                error = $"'{s}' has a bad prefix length (expected /0../32)";
                return false;
            }
        }
        if ((prefix & ~Mask(length)) != 0)
        {
            error = $"'{s}' has host bits set below /{length}; did you mean {FormatIpv4(prefix & Mask(length))}/{length}?";
            return false;
        }
        return true;
    }

    public static string FormatIpv4(uint a) =>
        string.Create(CultureInfo.InvariantCulture, $"{a >> 24}.{(a >> 16) & 0xff}.{(a >> 8) & 0xff}.{a & 0xff}");

    /// <summary>Six hex pairs separated by ':' or '-' (00:16:3e:00:00:02).</summary>
    public static bool TryParseMac(ReadOnlySpan<char> s, Span<byte> mac)
    {
        if (s.Length != 17 || mac.Length < 6) return false;
        char sep = s[2];
        if (sep is not (':' or '-')) return false;
        for (int i = 0; i < 6; i++)
        {
            if (i > 0 && s[i * 3 - 1] != sep) return false;
            if (!byte.TryParse(s.Slice(i * 3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out mac[i])) return false;
        }
        return true;
    }

    public static string FormatMac(ReadOnlySpan<byte> mac) =>
        string.Create(CultureInfo.InvariantCulture, $"{mac[0]:x2}:{mac[1]:x2}:{mac[2]:x2}:{mac[3]:x2}:{mac[4]:x2}:{mac[5]:x2}");
}
