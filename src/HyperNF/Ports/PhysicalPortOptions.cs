namespace HyperNF.Ports;

/// <summary>Sizes and knobs of physical ports; the defaults suit a 1-10 GbE interface.</summary>
public sealed record PhysicalPortOptions
{
    /// <summary>AF_PACKET RX ring block size (a multiple of the page size); the ring is RxBlockBytes x RxBlockCount of MTU-sized frames.</summary>
    public int RxBlockBytes { get; init; } = 256 * 1024;
    public int RxBlockCount { get; init; } = 64;
    /// <summary>
    /// AF_PACKET: carry the kernel's offload metadata (GSO, partial checksums) with each frame
    /// in a virtio-net header (PACKET_VNET_HDR): the switch port then has a 10-byte header and
    /// TCP from peers with TSO and checksum offload on crosses the bridge. Off: frames as on the
    /// wire only, and peers must turn those offloads off.
    /// </summary>
    public bool VirtioNetHeader { get; init; } = true;
    /// <summary>Bytes of the TPACKET_V2 TX ring (at least 256 frames are allocated whatever the MTU).</summary>
    public int TxRingBytes { get; init; } = 2 * 1024 * 1024;
    /// <summary>SO_RCVBUFFORCE on the RX socket (falls back to SO_RCVBUF without CAP_NET_ADMIN).</summary>
    public int ReceiveBufferBytes { get; init; } = 8 * 1024 * 1024;
    /// <summary>Bring an administratively down interface up at attach (ifup), as netmap's scripts do; a failure refuses the attach with the fix.</summary>
    public bool BringUp { get; init; } = true;
    /// <summary>Put the interface in promiscuous mode while attached (a bridge port must see every frame).</summary>
    public bool Promiscuous { get; init; } = true;
    /// <summary>
    /// AF_PACKET TX through a TPACKET_V2 ring (true) or one sendmmsg() per flush of frames kept
    /// in our own memory (false). See docs/ports.md for which is cheaper where.
    /// </summary>
    public bool TxRing { get; init; } = true;
    /// <summary>Frames one sendmmsg() flush can carry when <see cref="TxRing"/> is false.</summary>
    public int TxBatchFrames { get; init; } = 512;
    /// <summary>PACKET_QDISC_BYPASS on the TX socket: frames go straight to the driver, as netmap's do.</summary>
    public bool QdiscBypass { get; init; } = true;
    /// <summary>
    /// Turn GRO and LRO off on the interface while attached (restored at detach). AF_PACKET sees
    /// frames after GRO, which merges TCP segments into frames far over the MTU; a bridge port
    /// must forward the frames as they were on the wire, as netmap does.
    /// </summary>
    public bool DisableReceiveOffloads { get; init; } = true;
    /// <summary>Frames the driver thread takes from the kernel per round before it flushes them into the bridge.</summary>
    public int RxBudget { get; init; } = 512;
    /// <summary>Longest sleep of an idle driver thread; it re-checks the link state (and, while the interface is removed, whether it is back) at least this often.</summary>
    public int IdleTimeoutMs { get; init; } = 100;
    /// <summary>
    /// Nice value of the driver threads (-20..19). They sleep until frames arrive and a frame waits
    /// for as long as the scheduler takes to run them: on a busy machine a lower value gets them a
    /// CPU sooner. Needs CAP_SYS_NICE below 0 (without it they stay at 0, reported in LastError).
    /// </summary>
    public int DriverNice { get; init; } = -10;
    /// <summary>
    /// How long a driver thread keeps polling after the last frame before it sleeps in poll()
    /// (0: sleep at once). Under load it then never sleeps, so a frame costs no wake-up; idle, it
    /// sleeps after this long and uses no CPU.
    /// </summary>
    public int DriverSpinMicroseconds { get; init; } = 50;
    /// <summary>
    /// One driver thread per bridge (true, the default) serving all of the bridge's interface
    /// ports with one poll(), or one thread per port (false). With one thread, a frame it
    /// transmits to another port and the reply or ACK the kernel produces inside that send() are
    /// handled by the same running thread, with no hand-over, no second polling window spinning
    /// and no wake-up of another thread. Measured on a 2-core VM (docs/performance.md, session 8):
    /// TCP 12.7-18.6 Gbit/s against 10.7-12.3 with a thread per port, 30% less CPU per byte, ping
    /// the same. A thread per port can use more cores for many busy interfaces on a bigger machine.
    /// </summary>
    public bool DriverPerBridge { get; init; } = true;

