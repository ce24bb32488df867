using System.Runtime.InteropServices;

namespace HyperNF.Linux;

/// <summary>
/// File-system checks the control daemon needs around its Unix socket: what kind of file
/// sits at a path (statx: the same struct layout on every architecture) and the umask, so
/// the socket is created with mode 0600 rather than narrowed after the fact.
/// </summary>
internal static unsafe partial class SocketFiles
{
    private const int AT_FDCWD = -100;
    private const int AT_SYMLINK_NOFOLLOW = 0x100;
    private const uint STATX_TYPE = 0x1;
    private const uint STATX_MODE = 0x2;
    private const uint STATX_UID = 0x8;
    private const int S_IFMT = 0xF000;
    private const int S_IFSOCK = 0xC000;
    private const int ENOENT = 2;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "umask")]
    private static partial uint Umask(uint mask);

    [LibraryImport("libc", EntryPoint = "getuid")]
    public static partial uint GetUid();

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    public enum Kind { Missing, Socket, Other }

    /// <summary>What is at <paramref name="path"/> (a symlink is not followed: it is <see cref="Kind.Other"/>).</summary>
    public static Kind KindOf(string path) => Stat(path, out _, out _);

    /// <summary>statx(2) of <paramref name="path"/>: kind, permission bits and owner.</summary>
    public static Kind Stat(string path, out int mode, out uint uid)
    {
        byte* buf = stackalloc byte[256];
        mode = 0;
        uid = 0;
        if (Statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID, buf) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == ENOENT) return Kind.Missing;
            throw new IOException($"cannot inspect {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        // struct statx: stx_uid at 20 (u32), stx_mode at 28 (u16).
        uid = *(uint*)(buf + 20);
        int m = *(ushort*)(buf + 28);
        mode = m & 0xFFF;
        return (m & S_IFMT) == S_IFSOCK ? Kind.Socket : Kind.Other;
    }

    private const int RLIMIT_NOFILE = 7;

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetRlimit(int resource, ulong* limits);

    /// <summary>The soft limit on open file descriptors (RLIMIT_NOFILE; the runtime raises it to the hard limit at start).</summary>
    public static long OpenFileLimit()
    {
        ulong* l = stackalloc ulong[2];
        if (GetRlimit(RLIMIT_NOFILE, l) != 0) return 1024; // the kernel's default soft limit
        return l[0] > long.MaxValue ? long.MaxValue : (long)l[0];
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    private const short POLLERR = 0x8, POLLHUP = 0x10;

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    /// <summary>
    /// True when the peer of connected stream socket <paramref name="socket"/> has closed it
    /// entirely (POLLHUP or POLLERR), as opposed to a shutdown of its sending side only, after
    /// which a read ends but the peer still reads (POLLIN|POLLRDHUP without POLLHUP on AF_UNIX).
    /// </summary>
    public static bool PeerHungUp(System.Net.Sockets.Socket socket)
    {
        var fd = new PollFd { Fd = (int)socket.Handle, Events = 0 };
        int n = Poll(&fd, 1, 0);
        if (n < 0) throw new IOException($"poll on a client connection failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        return n > 0 && (fd.Revents & (POLLHUP | POLLERR)) != 0;
    }

    /// <summary>Runs <paramref name="action"/> with the process umask set to <paramref name="mask"/> (octal 0177: files come out 0600).</summary>
    public static void WithUmask(uint mask, Action action)
    {
        uint old = Umask(mask);
        try
        {
            action();
        }
        finally
        {
            Umask(old);
        }
    }
}
