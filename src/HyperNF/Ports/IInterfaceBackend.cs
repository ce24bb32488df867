namespace HyperNF.Ports;

/// <summary>Receives the frames <see cref="IInterfaceBackend.Receive"/> takes from the wire.</summary>
public interface IFrameReceiver
{
    /// <summary>
    /// One frame, after its virtio-net header when the backend has one
    /// (<see cref="IInterfaceBackend.VirtioHeaderLength"/>). <paramref name="frame"/> is valid only
    /// during the call. <paramref name="wireLength"/> is its full length (larger than
    /// <paramref name="frame"/> when the kernel cut it).
    /// <paramref name="vlanTag"/> is TPID&lt;&lt;16 | TCI of a tag the kernel stripped (hardware
    /// VLAN acceleration), to be put back after the MAC addresses; 0 when there is none.
    /// </summary>
    void OnFrame(ReadOnlySpan<byte> frame, int wireLength, uint vlanTag);

    /// <summary>
    /// Scatter receive, for a backend that reads a large frame with recvmsg: the buffers of the
    /// receiver's next free slots, in order, for one frame of up to <paramref name="maxLength"/>
    /// bytes (with its virtio-net header), to be read straight into. Returns how many of
    /// <paramref name="fragments"/> it filled (at most <paramref name="maxFragments"/>); 0 when it
    /// takes frames through <see cref="OnFrame"/> only, or has no room, and the backend reads into
    /// its own buffer instead. Nothing is taken until <see cref="CommitScatter"/>; a backend
    /// whose read fails simply does not commit.
    /// </summary>
    unsafe int BeginScatter(FrameFragment* fragments, int maxFragments, int maxLength) => 0;

    /// <summary>
    /// The frame the buffers of the last <see cref="BeginScatter"/> now hold: <paramref name="length"/>
    /// bytes read, <paramref name="wireLength"/> and <paramref name="vlanTag"/> as for <see cref="OnFrame"/>.
    /// </summary>
    void CommitScatter(int length, int wireLength, uint vlanTag) =>
        throw new NotSupportedException("this receiver takes frames through OnFrame only");
}

/// <summary>
/// How a physical port talks to one Linux interface. The port owns the threads and the switch
/// side; a backend only moves frames between the kernel and the calls below. AF_PACKET
/// (<see cref="AfPacketBackend"/>) is the default; an AF_XDP backend can implement the same calls.
///
/// Threading: <see cref="Receive"/> and <see cref="ClearPollErrors"/> are called by the port's driver
/// thread only (or by another driver thread that holds the port's receive lock); the transmit calls by one thread at a time (the port serialises them), possibly
/// concurrently with receive. <see cref="QueryLink"/> may be called from any thread.
/// </summary>
public interface IInterfaceBackend : IDisposable
{
    string InterfaceName { get; }
    int InterfaceIndex { get; }
    /// <summary>The MTU read at open time or by the last <see cref="QueryLink"/>.</summary>
    int Mtu { get; }
    /// <summary>The largest frame the backend can transmit (with its virtio-net header).</summary>
    int TxCapacity { get; }
    /// <summary>
    /// Bytes of virtio-net header in front of every frame the backend receives and transmits
    /// (10 for AF_PACKET with PACKET_VNET_HDR, 0 for none); the switch port gets the same length.
    /// </summary>
    int VirtioHeaderLength { get; }
    /// <summary>A short description for listings ("af_packet rx v3 64 x 256 KiB, tx v2 1024 x 2048 B").</summary>
    string Description { get; }

    /// <summary>Hands up to <paramref name="budget"/> received frames to <paramref name="receiver"/>, without blocking. Returns how many.</summary>
    int Receive(IFrameReceiver receiver, int budget);

    /// <summary>
    /// The sockets a driver thread sleeps on in poll() (POLLIN: frames arrived; POLLERR: the
    /// device went down or away). Valid until the backend is disposed.
    /// </summary>
    ReadOnlySpan<int> PollFds { get; }

    /// <summary>
    /// Called after poll() reported an error on one of <see cref="PollFds"/>: reads and clears the
    /// sockets' pending errors (ENETDOWN), so a dead interface does not keep poll() returning at once.
    /// </summary>
    void ClearPollErrors();

    /// <summary>
    /// A free transmit frame of at least <paramref name="length"/> bytes (at most
    /// <see cref="TxCapacity"/>), or an empty span when the kernel still owns them all.
    /// </summary>
    Span<byte> BeginTransmit(int length);

    /// <summary>Queues the frame returned by <see cref="BeginTransmit"/> with <paramref name="length"/> bytes.</summary>
    void CommitTransmit(int length);

    /// <summary>
    /// Sends a frame larger than a ring frame (a GSO super-frame, a jumbo frame) straight from its
    /// fragments, the switch ring's slot buffers (one sendmsg() with an iovec each: no copy into a
    /// staging buffer), after every frame queued before it. False when the backend has no such
    /// path or the frame fits a ring frame: the caller then copies it in with
    /// <see cref="BeginTransmit"/>. A failure is reported by the next <see cref="Flush"/>.
    /// </summary>
    unsafe bool TransmitGather(FrameFragment* fragments, int count, int length) => false;

    /// <summary>Makes the kernel send every queued frame (the doorbell). On error, queued frames are taken back.</summary>
    TransmitResult Flush();

    /// <summary>Reads the interface's flags and MTU again.</summary>
    LinkState QueryLink();

    /// <summary>Frames the kernel dropped on receive since the last call (ring full).</summary>
    long TakeKernelDrops();

    /// <summary>
    /// The CPU the last received frame arrived on (where its sender runs), or -1 when the backend
    /// does not know (<see cref="PhysicalPortOptions.DriverFollowsTraffic"/>).
    /// </summary>
    int LastRxCpu => -1;
}

/// <summary>One piece of a frame in memory that does not move (a switch ring's slot buffer); laid out as struct iovec.</summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
public unsafe struct FrameFragment
{
    public byte* Base;
    public nuint Length;
}
