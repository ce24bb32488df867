using System.Collections.Immutable;
using System.Globalization;

namespace HyperNF.Control;

/// <summary>
/// xl's CPU list syntax, as in <c>cpus=</c>: "3", "0-1", "0,2-3", "0-7,^3" (^ removes) or
/// "all". The result is sorted and distinct; empty means "all" (not pinned).
/// </summary>
public static class CpuList
{
    /// <summary>Highest CPU number accepted; far above any real host, low enough to catch typos like "10000".</summary>
    public const int MaxCpu = 4095;

    /// <summary>Parses <paramref name="text"/>; false with <paramref name="error"/> saying why when it is not a CPU list.</summary>
    public static bool TryParse(string text, out ImmutableArray<int> cpus, out string error)
    {
        cpus = [];
        error = "";
        string t = text.Trim();
        if (t.Equals("all", StringComparison.OrdinalIgnoreCase)) return true;
        if (t.Length == 0) { error = "it is empty"; return false; }
        if (t.StartsWith("node", StringComparison.OrdinalIgnoreCase))
        {
            error = "it names NUMA nodes, which HyperNF does not map to CPUs; list the CPUs themselves";
            return false;
        }
        // A bitmap of CPUs 0..MaxCpu and at most MaxCpu+1 elements: the work is bounded whatever
        // the text (a long list of wide ranges costs a few span fills, not a sorted-set insert per CPU).
        var set = new bool[MaxCpu + 1];
        bool anyPositive = false;
        int elements = 0;
        foreach (var range in t.AsSpan().Split(','))
        {
            var raw = t.AsSpan(range).Trim();
            if (++elements > MaxCpu + 1)
            {
                error = $"it has more than {MaxCpu + 1} elements; write ranges such as 0-7";
                return false;
            }
            var part = raw;
            bool exclude = part.StartsWith('^');
            if (exclude) part = part[1..].TrimStart();
            if (part.Length == 0) { error = "it has an empty element (two commas, or a trailing one)"; return false; }
            int dash = part.IndexOf('-');
            var lo = dash < 0 ? part : part[..dash].Trim();
            var hi = dash < 0 ? part : part[(dash + 1)..].Trim();
            if (!TryCpu(lo, out int a) || !TryCpu(hi, out int b))
            {
                error = $"'{Quote(raw)}' is not a CPU number or a range A-B of CPU numbers 0..{MaxCpu}";
                return false;
            }
            if (b < a) { error = $"the range '{Quote(part)}' runs backwards; write {b}-{a}"; return false; }
            set.AsSpan(a, b - a + 1).Fill(!exclude);
            anyPositive |= !exclude;
        }
        if (!anyPositive)
        {
            // xl reads "^3" as "all but 3"; we have no list of the host's CPUs here, so ask for the positive form.
            error = "it only excludes CPUs; say which ones to use first, e.g. \"0-7,^3\"";
            return false;
        }
        var result = ImmutableArray.CreateBuilder<int>();
        for (int c = 0; c <= MaxCpu; c++)
            if (set[c]) result.Add(c);
        if (result.Count == 0) { error = "it leaves no CPU once the ^ exclusions are applied"; return false; }
        cpus = result.ToImmutable();
        return true;
    }

    private static string Quote(ReadOnlySpan<char> s) => s.Length <= 40 ? s.ToString() : string.Concat(s[..37], "...");

    private static bool TryCpu(ReadOnlySpan<char> s, out int cpu) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out cpu) && cpu <= MaxCpu;
}
