using System.Globalization;
using HyperNF.Linux;

namespace HyperNF.Hypervisor;

/// <summary>How CPU allocation (weight, cap) is enforced.</summary>
public enum CpuControlMode
{
    /// <summary>Nothing enforced: weights and caps are recorded and CPU time is only measured.</summary>
    AccountingOnly,
    /// <summary>cgroup v1 <c>cpu</c> hierarchy: cpu.shares, cpu.cfs_quota_us/cpu.cfs_period_us, tasks.</summary>
    CgroupV1,
    /// <summary>cgroup v2 threaded groups: cpu.weight, cpu.max, cgroup.threads.</summary>
    CgroupV2,
}

/// <summary>
/// Kernel-enforced CPU allocation for one host instance: a set of groups, each holding
/// thread ids, each with a credit2-style weight and cap. Implementations:
/// <see cref="CgroupV1CpuController"/>, <see cref="CgroupV2CpuController"/>,
/// <see cref="AccountingOnlyCpuController"/>; pick one with <see cref="CpuControllers.Detect(out string?)"/>.
/// Dispose removes every group this instance created (threads still alive are moved back first).
/// </summary>
public interface ICpuController : IDisposable
{
    CpuControlMode Mode { get; }
    /// <summary>True when the kernel enforces weights and caps (a cgroup mode).</summary>
    bool Enforcing { get; }
    /// <summary>The cgroup hierarchy root (mount point), null in accounting-only mode.</summary>
    string? RootPath { get; }
    /// <summary>This instance's directory (<c>ROOT/hypernf/PID/hN</c>), null in accounting-only mode.</summary>
    string? InstancePath { get; }
    /// <summary>Groups created and not removed yet.</summary>
    IReadOnlyList<CpuGroup> Groups { get; }
    /// <summary>Creates a group (weight 256, no cap). The name is sanitised (<see cref="CpuWeights.SanitizeName"/>).</summary>
    CpuGroup CreateGroup(string name);
    /// <summary>One line for listings: the mode, the root path and the file mapping.</summary>
    string Describe();
}

/// <summary>A group of threads sharing one weight and one cap.</summary>
public abstract class CpuGroup
{
    private readonly object _gate = new();
    private readonly List<int> _tids = new();

    protected CpuGroup(string name) => Name = name;

    public string Name { get; }
    /// <summary>The cgroup directory; null in accounting-only mode.</summary>
    public abstract string? Path { get; }
    public int Weight { get; private set; } = CpuWeights.DefaultWeight;
    /// <summary>% of one CPU; 0 = no cap.</summary>
    public int Cap { get; private set; }
    public bool Removed { get; private set; }
    /// <summary>Thread ids added (and not removed) through this object; a thread later moved to another group stays listed here (the kernel's membership file is the truth).</summary>
    public IReadOnlyList<int> Threads { get { lock (_gate) return _tids.ToArray(); } }

    /// <summary>Sets the credit2 weight (1..65535, 256 = default).</summary>
    public void SetWeight(int weight)
    {
        CpuWeights.ValidateWeight(weight);
        lock (_gate)
        {
            ThrowIfRemoved();
            ApplyWeight(weight);
            Weight = weight;
        }
    }

    /// <summary>Sets the cap in % of one CPU (0 = none; 250 = two and a half CPUs).</summary>
    public void SetCap(int percent)
    {
        CpuWeights.ValidateCap(percent);
        lock (_gate)
        {
            ThrowIfRemoved();
            ApplyCap(percent);
            Cap = percent;
        }
    }

    /// <summary>Moves kernel thread <paramref name="tid"/> (of this process) into the group.</summary>
    public void AddThread(int tid)
    {
        if (tid <= 0) throw new ArgumentOutOfRangeException(nameof(tid), tid, "a thread id is positive (0: thread not started yet)");
        lock (_gate)
        {
            ThrowIfRemoved();
            ApplyAddThread(tid); // always written: the thread may have been moved elsewhere since
            if (!_tids.Contains(tid)) _tids.Add(tid);
        }
    }

    /// <summary>
    /// Moves every thread of another process (a process domain's netmap program) into the
    /// group, remembering where they were; <see cref="Remove"/> moves the survivors back.
    /// False when the controller cannot hold another process's threads (cgroup v2 threaded
    /// groups; accounting only): then only the host threads are in the group.
    /// </summary>
    public bool AddProcess(int pid)
    {
        if (pid <= 0) throw new ArgumentOutOfRangeException(nameof(pid), pid, "a pid is positive");
        lock (_gate)
        {
            ThrowIfRemoved();
            return ApplyAddProcess(pid);
        }
    }

    /// <summary>Moves <paramref name="tid"/> out of the group (back to where the process lives). A thread that ended is ignored.</summary>
    public void RemoveThread(int tid)
    {
        lock (_gate)
        {
            if (Removed) return;
            ApplyRemoveThread(tid);
            _tids.Remove(tid);
        }
    }

    /// <summary>Moves surviving threads out and deletes the group. Idempotent.</summary>
    public void Remove()
    {
        lock (_gate)
        {
            if (Removed) return;
            ApplyRemove();
            Removed = true;
            _tids.Clear();
        }
        OnRemoved();
    }

