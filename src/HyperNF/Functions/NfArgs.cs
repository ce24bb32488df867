using System.Globalization;

namespace HyperNF.Functions;

/// <summary>
/// The <c>key=value,key=value</c> argument string of an NF, checked against the keys that NF
/// knows. Every error names the NF, the offending key or value and what would be accepted,
/// because these strings are typed by people on command lines and in config files.
/// </summary>
public sealed class NfArgs
{
    private readonly List<KeyValuePair<string, string>> _items = [];

    /// <summary>NF name, for messages.</summary>
    public string Nf { get; }

    /// <summary>Pairs in the order given (order matters for repeated keys such as <c>rule</c>).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Items => _items;

    private NfArgs(string nf) => Nf = nf;

    /// <summary>
    /// Splits <paramref name="args"/> on ',' and each item at its first '='. Keys are matched
    /// case-insensitively; a key not in <paramref name="allowed"/>, or given twice without being in
    /// <paramref name="repeatable"/>, is an error.
    /// </summary>
    public static NfArgs Parse(string nf, string? args, string[] allowed, string[]? repeatable = null)
    {
        var a = new NfArgs(nf);
        if (string.IsNullOrWhiteSpace(args)) return a;
        foreach (var raw in args.Split(','))
        {
            var item = raw.Trim();
            if (item.Length == 0) continue;
            int eq = item.IndexOf('=');
            if (eq <= 0)
                throw new ArgumentException($"nf '{nf}': argument '{item}' is not key=value; allowed keys: {string.Join(", ", allowed)}");
            string key = item[..eq].Trim().ToLowerInvariant();
            string value = item[(eq + 1)..].Trim();
            if (Array.IndexOf(allowed, key) < 0)
                throw new ArgumentException(allowed.Length == 0
                    ? $"nf '{nf}': takes no arguments, but got '{key}'"
                    : $"nf '{nf}': unknown key '{key}'; allowed keys: {string.Join(", ", allowed)}");
            if ((repeatable is null || Array.IndexOf(repeatable, key) < 0) && a.Has(key))
                throw new ArgumentException($"nf '{nf}': key '{key}' is given twice; give it once");
            a._items.Add(new(key, value));
        }
        return a;
    }

    public bool Has(string key) => _items.Exists(kv => kv.Key == key);

    public string? Get(string key) => _items.Find(kv => kv.Key == key).Value;

    public ArgumentException Error(string key, string value, string allowed) =>
        new($"nf '{Nf}': {key}={value} is not valid; {allowed}");

    public long GetInt64(string key, long defaultValue, long min, long max)
    {
        var v = Get(key);
        if (v is null) return defaultValue;
        if (!long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long n) || n < min || n > max)
            throw Error(key, v, $"expected an integer in {min}..{max}");
        return n;
    }

    /// <summary>One of <paramref name="choices"/> (case-insensitive), or <paramref name="defaultValue"/>.</summary>
    public string GetChoice(string key, string defaultValue, params string[] choices)
    {
        var v = Get(key);
        if (v is null) return defaultValue;
        foreach (var c in choices)
            if (string.Equals(c, v, StringComparison.OrdinalIgnoreCase)) return c;
        throw Error(key, v, $"expected one of: {string.Join(", ", choices)}");
    }

    /// <summary>
    /// A duration: a number with an optional unit ms, s (default), m or h, e.g. <c>30</c>, <c>500ms</c>, <c>2m</c>.
    /// </summary>
    public TimeSpan GetDuration(string key, TimeSpan defaultValue, TimeSpan min, TimeSpan max)
    {
        var v = Get(key);
        if (v is null) return defaultValue;
        var s = v.AsSpan();
        double scale = 1;
        if (s.EndsWith("ms", StringComparison.OrdinalIgnoreCase)) { scale = 0.001; s = s[..^2]; }
        else if (s.EndsWith("s", StringComparison.OrdinalIgnoreCase)) s = s[..^1];
        else if (s.EndsWith("m", StringComparison.OrdinalIgnoreCase)) { scale = 60; s = s[..^1]; }
        else if (s.EndsWith("h", StringComparison.OrdinalIgnoreCase)) { scale = 3600; s = s[..^1]; }
        if (!double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double n) || double.IsNaN(n))
            throw Error(key, v, "expected a duration such as 30, 30s, 500ms, 2m or 1h");
        var t = TimeSpan.FromSeconds(n * scale);
        if (t < min || t > max) throw Error(key, v, $"expected a duration between {min.TotalSeconds}s and {max.TotalSeconds}s");
        return t;
    }

    /// <summary>
    /// The lines of a rule or route text with '#' comments removed, split into tokens; blank
    /// lines are skipped. Line numbers start at <paramref name="firstLine"/>, for error messages.
    /// </summary>
    internal static IEnumerable<(int Line, string[] Tokens)> TokenizedLines(string text, int firstLine)
    {
        int lineNo = firstLine - 1;
        foreach (var rawLine in text.Split('\n'))
        {
            lineNo++;
            var line = rawLine;
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            var tokens = line.Split([' ', '\t', '\r'], StringSplitOptions.RemoveEmptyEntries);
            if (tokens.Length != 0) yield return (lineNo, tokens);
        }
    }
}
