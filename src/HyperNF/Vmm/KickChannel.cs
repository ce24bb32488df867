using System.Runtime.InteropServices;
using HyperNF.Linux;

namespace HyperNF.Vmm;

/// <summary>
/// The guest's way to wake its split/merge backend without leaving the kernel: an eventfd that
/// KVM signals when the guest stores to <see cref="GuestAbi.KickGpa"/> (KVM_IOEVENTFD), and the
/// needs-kick word in a VMM-owned page of guest RAM (<see cref="GuestAbi.NeedsKickGpa"/>) that
/// says whether the backend wants a kick at all (virtio's notification suppression, Solo5's
/// split path). A second eventfd stops a backend blocked in <see cref="Wait"/>.
///
/// The guest stays on the MMIO store at both rings: one code path; at ring 3 (PVM) it is the
/// only one (<c>out</c> faults there); on VMX a store to an unbacked GPA with a length-0
/// ioeventfd takes KVM's fast MMIO path (no instruction decode), as cheap as PIO 0x600.
///
/// Handshake (Dekker, full fence on both sides): the guest publishes head, mfence, reads
/// needs_kick, kicks if set. The backend sets needs_kick with a full fence, then re-checks the
/// rings before it blocks. Either the guest sees the flag or the backend sees the head.
/// </summary>
public sealed unsafe class KickChannel : IDisposable
{
    private int _kickFd = -1, _stopFd = -1;
    private readonly uint* _needsKick;      // the first (a VM's only) needs-kick word
    private readonly nint[] _moreWords;     // a process port's other TX rings' words (set and cleared together)
    private long _kicks, _wakeups;
    private int _disposed;

    /// <summary>KVM_IOEVENTFD length used: 0 (any length, the fast MMIO path) where KVM allows it, else 4.</summary>
    public uint Length { get; }
    /// <summary>Guest stores to the kick address that reached the eventfd (coalesced ones included).</summary>
    public long Kicks => Interlocked.Read(ref _kicks);
    /// <summary>Times a blocked backend was woken by a kick.</summary>
    public long Wakeups => Interlocked.Read(ref _wakeups);

    internal KickChannel(int vmFd, uint* needsKick, bool anyLength)
    {
        _needsKick = needsKick;
        _moreWords = [];
        Length = anyLength ? 0u : 4u;
        try
        {
            OpenEventFds();
            var io = new KvmIoEventFd { Addr = GuestAbi.KickGpa, Len = Length, Fd = _kickFd };
            if (Kvm.Ioctl(vmFd, Kvm.IOEVENTFD, (nint)(&io)) < 0)
                Native.ThrowLastError($"KVM_IOEVENTFD(MMIO 0x{GuestAbi.KickGpa:x}, len {Length})");
        }
        catch
        {
            Dispose();
            throw;
        }
        Volatile.Write(ref *_needsKick, 0);
    }

    /// <summary>
    /// A process domain's kick (split/merge): no KVM. The program's preload library holds
    /// <see cref="KickFd"/> (passed with SCM_RIGHTS) and writes it itself when the needs-kick word
    /// of its TX ring is set, the same handshake as a VM's store to the kick address. One word per
    /// TX ring of the port (in each ring's sem area), all set and cleared together, so every
    /// registration of a shared port (one ring each) sees the backend's state in its own ring.
    /// </summary>
    internal KickChannel(uint*[] needsKickWords)
    {
        if (needsKickWords.Length == 0) throw new ArgumentException("a kick channel needs at least one needs-kick word", nameof(needsKickWords));
        _needsKick = needsKickWords[0];
        _moreWords = new nint[needsKickWords.Length - 1];
        for (int i = 1; i < needsKickWords.Length; i++) _moreWords[i - 1] = (nint)needsKickWords[i];
        try { OpenEventFds(); }
        catch
        {
            Dispose();
            throw;
        }
        ClearNeedsKick();
    }

