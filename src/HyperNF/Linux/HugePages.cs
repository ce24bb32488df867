namespace HyperNF.Linux;

/// <summary>
/// 2 MiB pages for the domains' regions. A region is a memfd that the switch, a process
/// domain's program and a VM's memory slot all map; with 4 KiB pages a flush of 256 frames
/// touches hundreds of pages, and every TLB miss is a two-dimensional page walk inside a VM.
/// Regions ask for transparent huge pages (madvise MADV_HUGEPAGE). Linux grants that for shared
/// memory only when /sys/kernel/mm/transparent_hugepage/shmem_enabled allows it: "advise" (only
/// mappings that ask, nobody else is affected), "within_size" or "always". When it is "never"
/// and we are root, <see cref="Prepare"/> sets "advise" once per process and says so on stderr,
/// as DPDK's setup reserves huge pages; HYPERNF_HUGEPAGES=0 turns all of this off.
/// (docs/performance.md: 64 B process-domain Mpps +20-30% with 2 MiB pages.)
/// </summary>
public static class HugePages
{
    public const string ShmemEnabledPath = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
    public const long Size = 2 << 20;

    private static readonly Lazy<string> Prepared = new(PrepareOnce);

    /// <summary>False when HYPERNF_HUGEPAGES=0: regions stay on 4 KiB pages and nothing is changed.</summary>
    public static bool Wanted => Environment.GetEnvironmentVariable("HYPERNF_HUGEPAGES") is not "0";

    /// <summary>The selected word of shmem_enabled ("never", "advise", ...), or null when the file is missing.</summary>
    public static string? ShmemMode()
    {
        try
        {
            string s = File.ReadAllText(ShmemEnabledPath);
            int a = s.IndexOf('['), b = s.IndexOf(']');
            return a >= 0 && b > a ? s[(a + 1)..b] : s.Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>Whether a region that asks for huge pages gets them under the current setting.</summary>
    public static bool RegionsGetThem => Wanted && ShmemMode() is "advise" or "within_size" or "always" or "force";

    /// <summary>
    /// Once per process: makes shmem_enabled grant huge pages to mappings that ask (see the class
    /// comment). Returns what it found or did, in words.
    /// </summary>
    public static string Prepare() => Prepared.Value;

    private static string PrepareOnce()
    {
        if (!Wanted) return "off (HYPERNF_HUGEPAGES=0)";
        string? mode = ShmemMode();
        if (mode is null) return "unavailable (no transparent huge pages in this kernel)";
        if (mode != "never") return $"shmem_enabled={mode}";
        try
        {
            File.WriteAllText(ShmemEnabledPath, "advise");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "4 KiB pages: shmem_enabled=never (as root, 'echo advise > " + ShmemEnabledPath + "' gives regions 2 MiB pages)";
        }
        Console.Error.WriteLine($"hypernf: {ShmemEnabledPath}: never -> advise (only mappings that ask get 2 MiB pages: the domains' regions; HYPERNF_HUGEPAGES=0 leaves it alone)");
        return "shmem_enabled=advise (set by hypernf; was never)";
    }

    /// <summary>Asks for huge pages on a region mapping (after <see cref="Prepare"/>); a refusal is harmless.</summary>
    public static void Advise(nint addr, long length)
    {
        if (!Wanted) return;
        Prepare();
        _ = Native.Madvise(addr, (nuint)length, Native.MADV_HUGEPAGE);
    }

    /// <summary>Bytes of [addr, addr+length) mapped with 2 MiB pages in this process (ShmemPmdMapped of /proc/self/smaps).</summary>
    public static long PmdMappedBytes(nint addr)
    {
        string start = ((ulong)addr).ToString("x", System.Globalization.CultureInfo.InvariantCulture);
        bool inside = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.Contains('-', StringComparison.Ordinal))
            {
                inside = line.StartsWith(start + "-", StringComparison.Ordinal);
                continue;
            }
            if (inside && line.StartsWith("ShmemPmdMapped:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }
}
