using System.Runtime.CompilerServices;
using HyperNF.Memory;
using HyperNF.Netmap;

namespace HyperNF.Switch;

/// <summary>
/// The host side of a port attached to a bridge (netmap's VALE port adapter with its
/// krings). It is the <see cref="IPortBackend"/> the hypercall model uses: TxSync runs the
/// whole flush on the calling thread.
/// </summary>
public interface IPortSink
{
    /// <summary>Frames were just published into an RX ring of <paramref name="port"/>; runs on the sender's thread.</summary>
    void OnDelivered(ValePort port);
}

/// <summary>
/// A device sink that can take a destination's frames where they are, in the sending port's
/// slots, instead of having the switch copy them into its RX ring first (cut-through). Called
/// inside the sender's TX section (so the slots are stable and the port is not retired under
/// it), with frames the switch validated, only from ports whose TX ring the host owns
/// (<see cref="ValePort.HostOwnedFrames"/>), never while a capture is open on the destination.
/// </summary>
internal interface IDirectSink
{
    /// <summary>
    /// Transmits every frame of <paramref name="frames"/> (each counted: sent or a port drop) and
    /// returns true, with what it took for the RX ring's delivery counters; or returns false
    /// having taken none (the switch then copies them into <paramref name="rx"/> as usual).
    /// </summary>
    bool TryTransmitDirect(RxKring rx, ref DirectFrames frames, out long packets, out long bytes);
}

/// <remarks>
/// <para><b>Port state changes: the one rule.</b> A port changes state in four ways: it goes
/// down or up (<see cref="Up"/>: a link flap, a closing handle), it is re-bound (a physical
/// port swaps its Linux backend under its own transmit lock; the switch port stays), and it is
/// retired (<see cref="Bridge.Detach"/>: the handle is closed, the domain destroyed). Both the
/// TX path (a sender's flush) and the RX path (the owner's rxsync, a device sink) obey:</para>
/// <list type="number">
/// <item><b>Ring memory is touched only inside a ring's critical section.</b> TX rings:
/// <see cref="TxKring.Seq"/> (odd while a sync runs); delivery into another port's RX rings
/// happens inside the sender's own TX section; RX rings: <c>RxKringState.Busy</c>. Entering
/// is a full fence, and the first thing a section does is read <see cref="Retired"/>.</item>
/// <item><b>Retire = publish, fence, wait.</b> Detach publishes a port table without the port
/// and sets Retired, issues a full fence, then waits until every TX ring of the old table and
/// every RX ring of the port are outside their sections. A section that entered earlier is
/// waited for; one that enters later sees Retired (or the new table) and touches nothing. Only
/// then are the port's learning entries purged, its counters folded into the bridge's retired
/// totals and its area released for reuse. So a stale handle never touches memory it no
/// longer owns, and counters never move after they were folded.</item>
/// <item><b>Each flush decides each destination once.</b> The first time a flush looks at a
/// destination (unicast lookup or flood fan-out) it reads <see cref="Up"/> once and keeps that
/// decision for the rest of the flush: the flood count and the deliveries use the same set of
/// ports, so <c>sent + flood copies = delivered + dropped</c> whatever changes mid-batch. A
/// port that goes down after the decision still gets this flush's frames (counted as
/// delivered, as a NIC's ring does for a packet already queued).</item>
/// </list>
/// <para>Outside sections the host makes only advisory reads of a ring (a split/merge
/// domain's Poll looking at its own TX ring's tail), never writes, and not at all once it
/// has seen Retired. The region stays mapped while any port of it is attached
/// (<see cref="DomainMemory.Dispose"/> refuses otherwise).</para>
/// </remarks>
public sealed unsafe class ValePort : IPortBackend
{
    internal readonly TxKring[] Tx;
    internal readonly RxKring[] Rx;

    private readonly Func<bool> _rxPublished;
    private readonly Func<bool> _retired;
    private volatile bool _up = true;

    /// <summary>Index on the bridge (0..253), -1 once detached.</summary>
    internal volatile int Index = -1;
    /// <summary>
    /// Set by <see cref="Bridge.Detach"/> before it waits for in-flight syncs and keeps the
    /// port's final counters: from then on a sync of this port does nothing (its area in the
    /// region is about to be released, and its counters are no longer the bridge's).
    /// </summary>
    internal volatile bool Retired;
    // Learning shortcut: skip relearning while the source MAC stays the same (netmap's last_smac).
    internal ulong LastSmac = ulong.MaxValue;
    internal uint LastLearn;

    public Bridge Bridge { get; }
    public string PortName { get; }
    public string Name => $"{Bridge.Name}:{PortName}";
    public DomainMemory Memory { get; }
    public int Area { get; }
    public int BridgeIndex => Index;

