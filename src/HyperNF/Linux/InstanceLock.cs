using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace HyperNF.Linux;

/// <summary>Why an <see cref="InstanceLock"/> could not be taken.</summary>
internal enum InstanceLockRefusal
{
    /// <summary>Another process holds the lock (the daemon runs).</summary>
    Held,
    /// <summary>The directory, or a file at the lock's path, lets someone other than this user hold or replace the lock.</summary>
    Unsafe,
    /// <summary>The lock file cannot be created or opened (permissions, missing directory ...).</summary>
    Failed,
}

internal sealed class InstanceLockException(InstanceLockRefusal refusal, string message, int holderPid = 0) : Exception(message)
{
    public InstanceLockRefusal Refusal { get; } = refusal;
    /// <summary>The pid the holder wrote into the lock file, 0 when unknown.</summary>
    public int HolderPid { get; } = holderPid;
}

/// <summary>
/// A single-instance lock only the caller's user (and root) can ever hold: an exclusive
/// flock(2) on a regular file owned by this user, mode 0600, in a directory nobody else may
/// replace files in. Anyone may bind an abstract socket name, so a name is no lock; a file
/// only its owner can open is. The kernel drops the flock when the process dies, however it
/// dies, so a crashed daemon never leaves the lock taken; the holder's pid is written into the
/// file for messages. <see cref="Dispose"/> removes the file while still holding the lock, and a
/// taker checks after flock that the path still names the file it locked, so a removal racing
/// with a start can never give two holders.
/// </summary>
internal sealed unsafe partial class InstanceLock : IDisposable
{
    private const int O_RDWR = 0x2, O_CREAT = 0x40, O_CLOEXEC = 0x80000;
    private static readonly int O_NOFOLLOW = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x8000 : 0x20000;
    private const int LOCK_EX = 2, LOCK_NB = 4;
    private const int EWOULDBLOCK = 11, ENOENT = 2, ELOOP = 40;
    private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000;
    private const uint STATX_TYPE = 0x1, STATX_MODE = 0x2, STATX_UID = 0x8, STATX_INO = 0x100;
    private const int S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFDIR = 0x4000, S_ISVTX = 0x200;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Unlink(string path);