    /// <summary>
    /// Unicast frames between two af_packet ports of a bridge are forwarded in the kernel's
    /// receive path, in the sender's softirq, by BPF programs that follow the switch's learning
    /// table (<see cref="KernelFastPath"/>; docs/ports.md, "Kernel fast path"): no driver thread
    /// wake-up per frame, so a ping crosses in the time Linux's own bridge takes. Everything else
    /// (floods, domains' traffic, captured ports) takes the switch. Needs CAP_BPF and
    /// CAP_NET_ADMIN and Linux 6.6+ (tcx); without them ports work as with false.
    /// </summary>
    public bool KernelFastPath { get; init; } = true;
    /// <summary>
    /// SCHED_FIFO priority (1..99) of the driver threads, 0 (default): none, they run at
    /// <see cref="DriverNice"/>. A real-time driver thread preempts ordinary threads as soon as a
    /// frame wakes it, which removes the scheduling tail on a busy machine; it never keeps a CPU
    /// from the rest of the system for longer than <see cref="DriverRealtimeBudgetMicroseconds"/>
    /// at a time (see there). Needs CAP_SYS_NICE (without it the threads stay as they are and
    /// LastError says so).
    /// </summary>
    public int DriverRealtimePriority { get; init; }
    /// <summary>
    /// With <see cref="DriverRealtimePriority"/>: how long a driver thread may stay awake at
    /// real-time priority. Past it (a flood keeps it polling) it drops to ordinary scheduling
    /// until it next sleeps, so a flood cannot starve other threads; idle, it sleeps in poll().
    /// </summary>
    public int DriverRealtimeBudgetMicroseconds { get; init; } = 2000;
    /// <summary>CPUs for the driver threads (the dom0 cores); empty: not pinned (then <see cref="DriverFollowsTraffic"/> applies).</summary>
    public IReadOnlyList<int> DriverCpus { get; init; } = [];
    /// <summary>
    /// With no <see cref="DriverCpus"/>: a driver thread goes to sleep pinned to the CPU its last
    /// frame arrived on (a socket filter records it, <c>Linux/CpuBeacon.cs</c>), so the next frame
    /// from the same sender wakes it on that CPU, where the kernel runs it as soon as the sender
    /// blocks, instead of on an idle CPU (an inter-processor interrupt and a halted vCPU's
    /// wake-up in a VM: 50-60 us of a ping's round trip on our 2-core VM). Awake longer than
    /// <see cref="DriverFollowBudgetMicroseconds"/> (a stream keeps it polling) it is unpinned, so
    /// the scheduler places it as it places any busy thread. AF_PACKET ports only (an AF_XDP port
    /// records nothing and the thread stays unpinned). Default on.
    /// </summary>
    public bool DriverFollowsTraffic { get; init; } = true;
    /// <summary>How long a driver thread that follows the traffic stays pinned while awake (see <see cref="DriverFollowsTraffic"/>).</summary>
    public int DriverFollowBudgetMicroseconds { get; init; } = 2000;
    /// <summary>Which backend opens the interface: <c>af_packet</c> (the default) or <c>af_xdp</c>.</summary>
    public string Backend { get; init; } = "af_packet";
    /// <summary>Opens the backend for an interface; null: the one <see cref="Backend"/> names.</summary>
    public Func<string, PhysicalPortOptions, IInterfaceBackend>? BackendFactory { get; init; }
    /// <summary>
    /// AF_XDP: where the XDP program runs: <c>auto</c> (generic on a veth, whose peer would lose its
    /// TSO to a native program; elsewhere native, else generic), <c>native</c> or <c>generic</c>.
    /// </summary>
    public string XdpMode { get; init; } = "auto";
    /// <summary>AF_XDP: UMEM chunks (and RX/fill ring entries) per RX queue; rounded up to a power of two.</summary>
    public int XdpRxFrames { get; init; } = 2048;
    /// <summary>AF_XDP: UMEM chunks (and TX/completion ring entries) for transmission; rounded up to a power of two.</summary>
    public int XdpTxFrames { get; init; } = 2048;

