namespace HyperNF.Linux;

/// <summary>
/// What a thread of this process is doing right now, from /proc (state, wait channel, kernel
/// stack where readable, cgroup, CPU time): for a harness to say why traffic stopped instead of
/// printing a zero. Diagnostics only; never on the data path.
/// </summary>
public static class ThreadProbe
{
    public static string Describe(int tid)
    {
        if (tid <= 0) return "no thread";
        string dir = $"/proc/self/task/{tid}";
        string Read(string f)
        {
            try { return File.ReadAllText(Path.Combine(dir, f)).Trim(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return "?"; }
        }
        string stat = Read("stat");
        // state is the field after the ")" that closes comm; processor is field 39.
        int close = stat.LastIndexOf(')');
        string[] rest = close >= 0 ? stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries) : [];
        string state = rest.Length > 0 ? rest[0] : "?";
        string cpu = rest.Length > 36 ? rest[36] : "?";
        string stack = string.Join(" < ", Read("stack").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Contains(' ', StringComparison.Ordinal) ? l[(l.IndexOf(' ', StringComparison.Ordinal) + 1)..] : l).Take(6));
        string cgroup = Read("cgroup").Split('\n').FirstOrDefault(l => l.Contains("cpu", StringComparison.Ordinal)) ?? "?";
        return $"tid {tid} state {state} cpu {cpu} wchan {Read("wchan")} schedstat [{Read("schedstat")}] cgroup {cgroup} stack [{stack}]";
    }
}