    [LibraryImport("libc", EntryPoint = "fchmod", SetLastError = true)]
    private static partial int Fchmod(int fd, int mode);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int Ftruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    private static partial nint Pwrite(int fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "pread", SetLastError = true)]
    private static partial nint Pread(int fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    private int _fd;

    /// <summary>The lock file's path.</summary>
    public string Path { get; }

    private InstanceLock(string path, int fd)
    {
        Path = path;
        _fd = fd;
    }

    private readonly record struct FileId(int Type, int Mode, uint Uid, ulong Ino, ulong Dev);

    private static bool TryStat(int dirfd, string path, int flags, out FileId id, out int errno)
    {
        byte* b = stackalloc byte[256];
        id = default;
        errno = 0;
        if (Statx(dirfd, path, flags, STATX_TYPE | STATX_MODE | STATX_UID | STATX_INO, b) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return false;
        }
        // struct statx: stx_uid at 20, stx_mode at 28 (u16), stx_ino at 32, stx_dev_major/minor at 136/140.
        int mode = *(ushort*)(b + 28);
        id = new FileId(mode & S_IFMT, mode & 0xFFF, *(uint*)(b + 20), *(ulong*)(b + 32), ((ulong)*(uint*)(b + 136) << 32) | *(uint*)(b + 140));
        return true;
    }

    private static string Errno(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>"uid 65534 (nobody)", or "uid N" without a passwd entry.</summary>
    public static string DescribeUid(uint uid)
    {
        try
        {
            foreach (string line in File.ReadLines("/etc/passwd"))
            {
                var f = line.Split(':');
                if (f.Length > 2 && f[2] == uid.ToString(CultureInfo.InvariantCulture)) return $"uid {uid} ({f[0]})";
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return $"uid {uid}";
    }

    /// <summary>
    /// The directory the lock (and the socket beside it) lives in must not let another user
    /// replace files in it: owned by this user or root, and not writable by group or others
    /// unless sticky (then only a file's owner may remove or rename it, as in /tmp).
    /// </summary>
    private static void CheckDirectory(string dir, uint me)
    {
        if (!TryStat(AT_FDCWD, dir, 0, out var d, out int errno))
            throw new InstanceLockException(InstanceLockRefusal.Failed, $"cannot inspect the directory {dir}: {Errno(errno)}");
        if (d.Type != S_IFDIR) throw new InstanceLockException(InstanceLockRefusal.Failed, $"{dir} is not a directory");
        if (d.Uid != me && d.Uid != 0)
            throw new InstanceLockException(InstanceLockRefusal.Unsafe,
                $"the directory {dir} belongs to {DescribeUid(d.Uid)}, who could replace the daemon's lock and socket; " +
                "use a directory owned by this user or root (the default /run/hypernf)");
        if ((d.Mode & 0x12 /* 0022 */) != 0 && (d.Mode & S_ISVTX) == 0)
            throw new InstanceLockException(InstanceLockRefusal.Unsafe,
                $"the directory {dir} (mode {Convert.ToString(d.Mode, 8)}) is writable by other users and not sticky: anyone could " +
                "replace the daemon's lock and socket; use a directory only this user can write (the default /run/hypernf)");
    }

    /// <summary>Takes the lock at <paramref name="path"/> (created 0600 if missing) and writes this process's pid into it.</summary>
    /// <exception cref="InstanceLockException">Held by another process, unsafe, or not possible; the message says which and why.</exception>
    public static InstanceLock Acquire(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        path = System.IO.Path.GetFullPath(path);
        uint me = GetEuid();
        CheckDirectory(System.IO.Path.GetDirectoryName(path) ?? "/", me);
        for (int attempt = 0; ; attempt++)
        {
            int fd = Open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0x180 /* 0600 */);
            if (fd < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw errno == ELOOP
                    ? new InstanceLockException(InstanceLockRefusal.Unsafe, $"the lock file {path} is a symbolic link; remove it")
                    : new InstanceLockException(InstanceLockRefusal.Failed, $"cannot open the lock file {path}: {Errno(errno)}");
            }
            bool keep = false;
            try
            {
                if (!TryStat(fd, "", AT_EMPTY_PATH, out var mine, out int errno))
                    throw new InstanceLockException(InstanceLockRefusal.Failed, $"cannot inspect the lock file {path}: {Errno(errno)}");
                if (mine.Type != S_IFREG)
                    throw new InstanceLockException(InstanceLockRefusal.Unsafe, $"{path} is not a regular file; it cannot be the daemon's lock: remove it");
                if (mine.Uid != me)
                    throw new InstanceLockException(InstanceLockRefusal.Unsafe,
                        $"the lock file {path} belongs to {DescribeUid(mine.Uid)}, not to this daemon's user ({DescribeUid(me)}); " +
                        "another user made it: remove it, or keep the socket in a directory only this user can write (the default /run/hypernf)");
                // Ours: whatever its mode was, only this user may open it from now on.
                if ((mine.Mode & 0x3F) != 0 && Fchmod(fd, 0x180) != 0)
                    throw new InstanceLockException(InstanceLockRefusal.Failed, $"cannot chmod the lock file {path}: {Errno(Marshal.GetLastPInvokeError())}");
                if (Flock(fd, LOCK_EX | LOCK_NB) != 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                    if (errno == EWOULDBLOCK)
                        throw new InstanceLockException(InstanceLockRefusal.Held, $"the lock {path} is held by another process", ReadPid(fd));
                    throw new InstanceLockException(InstanceLockRefusal.Failed, $"cannot lock {path}: {Errno(errno)}");
                }
                // A holder that was stopping may have removed the file between our open and flock:
                // then we hold a lock on a file nobody else can find; start over on the path's file.
                if (!TryStat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, out var now, out errno) || now.Ino != mine.Ino || now.Dev != mine.Dev)
                {
                    if (attempt < 10) continue;
                    throw new InstanceLockException(InstanceLockRefusal.Failed, $"the lock file {path} keeps being replaced; is something else removing it?");
                }
                WritePid(fd);
                keep = true;
                return new InstanceLock(path, fd);
            }
            finally
            {
                if (!keep) Close(fd);
            }
        }
    }

    private static void WritePid(int fd)
    {
        byte[] text = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
        Ftruncate(fd, 0);
        fixed (byte* p = text) Pwrite(fd, p, (nuint)text.Length, 0); // for messages only: a failure changes nothing
    }

    private static int ReadPid(int fd)
    {
        byte* b = stackalloc byte[16];
        nint n = Pread(fd, b, 16, 0);
        if (n <= 0) return 0;
        string s = Encoding.ASCII.GetString(b, (int)n).Trim();
        return int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : 0;
    }

    /// <summary>Removes the lock file, then releases the lock (closing the descriptor drops the flock).</summary>
    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd < 0) return;
        Unlink(Path);
        Close(fd);
    }
}
