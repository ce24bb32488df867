using System.Globalization;
using HyperNF.Linux;

namespace HyperNF.Hypervisor;

/// <summary>
/// Common part of the cgroup controllers. Layout (ROOT = the cpu hierarchy's mount point):
/// <code>
/// ROOT/hypernf/            parent of everything HyperNF creates (left in place)
/// ROOT/hypernf/PID/        one per process (v2: the threaded domain the process lives in)
/// ROOT/hypernf/PID/hN/     one per controller instance (one per Host)
/// ROOT/hypernf/PID/hN/dom1-web, .../host    the groups
/// </code>
/// The per-process and per-instance directories are how two hosts avoid fighting: nobody
/// writes into another's directory, and the stale-group cleanup at start only touches
/// directories whose process is gone (PID not in /proc), our own process's instance
/// directories that no live instance owns, and directories not named by a PID; in each only
/// groups with no live thread, after moving threads of this process back home. Nothing is
/// ever killed. A PID reused by an unrelated process keeps its old empty directories until
/// that process ends (harmless). Another PID namespace sharing the cgroup file system is not
/// seen in /proc: run one host per PID namespace or give each its own parent name.
/// </summary>
public abstract class CgroupCpuController : ICpuController
{
    // Structural operations (create/remove of PID and instance directories, moving the
    // process) are serialised per process; the set says which instance directories are live.
    private static readonly object s_gate = new();
    private static readonly HashSet<string> s_liveInstances = new(StringComparer.Ordinal);
    private static readonly Dictionary<string, int> s_processRefs = new(StringComparer.Ordinal);
    private static int s_nextInstance;

    private readonly object _gate = new();
    private readonly List<CgroupCpuGroup> _groups = new();
    private readonly List<string> _warnings = new();
    private readonly List<string> _staleRemoved = new();
    private EventHandler? _onExit;
    private bool _disposed;

    protected CgroupFs Fs { get; }
    public abstract CpuControlMode Mode { get; }
    public bool Enforcing => true;
    /// <summary>The hierarchy root (mount point, or a fake root in tests).</summary>
    public string RootPath { get; }
    /// <summary>ROOT/hypernf.</summary>
    public string ParentPath { get; }
    /// <summary>ROOT/hypernf/PID.</summary>
    public string ProcessPath { get; }
    /// <summary>ROOT/hypernf/PID/hN; set once started.</summary>
    public string InstancePath { get; private set; } = "";
    /// <summary>The cgroup the process was in when started (where threads are moved back to in v1).</summary>
    public string HomePath { get; }
    /// <summary>Stale directories removed when this instance started.</summary>
    public IReadOnlyList<string> StaleRemoved { get { lock (_gate) return _staleRemoved.ToArray(); } }
    /// <summary>Problems that did not stop anything (stale cleanup, removal at dispose).</summary>
    public IReadOnlyList<string> Warnings { get { lock (_gate) return _warnings.ToArray(); } }
    public IReadOnlyList<CpuGroup> Groups { get { lock (_gate) return _groups.ToArray(); } }

    /// <summary>The file thread ids are written to (v1 tasks, v2 cgroup.threads).</summary>
    protected abstract string MembershipFile { get; }

