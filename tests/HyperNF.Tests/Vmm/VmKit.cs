using HyperNF.Hypervisor;
using HyperNF.Vmm;
using Xunit;

namespace HyperNF.Tests.Vmm;

/// <summary>A fact that needs /dev/kvm; skipped with the reason where it cannot be opened.</summary>
public sealed class KvmFactAttribute : FactAttribute
{
    public KvmFactAttribute()
    {
        if (KvmPlatform.Current.Unavailable is { } why) Skip = $"needs KVM: {why}";
    }
}

/// <summary>A theory that needs /dev/kvm.</summary>
public sealed class KvmTheoryAttribute : TheoryAttribute
{
    public KvmTheoryAttribute()
    {
        if (KvmPlatform.Current.Unavailable is { } why) Skip = $"needs KVM: {why}";
    }
}

/// <summary>Helpers for VM tests: image files (named vmm-*), waiting for domain states.</summary>
internal static class VmKit
{
    private static int _seq;

    /// <summary>A fresh temp path for an image; deleted by the caller's <see cref="TempImage"/>.</summary>
    public static TempImage Image(MicroGuest g) => new(g.WriteTo(Path.Combine(Path.GetTempPath(), $"vmm-{Environment.ProcessId}-{Interlocked.Increment(ref _seq)}.elf")));

    public static bool WaitFor(Func<bool> cond, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            if (cond()) return true;
            Thread.Sleep(5);
        }
        return cond();
    }

    public static void WaitState(Domain d, DomainState state, TimeSpan timeout) =>
        Assert.True(WaitFor(() => d.State == state, timeout), $"domain {d.Name} is {d.State} ({d.CrashReason}), expected {state} within {timeout.TotalSeconds} s");
}

internal sealed class TempImage(string path) : IDisposable
{
    public string Path { get; } = path;
    public void Dispose() { try { File.Delete(Path); } catch (IOException) { } }
}
