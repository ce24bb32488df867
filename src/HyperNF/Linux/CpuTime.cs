namespace HyperNF.Linux;

/// <summary>Per-thread CPU time from /proc/self/task/TID/schedstat (nanoseconds on CPU), sampled per interval.</summary>
public static class CpuTime
{
    /// <summary>Nanoseconds thread <paramref name="tid"/> of this process has run, or -1 if it is gone.</summary>
    public static long ThreadNs(int tid)
    {
        try
        {
            string s = File.ReadAllText($"/proc/self/task/{tid}/schedstat");
            int sp = s.IndexOf(' ');
            return long.Parse(sp < 0 ? s : s[..sp], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException) { return -1; }
        catch (UnauthorizedAccessException) { return -1; }
    }

    /// <summary>Nanoseconds the whole process has run (all threads).</summary>
    public static long ProcessNs() => (long)(System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.Ticks * 100);
}