    protected CgroupCpuController(CgroupFs fs, string root, string homePath, string parentName)
    {
        Fs = fs;
        RootPath = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        ParentPath = Path.Combine(RootPath, parentName);
        ProcessPath = Path.Combine(ParentPath, Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        HomePath = homePath;
    }

    // ---- subclass hooks ----------------------------------------------------------------

    /// <summary>Checks the root is usable and enables what the parent needs (v2: +cpu).</summary>
    protected abstract void PrepareRoot();
    /// <summary>Called after ROOT/hypernf exists.</summary>
    protected virtual void PrepareParent() { }
    /// <summary>First instance of the process: v2 moves the process into ROOT/hypernf/PID.</summary>
    protected virtual void EnterProcessDirectory() { }
    /// <summary>Last instance of the process is gone: v2 moves the process back home.</summary>
    protected virtual void LeaveProcessDirectory() { }
    protected virtual void PrepareInstance(string dir) { }
    protected virtual void PrepareGroup(string dir) { }
    /// <summary>Where a thread of this process goes when it leaves a group.</summary>
    protected abstract string EvacuationFile { get; }
    /// <summary>Membership files read to decide whether a directory still has live threads.</summary>
    protected virtual IEnumerable<string> MembershipFiles => [MembershipFile];
    internal abstract void WriteWeight(string dir, int weight);
    internal abstract void WriteCap(string dir, int cap);
    internal abstract string DescribeValues(string dir, int weight, int cap);
    public abstract string Describe();

    // ---- start -------------------------------------------------------------------------

    /// <summary>Creates the directories and cleans stale ones. Throws <see cref="CpuControlException"/> if the hierarchy is unusable.</summary>
    protected void Start()
    {
        lock (s_gate)
        {
            if (!Fs.DirectoryExists(RootPath)) throw CpuControlException.For("open cgroup root", RootPath, Native.ENOENT);
            PrepareRoot();
            Fs.CreateDirectory(ParentPath);
            PrepareParent();
            CleanupStale();
            Fs.CreateDirectory(ProcessPath);
            s_processRefs.TryGetValue(ProcessPath, out int refs);
            bool entered = false;
            string? instance = null;
            try
            {
                if (refs == 0)
                {
                    EnterProcessDirectory();
                    entered = true;
                }
                do instance = Path.Combine(ProcessPath, "h" + Interlocked.Increment(ref s_nextInstance).ToString(CultureInfo.InvariantCulture));
                while (Fs.DirectoryExists(instance));
                Fs.CreateDirectory(instance);
                PrepareInstance(instance);
            }
            catch
            {
                if (instance != null) TryRemoveDirectory(instance);
                if (refs == 0)
                {
                    if (entered) try { LeaveProcessDirectory(); } catch (CpuControlException) { }
                    TryRemoveDirectory(ProcessPath);
                }
                throw;
            }
            InstancePath = instance;
            s_processRefs[ProcessPath] = refs + 1;
            s_liveInstances.Add(instance);
        }
        // Best effort on a normal exit without Dispose; a crash leaves stale groups for the next start.
        _onExit = (_, _) => Dispose();
        AppDomain.CurrentDomain.ProcessExit += _onExit;
    }

    private void TryRemoveDirectory(string dir)
    {
        try { Fs.RemoveDirectory(dir); } catch (CpuControlException) { }
    }

    /// <summary>Removes stale groups under ROOT/hypernf (see the class comment for which). Called under s_gate.</summary>
    private void CleanupStale()
    {
        foreach (var dir in Fs.SubDirectories(ParentPath))
        {
            string name = Path.GetFileName(dir);
            if (dir == ProcessPath)
            {
                // Our own PID: instance directories no live instance of this process owns
                // (left by a previous process that had the same PID).
                foreach (var inst in Fs.SubDirectories(dir))
                    if (!s_liveInstances.Contains(inst)) RemoveStaleTree(inst);
                continue;
            }
            if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid > 0 && Fs.ThreadAlive(pid))
                continue; // another live process: never touched
            RemoveStaleTree(dir);
        }
    }

    /// <summary>Depth first: removes <paramref name="dir"/> if it and its children hold no live thread of another process.</summary>
    private bool RemoveStaleTree(string dir)
    {
        bool childrenGone = true;
        foreach (var sub in Fs.SubDirectories(dir)) childrenGone &= RemoveStaleTree(sub);
        if (!childrenGone) return false;
        var live = MembershipFiles.SelectMany(f => Fs.ReadIds(Path.Combine(dir, f))).Distinct().Where(Fs.ThreadAlive).ToList();
        var foreign = live.Where(t => !Fs.IsOwnThread(t)).ToList();
        if (foreign.Count > 0) return false; // someone's live threads: leave it alone
        try
        {
            foreach (int tid in live) MoveHome(tid);
            RemoveDirectoryRetrying(dir);
            lock (_gate) _staleRemoved.Add(dir);
            return true;
        }
        catch (CpuControlException e)
        {
            lock (_gate) _warnings.Add($"stale group {dir} not removed: {e.Message}");
            return false;
        }
    }

    /// <summary>Moves a thread of this process out of any group (ended threads are fine).</summary>
    internal void MoveHome(int tid)
    {
        try { Fs.Write(EvacuationFile, tid.ToString(CultureInfo.InvariantCulture)); }
        catch (CpuControlException e) when (e.Errno == Native.ESRCH) { }
    }

