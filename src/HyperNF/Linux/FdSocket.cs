using System.Runtime.InteropServices;

namespace HyperNF.Linux;

/// <summary>
/// Blocking I/O on a raw Unix stream socket descriptor with file descriptors passed as
/// SCM_RIGHTS (sendmsg/recvmsg), the peer's credentials (SO_PEERCRED), and eventfd writes:
/// what the netmap server needs and <see cref="System.Net.Sockets.Socket"/> does not offer.
/// </summary>
public static unsafe partial class FdSocket
{
    private const string Libc = "libc";
    private const int SOL_SOCKET = 1, SCM_RIGHTS = 1, SO_PEERCRED = 17, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
    public const int EINTR = 4, EAGAIN = 11;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec { public void* Base; public nuint Len; }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name; public uint NameLen; public IoVec* Iov; public nuint IovLen;
        public void* Control; public nuint ControlLen; public int Flags;
    }

    [LibraryImport(Libc, EntryPoint = "sendmsg", SetLastError = true)]
    private static partial nint SendMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Libc, EntryPoint = "recvmsg", SetLastError = true)]
    private static partial nint RecvMsg(int fd, MsgHdr* msg, int flags);

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    private static partial int GetSockOpt(int fd, int level, int name, void* value, uint* len);

    [LibraryImport(Libc, EntryPoint = "dup", SetLastError = true)]
    private static partial int DupNative(int fd);

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int cmd, int arg);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, void* buf, nuint len);

    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(void* fds, nuint nfds, int timeout);

    /// <summary>Waits until <paramref name="fd"/> is readable (or writable): the descriptor may be non-blocking.</summary>
    private static void WaitFor(int fd, bool write)
    {
        long pfd = (uint)fd | ((long)(write ? 4 : 1) << 32); // struct pollfd { int fd; short events; short revents; }
        while (Poll(&pfd, 1, -1) < 0 && Marshal.GetLastPInvokeError() == EINTR) { }
    }

    [LibraryImport(Libc, EntryPoint = "shutdown", SetLastError = true)]
    private static partial int Shutdown(int fd, int how);

    /// <summary>A close-on-exec duplicate of <paramref name="fd"/>.</summary>
    public static int DupCloexec(int fd)
    {
        int r = Fcntl(fd, 1030 /* F_DUPFD_CLOEXEC */, 3);
        if (r < 0) Native.ThrowLastError("fcntl(F_DUPFD_CLOEXEC)");
        return r;
    }

    /// <summary>The pid, uid and gid of the process at the other end (the kernel's word, not the peer's).</summary>
    public static (int Pid, int Uid, int Gid) PeerCredentials(int fd)
    {
        int* cred = stackalloc int[3];
        uint len = 12;
        if (GetSockOpt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) != 0) Native.ThrowLastError("getsockopt(SO_PEERCRED)");
        return (cred[0], cred[1], cred[2]);
    }

    /// <summary>
    /// Reads exactly <paramref name="buffer"/>.Length bytes; descriptors that arrive with them
    /// (close-on-exec) are added to <paramref name="fds"/>. Returns false when the peer closed
    /// before the first byte; throws on a short read after it or on an error.
    /// </summary>
    public static bool ReceiveExactly(int fd, Span<byte> buffer, List<int> fds)
    {
        int got = 0;
        byte* control = stackalloc byte[64];
        fixed (byte* p = buffer)
        {
            while (got < buffer.Length)
            {
                var iov = new IoVec { Base = p + got, Len = (nuint)(buffer.Length - got) };
                var m = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = 64 };
                nint r = RecvMsg(fd, &m, MSG_CMSG_CLOEXEC);
                if (r < 0)
                {
                    int e = Marshal.GetLastPInvokeError();
                    if (e == EINTR) continue;
                    if (e == EAGAIN)
                    {
                        WaitFor(fd, write: false);
                        continue;
                    }
                    throw new IOException($"recvmsg failed: {Marshal.GetPInvokeErrorMessage(e)} (errno {e})");
                }
                CollectFds(&m, fds);
                if (r == 0)
                {
                    if (got == 0) return false;
                    throw new EndOfStreamException($"the peer closed after {got} of {buffer.Length} bytes");
                }
                got += (int)r;
            }
        }
        return true;
    }

    private static void CollectFds(MsgHdr* m, List<int> fds)
    {
        if (m->ControlLen < 16) return;
        byte* c = (byte*)m->Control;
        byte* end = c + m->ControlLen;
        while (c + 16 <= end)
        {
            ulong len = *(ulong*)c;
            int level = *(int*)(c + 8), type = *(int*)(c + 12);
            if (len < 16 || c + (long)len > end) break;
            if (level == SOL_SOCKET && type == SCM_RIGHTS)
                for (ulong o = 16; o + 4 <= len; o += 4) fds.Add(*(int*)(c + o));
            c += (len + 7) & ~7UL;
        }
    }

    /// <summary>Sends all of <paramref name="data"/>, with <paramref name="fds"/> (at most 4) attached to the first byte.</summary>
    public static void Send(int fd, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds)
    {
        if (fds.Length > 4) throw new ArgumentOutOfRangeException(nameof(fds), "at most 4 descriptors");
        byte* control = stackalloc byte[16 + 16];
        int sent = 0;
        fixed (byte* p = data)
        {
            while (sent < data.Length)
            {
                var iov = new IoVec { Base = p + sent, Len = (nuint)(data.Length - sent) };
                var m = new MsgHdr { Iov = &iov, IovLen = 1 };
                if (sent == 0 && fds.Length > 0)
                {
                    *(ulong*)control = (ulong)(16 + 4 * fds.Length);
                    *(int*)(control + 8) = SOL_SOCKET;
                    *(int*)(control + 12) = SCM_RIGHTS;
                    for (int i = 0; i < fds.Length; i++) *(int*)(control + 16 + 4 * i) = fds[i];
                    m.Control = control;
                    m.ControlLen = (nuint)((16 + 4 * fds.Length + 7) & ~7);
                }
                nint r = SendMsg(fd, &m, MSG_NOSIGNAL);
                if (r < 0)
                {
                    int e = Marshal.GetLastPInvokeError();
                    if (e == EINTR) continue;
                    if (e == EAGAIN)
                    {
                        WaitFor(fd, write: true);
                        continue;
                    }
                    throw new IOException($"sendmsg failed: {Marshal.GetPInvokeErrorMessage(e)} (errno {e})");
                }
                sent += (int)r;
            }
        }
    }

    /// <summary>Adds 1 to an eventfd's counter (wakes whoever polls it). False if the write failed (closed, full).</summary>
    public static bool SignalEventFd(int fd)
    {
        ulong one = 1;
        return Write(fd, &one, 8) == 8;
    }

    /// <summary>shutdown(SHUT_RDWR): a thread blocked reading the socket returns.</summary>
    public static void ShutdownBoth(int fd) => Shutdown(fd, 2);
}
