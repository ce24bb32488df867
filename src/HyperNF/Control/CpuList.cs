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
        var set = new SortedSet<int>();
        bool anyPositive = false;
        foreach (string raw in t.Split(','))
        {
            string part = raw.Trim();
            bool exclude = part.StartsWith('^');
            if (exclude) part = part[1..].TrimStart();
            if (part.Length == 0) { error = "it has an empty element (two commas, or a trailing one)"; return false; }
            int dash = part.IndexOf('-');
            string lo = dash < 0 ? part : part[..dash].Trim(), hi = dash < 0 ? part : part[(dash + 1)..].Trim();
            if (!TryCpu(lo, out int a) || !TryCpu(hi, out int b))
            {
                error = $"'{raw.Trim()}' is not a CPU number or a range A-B of CPU numbers 0..{MaxCpu}";
                return false;
            }
            if (b < a) { error = $"the range '{part}' runs backwards; write {b}-{a}"; return false; }
            for (int c = a; c <= b; c++)
            {
                if (exclude) set.Remove(c);
                else set.Add(c);
            }
            anyPositive |= !exclude;
        }
        if (!anyPositive)
        {
            // xl reads "^3" as "all but 3"; we have no list of the host's CPUs here, so ask for the positive form.
            error = "it only excludes CPUs; say which ones to use first, e.g. \"0-7,^3\"";
            return false;
        }
        if (set.Count == 0) { error = "it leaves no CPU once the ^ exclusions are applied"; return false; }
        cpus = [.. set];
        return true;
    }

    private static bool TryCpu(string s, out int cpu) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out cpu) && cpu <= MaxCpu;
}