    /// <summary>
    /// AF_XDP: complete partial TCP/UDP checksums of received frames in software. XDP frames carry
    /// no offload metadata, and a peer with checksum offload on (every veth by default) leaves
    /// them partial; a frame whose checksum field holds exactly the pseudo-header sum is completed,
    /// any other frame is left as it is.
    /// </summary>
    public bool XdpCompleteChecksums { get; init; } = true;
    /// <summary>
    /// af_xdp in generic mode: frames longer than the MTU (GSO super-frames of a peer with
    /// TSO/GSO) are passed to the stack by the XDP program and taken, with their offload
    /// metadata, by a packet socket; the port then has a virtio-net header and super-frames cross
    /// the bridge whole (docs/ports.md). False: every frame through AF_XDP, no header (a
    /// super-frame is then dropped by the kernel: turn the peer's TSO/GSO off).
    /// </summary>
    public bool XdpSuperFrames { get; init; } = true;

    /// <summary>The backend names <see cref="Backend"/> accepts.</summary>
    public static IReadOnlyList<string> BackendNames { get; } = ["af_packet", "af_xdp"];

    /// <summary>Opens <paramref name="ifName"/> with the configured backend.</summary>
    public IInterfaceBackend OpenBackend(string ifName) =>
        BackendFactory is { } f ? f(ifName, this) : Backend switch
        {
            "af_xdp" => AfXdpBackend.Open(ifName, this),
            _ => AfPacketBackend.Open(ifName, this),
        };

    public void Validate()
    {
        if (RxBlockBytes < 64 * 1024 || RxBlockBytes % 4096 != 0)
            throw new ArgumentOutOfRangeException(nameof(RxBlockBytes), RxBlockBytes, "the RX block size must be a multiple of 4096 and at least 64 KiB (it holds the largest frame)");
        if (RxBlockCount is < 2 or > 1024) throw new ArgumentOutOfRangeException(nameof(RxBlockCount), RxBlockCount, "RX blocks: 2..1024");
        if (TxRingBytes is < 64 * 1024 or > 256 * 1024 * 1024) throw new ArgumentOutOfRangeException(nameof(TxRingBytes), TxRingBytes, "the TX ring must be 64 KiB..256 MiB");
        if (TxBatchFrames is < 16 or > 4096) throw new ArgumentOutOfRangeException(nameof(TxBatchFrames), TxBatchFrames, "sendmmsg batch: 16..4096 frames");
        if (RxBudget is < 1 or > 65536) throw new ArgumentOutOfRangeException(nameof(RxBudget), RxBudget, "the RX budget must be 1..65536 frames");
        if (!BackendNames.Contains(Backend)) throw new ArgumentException($"unknown port backend '{Backend}': use {string.Join(" or ", BackendNames)}", nameof(Backend));
        if (XdpMode is not ("auto" or "native" or "generic")) throw new ArgumentException($"unknown XDP mode '{XdpMode}': use auto, native or generic", nameof(XdpMode));
        if (XdpRxFrames is < 64 or > 65536) throw new ArgumentOutOfRangeException(nameof(XdpRxFrames), XdpRxFrames, "AF_XDP RX frames: 64..65536");
        if (XdpTxFrames is < 64 or > 65536) throw new ArgumentOutOfRangeException(nameof(XdpTxFrames), XdpTxFrames, "AF_XDP TX frames: 64..65536");
        if (DriverSpinMicroseconds is < 0 or > 10_000) throw new ArgumentOutOfRangeException(nameof(DriverSpinMicroseconds), DriverSpinMicroseconds, "driver spin: 0..10000 us");
        if (DriverRealtimePriority is < 0 or > 99) throw new ArgumentOutOfRangeException(nameof(DriverRealtimePriority), DriverRealtimePriority, "SCHED_FIFO priorities are 1..99 (0: none)");
        if (DriverRealtimeBudgetMicroseconds is < 50 or > 1_000_000) throw new ArgumentOutOfRangeException(nameof(DriverRealtimeBudgetMicroseconds), DriverRealtimeBudgetMicroseconds, "real-time budget: 50..1000000 us");
        if (DriverFollowBudgetMicroseconds is < 50 or > 1_000_000) throw new ArgumentOutOfRangeException(nameof(DriverFollowBudgetMicroseconds), DriverFollowBudgetMicroseconds, "follow budget: 50..1000000 us");
        if (DriverNice is < -20 or > 19) throw new ArgumentOutOfRangeException(nameof(DriverNice), DriverNice, "nice values are -20..19");
        if (IdleTimeoutMs is < 1 or > 10_000) throw new ArgumentOutOfRangeException(nameof(IdleTimeoutMs), IdleTimeoutMs, "the idle timeout must be 1..10000 ms");
    }
}
