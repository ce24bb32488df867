namespace HyperNF.Linux;

/// <summary>
/// Keeps the two receive paths of a generic-mode af_xdp port in arrival order. Frames the XDP
/// program redirects reach an AF_XDP ring; frames it passes to the stack (GSO super-frames)
/// reach a packet socket; the driver reads the rings first and the socket after, so a small
/// frame that arrived after a super-frame of the same TCP stream would overtake it (the
/// receiver counts that as reordering: out-of-order queueing, SACK reorder, spurious
/// retransmissions).
///
/// <para>The rule is RFS's: a frame may take the fast path only when the slow path holds
/// nothing the reader has not taken. Two counters in one BPF array map, mapped into our memory:
/// <c>passed</c>, which the program increments atomically for every frame it passes, and
/// <c>taken</c>, which the reader sets after every frame it takes from the socket and after
/// every frame the socket dropped (PACKET_STATISTICS). While they differ the program passes
/// every frame, so frames of one CPU's softirq reach the socket in the order they arrived.
/// <c>taken</c> never exceeds <c>passed</c>: a frame is counted before it can be queued.</para>
///
/// <para>A frame the stack loses between the program and the socket (an allocation failure)
/// would leave the counters apart for good, everything then on the slow path: correct but
/// slower. <see cref="Heal"/> closes such a gap when the socket is empty and <c>passed</c> has
/// not moved for a whole check period (frames in flight take microseconds).</para>
/// </summary>
internal sealed unsafe class XdpPassOrder : IDisposable
{
    /// <summary>Byte offset of <c>passed</c> (written by the program) in the map's value.</summary>
    public const short PassedOffset = 0;
    /// <summary>
    /// Byte offset of <c>pass_above</c>: frames longer than this go to the stack (written by us at
    /// attach and when the MTU changes; read by the program with <c>passed</c>, on the same line).
    /// </summary>
    public const short PassAboveOffset = 8;
    /// <summary>Byte offset of <c>taken</c> (written by the reader): its own cache line.</summary>
    public const short TakenOffset = 64;
    private const int ValueBytes = 128;

    private int _mapFd;
    private byte* _value;
    private ulong _taken;           // the reader's copy of taken
    private ulong _lastPassed = ulong.MaxValue; // passed at the previous Heal
    private bool _emptySinceHeal;

    private XdpPassOrder(int mapFd, byte* value)
    {
        _mapFd = mapFd;
        _value = value;
    }

    /// <summary>The map for <see cref="Xdp.LoadRedirectProgram"/>'s orderMapFd.</summary>
    public int MapFd => _mapFd;

    /// <summary>Frames the program passed to the stack since attach.</summary>
    public ulong Passed => Volatile.Read(ref *(ulong*)(_value + PassedOffset));

    /// <summary>Frames taken from the socket or dropped by it since attach.</summary>
    public ulong Taken => _taken;

    /// <summary>Times <see cref="Heal"/> closed a gap (frames lost between the program and the socket).</summary>
    public long Heals { get; private set; }

    /// <summary>Creates the map and maps it, or throws naming the interface.</summary>
    public static XdpPassOrder Create(string ifName)
    {
        int fd = Xdp.CreateArrayMap(ValueBytes, mmapable: true, "hnf_xsk_order");
        if (fd < 0) throw new IOException($"creating the XDP order map for interface '{ifName}' failed: {PacketSocket.ErrnoText(PacketSocket.LastErrno)}");
        nint map = Native.Mmap(0, 4096, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, fd, 0);
        if (map == -1)
        {
            int err = PacketSocket.LastErrno;
            Native.Close(fd);
            throw new IOException($"mapping the XDP order map for interface '{ifName}' failed: {PacketSocket.ErrnoText(err)}");
        }
        return new XdpPassOrder(fd, (byte*)map);
    }

    /// <summary>Frames longer than this many bytes (the whole frame, all fragments) are passed to the stack.</summary>
    public long PassAbove
    {
        get => _value == null ? 0 : Volatile.Read(ref *(long*)(_value + PassAboveOffset));
        set { if (_value != null) Volatile.Write(ref *(long*)(_value + PassAboveOffset), value); }
    }

    /// <summary>The reader took <paramref name="frames"/> from the socket, or the socket dropped them.</summary>
    public void Took(long frames)
    {
        if (frames <= 0 || _value == null) return;
        _taken += (ulong)frames;
        // Release: the frame has been read before the program may let a later one overtake it.
        Volatile.Write(ref *(ulong*)(_value + TakenOffset), _taken);
    }

    /// <summary>
    /// Called periodically with whether the socket was found empty since the last call: if it was,
    /// and passed has not moved since the last call, yet passed != taken, frames were lost after
    /// the program counted them; taken catches up. Returns true when it did.
    /// </summary>
    public bool Heal(bool socketEmpty)
    {
        if (_value == null) return false;
        ulong passed = Passed;
        bool stale = passed == _lastPassed && _emptySinceHeal && socketEmpty && passed != _taken;
        _lastPassed = passed;
        _emptySinceHeal = socketEmpty;
        if (!stale) return false;
        Took((long)(passed - _taken));
        Heals++;
        return true;
    }

    public void Dispose()
    {
        byte* v = _value;
        _value = null;
        if (v != null) Native.Munmap((nint)v, 4096);
        if (_mapFd >= 0) Native.Close(_mapFd);
        _mapFd = -1;
    }
}