    private volatile int _virtioHeaderLength;

    /// <summary>
    /// Length of the virtio-net header in front of every frame in this port's rings: 0 (none,
    /// the default), 10 or 12 (netmap's PORT_HDR_SET / virt_hdr_len). Frames between ports of
    /// different lengths take the offloading datapath (segmentation and checksums in software,
    /// docs/ports.md). Set it before traffic flows: a frame in flight while it changes is read
    /// with the old length by its sender and the new one by its receiver.
    /// </summary>
    public int VirtioHeaderLength
    {
        get => _virtioHeaderLength;
        set
        {
            if (!VirtioNetHeader.IsValidLength(value)) throw new ArgumentOutOfRangeException(nameof(value), value, VirtioNetHeader.InvalidLengthMessage(value));
            _virtioHeaderLength = value;
        }
    }

    /// <summary>A port that is down receives nothing (unicast to it is a port-down drop) and sends nothing.</summary>
    public bool Up { get => _up; set => _up = value; }

    /// <summary>Where the port's owner sleeps in Poll; shared by all ports of a domain.</summary>
    public WakeWord Wake { get; }

    internal ValePort(Bridge bridge, string portName, DomainMemory memory, int area, WakeWord? wake)
    {
        Wake = wake ?? new WakeWord();
        // Retired is read after WakeWord's fence: Bridge.Detach sets it before it wakes, so a
        // sleeper either sees it here or its futex wait sees the new sequence.
        _rxPublished = () => Retired || AnyRxPublished();
        _retired = () => Retired;
        Bridge = bridge;
        PortName = portName;
        Memory = memory;
        Area = area;
        int rings = memory.Layout.RingsPerPort;
        Tx = new TxKring[rings];
        Rx = new RxKring[rings];
        for (int r = 0; r < rings; r++)
        {
            Tx[r] = new TxKring(this, memory, area, r);
            Rx[r] = new RxKring(this, memory, area, r);
        }
    }

    /// <inheritdoc/>
    public void TxSync()
    {
        var tx = Tx;
        for (int r = 0; r < tx.Length; r++) tx[r].Sync();
    }

    /// <inheritdoc/>
    public void RxSync()
    {
        var rx = Rx;
        for (int r = 0; r < rx.Length; r++) rx[r].Sync();
    }

    /// <summary>RxSync of every ring; true when some RX ring then has frames for the user (POLLIN).</summary>
    internal bool RxSyncReady()
    {
        bool ready = false;
        var rx = Rx;
        for (int r = 0; r < rx.Length; r++) ready |= rx[r].Sync();
        return ready;
    }

    /// <summary>TxSync of every ring; true when some TX ring then has room for the user (POLLOUT).</summary>
    internal bool TxSyncReady()
    {
        bool ready = false;
        var tx = Tx;
        for (int r = 0; r < tx.Length; r++) ready |= tx[r].Sync();
        return ready;
    }

    internal bool AnyRxPublished()
    {
        foreach (var k in Rx) if (k.HasUnsynced) return true;
        return false;
    }

    /// <summary>
    /// Some TX ring has free slots for the user (cur != tail): poll's POLLOUT. The tail is read
    /// with acquire semantics: in split/merge a backend thread publishes it.
    /// </summary>
    internal bool AnyTxSpace()
    {
        foreach (var k in Tx)
        {
            uint tail = Volatile.Read(ref *(uint*)(k.Ring + NetmapAbi.RingTail));
            uint cur = *(uint*)(k.Ring + NetmapAbi.RingCur);
            if (cur != tail) return true;
        }
        return false;
    }

    /// <summary>Some TX ring holds frames the switch has not taken yet (head != hwcur).</summary>
    internal bool AnyTxPending()
    {
        foreach (var k in Tx)
            if (*(uint*)(k.Ring + NetmapAbi.RingHead) != k.HwCur) return true;
        return false;
    }

    /// <inheritdoc/>
    public PollEvents Poll(PollEvents events, int timeoutMs)
    {
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        while (true)
        {
            if (Retired) return PollEvents.None; // closed: nothing will ever be ready
            PollEvents ready = PollEvents.None;
            // Readiness is decided inside the syncs (ring memory is read only there).
            if ((events & PollEvents.Out) != 0 && TxSyncReady()) ready |= PollEvents.Out; // flushes anything queued; VALE hands TX slots back at once
            if ((events & PollEvents.In) != 0 && RxSyncReady()) ready |= PollEvents.In;
            if (ready != PollEvents.None || timeoutMs == 0) return ready;
            long remaining = deadline - Environment.TickCount64;
            if (remaining <= 0) return PollEvents.None;

            Wake.Wait((events & PollEvents.In) != 0 ? _rxPublished : _retired, (int)Math.Min(remaining, int.MaxValue));
        }
    }

