using System.Runtime.CompilerServices;
using HyperNF.Linux;

namespace HyperNF.Netmap;

/// <summary>
/// The host side of a process port's control page (struct hnf_ctl in src/preload/hnf_proto.h):
/// a one-page memfd mapped MAP_SHARED by the daemon and by the netmap program. The program
/// writes a request (op, its CPU, a sequence number) and sleeps on the completion word; a host
/// thread of its domain waits on the request word, runs the sync and completes it. Shared
/// (non-private) futexes work across the two processes because they are keyed by the page.
///
/// Nothing the program writes is trusted: each request field is read once and validated, the
/// host never waits for the program (it completes and wakes, whether or not anybody listens),
/// and a program that scribbles over the page only confuses its own syncs.
/// </summary>
public sealed unsafe class SyncChannel : IDisposable
{
    private readonly object _gate = new();
    private byte* _page;
    private int _fd;
    private readonly int _eventFd;
    private uint _last;
    private long _requests, _badRequests, _signals;

    /// <summary>The memfd to pass to the program (SCM_RIGHTS).</summary>
    public int FileDescriptor => _fd;
    /// <summary>Syncs served.</summary>
    public long Requests => Interlocked.Read(ref _requests);
    /// <summary>Requests refused because their op was not a sync (each counted, answered -EINVAL).</summary>
    public long BadRequests => Interlocked.Read(ref _badRequests);
    /// <summary>eventfd writes made to wake the program.</summary>
    public long Signals => Interlocked.Read(ref _signals);

    /// <param name="eventFd">The program's descriptor (its /dev/netmap eventfd), owned by this channel from now on.</param>
    public SyncChannel(string name, int eventFd)
    {
        _eventFd = eventFd;
        _fd = Native.MemfdCreate(name, Native.MFD_CLOEXEC);
        if (_fd < 0) Native.ThrowLastError($"memfd_create({name})");
        try
        {
            if (Native.Ftruncate(_fd, ProcessProtocol.CtlBytes) != 0) Native.ThrowLastError("ftruncate(control page)");
            nint p = Native.Mmap(0, ProcessProtocol.CtlBytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, _fd, 0);
            if (p == Native.MAP_FAILED) Native.ThrowLastError("mmap(control page)");
            _page = (byte*)p;
        }
        catch
        {
            Native.Close(_fd);
            throw;
        }
        *(uint*)(_page + ProcessProtocol.CtlMagicOfs) = ProcessProtocol.CtlMagic;
        *(uint*)(_page + ProcessProtocol.CtlVersionOfs) = ProcessProtocol.Version;
    }

    private int* Word(int offset) => (int*)(_page + offset);

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> for the next request. Returns false on timeout
    /// (or a spurious wake-up); true with the op and CPU read once from the page.
    /// </summary>
    public bool WaitRequest(int timeoutMs, out uint op, out int cpu)
    {
        op = 0;
        cpu = -1;
        uint seq = (uint)Volatile.Read(ref *Word(ProcessProtocol.CtlReqSeq));
        if (seq == _last)
        {
            // Dekker with the program: announce idleness, then re-check before sleeping.
            Interlocked.Exchange(ref *Word(ProcessProtocol.CtlHostIdle), 1);
            seq = (uint)Volatile.Read(ref *Word(ProcessProtocol.CtlReqSeq));
            if (seq == _last) Native.FutexWaitShared(Word(ProcessProtocol.CtlReqSeq), (int)_last, timeoutMs);
            Volatile.Write(ref *Word(ProcessProtocol.CtlHostIdle), 0);
            seq = (uint)Volatile.Read(ref *Word(ProcessProtocol.CtlReqSeq));
            if (seq == _last) return false;
        }
        _last = seq;
        op = (uint)Volatile.Read(ref *Word(ProcessProtocol.CtlOp));
        cpu = Volatile.Read(ref *Word(ProcessProtocol.CtlCpu));
        Interlocked.Increment(ref _requests);
        return true;
    }

    /// <summary>True for the ops a program may ask for; anything else is counted and refused.</summary>
    public bool Validate(uint op)
    {
        if (op is ProcessProtocol.OpTxSync or ProcessProtocol.OpRxSync or ProcessProtocol.OpBoth) return true;
        Interlocked.Increment(ref _badRequests);
        return false;
    }

    /// <summary>Completes the request last returned by <see cref="WaitRequest"/> and wakes the program if it sleeps.</summary>
    public void Complete(int result)
    {
        Volatile.Write(ref *Word(ProcessProtocol.CtlResult), result);
        Interlocked.Exchange(ref *Word(ProcessProtocol.CtlDoneSeq), (int)_last); // full fence before the waiter check
        if (Volatile.Read(ref *Word(ProcessProtocol.CtlCallerWaiting)) != 0) Native.FutexWakeShared(Word(ProcessProtocol.CtlDoneSeq));
    }

    /// <summary>Wakes the host thread waiting in <see cref="WaitRequest"/> (destroy, close).</summary>
    public void WakeHost()
    {
        lock (_gate) if (_page != null) Native.FutexWakeShared(Word(ProcessProtocol.CtlReqSeq));
    }

    /// <summary>
    /// Frames were published into the port's RX rings, or TX slots returned (runs on a sender's
    /// or backend's thread after a full fence): writes the program's eventfd if it announced
    /// that it blocks on it; the flag is taken, so one wake-up costs one write.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Signal()
    {
        var page = _page;
        if (page == null) return;
        int* w = (int*)(page + ProcessProtocol.CtlRxWaiting);
        if (Volatile.Read(ref *w) != 0 && Interlocked.Exchange(ref *w, 0) != 0) SignalSlow();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void SignalSlow()
    {
        if (FdSocket.SignalEventFd(_eventFd)) Interlocked.Increment(ref _signals);
    }

    /// <summary>Unmaps the page and closes the memfd and the eventfd. Call only once no thread can use the channel.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_page == null) return;
            Native.Munmap((nint)_page, ProcessProtocol.CtlBytes);
            _page = null;
            Native.Close(_fd);
            Native.Close(_eventFd);
            _fd = -1;
        }
    }
}
