using System.Text;

namespace HyperNF.Hypervisor;

/// <summary>Where and how <see cref="CpuControllers.Detect(CpuControlOptions, out string?)"/> looks. Defaults: the real system.</summary>
public sealed record CpuControlOptions
{
    /// <summary>Force a mode; null: the <c>HYPERNF_CPU_CONTROL</c> environment variable (auto|v1|v2|off), else auto.</summary>
    public CpuControlMode? Mode { get; init; }
    public string MountInfoPath { get; init; } = "/proc/self/mountinfo";
    public string ProcCgroupPath { get; init; } = "/proc/self/cgroup";
    /// <summary>Use this directory as the cgroup v1 cpu hierarchy (tests: a fake root). Setting either root skips mountinfo.</summary>
    public string? V1Root { get; init; }
    /// <summary>Use this directory as the cgroup v2 hierarchy (tests: a fake root).</summary>
    public string? V2Root { get; init; }
    /// <summary>The cgroup directory the process is in (threads/process go back there); null: from /proc/self/cgroup, or the root when a root is overridden.</summary>
    public string? Home { get; init; }
    /// <summary>File operations (tests: a fake file system).</summary>
    public CgroupFs? Fs { get; init; }
    /// <summary>The one parent directory under the root.</summary>
    public string ParentName { get; init; } = "hypernf";
}

/// <summary>The cgroup mounts relevant to CPU control, from /proc/self/mountinfo.</summary>
public sealed record CgroupMounts
{
    /// <summary>Mount point of the v1 hierarchy that has the cpu controller (cpu or cpu,cpuacct).</summary>
    public string? V1Cpu { get; init; }
    /// <summary>The mountinfo root of that mount (non-"/" inside a cgroup namespace/bind mount).</summary>
    public string V1CpuMountRoot { get; init; } = "/";
    /// <summary>Mount point of the cgroup2 file system (with or without the cpu controller).</summary>
    public string? V2 { get; init; }
    public string V2MountRoot { get; init; } = "/";
}

/// <summary>Picks the CPU controller for this machine.</summary>
public static class CpuControllers
{
    public const string EnvVar = "HYPERNF_CPU_CONTROL";

    /// <summary>Detects the controller of the real system. <paramref name="warning"/>: one line when enforcement is not possible (accounting only) or stale groups could not be removed; null otherwise.</summary>
    public static ICpuController Detect(out string? warning) => Detect(new CpuControlOptions(), out warning);

    /// <summary>
    /// Order: cgroup v2 if its cgroup.controllers lists cpu, else the v1 cpu hierarchy, else
    /// accounting only. A hierarchy that is found but refuses setup (EACCES, EROFS, threaded
    /// constraints) falls through to the next one; the reasons end up in <paramref name="warning"/>.
    /// </summary>
    public static ICpuController Detect(CpuControlOptions options, out string? warning)
    {
        ArgumentNullException.ThrowIfNull(options);
        warning = null;
        var mode = options.Mode ?? ModeFromEnvironment();
        if (mode == CpuControlMode.AccountingOnly) return new AccountingOnlyCpuController($"{EnvVar} or options chose it");

        var fs = options.Fs ?? CgroupFs.Real;
        var reasons = new List<string>();
        bool overridden = options.V1Root != null || options.V2Root != null;
        CgroupMounts mounts = overridden ? new CgroupMounts { V1Cpu = options.V1Root, V2 = options.V2Root } : ReadMounts(options.MountInfoPath);

        if (mode is null or CpuControlMode.CgroupV2 && mounts.V2 != null)
        {
            try
            {
                string home = options.Home ?? (overridden ? mounts.V2 : HomeDirectory(options.ProcCgroupPath, mounts.V2, mounts.V2MountRoot, v2: true));
                var c = CgroupV2CpuController.Open(mounts.V2, home, fs, options.ParentName);
                warning = Join(c.Warnings);
                return c;
            }
            catch (CpuControlException e)
            {
                reasons.Add($"cgroup v2 at {mounts.V2}: {e.Message}");
            }
        }
        else if (mode == CpuControlMode.CgroupV2) reasons.Add("no cgroup2 mount");

        if (mode is null or CpuControlMode.CgroupV1 && mounts.V1Cpu != null)
        {
            try
            {
                string home = options.Home ?? (overridden ? mounts.V1Cpu : HomeDirectory(options.ProcCgroupPath, mounts.V1Cpu, mounts.V1CpuMountRoot, v2: false));
                var c = CgroupV1CpuController.Open(mounts.V1Cpu, home, fs, options.ParentName);
                // v2 present without the cpu controller is the normal hybrid layout: not worth a warning.
                warning = Join(c.Warnings);
                return c;
            }
            catch (CpuControlException e)
            {
                reasons.Add($"cgroup v1 cpu at {mounts.V1Cpu}: {e.Message}");
            }
        }
        else if (mode == CpuControlMode.CgroupV1) reasons.Add("no cgroup v1 hierarchy with the cpu controller");

        if (reasons.Count == 0) reasons.Add($"no cgroup cpu controller found in {options.MountInfoPath}");
        string reason = string.Join("; ", reasons);
        warning = $"warning: CPU weights and caps are not enforced (accounting only): {reason}";
        return new AccountingOnlyCpuController(reason);
    }