    /// <summary>
    /// Set for ports whose receiver is not a domain but a device (a physical interface): it is
    /// called in the sender's context right after the sender published frames into one of this
    /// port's RX rings, so the device can be driven from there (HyperNF's NIC txsync in the
    /// hypercall). Null: wake the owning domain if it sleeps.
    /// </summary>
    public IPortSink? Sink { get; set; }

    /// <summary>
    /// Set with <see cref="Sink"/> for a device that can transmit frames straight from the
    /// sending port's slots (<see cref="IDirectSink"/>); null: frames are copied into our RX ring.
    /// </summary>
    internal IDirectSink? Direct { get; set; }

    /// <summary>
    /// True for a port whose TX ring only the host writes (a physical port's driver): its frames
    /// may be handed to a <see cref="Direct"/> sink in place. A domain's frames never are: it
    /// could change them while the device reads them, after the checks.
    /// </summary>
    internal bool HostOwnedFrames { get; set; }

    /// <summary>Called by a sender after it moved hwtail of one of our rings (with a full fence).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void NotifyReceiver()
    {
        var sink = Sink;
        if (sink is null) Wake.Notify();
        else sink.OnDelivered(this);
    }

    internal void WaitQuiescent()
    {
        foreach (var k in Tx) k.WaitQuiescent();
    }

    internal void WaitRxQuiescent()
    {
        foreach (var k in Rx) k.WaitQuiescent();
    }

    public PortStatistics GetStatistics()
    {
        var drops = new long[DropReasons.Count];
        long tx = 0, txb = 0, rx = 0, rxb = 0, fl = 0, re = 0, busy = 0;
        foreach (var k in Tx)
        {
            tx += Volatile.Read(ref k.TxPackets); txb += Volatile.Read(ref k.TxBytes);
            fl += Volatile.Read(ref k.FloodCopies); re += Volatile.Read(ref k.Reinits); busy += Volatile.Read(ref k.BusySkips);
            for (int r = 0; r < drops.Length; r++) drops[r] += Volatile.Read(ref k.Drops[r]);
        }
        foreach (var k in Rx)
        {
            rx += Volatile.Read(ref k.S->RxPackets); rxb += Volatile.Read(ref k.S->RxBytes);
            drops[(int)DropReason.RingFull] += Volatile.Read(ref k.S->DropRingFull);
            drops[(int)DropReason.BadBufferIndex] += Volatile.Read(ref k.S->DropBadBuffer);
            re += Volatile.Read(ref k.S->Reinits); busy += Volatile.Read(ref k.S->BusySkips);
        }
        return new PortStatistics
        {
            Name = Name, TxPackets = tx, TxBytes = txb, RxPackets = rx, RxBytes = rxb, FloodCopies = fl,
            Drops = drops, CorruptRingIndex = re, BusySkips = busy,
        };
    }

    // ---------------------------------------------------------------- capture (monitor ports)

    private readonly object _tapGate = new();

    /// <summary>
    /// The captures open on this port, or null when there are none: the only thing the data
    /// path reads for capture (once per TX sync that moved frames, once per RX lease completed).
    /// </summary>
    internal volatile CaptureTap[]? Taps;

    /// <summary>Opens a capture of this port's traffic (netmap's monitor port); close it with <see cref="CloseCapture"/>.</summary>
    public CaptureTap OpenCapture(CaptureDirection direction, int snapLength = CaptureTap.MaxSnapLength, int bufferBytes = CaptureTap.DefaultBufferBytes)
    {
        var tap = new CaptureTap(this, direction, snapLength, bufferBytes);
        lock (_tapGate)
        {
            if (Retired) throw new InvalidOperationException($"port {Name} is detached; nothing to capture");
            Taps = Taps is { } t ? [.. t, tap] : [tap];
        }
        CapturesChanged?.Invoke();
        return tap;
    }

    /// <summary>Stops a capture: after this returns, no sender writes into the tap any more.</summary>
    public void CloseCapture(CaptureTap tap)
    {
        lock (_tapGate)
        {
            if (Taps is not { } t || Array.IndexOf(t, tap) < 0) return;
            var rest = t.Where(x => x != tap).ToArray();
            Taps = rest.Length == 0 ? null : rest;
        }
        CapturesChanged?.Invoke();
    }

    /// <summary>
    /// Called after a capture opened or closed (a physical port takes itself off the kernel fast
    /// path while captured, so that the capture sees every frame).
    /// </summary>
    internal Action? CapturesChanged;

    /// <summary>Captures open on this port.</summary>
    public int CaptureCount => Taps?.Length ?? 0;

    public override string ToString() => Name;
}
