using System.Runtime.InteropServices;
using System.Text;

namespace HyperNF.Linux;

/// <summary>
/// File primitives for cgroup file systems. Control files must be written with exactly one
/// write(2) per value (the kernel parses each write on its own) and the errno of that write is
/// the answer (ESRCH: no such thread, EINVAL: value refused, EBUSY, ...), so these bypass
/// FileStream and return the raw errno instead of throwing.
/// </summary>
internal static unsafe partial class Native
{
    private const int O_WRONLY = 0x1;
    private const int O_CLOEXEC = 0x80000;

    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EACCES = 13, EBUSY = 16, EEXIST = 17,
        EINVAL = 22, ENOSPC = 28, EROFS = 30, ENOTEMPTY = 39, EOPNOTSUPP = 95;

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, byte* buf, nuint count);

    [LibraryImport(Libc, EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MkdirRaw(string path, uint mode);

    [LibraryImport(Libc, EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RmdirRaw(string path);

    /// <summary>Writes <paramref name="value"/> to an existing file with one write(2). Returns 0 or the errno.</summary>
    public static int WriteOnce(string path, string value)
    {
        int fd = Open(path, O_WRONLY | O_CLOEXEC, 0);
        if (fd < 0) return Marshal.GetLastPInvokeError();
        try
        {
            byte[] bytes = Encoding.ASCII.GetBytes(value);
            fixed (byte* p = bytes)
            {
                nint n = Write(fd, p, (nuint)bytes.Length);
                if (n < 0) return Marshal.GetLastPInvokeError();
                return n == bytes.Length ? 0 : EINVAL;
            }
        }
        finally { Close(fd); }
    }

    /// <summary>mkdir(2); returns 0 or the errno.</summary>
    public static int Mkdir(string path, uint mode = 0x1ED /* 0755 */) =>
        MkdirRaw(path, mode) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>rmdir(2); returns 0 or the errno.</summary>
    public static int Rmdir(string path) => RmdirRaw(path) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>The symbolic name of an errno (EACCES), for messages.</summary>
    public static string ErrnoName(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", ESRCH => "ESRCH", EACCES => "EACCES", EBUSY => "EBUSY",
        EEXIST => "EEXIST", EINVAL => "EINVAL", ENOSPC => "ENOSPC", EROFS => "EROFS",
        ENOTEMPTY => "ENOTEMPTY", EOPNOTSUPP => "EOPNOTSUPP", _ => $"errno {errno}",
    };

    public static string ErrnoText(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