    /// <summary>"dom1-web: weight 256 (cpu.shares 1024), cap none, threads 101,102".</summary>
    public virtual string Describe()
    {
        var t = Threads;
        return $"{Name}: weight {Weight}, cap {(Cap == 0 ? "none" : Cap + "%")}, threads {(t.Count == 0 ? "-" : string.Join(',', t))}";
    }

    public override string ToString() => Describe();

    private void ThrowIfRemoved()
    {
        if (Removed) throw new ObjectDisposedException($"CPU group '{Name}'", $"CPU group '{Name}' was removed");
    }

    protected abstract void ApplyWeight(int weight);
    protected abstract void ApplyCap(int percent);
    protected abstract void ApplyAddThread(int tid);
    protected abstract void ApplyRemoveThread(int tid);
    protected abstract void ApplyRemove();
    protected virtual bool ApplyAddProcess(int pid) => false;
    protected virtual void OnRemoved() { }
}

/// <summary>A cgroup operation failed: names the file, the errno and what it usually means.</summary>
public sealed class CpuControlException : IOException
{
    public int Errno { get; }
    public string? FilePath { get; }

    public CpuControlException(string message, int errno = 0, string? path = null, Exception? inner = null)
        : base(message, inner)
    {
        Errno = errno;
        FilePath = path;
        if (errno != 0) HResult = errno;
    }

    /// <summary>"write 30000 to /x/cpu.cfs_quota_us failed: Permission denied (EACCES): ..."</summary>
    public static CpuControlException For(string operation, string path, int errno)
    {
        string? hint = errno switch
        {
            Native.EACCES or Native.EPERM => "run as root, or delegate this cgroup to the user",
            Native.EROFS => "the cgroup file system is mounted read-only (container?)",
            Native.ENOENT => "the cgroup or control file does not exist (group removed, or controller not enabled there)",
            Native.EBUSY => "the group still has threads or child groups, or the controller is in use elsewhere",
            Native.ENOTEMPTY => "the group still has child groups",
            Native.ESRCH => "no such thread (it has ended)",
            Native.EINVAL => "value refused by the kernel",
            Native.EOPNOTSUPP => "not allowed in this cgroup (threaded/domain mode constraint)",
            _ => null,
        };
        string text = $"{operation} {path} failed: {Native.ErrnoText(errno)} ({Native.ErrnoName(errno)})";
        if (hint != null) text += $": {hint}";
        return new CpuControlException(text, errno, path);
    }
}

/// <summary>Credit2 parameters and how they map to cgroup values.</summary>
public static class CpuWeights
{
    public const int DefaultWeight = 256;
    public const int MinWeight = 1, MaxWeight = 65535;
    /// <summary>The CFS bandwidth period used for caps (100 ms, the kernel default).</summary>
    public const long PeriodUs = 100_000;
    /// <summary>Largest cap accepted (% of one CPU): 1024 CPUs.</summary>
    public const int MaxCap = 102_400;

    public static void ValidateWeight(int weight)
    {
        if (weight is < MinWeight or > MaxWeight)
            throw new ArgumentOutOfRangeException(nameof(weight), weight, $"weight must be {MinWeight}..{MaxWeight} (default {DefaultWeight})");
    }

    public static void ValidateCap(int cap)
    {
        if (cap is < 0 or > MaxCap)
            throw new ArgumentOutOfRangeException(nameof(cap), cap, "cap is % of one CPU: 0 (none) .. 102400; above 100 allows several CPUs");
    }

    /// <summary>cgroup v1 cpu.shares: weight*1024/256 (256 -> 1024).</summary>
    public static long V1Shares(int weight) => (long)weight * 1024 / 256;

    /// <summary>cgroup v2 cpu.weight: clamp(weight*100/256, 1, 10000) (256 -> 100).</summary>
    public static int V2Weight(int weight) => (int)Math.Clamp((long)weight * 100 / 256, 1, 10000);

    /// <summary>CFS quota per <see cref="PeriodUs"/> in us; -1 (unlimited) for cap 0.</summary>
    public static long QuotaUs(int cap) => cap == 0 ? -1 : cap * PeriodUs / 100;

    /// <summary>cgroup v2 cpu.max: "QUOTA PERIOD" or "max PERIOD".</summary>
    public static string V2Max(int cap) =>
        cap == 0 ? $"max {PeriodUs}" : string.Create(CultureInfo.InvariantCulture, $"{QuotaUs(cap)} {PeriodUs}");

    /// <summary>
    /// A cgroup directory name: letters, digits, '-' and '_' kept, anything else (including '.') '_';
    /// never empty, never '.'/'..', never a control-file name, at most 64 characters.
    /// </summary>
    public static string SanitizeName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var chars = name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray();
        string s = new string(chars);
        if (s.Length > 64) s = s[..64];
        if (s.Length == 0) s = "_";
        // Control files (tasks, cpu.max, cgroup.procs) can never clash: '.' is replaced and
        // "tasks" is the only dot-less one.
        if (s == "tasks") s = "tasks_";
        return s;
    }
}
