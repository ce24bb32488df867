using System.Runtime.InteropServices;

namespace HyperNF.Linux;

/// <summary>
/// Moves the calling thread into a named network namespace (<c>ip netns</c>'s
/// /var/run/netns/NAME) with setns(2). Only that thread moves; sockets it opens stay in the
/// namespace afterwards. Dispose moves the thread back.
/// </summary>
internal sealed partial class NetNamespace : IDisposable
{
    private const int CLONE_NEWNET = 0x40000000;
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _home;
    private bool _left;

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNs(nint fd, int nstype);

    private NetNamespace(Microsoft.Win32.SafeHandles.SafeFileHandle home) => _home = home;

    /// <summary>Enters namespace <paramref name="name"/> on this thread until the result is disposed.</summary>
    public static NetNamespace Enter(string name)
    {
        var home = File.OpenHandle("/proc/thread-self/ns/net");
        string path = $"/var/run/netns/{name}";
        if (!File.Exists(path))
        {
            home.Dispose();
            throw new ArgumentException($"network namespace '{name}' does not exist; list them with 'ip netns'");
        }
        using var target = File.OpenHandle(path);
        if (SetNs(target.DangerousGetHandle(), CLONE_NEWNET) != 0)
        {
            home.Dispose();
            Native.ThrowLastError($"setns into network namespace '{name}' (needs CAP_SYS_ADMIN)");
        }
        return new NetNamespace(home);
    }

    public void Dispose()
    {
        if (_left) return;
        _left = true;
        SetNs(_home.DangerousGetHandle(), CLONE_NEWNET);
        _home.Dispose();
    }
}