    private static string? Join(IReadOnlyList<string> warnings) =>
        warnings.Count == 0 ? null : "warning: cpu control: " + string.Join("; ", warnings);

    private static CpuControlMode? ModeFromEnvironment()
    {
        string? v = Environment.GetEnvironmentVariable(EnvVar)?.Trim().ToLowerInvariant();
        return v switch
        {
            "off" or "none" or "accounting" => CpuControlMode.AccountingOnly,
            "v1" => CpuControlMode.CgroupV1,
            "v2" => CpuControlMode.CgroupV2,
            _ => null,
        };
    }

    /// <summary>Parses mountinfo: the v1 hierarchy carrying the cpu controller and the cgroup2 mount.</summary>
    public static CgroupMounts ReadMounts(string mountInfoPath = "/proc/self/mountinfo")
    {
        string[] lines;
        try { lines = File.ReadAllLines(mountInfoPath); }
        catch (IOException) { return new CgroupMounts(); }
        catch (UnauthorizedAccessException) { return new CgroupMounts(); }
        return ParseMounts(lines);
    }

    public static CgroupMounts ParseMounts(IEnumerable<string> mountInfoLines)
    {
        var result = new CgroupMounts();
        foreach (var line in mountInfoLines)
        {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            var f = line.Split(' ');
            int sep = Array.IndexOf(f, "-", 6);
            if (f.Length < 7 || sep < 0 || sep + 3 > f.Length) continue;
            string root = Unescape(f[3]), mountPoint = Unescape(f[4]), fsType = f[sep + 1];
            string superOptions = sep + 3 < f.Length ? f[sep + 3] : "";
            if (fsType == "cgroup2" && result.V2 == null)
                result = result with { V2 = mountPoint, V2MountRoot = root };
            else if (fsType == "cgroup" && result.V1Cpu == null && superOptions.Split(',').Contains("cpu"))
                result = result with { V1Cpu = mountPoint, V1CpuMountRoot = root };
        }
        return result;
    }

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo.</summary>
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 3 < s.Length && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) && IsOctal(s[i + 3]))
            {
                sb.Append((char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
                i += 3;
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';

    /// <summary>
    /// The process's own cgroup directory in a hierarchy, from /proc/self/cgroup (v1: the line
    /// whose controller list has cpu; v2: the 0:: line), mapped through the mount's root;
    /// the mount point when it cannot be mapped.
    /// </summary>
    public static string HomeDirectory(string procCgroupPath, string mountPoint, string mountRoot, bool v2)
    {
        string? rel = null;
        try
        {
            foreach (var line in File.ReadAllLines(procCgroupPath))
            {
                var p = line.Split(':', 3);
                if (p.Length != 3) continue;
                bool match = v2 ? p[0] == "0" && p[1] == "" : p[1].Split(',').Contains("cpu");
                if (match) { rel = p[2]; break; }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        if (rel == null) return mountPoint;
        if (mountRoot != "/" && rel.StartsWith(mountRoot, StringComparison.Ordinal)) rel = rel[mountRoot.Length..];
        string dir = Path.Combine(mountPoint, rel.TrimStart('/'));
        return Directory.Exists(dir) ? Path.TrimEndingDirectorySeparator(dir) : mountPoint;
    }
}
