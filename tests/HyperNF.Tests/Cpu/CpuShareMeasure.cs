using System.Diagnostics;
using System.Globalization;
using HyperNF.Hypervisor;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Cpu;

/// <summary>
/// The tests' own parent in the real v1 cpu hierarchy, <c>hypernf-test-PID</c>. Controllers
/// opened with <see cref="Name"/> as their parent put their groups below it. While
/// <see cref="Boost"/> is in effect the parent has 32 times the cpu.shares of a task, so the
/// threads under test win their CPU against whatever else the machine runs (builds, other
/// test runs: tasks of weight 1024 at the root) and only the caps and weights under test
/// decide how that CPU is split. Without it a cap of 30% cannot be told from a thread that
/// simply did not get a core. Boost only while measuring, after every thread is in its
/// group: a thread still in the root group (a vCPU just started, before it is bound) would
/// get 1/33 of a CPU it is pinned to. Created once for the "real cgroup" collection, removed
/// after it (with any left behind by a killed run).
/// </summary>
public sealed class BoostedCgroupParent : IDisposable
{
    private const string Prefix = "hypernf-test-";
    private const string Normal = "1024", Boosted = "32768";

    public string Name { get; } = Prefix + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

    private readonly string? _path;

    public BoostedCgroupParent()
    {
        if (RealCgroupV1.Unavailable != null) return;
        string root = RealCgroupV1.Mounts.V1Cpu!;
        foreach (string stale in Directory.GetDirectories(root, Prefix + "*"))
            if (int.TryParse(Path.GetFileName(stale)[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && !Directory.Exists($"/proc/{pid}"))
                RemoveTree(stale);
        _path = Path.Combine(root, Name);
        CgroupFs.Real.CreateDirectory(_path);
        CgroupFs.Real.Write(Path.Combine(_path, "cpu.shares"), Normal);
    }

    /// <summary>A v1 controller whose groups live under this parent.</summary>
    public ICpuController Open() => RealCgroupV1.Open(Name);

    public CpuControlOptions Options => new() { Mode = CpuControlMode.CgroupV1, ParentName = Name };

    /// <summary>Raises the parent's cpu.shares until disposed.</summary>
    public IDisposable Boost()
    {
        string file = Path.Combine(_path!, "cpu.shares");
        CgroupFs.Real.Write(file, Boosted);
        return new Restore(() => CgroupFs.Real.Write(file, Normal));
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    public void Dispose()
    {
        if (_path != null) RemoveTree(_path);
    }

    /// <summary>rmdir depth first; a group that still has tasks stays (and is reported by the tests that made it).</summary>
    private static void RemoveTree(string dir)
    {
        try
        {
            foreach (string sub in Directory.GetDirectories(dir)) RemoveTree(sub);
            CgroupFs.Real.RemoveDirectory(dir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CpuControlException)
        {
        }
    }
}

/// <summary>
/// CPU shares measured in windows: each window is checked against the hard bounds (what must
/// hold however busy the machine is), and windows are repeated until one meets the target or
/// a time budget is spent. A single noisy window cannot fail a test; behaviour that is wrong
/// misses the target in every window and fails.
/// </summary>
internal static class CpuShareMeasure
{
    /// <summary>
    /// Measures windows of <paramref name="window"/> (after <paramref name="settle"/>) of the CPU
    /// time of each counter in <paramref name="cpuNs"/>, as a fraction of one CPU, until
    /// <paramref name="target"/> accepts one; at most <paramref name="budget"/> in all. Every
    /// window goes through <paramref name="hard"/> first. Returns the accepted window, or fails
    /// with every window measured.
    /// </summary>
    public static double[] Until(ITestOutputHelper log, string what, Func<long>[] cpuNs, Action<double[]> hard, Func<double[], bool> target,
        TimeSpan? window = null, TimeSpan? budget = null, TimeSpan? settle = null)
    {
        var w = window ?? TimeSpan.FromSeconds(1);
        var total = Stopwatch.StartNew();
        var limit = budget ?? TimeSpan.FromSeconds(8);
        Thread.Sleep(settle ?? TimeSpan.FromMilliseconds(200));
        var seen = new List<string>();
        while (true)
        {
            long[] a = cpuNs.Select(f => f()).ToArray();
            var clock = Stopwatch.StartNew();
            Thread.Sleep(w);
            long[] b = cpuNs.Select(f => f()).ToArray();
            double ns = clock.Elapsed.TotalNanoseconds;
            double[] shares = a.Zip(b, (x, y) => (y - x) / ns).ToArray();
            string text = string.Join(" ", shares.Select(v => v.ToString("P1", CultureInfo.InvariantCulture)));
            log.WriteLine($"{what}: {text} over {clock.Elapsed.TotalSeconds:F2} s");
            seen.Add(text);
            hard(shares);
            if (target(shares)) return shares;
            if (total.Elapsed + w > limit)
                Assert.Fail($"{what}: no window of {w.TotalSeconds:F1} s met the target within {limit.TotalSeconds:F0} s; measured: {string.Join("; ", seen)}");
        }
    }
}
