using HyperNF.Hypervisor;
using HyperNF.Linux;

namespace HyperNF.Tests.Cpu;

/// <summary>
/// A cgroup file system imitated in a temp directory: mkdir creates the control files the
/// kernel would, writing a thread id to tasks/cgroup.threads/cgroup.procs moves it (out of
/// every other group), rmdir refuses while live threads or child groups remain, writes to
/// files that do not exist fail with ENOENT, and chosen files can be made to fail.
/// </summary>
internal sealed class FakeCgroupFs : CgroupFs, IDisposable
{
    private static readonly string[] Membership = ["tasks", "cgroup.threads", "cgroup.procs"];
    private readonly object _gate = new();

    public string Root { get; }
    public int Version { get; }
    /// <summary>File name (cpu.shares) or full path -> errno for writes.</summary>
    public Dictionary<string, int> FailWrites { get; } = new();
    public List<(string File, string Value)> Writes { get; } = new();

    public FakeCgroupFs(int version, bool v2HasCpu = true)
    {
        Version = version;
        Root = Path.Combine(Path.GetTempPath(), $"hypernf-fakecg-v{version}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Root);
        Populate(Root, isRoot: true, v2HasCpu);
    }

    private void Populate(string dir, bool isRoot = false, bool v2HasCpu = true)
    {
        void F(string name, string text) => File.WriteAllText(Path.Combine(dir, name), text);
        if (Version == 1)
        {
            F("cpu.shares", "1024\n");
            F("cpu.cfs_quota_us", "-1\n");
            F("cpu.cfs_period_us", "100000\n");
            F("tasks", "");
            F("cgroup.procs", "");
        }
        else
        {
            F("cgroup.controllers", isRoot ? (v2HasCpu ? "cpuset cpu io memory pids\n" : "cpuset io memory pids\n") : "cpu\n");
            F("cgroup.subtree_control", "");
            F("cgroup.threads", "");
            F("cgroup.procs", "");
            if (!isRoot)
            {
                F("cgroup.type", "domain\n");
                F("cpu.weight", "100\n");
                F("cpu.max", "max 100000\n");
            }
        }
    }

    /// <summary>Makes a directory with control files directly (a stale group from "another run").</summary>
    public string MakeGroup(string relative, params int[] tids)
    {
        string dir = Root;
        foreach (var part in relative.Split('/'))
        {
            dir = Path.Combine(dir, part);
            if (!Directory.Exists(dir))
            {
                Directory.CreateDirectory(dir);
                Populate(dir);
            }
        }
        if (tids.Length > 0)
            File.WriteAllText(Path.Combine(dir, Version == 1 ? "tasks" : "cgroup.threads"), string.Join("", tids.Select(t => t + "\n")));
        return dir;
    }

    public string ReadText(string relative) => File.ReadAllText(Path.Combine(Root, relative)).Trim();

    public override void CreateDirectory(string path)
    {
        lock (_gate)
        {
            if (Directory.Exists(path)) return;
            if (!Directory.Exists(Path.GetDirectoryName(path))) throw CpuControlException.For("mkdir", path, Native.ENOENT);
            Directory.CreateDirectory(path);
            Populate(path);
        }
    }

    public override void RemoveDirectory(string path)
    {
        lock (_gate)
        {
            if (!Directory.Exists(path)) return;
            if (Directory.GetDirectories(path).Length > 0) throw CpuControlException.For("rmdir", path, Native.EBUSY);
            foreach (var m in Membership)
                if (ReadIds(Path.Combine(path, m)).Any(ThreadAlive)) throw CpuControlException.For("rmdir", path, Native.EBUSY);
            Directory.Delete(path, recursive: true);
        }
    }

    public override void Write(string file, string value)
    {
        lock (_gate)
        {
            if (FailWrites.TryGetValue(Path.GetFileName(file), out int e) || FailWrites.TryGetValue(file, out e))
                throw CpuControlException.For($"write '{value}' to", file, e);
            if (!File.Exists(file)) throw CpuControlException.For($"write '{value}' to", file, Native.ENOENT);
            Writes.Add((file, value));
            string name = Path.GetFileName(file);
            if (Membership.Contains(name))
            {
                int tid = int.Parse(value);
                if (!ThreadAlive(tid)) throw CpuControlException.For($"write '{value}' to", file, Native.ESRCH);
                foreach (var other in Directory.EnumerateFiles(Root, name, SearchOption.AllDirectories))
                {
                    var ids = ReadIds(other);
                    if (ids.Contains(tid)) File.WriteAllText(other, string.Join("", ids.Where(i => i != tid).Select(i => i + "\n")));
                }
                File.AppendAllText(file, tid + "\n");
                if (name == "cgroup.procs" && tid == Environment.ProcessId)
                {
                    // Moving a process moves all its threads (out of any threaded group).
                    foreach (var threads in Directory.EnumerateFiles(Root, "cgroup.threads", SearchOption.AllDirectories))
                    {
                        var ids = ReadIds(threads);
                        if (ids.Any(IsOwnThread)) File.WriteAllText(threads, string.Join("", ids.Where(i => !IsOwnThread(i)).Select(i => i + "\n")));
                    }
                }
            }
            else if (name == "cgroup.subtree_control")
            {
                var set = File.ReadAllText(file).Split(' ', '\n', StringSplitOptions.RemoveEmptyEntries).ToList();
                foreach (var tok in value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    if (tok[0] == '+' && !set.Contains(tok[1..])) set.Add(tok[1..]);
                    if (tok[0] == '-') set.Remove(tok[1..]);
                }
                File.WriteAllText(file, string.Join(' ', set) + "\n");
            }
            else File.WriteAllText(file, value + "\n");
        }
    }

    /// <summary>Directories under the root, relative, sorted.</summary>
    public string[] Tree() => Directory.GetDirectories(Root, "*", SearchOption.AllDirectories)
        .Select(d => Path.GetRelativePath(Root, d)).OrderBy(d => d, StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