    /// <summary>rmdir; EBUSY right after the last thread left is retried briefly.</summary>
    internal void RemoveDirectoryRetrying(string dir)
    {
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                Fs.RemoveDirectory(dir);
                return;
            }
            catch (CpuControlException e) when (e.Errno == Native.EBUSY && attempt < 20)
            {
                Thread.Sleep(5);
            }
        }
    }

    // ---- groups ------------------------------------------------------------------------

    public CpuGroup CreateGroup(string name)
    {
        string clean = CpuWeights.SanitizeName(name);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_groups.Any(g => g.Name == clean))
                throw new InvalidOperationException($"CPU group '{clean}' already exists in {InstancePath}");
            string dir = Path.Combine(InstancePath, clean);
            Fs.CreateDirectory(dir);
            try
            {
                PrepareGroup(dir);
                WriteWeight(dir, CpuWeights.DefaultWeight);
                WriteCap(dir, 0);
            }
            catch
            {
                TryRemoveDirectory(dir);
                throw;
            }
            var g = new CgroupCpuGroup(this, clean, dir);
            _groups.Add(g);
            return g;
        }
    }

    internal void Forget(CgroupCpuGroup g)
    {
        lock (_gate) _groups.Remove(g);
    }

    /// <summary>Live thread ids listed in a group directory.</summary>
    internal IReadOnlyList<int> LiveMembers(string dir) =>
        MembershipFiles.SelectMany(f => Fs.ReadIds(Path.Combine(dir, f))).Distinct().Where(Fs.ThreadAlive).ToList();

    internal void WriteMembership(string dir, int tid) =>
        Fs.Write(Path.Combine(dir, MembershipFile), tid.ToString(CultureInfo.InvariantCulture));

    internal CgroupFs FileSystem => Fs;

    /// <summary>
    /// The membership file of the cgroup process <paramref name="pid"/> is in, in this
    /// hierarchy (v1: the /proc/PID/cgroup line naming the cpu controller); null if unknown.
    /// </summary>
    internal string? CurrentMembershipFile(int pid)
    {
        string text;
        try { text = Fs.Read($"/proc/{pid}/cgroup"); }
        catch (CpuControlException) { return null; }
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(':', 3);
            if (parts.Length != 3 || !parts[1].Split(',').Contains("cpu")) continue;
            string dir = Path.Combine(RootPath, parts[2].TrimStart('/'));
            return Path.Combine(Path.TrimEndingDirectorySeparator(dir), MembershipFile);
        }
        return null;
    }

    // ---- dispose -----------------------------------------------------------------------

    /// <summary>Removes every group of this instance (moving surviving threads back), its directory and, for the last instance of the process, the PID directory. Never throws; problems go to <see cref="Warnings"/>.</summary>
    public void Dispose()
    {
        CgroupCpuGroup[] groups;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            groups = _groups.ToArray();
        }
        if (_onExit != null) AppDomain.CurrentDomain.ProcessExit -= _onExit;
        foreach (var g in groups)
        {
            try { g.Remove(); }
            catch (Exception e) when (e is CpuControlException or IOException)
            {
                lock (_gate) _warnings.Add($"group {g.Path} not removed: {e.Message}");
            }
        }
        lock (s_gate)
        {
            try
            {
                foreach (int tid in LiveMembers(InstancePath).Where(Fs.IsOwnThread)) MoveHome(tid);
                RemoveDirectoryRetrying(InstancePath);
            }
            catch (CpuControlException e)
            {
                lock (_gate) _warnings.Add($"instance directory {InstancePath} not removed: {e.Message}");
            }
            s_liveInstances.Remove(InstancePath);
            int refs = s_processRefs.GetValueOrDefault(ProcessPath) - 1;
            if (refs > 0)
            {
                s_processRefs[ProcessPath] = refs;
                return;
            }
            s_processRefs.Remove(ProcessPath);
            try
            {
                LeaveProcessDirectory();
                RemoveDirectoryRetrying(ProcessPath);
            }
            catch (CpuControlException e)
            {
                lock (_gate) _warnings.Add($"process directory {ProcessPath} not removed: {e.Message}");
            }
        }
    }

    protected static bool ListContains(string list, string word) =>
        list.Split((char[])[' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries).Contains(word);
}

/// <summary>One cgroup directory of a <see cref="CgroupCpuController"/>.</summary>
public sealed class CgroupCpuGroup : CpuGroup
{
    private readonly CgroupCpuController _owner;

    internal CgroupCpuGroup(CgroupCpuController owner, string name, string path) : base(name)
    {
        _owner = owner;
        Path = path;
    }

    public override string Path { get; }

    protected override void ApplyWeight(int weight) => _owner.WriteWeight(Path, weight);

    protected override void ApplyCap(int percent) => _owner.WriteCap(Path, percent);

    protected override void ApplyAddThread(int tid) => _owner.WriteMembership(Path, tid);

    protected override void ApplyRemoveThread(int tid) => _owner.MoveHome(tid);

    // Adopted processes (process domains' programs): pid -> the membership file they came from.
    private readonly Dictionary<int, string> _adopted = new();

    protected override bool ApplyAddProcess(int pid)
    {
        if (_owner is not CgroupV1CpuController) return false; // v2: another process's threads cannot join our threaded subtree
        if (!_adopted.ContainsKey(pid))
        {
            string? from = _owner.CurrentMembershipFile(pid);
            if (from is null) return false;
            _adopted[pid] = from;
        }
        foreach (int tid in _owner.FileSystem.ProcessThreads(pid))
        {
            try { _owner.WriteMembership(Path, tid); }
            catch (CpuControlException e) when (e.Errno == Native.ESRCH) { }
        }
        return true;
    }

    protected override void ApplyRemove()
    {
        // Threads of adopted programs (and threads they started since) go back where they came from.
        foreach (var (pid, from) in _adopted)
            foreach (int tid in _owner.FileSystem.ProcessThreads(pid))
            {
                try { _owner.FileSystem.Write(from, tid.ToString(CultureInfo.InvariantCulture)); }
                catch (CpuControlException e) when (e.Errno == Native.ESRCH) { }
            }
        var adopted = _adopted.Keys.ToHashSet();
        _adopted.Clear();
        // A program killed with SIGKILL leaves its threads in the group as zombies until its
        // parent reaps it (they cannot be moved any more): wait a little for that, but only for
        // threads of the programs this group adopted.
        var deadline = Environment.TickCount64 + 3000;
        IReadOnlyList<int> live;
        List<int> foreign;
        while (true)
        {
            live = _owner.LiveMembers(Path);
            foreign = live.Where(t => !_owner.FileSystem.IsOwnThread(t)).ToList();
            if (foreign.Count == 0) break;
            if (Environment.TickCount64 > deadline || !foreign.All(t => adopted.Contains(ThreadGroupOf(t) ?? -1) || ThreadGroupOf(t) is null))
                throw new CpuControlException($"cannot remove {Path}: threads {string.Join(',', foreign)} of another process are in it", Native.EBUSY, Path);
            Thread.Sleep(10);
        }
        foreach (int tid in live) _owner.MoveHome(tid);
        _owner.RemoveDirectoryRetrying(Path);
    }

    protected override void OnRemoved() => _owner.Forget(this);

    /// <summary>The process (thread group) a thread belongs to; null when the thread is gone or a zombie's status is unreadable.</summary>
    private static int? ThreadGroupOf(int tid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{tid}/status"))
                if (line.StartsWith("Tgid:", StringComparison.Ordinal))
                    return int.Parse(line.AsSpan(5).Trim(), CultureInfo.InvariantCulture);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    public override string Describe()
    {
        var t = _owner.LiveMembers(Path); // what the kernel has in the group now
        return $"{Name}: {_owner.DescribeValues(Path, Weight, Cap)}, threads {(t.Count == 0 ? "-" : string.Join(',', t))}";
    }
}

/// <summary>
/// cgroup v1 <c>cpu</c> hierarchy. weight -> cpu.shares (weight*4), cap -> cpu.cfs_quota_us
/// per cpu.cfs_period_us = 100000 (-1: none), threads -> tasks. Any thread id can be moved
/// anywhere in v1, so the process itself stays where it is; threads leaving a group go back
/// to the process's own cpu cgroup (<see cref="CgroupCpuController.HomePath"/>).
/// </summary>
public sealed class CgroupV1CpuController : CgroupCpuController
{
    private CgroupV1CpuController(CgroupFs fs, string root, string home, string parentName) : base(fs, root, home, parentName) { }

    public override CpuControlMode Mode => CpuControlMode.CgroupV1;
    protected override string MembershipFile => "tasks";
    protected override string EvacuationFile => Path.Combine(HomePath, "tasks");

    /// <summary>
    /// Opens the hierarchy mounted at <paramref name="root"/>. <paramref name="home"/>: the
    /// cgroup directory the process is in (threads go back there); null: <paramref name="root"/>.
    /// </summary>
    public static CgroupV1CpuController Open(string root, string? home = null, CgroupFs? fs = null, string parentName = "hypernf")
    {
        var c = new CgroupV1CpuController(fs ?? CgroupFs.Real, root, home ?? root, parentName);
        c.Start();
        return c;
    }

    protected override void PrepareRoot()
    {
        string shares = Path.Combine(RootPath, "cpu.shares");
        if (!Fs.FileExists(shares)) throw CpuControlException.For("find the v1 cpu controller file", shares, Native.ENOENT);
        string quota = Path.Combine(RootPath, "cpu.cfs_quota_us");
        if (!Fs.FileExists(quota)) throw CpuControlException.For("find the v1 CFS bandwidth file (CONFIG_CFS_BANDWIDTH)", quota, Native.ENOENT);
    }

    internal override void WriteWeight(string dir, int weight) =>
        Fs.Write(Path.Combine(dir, "cpu.shares"), CpuWeights.V1Shares(weight).ToString(CultureInfo.InvariantCulture));

    internal override void WriteCap(string dir, int cap)
    {
        Fs.Write(Path.Combine(dir, "cpu.cfs_period_us"), CpuWeights.PeriodUs.ToString(CultureInfo.InvariantCulture));
        Fs.Write(Path.Combine(dir, "cpu.cfs_quota_us"), CpuWeights.QuotaUs(cap).ToString(CultureInfo.InvariantCulture));
    }

    internal override string DescribeValues(string dir, int weight, int cap) =>
        $"weight {weight} (cpu.shares {CpuWeights.V1Shares(weight)}), cap {(cap == 0 ? "none (cpu.cfs_quota_us -1)" : $"{cap}% (cpu.cfs_quota_us {CpuWeights.QuotaUs(cap)}/{CpuWeights.PeriodUs})")}";

    public override string Describe() =>
        $"cgroup v1 cpu controller at {RootPath}; groups in {InstancePath}; weight -> cpu.shares (weight*1024/256), cap -> cpu.cfs_quota_us per {CpuWeights.PeriodUs} us, threads -> tasks";
}

/// <summary>
/// cgroup v2 threaded groups. weight -> cpu.weight (clamp(weight*100/256, 1, 10000)), cap ->
/// cpu.max ("QUOTA 100000" or "max 100000"), threads -> cgroup.threads.
/// <para>
/// The v2 constraint: threads of one process can only be spread over the cgroups of one
/// threaded subtree, and the process itself must be in that subtree's root (the threaded
/// domain). So the first controller of the process moves the whole process (cgroup.procs)
/// into ROOT/hypernf/PID, enables +cpu on ROOT, ROOT/hypernf, ROOT/hypernf/PID and hN,
/// makes hN and every group <c>threaded</c>; the last one moves the process back to the cgroup
/// it came from. Moving the process takes it out of its previous cgroup (its memory/pids
/// limits, a systemd unit's accounting) while hosts are running. If any step is refused
/// (no delegation, cpu controller not available, the process already in someone's threaded
/// subtree, "no internal processes" on a non-root parent), detection falls back to
/// accounting-only with a warning naming the file.
/// </para>
/// </summary>
public sealed class CgroupV2CpuController : CgroupCpuController
{
    // Per process directory: the cgroup.procs the process came from (shared by the instances of the process).
    private static readonly Dictionary<string, string> s_originalProcs = new(StringComparer.Ordinal);

    private CgroupV2CpuController(CgroupFs fs, string root, string home, string parentName) : base(fs, root, home, parentName) { }

    public override CpuControlMode Mode => CpuControlMode.CgroupV2;
    protected override string MembershipFile => "cgroup.threads";
    protected override string EvacuationFile => Path.Combine(ProcessPath, "cgroup.threads");

    /// <summary>
    /// Opens the v2 hierarchy mounted at <paramref name="root"/>. <paramref name="home"/>: the
    /// cgroup directory the process is in now (it is moved back there at the end); null: <paramref name="root"/>.
    /// </summary>
    public static CgroupV2CpuController Open(string root, string? home = null, CgroupFs? fs = null, string parentName = "hypernf")
    {
        var c = new CgroupV2CpuController(fs ?? CgroupFs.Real, root, home ?? root, parentName);
        c.Start();
        return c;
    }

    private void EnableCpu(string dir)
    {
        string ctl = Path.Combine(dir, "cgroup.subtree_control");
        if (!ListContains(Fs.Read(ctl), "cpu")) Fs.Write(ctl, "+cpu");
    }

    protected override void PrepareRoot()
    {
        string controllers = Path.Combine(RootPath, "cgroup.controllers");
        string list = Fs.Read(controllers);
        if (!ListContains(list, "cpu"))
            throw new CpuControlException($"the cpu controller is not available in cgroup v2 at {RootPath} ({controllers}: '{list.Trim()}'; it is probably bound to a v1 hierarchy)", Native.ENOENT, controllers);
        EnableCpu(RootPath);
    }

    protected override void PrepareParent() => EnableCpu(ParentPath);

    protected override void EnterProcessDirectory()
    {
        string procs = Path.Combine(ProcessPath, "cgroup.procs");
        var inside = Fs.ReadIds(procs);
        if (!inside.Contains(Environment.ProcessId))
        {
            Fs.Write(procs, Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            s_originalProcs[ProcessPath] = Path.Combine(HomePath, "cgroup.procs");
        }
        EnableCpu(ProcessPath);
    }

    protected override void LeaveProcessDirectory()
    {
        // Called under the base class's process-wide lock, like EnterProcessDirectory.
        if (!s_originalProcs.Remove(ProcessPath, out var back)) return;
        try
        {
            Fs.Write(back, Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        }
        catch (CpuControlException) when (back != Path.Combine(RootPath, "cgroup.procs"))
        {
            // The original cgroup went away or refuses processes now: the root always takes them.
            Fs.Write(Path.Combine(RootPath, "cgroup.procs"), Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        }
    }

    protected override void PrepareInstance(string dir)
    {
        MakeThreaded(dir);
        EnableCpu(dir);
    }

    protected override void PrepareGroup(string dir) => MakeThreaded(dir);

    private void MakeThreaded(string dir)
    {
        string type = Path.Combine(dir, "cgroup.type");
        if (Fs.Read(type).Trim() != "threaded") Fs.Write(type, "threaded");
    }

    protected override IEnumerable<string> MembershipFiles => ["cgroup.threads", "cgroup.procs"];

    internal override void WriteWeight(string dir, int weight) =>
        Fs.Write(Path.Combine(dir, "cpu.weight"), CpuWeights.V2Weight(weight).ToString(CultureInfo.InvariantCulture));

    internal override void WriteCap(string dir, int cap) => Fs.Write(Path.Combine(dir, "cpu.max"), CpuWeights.V2Max(cap));

    internal override string DescribeValues(string dir, int weight, int cap) =>
        $"weight {weight} (cpu.weight {CpuWeights.V2Weight(weight)}), cap {(cap == 0 ? "none" : cap + "%")} (cpu.max {CpuWeights.V2Max(cap)})";

    public override string Describe() =>
        $"cgroup v2 (threaded) at {RootPath}; groups in {InstancePath}; weight -> cpu.weight (weight*100/256), cap -> cpu.max per {CpuWeights.PeriodUs} us, threads -> cgroup.threads";
}

/// <summary>No enforcement: groups record weight, cap and threads; CPU time is only measured (schedstat).</summary>
public sealed class AccountingOnlyCpuController : ICpuController
{
    private readonly object _gate = new();
    private readonly List<CpuGroup> _groups = new();

    public AccountingOnlyCpuController(string? reason = null) => Reason = reason;

    /// <summary>Why nothing is enforced (null: chosen explicitly).</summary>
    public string? Reason { get; }
    public CpuControlMode Mode => CpuControlMode.AccountingOnly;
    public bool Enforcing => false;
    public string? RootPath => null;
    public string? InstancePath => null;
    public IReadOnlyList<CpuGroup> Groups { get { lock (_gate) return _groups.ToArray(); } }

    public CpuGroup CreateGroup(string name)
    {
        string clean = CpuWeights.SanitizeName(name);
        lock (_gate)
        {
            if (_groups.Any(g => g.Name == clean)) throw new InvalidOperationException($"CPU group '{clean}' already exists");
            var g = new RecordedGroup(this, clean);
            _groups.Add(g);
            return g;
        }
    }

    public string Describe() =>
        "accounting only: weights and caps recorded, not enforced; CPU time measured per thread (schedstat)" + (Reason != null ? $" ({Reason})" : "");

    public void Dispose()
    {
        foreach (var g in Groups) g.Remove();
    }

    private sealed class RecordedGroup(AccountingOnlyCpuController owner, string name) : CpuGroup(name)
    {
        public override string? Path => null;
        protected override void ApplyWeight(int weight) { }
        protected override void ApplyCap(int percent) { }
        protected override void ApplyAddThread(int tid) { }
        protected override void ApplyRemoveThread(int tid) { }
        protected override void ApplyRemove() { }
        protected override void OnRemoved()
        {
            lock (owner._gate) owner._groups.Remove(this);
        }
    }
}