    /// <summary>The kick eventfd and the stop eventfd (both non-blocking, close-on-exec).</summary>
    private void OpenEventFds()
    {
        _kickFd = PacketSocket.EventFd(0, PacketSocket.EFD_CLOEXEC | PacketSocket.EFD_NONBLOCK);
        if (_kickFd < 0) Native.ThrowLastError("eventfd(kick)");
        _stopFd = PacketSocket.EventFd(0, PacketSocket.EFD_CLOEXEC | PacketSocket.EFD_NONBLOCK);
        if (_stopFd < 0) Native.ThrowLastError("eventfd(backend stop)");
    }

    /// <summary>A process port's kick channel: one needs-kick word in each of its TX rings' sem areas.</summary>
    public static KickChannel ForProcessPort(HyperNF.Switch.ValePort port)
    {
        var words = new uint*[port.Tx.Length];
        for (int r = 0; r < words.Length; r++) words[r] = (uint*)(port.Tx[r].Ring + HyperNF.Netmap.NetmapAbi.RingSemNeedsKick);
        return new KickChannel(words);
    }

    /// <summary>The kick eventfd (a process domain's library writes it; KVM does for a VM).</summary>
    public int KickFd => _kickFd;

    /// <summary>The backend is working: kicks are not needed (the guest skips the store).</summary>
    public void ClearNeedsKick()
    {
        Volatile.Write(ref *_needsKick, 0);
        foreach (var w in _moreWords) Volatile.Write(ref *(uint*)w, 0);
    }

    /// <summary>The backend is about to sleep: ask for kicks, with a full fence before the caller re-checks the rings.</summary>
    public void SetNeedsKick()
    {
        foreach (var w in _moreWords) Volatile.Write(ref *(uint*)w, 1);
        Interlocked.Exchange(ref *(int*)_needsKick, 1); // the full fence, after every word
    }

    public bool NeedsKick => Volatile.Read(ref *_needsKick) != 0;

    /// <summary>
    /// A host-side kick (a TXSYNC hypercall or a POLL with tx_mask in split/merge): the same
    /// eventfd, only when the backend asked for it. The caller published its work with a full fence.
    /// </summary>
    public void Kick()
    {
        Interlocked.MemoryBarrier();
        if (NeedsKick && _kickFd >= 0) PacketSocket.SignalEventFd(_kickFd);
    }

    /// <summary>
    /// Blocks until a kick, <see cref="Stop"/> or <paramref name="timeoutMs"/>. Drains the kick
    /// counter. True when kicked.
    /// </summary>
    public bool Wait(int timeoutMs)
    {
        var fds = stackalloc PacketSocket.PollFd[2];
        fds[0] = new PacketSocket.PollFd { Fd = _kickFd, Events = PacketSocket.POLLIN };
        fds[1] = new PacketSocket.PollFd { Fd = _stopFd, Events = PacketSocket.POLLIN };
        int n = PacketSocket.Poll(fds, 2, timeoutMs);
        if (n <= 0 || (fds[0].REvents & PacketSocket.POLLIN) == 0) return false;
        ulong count;
        if (PacketSocket.Read(_kickFd, &count, 8) == 8)
        {
            Interlocked.Add(ref _kicks, (long)count);
            Interlocked.Increment(ref _wakeups);
            return true;
        }
        return false;
    }

    /// <summary>Wakes a backend blocked in <see cref="Wait"/> for good (it checks its stop flag).</summary>
    public void Stop()
    {
        if (_stopFd >= 0) PacketSocket.SignalEventFd(_stopFd);
    }

    /// <summary>Closes the eventfds (KVM drops its ioeventfd with the VM fd). Only after the backend thread has ended.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (_kickFd >= 0) { Native.Close(_kickFd); _kickFd = -1; }
        if (_stopFd >= 0) { Native.Close(_stopFd); _stopFd = -1; }
    }
}

/// <summary>struct kvm_ioeventfd (64 bytes): datamatch @0, addr @8, len @16, fd @20, flags @24.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct KvmIoEventFd
{
    [FieldOffset(0)] public ulong DataMatch;
    [FieldOffset(8)] public ulong Addr;
    [FieldOffset(16)] public uint Len;
    [FieldOffset(20)] public int Fd;
    [FieldOffset(24)] public uint Flags;
}
