using HyperNF.Linux;

namespace HyperNF.Hypervisor;

/// <summary>
/// The file operations the cgroup controllers use, on a real cgroup file system (default)
/// or, overridden, on a fake one in tests (a plain directory where mkdir does not create the
/// control files and writing a thread id does not move anything by itself).
/// Every failure is a <see cref="CpuControlException"/> naming the file and the errno.
/// </summary>
public class CgroupFs
{
    public static CgroupFs Real { get; } = new();

    public virtual bool DirectoryExists(string path) => Directory.Exists(path);

    public virtual bool FileExists(string path) => File.Exists(path);

    /// <summary>Child directories (full paths); empty if <paramref name="path"/> is gone.</summary>
    public virtual IReadOnlyList<string> SubDirectories(string path)
    {
        try { return Directory.GetDirectories(path); }
        catch (DirectoryNotFoundException) { return []; }
    }

    /// <summary>mkdir; an existing directory is fine.</summary>
    public virtual void CreateDirectory(string path)
    {
        int e = Native.Mkdir(path);
        if (e != 0 && e != Native.EEXIST) throw CpuControlException.For("mkdir", path, e);
    }

    /// <summary>rmdir; a directory already gone is fine. EBUSY while threads remain.</summary>
    public virtual void RemoveDirectory(string path)
    {
        int e = Native.Rmdir(path);
        if (e != 0 && e != Native.ENOENT) throw CpuControlException.For("rmdir", path, e);
    }

    /// <summary>Writes one value with one write(2).</summary>
    public virtual void Write(string file, string value)
    {
        int e = Native.WriteOnce(file, value);
        if (e != 0) throw CpuControlException.For($"write '{value.Trim()}' to", file, e);
    }

    public virtual string Read(string file)
    {
        try { return File.ReadAllText(file); }
        catch (FileNotFoundException) { throw CpuControlException.For("read", file, Native.ENOENT); }
        catch (DirectoryNotFoundException) { throw CpuControlException.For("read", file, Native.ENOENT); }
        catch (UnauthorizedAccessException) { throw CpuControlException.For("read", file, Native.EACCES); }
        catch (IOException e) when (e is not CpuControlException) { throw new CpuControlException($"read {file} failed: {e.Message}", e.HResult, file, e); }
    }

    /// <summary>Thread ids listed in a membership file (tasks, cgroup.threads); empty if unreadable.</summary>
    public IReadOnlyList<int> ReadIds(string file)
    {
        string text;
        try { text = Read(file); }
        catch (CpuControlException) { return []; }
        var ids = new List<int>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (int.TryParse(line, out int id) && id > 0) ids.Add(id);
        return ids;
    }

    /// <summary>Whether thread/process <paramref name="tid"/> exists (as seen in /proc).</summary>
    public virtual bool ThreadAlive(int tid) => Directory.Exists($"/proc/{tid}");

    /// <summary>Whether <paramref name="tid"/> is a thread of this process.</summary>
    /// <summary>Thread ids of process <paramref name="pid"/> (/proc/PID/task); empty when it is gone.</summary>
    public virtual IReadOnlyList<int> ProcessThreads(int pid)
    {
        try
        {
            return Directory.GetDirectories($"/proc/{pid}/task")
                .Select(d => int.TryParse(System.IO.Path.GetFileName(d), out int t) ? t : 0).Where(t => t > 0).ToArray();
        }
        catch (IOException) { return []; }
        catch (UnauthorizedAccessException) { return []; }
    }

    public virtual bool IsOwnThread(int tid) => Directory.Exists($"/proc/self/task/{tid}");
}
