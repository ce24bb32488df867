using System.Buffers.Binary;
using HyperNF.Linux;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Ports;

/// <summary>
/// A Linux interface attached to a VALE bridge as port <c>BRIDGE:IFNAME</c> (netmap's bwrap).
/// The port's rings live in a small host-owned region, like any other port's.
///
/// <para><b>RX</b> (wire to bridge) is the driver domain's job in HyperNF (dom0 takes the NIC
/// interrupt and runs the flush), so here a host driver thread per port sleeps in poll(),
/// copies received frames into the port's TX ring and calls TxSync: the same flush code the
/// domains run, on the driver thread, charged to the host.</para>
///
/// <para><b>TX</b> (bridge to wire): the switch copies frames into the port's RX ring and
/// then calls <see cref="OnDelivered"/> in the sender's context. By default (hypercall
/// model, <c>drvdom_txsync = 0</c>) the sender itself moves them into the kernel's TX ring
/// and rings the doorbell (send()), as Xen ran the NIC txsync inside the hypercall. With
/// <c>drvdom_txsync = 1</c> (ctl op 5) the sink only wakes the driver thread, which does it.</para>
///
/// <para>Several senders may deliver at once; one transmits at a time. A sender that finds
/// the transmit lock taken leaves a pending flag, and the holder loops until the flag stays
/// clear after it unlocks, so no delivered frame waits for a later delivery.</para>
///
/// <para><b>Removal and re-binding</b>: when the interface is deleted, the port goes
/// <see cref="LinkState.Removed"/> and the switch port down. While removed, the driver thread
/// checks at each idle timeout whether an interface of the same name exists again (a container's
/// veth re-created, a USB NIC plugged back); if so it opens a fresh backend through the same
/// factory (promiscuous mode and offloads set as at attach), swaps it in while it holds the
/// transmit lock (so no sender is inside the old one), disposes the old one and brings the
/// switch port back up. Only the driver thread swaps; senders read the backend under the lock.</para>
/// </summary>
public sealed class PhysicalPort : IPortSink, IDirectSink, IFrameReceiver
{
    private const int EthHeader = 14, VlanTag = 4, MaxFrame = Bridge.DefaultMaxFrameBytes;
    private const int BufferSize = RegionLayout.DefaultBufferSize;

    private readonly PhysicalPorts _owner;
    private readonly PhysicalPortOptions _options;
    private readonly DomainMemory _memory;
    private readonly NetmapPort _port;
    private readonly NetmapRing _toBridge;   // the port's TX ring: frames from the wire
    private readonly NetmapRing _fromBridge; // the port's RX ring: frames for the wire
    private readonly DriverGroup _driver; // the thread that runs this port's rounds (shared per bridge by default)
    private readonly object _upGate = new(); // SwitchPort.Up: the driver's re-bind against Detach
    private byte[]? _vlanScratch;

    // transmit serialisation (see the class comment)
    private int _txLock, _txPending;
    private long _nextLinkCheck, _faultUntil; // driver thread only
    private volatile bool _stop;
    private volatile bool _linkCheckRequested;
    private volatile LinkState _link;
    private volatile string? _lastError;
    private string? _removedError;
    // Swapped only by the driver thread, while it holds the transmit lock (see TryRebind).
    private volatile IInterfaceBackend _backend;
    private int _detached;
    private bool _toBridgeDirty;

    // counters: RX ones are written by the driver thread only, TX ones by the transmit-lock holder only
    private long _rxPackets, _rxBytes, _txPackets, _txBytes, _txKicks, _txInSender, _txInDriver, _wakeups, _rebinds;
    private readonly long[] _rxDrops = new long[PortDropReasons.Count];
    private readonly long[] _txDrops = new long[PortDropReasons.Count];

    public string BridgeName { get; }
    public string InterfaceName { get; }
    /// <summary>BRIDGE:IFNAME.</summary>
    public string Name { get; }
    public Bridge Bridge => SwitchPort.Bridge;
    /// <summary>The switch side of the port.</summary>
    public ValePort SwitchPort { get; }
    /// <summary>The backend in use: a new one after each re-bind (<see cref="PhysicalPortStatistics.Rebinds"/>).</summary>
    public IInterfaceBackend Backend => _backend;
    public LinkState Link => _link;
    /// <summary>The last problem seen (send errors, a removed interface), or null.</summary>
    public string? LastError => _lastError;
    /// <summary>Kernel thread id of the driver thread (shared by the ports of a bridge unless <see cref="PhysicalPortOptions.DriverPerBridge"/> is off).</summary>
    public int DriverTid => _driver.Tid;
    internal DriverGroup Driver => _driver;

    /// <summary>The bridge's kernel fast path while this port is on it (set by <see cref="PhysicalPorts"/>).</summary>
    internal KernelFastPath? FastPath { get; set; }
    /// <summary>Why the port is not on the kernel fast path, or null.</summary>
    internal string? FastPathUnavailable { get; set; }
    private FastPathCounters _fastRetired; // counted under earlier registrations (re-binds)

    /// <summary>Frames the kernel fast path forwarded from and to this port so far.</summary>
    public FastPathCounters KernelPathCounters => _fastRetired + (FastPath?.Counters(this) ?? default);
    public bool IsDetached => Volatile.Read(ref _detached) != 0;

    internal PhysicalPort(PhysicalPorts owner, ValeSwitch sw, string bridgeName, string ifName, PhysicalPortOptions options, DriverGroup driver)
    {
        _driver = driver;
        _owner = owner;
        _options = options;
        BridgeName = bridgeName;
        InterfaceName = ifName;
        Name = $"{bridgeName}:{ifName}";
        Bridge.ParsePortName(Name); // the port name rules, before anything is opened
        var backend = options.OpenBackend(ifName);
        _backend = backend;
        try
        {
            _memory = new DomainMemory(new RegionLayout { MaxPorts = 1 }, $"hypernf-nic-{ifName}");
            // Every buffer's page now, not at its first frame: a page fault per new buffer cost
            // a ping 50-100 us per port until the rings had wrapped (docs/ports.md, Latency).
            _memory.Populate();
            try
            {
                _port = sw.OpenPort(Name, _memory);
            }
            catch
            {
                _memory.Dispose();
                throw;
            }
        }
        catch
        {
            backend.Dispose();
            throw;
        }
        SwitchPort = ValeSwitch.HostPortOf(_port)!;
        SwitchPort.VirtioHeaderLength = backend.VirtioHeaderLength;
        _toBridge = _port.TxRing(0);
        _fromBridge = _port.RxRing(0);
        _link = backend.QueryLink();
        _reportedLink = _link;
        if (driver.SchedulingError is { } schedErr) _lastError = schedErr;
        // Frames delivered before the sink was set are picked up by the driver's first round.
        _txPending = 1;
        SwitchPort.Sink = this;
        SwitchPort.HostOwnedFrames = true; // our TX ring is written by our driver only: frames from it may cut through
        SwitchPort.Direct = this;
        SwitchPort.CapturesChanged = () => FastPath?.Refresh(this);
        driver.Add(this);
    }

    // ================================================================== RX: wire -> bridge

    /// <summary>Marks the calling thread as a port driver thread (see <see cref="PollReceive"/>).</summary>
    internal static void EnterDriverThread() => t_driverDepth = 1;

    internal bool TransmitPending => Volatile.Read(ref _txPending) != 0;
    /// <summary>Whether the driver sleeps on this port's sockets (not while its interface is removed).</summary>
    internal bool PollsBackend => _link != LinkState.Removed;
    internal IInterfaceBackend CurrentBackend => _backend;
    internal long NextLinkCheck => _nextLinkCheck;

    /// <summary>poll() reported an error on one of the backend's sockets (driver thread).</summary>
    internal void OnPollError()
    {
        _backend.ClearPollErrors();
        _linkCheckRequested = true;
    }

    internal void ReportDriverError(Exception e) =>
        _lastError = $"driver thread of port '{Name}': {e.GetType().Name}: {e.Message}";

    /// <summary>
    /// One round of the driver thread for this port (<see cref="DriverGroup"/>): frames from the
    /// wire into the bridge, a pending transmission (drvdom_txsync), the link check when due.
    /// True when there was work (the thread then keeps polling).
    /// </summary>
    internal bool DriverRound()
    {
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.RoundStart);
        // The clock is read after the frames' work (the link check), not before: after a sleep
        // its code and pages are cold, and a frame waiting here pays for them (PortProbe).
        if (_faultUntil != 0)
        {
            if (Environment.TickCount64 < _faultUntil) return false;
            _faultUntil = 0;
        }
        try
        {
            bool busy = false;
            if (_link != LinkState.Removed)
            {
                // Another port's driver thread may be draining our ring (see PollReceive): it then
                // has the frames, and poll() returns at once if any are left.
                if (Interlocked.CompareExchange(ref _rxLock, 1, 0) == 0)
                {
                    try
                    {
                        busy = _backend.Receive(this, _options.RxBudget) > 0;
                        if (busy && _options.DriverFollowsTraffic && !_driver.WakeSourceNoted)
                        {
                            NoteReceived(_backend);
                            _driver.WakeSourceNoted = true;
                        }
                        if (_toBridgeDirty) FlushToBridge();
                    }
                    finally
                    {
                        Volatile.Write(ref _rxLock, 0);
                    }
                }
            }
            if (Volatile.Read(ref _txPending) != 0)
            {
                TryTransmit(inSender: false);
                busy = true;
            }
            long now = Environment.TickCount64;
            if (now >= _nextLinkCheck || _linkCheckRequested)
            {
                _linkCheckRequested = false;
                RefreshLink();
                _nextLinkCheck = Environment.TickCount64 + _options.IdleTimeoutMs;
            }
            return busy;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A driver thread must not take the host down; report, leave this port alone for a
            // while (the others keep being served), and try again.
            ReportDriverError(e);
            _faultUntil = Environment.TickCount64 + _options.IdleTimeoutMs;
            return false;
        }
    }

    /// <summary>Called by the backend for each received frame (driver thread).</summary>
    void IFrameReceiver.OnFrame(ReadOnlySpan<byte> frame, int wireLength, uint vlanTag)
    {
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.FrameRead);
        if (!Admit(frame, frame.Length, wireLength, vlanTag)) return;
        int hdr = _backend.VirtioHeaderLength;
        int len = frame.Length + (vlanTag != 0 ? VlanTag : 0);
        if (vlanTag != 0 && frame.Length >= hdr + 12)
        {
            // The kernel stripped the tag (VLAN acceleration); the bridge sees the frame as sent.
            var s = _vlanScratch ??= new byte[MaxFrame + 16];
            frame[..(hdr + 12)].CopyTo(s);
            int t = hdr + 12;
            s[t] = (byte)(vlanTag >> 24); s[t + 1] = (byte)(vlanTag >> 16);
            s[t + 2] = (byte)(vlanTag >> 8); s[t + 3] = (byte)vlanTag;
            frame[(hdr + 12)..].CopyTo(s.AsSpan(t + 4));
            if (hdr > 0)
            {
                // Offsets in the header count from the frame's start, which moved 4 bytes on.
                var h = s.AsSpan(0, hdr);
                if ((h[0] & VirtioNetHeader.FlagNeedsCsum) != 0)
                    BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.CsumStartOffset..], (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(h[VirtioNetHeader.CsumStartOffset..]) + VlanTag));
                ushort hl = BinaryPrimitives.ReadUInt16LittleEndian(h[VirtioNetHeader.HdrLenOffset..]);
                if (hl != 0) BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.HdrLenOffset..], (ushort)(hl + VlanTag));
            }
            frame = s.AsSpan(0, len);
        }
        int frags = (len + BufferSize - 1) / BufferSize;
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.FrameChecked);
        if (_toBridge.Space < (uint)frags) FlushToBridge(); // VALE hands every TX slot back at once
        // Frames over one buffer become a MOREFRAG chain, as the switch expects them.
        uint cur = _toBridge.Cur;
        for (int off = 0; off < len; off += BufferSize)
        {
            int n = Math.Min(BufferSize, len - off);
            ref var slot = ref _toBridge.Slot(cur);
            frame.Slice(off, n).CopyTo(_toBridge.Buffer(slot.BufIdx));
            slot.Len = (ushort)n;
            slot.Flags = off + n < len ? SlotFlags.MoreFrag : (ushort)0;
            cur = _toBridge.Next(cur);
        }
        Publish(cur, len, hdr);
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.FrameCopied);
    }

    /// <summary>
    /// Whether a received frame of <paramref name="length"/> bytes (<paramref name="head"/>: its
    /// first bytes, at least the headers) may enter the switch; counts and reports the drop when not.
    /// </summary>
    private bool Admit(ReadOnlySpan<byte> head, int length, int wireLength, uint vlanTag)
    {
        if (_link == LinkState.Removed) return false;
        int hdr = _backend.VirtioHeaderLength; // the switch port has the same length (set at attach and re-bind)
        int len = length + (vlanTag != 0 ? VlanTag : 0);
        var eth = head[Math.Min(hdr, head.Length)..];
        bool tagged = vlanTag != 0 || IsTagged(eth);
        int mtu = _backend.Mtu;
        bool gso = hdr > 0 && head.Length > hdr && head[1] != VirtioNetHeader.GsoNone;
        if (length < wireLength)
        {
            // Cut by the kernel. With offload metadata a large frame only is cut when the socket's
            // queue had no room for it; without, the peer sent a frame over the MTU (TSO/GSO).
            if (hdr > 0) CountRxDrop(PortDropReason.KernelRingFull, null);
            else CountRxDrop(PortDropReason.Oversize,
                $"frames of up to {wireLength} bytes arrive on interface '{InterfaceName}' (MTU {mtu}) and are dropped: " +
                "the sender merges segments (TSO/GSO/GRO) and this port has no offload metadata (VirtioNetHeader = false); turn the sender's offloads off, e.g. 'ethtool -K PEER tx off'");
            return false;
        }
        if (len - hdr < EthHeader || (!gso && len - hdr > mtu + EthHeader + (tagged ? VlanTag : 0)) || len > MaxFrame + hdr)
        {
            CountRxDrop(PortDropReason.Oversize,
                $"a {len - hdr}-byte frame arrived on interface '{InterfaceName}' (MTU {mtu}) and was dropped; raise the MTU ('ip link set {InterfaceName} mtu N') to the sender's");
            return false;
        }
        return true;
    }

    /// <summary>
    /// The frame in the slots from Cur up to <paramref name="next"/> (<paramref name="len"/> bytes
    /// with the header, slot lengths and MOREFRAG set) goes to the switch at its next flush.
    /// </summary>
    private void Publish(uint next, int len, int hdr)
    {
        _toBridge.Head = _toBridge.Cur = next;
        _toBridgeDirty = true;
        _rxPackets++;
        _rxBytes += len - hdr;
    }

    // Scatter receive (large frames read by recvmsg straight into the slots): how many bytes the
    // fragments of the last BeginScatter hold; 0 when none is open.
    private int _scatterBytes;

    unsafe int IFrameReceiver.BeginScatter(FrameFragment* fragments, int maxFragments, int maxLength)
    {
        _scatterBytes = 0;
        if (_link == LinkState.Removed) return 0;
        int frags = Math.Min((maxLength + BufferSize - 1) / BufferSize, maxFragments);
        if (frags <= 0) return 0;
        if (_toBridge.Space < (uint)frags) FlushToBridge();
        if (_toBridge.Space < (uint)frags) return 0;
        uint cur = _toBridge.Cur;
        for (int i = 0; i < frags; i++)
        {
            var buf = _toBridge.Buffer(_toBridge.Slot(cur).BufIdx);
            fragments[i].Base = (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(buf));
            fragments[i].Length = (nuint)BufferSize;
            cur = _toBridge.Next(cur);
        }
        _scatterBytes = frags * BufferSize;
        return frags;
    }

    void IFrameReceiver.CommitScatter(int length, int wireLength, uint vlanTag)
    {
        int reserved = _scatterBytes;
        _scatterBytes = 0;
        if (reserved == 0) throw new InvalidOperationException("CommitScatter without BeginScatter");
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.FrameRead);
        length = Math.Min(length, reserved);
        int hdr = _backend.VirtioHeaderLength;
        var head = _toBridge.Buffer(_toBridge.Slot(_toBridge.Cur).BufIdx)[..Math.Min(length, BufferSize)];
        if (vlanTag != 0)
        {
            // The tag goes back in after the MAC addresses, which moves every byte after it:
            // gather into the scratch buffer and take the copying path (VLAN-tagged super-frames only).
            var s = _gatherScratch ??= new byte[MaxFrame + 16];
            uint c = _toBridge.Cur;
            for (int off = 0; off < length; off += BufferSize)
            {
                int n = Math.Min(BufferSize, length - off);
                _toBridge.Buffer(_toBridge.Slot(c).BufIdx)[..n].CopyTo(s.AsSpan(off));
                c = _toBridge.Next(c);
            }
            ((IFrameReceiver)this).OnFrame(s.AsSpan(0, length), wireLength, vlanTag);
            return;
        }
        if (!Admit(head, length, wireLength, 0)) return;
        // The kernel filled whole buffers in order: the chain's slot lengths follow from the length.
        uint cur = _toBridge.Cur;
        for (int off = 0; off < length; off += BufferSize)
        {
            int n = Math.Min(BufferSize, length - off);
            ref var slot = ref _toBridge.Slot(cur);
            slot.Len = (ushort)n;
            slot.Flags = off + n < length ? SlotFlags.MoreFrag : (ushort)0;
            cur = _toBridge.Next(cur);
        }
        Publish(cur, length, hdr);
        Volatile.Write(ref _scattered, _scattered + 1);
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.FrameCopied);
    }

    private byte[]? _gatherScratch;
    private long _scattered;

    /// <summary>Frames the backend read straight into the switch's slots (scatter receive: large frames, no staging copy).</summary>
    public long FramesReadIntoSlots => Volatile.Read(ref _scattered);

    /// <summary>Counts a drop on the way in (driver thread); the first of each reason sets <see cref="LastError"/> and is reported with the fix.</summary>
    private void CountRxDrop(PortDropReason reason, string? message, long count = 1)
    {
        if (count <= 0) return;
        bool first = _rxDrops[(int)reason] == 0;
        _rxDrops[(int)reason] += count;
        if (!first) return;
        if (message is not null) _lastError = message;
        Report(rx: true, reason, message ?? FixFor(rx: true, reason, 0));
    }

    // One bit per (direction, reason) already reported: each cause is reported once, with its fix.
    private int _reported;
    private LinkState _reportedLink;

    private void Report(bool rx, PortDropReason reason, string fix)
    {
        int bit = 1 << ((rx ? 0 : 16) + (int)reason);
        if ((Volatile.Read(ref _reported) & bit) != 0 || (Interlocked.Or(ref _reported, bit) & bit) != 0) return;
        _owner.Post($"port {Name}: {(rx ? "frames from" : "frames to")} interface '{InterfaceName}' dropped ({reason.Key()}): {fix}");
    }

    /// <summary>What to do about a drop reason (used when the drop itself has no better message).</summary>
    private string FixFor(bool rx, PortDropReason reason, int errno) => reason switch
    {
        PortDropReason.LinkDown => $"interface '{InterfaceName}' is down or has no carrier; bring it and its peer up ('ip link set {InterfaceName} up')",
        PortDropReason.InterfaceRemoved => $"interface '{InterfaceName}' was removed; the port re-binds when it exists again, or detach it (vale-ctl -d {Name})",
        PortDropReason.KernelRingFull when rx => $"the kernel's receive ring was full: the port's driver thread fell behind (a busy CPU); give it a CPU of its own (DriverCpus) or a larger ring (RxBlockCount)",
        PortDropReason.KernelRingFull => $"the interface took frames slower than the senders sent them (its transmit queue was full)",
        PortDropReason.Oversize => $"frames over the MTU of '{InterfaceName}'; raise its MTU to the sender's ('ip link set {InterfaceName} mtu N')",
        PortDropReason.BadOffload => "a sender wrote a virtio-net header that does not match its frame (gso_size, csum_start, csum_offset or hdr_len)",
        _ => $"send failed: {PacketSocket.ErrnoText(errno)}",
    };

    /// <summary>The driver's TxSync: the switch flush runs here, on the driver thread.</summary>
    private void FlushToBridge()
    {
        _toBridgeDirty = false;
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.BridgeFlushStart);
        _port.TxSync();
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.BridgeFlushDone);
    }

    private static bool IsTagged(ReadOnlySpan<byte> frame) =>
        frame.Length >= EthHeader && (frame[12] == 0x81 && frame[13] == 0x00 || frame[12] == 0x88 && frame[13] == 0xA8);

    private void RefreshLink()
    {
        if (_link == LinkState.Removed)
        {
            // The sockets are bound to a device that is gone; a new one of the same name can be bound.
            TryRebind();
            return;
        }
        var backend = _backend;
        var state = backend.QueryLink();
        if (state == LinkState.Removed)
        {
            _removedError = $"interface '{InterfaceName}' was removed while attached to bridge '{BridgeName}'; " +
                            $"the port re-binds when an interface of that name exists again, or detach it (vale-ctl -d {Name})";
            _lastError = _removedError;
            // The switch stops sending to it (port-down drops) instead of queueing for a dead device.
            SwitchPort.Up = false;
        }
        _link = state;
        if (state != _reportedLink)
        {
            _reportedLink = state;
            _owner.Post(state switch
            {
                LinkState.Up => $"port {Name}: link up (interface '{InterfaceName}', mtu {backend.Mtu})",
                LinkState.Down => $"port {Name}: link down: interface '{InterfaceName}' is down or has no carrier; frames to it are dropped (link_down) until it is up ('ip link set {InterfaceName} up', and its peer)",
                _ => $"port {Name}: {_removedError}",
            });
        }
        if (FastPath is { } fp)
        {
            fp.Refresh(this); // link and MTU
            fp.Tick();        // the kernel's copy of the learning table follows aging
        }
        // RX counters belong to whoever holds the ring; if another thread does now, the kernel keeps counting until next time.
        if (state != LinkState.Removed && Interlocked.CompareExchange(ref _rxLock, 1, 0) == 0)
        {
            try { CountRxDrop(PortDropReason.KernelRingFull, null, backend.TakeKernelDrops()); }
            finally { Volatile.Write(ref _rxLock, 0); }
        }
    }

    /// <summary>
    /// Driver thread, while <see cref="LinkState.Removed"/>: if an interface of the same name
    /// exists again, open a fresh backend through the attach-time factory (which sets promiscuous
    /// mode and turns the receive offloads off as at attach), swap it in under the transmit lock,
    /// dispose the old one (no sender can reach it any more) and bring the switch port back up.
    /// A failed open leaves everything as it was; the next idle timeout tries again.
    /// </summary>
    private void TryRebind()
    {
        if (PacketSocket.IfNameToIndex(InterfaceName) == 0) return; // not back (the cheap check, every idle timeout)
        IInterfaceBackend fresh;
        try
        {
            fresh = _options.OpenBackend(InterfaceName);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // E.g. it vanished again in between, or is not an interface we can bind.
            _lastError = $"interface '{InterfaceName}' exists again but could not be re-bound to port '{Name}': {e.Message}; retrying every {_options.IdleTimeoutMs} ms";
            return;
        }
        IInterfaceBackend old;
        // Another port's driver thread may be receiving on the old backend (PollReceive): wait it out.
        var rxSpin = new SpinWait();
        while (Interlocked.CompareExchange(ref _rxLock, 1, 0) != 0) rxSpin.SpinOnce();
        AcquireTransmitLock();
        try
        {
            // No sender is in TransmitDelivered now, and the next one reads the new backend.
            old = _backend;
            _backend = fresh;
            SwitchPort.VirtioHeaderLength = fresh.VirtioHeaderLength;
            _link = fresh.QueryLink();
        }
        finally
        {
            Interlocked.Exchange(ref _txLock, 0); // senders that lost the race left _txPending: the driver loop picks it up
            Volatile.Write(ref _rxLock, 0);
        }
        // Only this thread can still reach the old backend. Its interface is gone (the new one has
        // another index), so it leaves the new interface's promiscuity and offloads alone.
        old.Dispose();
        if (_link == LinkState.Removed) return; // gone again already: the next idle timeout tries again
        fresh.TakeKernelDrops(); // start counting from the re-bind
        Interlocked.Increment(ref _rebinds);
        _reportedLink = _link;
        _owner.Post($"port {Name}: re-bound to the new interface '{InterfaceName}' (ifindex {fresh.InterfaceIndex}, link {_link.ToString().ToLowerInvariant()}, {fresh.Description})");
        if (ReferenceEquals(_lastError, _removedError)) _lastError = null;
        if (FastPath is { } fp)
        {
            // The new interface has its own index and the new backend its own RX socket.
            _fastRetired += fp.Unregister(this);
            FastPathUnavailable = fp.Register(this);
            if (FastPathUnavailable is not null) FastPath = null;
        }
        lock (_upGate)
        {
            if (!_stop) SwitchPort.Up = true; // Detach may be taking the port down
        }
        FastPath?.Refresh(this);
    }

    /// <summary>
    /// Takes the transmit lock as a re-bind does (spinning; senders meanwhile leave their frames in
    /// the RX ring and the pending flag). Internal for the tests that need frames held there.
    /// </summary>
    internal void AcquireTransmitLock()
    {
        // Senders hold it for one transmit round at a time and never wait for it.
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref _txLock, 1, 0) != 0) spin.SpinOnce();
    }

    /// <summary>Releases <see cref="AcquireTransmitLock"/>; what senders left pending goes at the driver's next round.</summary>
    internal void ReleaseTransmitLock() => Interlocked.Exchange(ref _txLock, 0);

    // ================================================================== TX: bridge -> wire

    /// <summary>
    /// Sink of the switch port: runs on the sender's thread right after it published frames
    /// into our RX ring.
    /// </summary>
    public void OnDelivered(ValePort port)
    {
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.SinkEntered);
        if (_owner.DriverDomainTxSync)
        {
            // drvdom_txsync = 1: the driver thread transmits. Exchange is a full fence, so the
            // flag is visible before we read whether the driver sleeps (Dekker with DriverMain).
            Interlocked.Exchange(ref _txPending, 1);
            if (_driver.Sleeping)
            {
                Interlocked.Increment(ref _wakeups);
                _driver.Wake();
            }
            return;
        }
        Interlocked.Exchange(ref _txPending, 1);
        TryTransmit(inSender: true);
        // A reply to what we just sent is often in our RX ring already: the kernel ran the
        // receiver's stack in our send(). On a driver thread (never a domain's: that is not its
        // work), take it at once instead of waiting for our own driver thread to wake up. (A port
        // of the sending thread's own group is read in that thread's next round anyway.)
        if (t_driverDepth is > 0 and < MaxPollDepth && _driver.Sleeping) PollReceive();
    }

    // >0 on a port driver thread: 1 + how many PollReceive calls are on the stack.
    [ThreadStatic] private static int t_driverDepth;
    private const int MaxPollDepth = 4;
    // Held by whoever reads the backend's RX side and fills the port's TX ring: the driver thread,
    // or another port's driver thread in PollReceive.
    private int _rxLock;

    /// <summary>
    /// Receives on this port from another port's driver thread while ours sleeps (the frames a
    /// transmission just provoked: a ping's reply, a TCP ACK), so a round trip costs one thread
    /// wake-up instead of two. Skipped when ours holds the ring; nested at most a few ports deep.
    /// </summary>
    private void PollReceive()
    {
        if (_link == LinkState.Removed || Interlocked.CompareExchange(ref _rxLock, 1, 0) != 0) return;
        t_driverDepth++;
        try
        {
            var backend = _backend; // our driver thread swaps it only while it holds _rxLock too (TryRebind)
            // Not noted for following: these frames answer the transmission that brought us here,
            // on this CPU; where our own thread would be woken from is unchanged.
            if (backend.Receive(this, _options.RxBudget) > 0) Interlocked.Increment(ref _rxPolledElsewhere);
            if (_toBridgeDirty) FlushToBridge();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _lastError = $"receive on port '{Name}' from another port's driver thread: {e.GetType().Name}: {e.Message}";
        }
        finally
        {
            t_driverDepth--;
            Volatile.Write(ref _rxLock, 0);
            if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.PollReceiveDone);
        }
    }

    private long _rxPolledElsewhere;

    // Where the frames that last woke this port's driver thread arrived (DriverFollowsTraffic),
    // and when, as a sequence number shared by all ports: the group follows the newest.
    private static long s_rxSequence;
    private int _lastRxCpu = -1;
    private long _lastRxSequence;
    internal int LastRxCpu => Volatile.Read(ref _lastRxCpu);
    internal long LastRxSequence => Interlocked.Read(ref _lastRxSequence);

    // Under _rxLock, right after a receive that returned frames (only when following: the shared
    // sequence is an atomic on a cache line all driver threads write): the backend is alive.
    private void NoteReceived(IInterfaceBackend backend)
    {
        Volatile.Write(ref _lastRxCpu, backend.LastRxCpu);
        Interlocked.Exchange(ref _lastRxSequence, Interlocked.Increment(ref s_rxSequence));
    }

    /// <summary>
    /// Transmits until nothing is pending, unless another thread holds the transmit lock; that
    /// thread then sees our pending flag. After unlocking, the holder re-reads the flag (the
    /// unlock is a full fence): a flag set after its last round makes it try again, so a sender
    /// that lost the race never strands its frames.
    /// </summary>
    private void TryTransmit(bool inSender)
    {
        while (Interlocked.CompareExchange(ref _txLock, 1, 0) == 0)
        {
            try
            {
                while (Interlocked.Exchange(ref _txPending, 0) != 0)
                {
                    if (inSender) _txInSender++; else _txInDriver++;
                    TransmitDelivered();
                }
            }
            finally
            {
                Interlocked.Exchange(ref _txLock, 0);
            }
            if (Volatile.Read(ref _txPending) == 0) return;
        }
    }

    /// <summary>
    /// netmap's NIC txsync in the sender's context: take every frame published in our RX ring,
    /// assemble MOREFRAG chains into one kernel TX frame each, ring the doorbell once, and give
    /// the slots back to the switch. Nothing waits: a frame that cannot go is a counted drop.
    /// </summary>
    private unsafe void TransmitDelivered()
    {
        var rx = _fromBridge;
        _port.RxSync(); // tail = what the senders published
        uint cur = rx.Cur, tail = rx.Tail;
        if (cur == tail) return;
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.TxRingSynced);
        var tx = new TransmitRound(this);
        var iov = stackalloc FrameFragment[MaxChain];
        while (cur != tail)
        {
            // The switch publishes whole chains only; an unfinished one is left for the next round.
            uint end = cur;
            int total = 0, n = 0;
            bool complete = false;
            while (end != tail)
            {
                ref var s = ref rx.Slot(end);
                var frag = rx.Frame(s);
                if (n < MaxChain)
                {
                    iov[n].Base = (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(frag));
                    iov[n].Length = (nuint)frag.Length;
                }
                n++;
                total += frag.Length;
                end = rx.Next(end);
                if ((s.Flags & SlotFlags.MoreFrag) == 0) { complete = true; break; }
            }
            if (!complete) break;
            if (total != 0) SendFrame(ref tx, iov, n, total); // zero: a slot the switch leased and published empty
            cur = end;
        }
        rx.Head = rx.Cur = cur;
        FinishRound(ref tx);
        _port.RxSync(); // hand the slots back to the senders
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.TransmitDone);
    }

    /// <summary>Longest chain one transmitted frame may have (the switch's NM_MULTISEG).</summary>
    private const int MaxChain = TxKring.MaxFragments;

    /// <summary>One transmit round's view of the port (read once, under the transmit lock) and what it queued.</summary>
    private struct TransmitRound(PhysicalPort port)
    {
        public readonly IInterfaceBackend Backend = port._backend; // stable while we hold the transmit lock (TryRebind swaps under it)
        public readonly LinkState Link = port._link;
        public readonly int Mtu = port._backend.Mtu;
        public readonly int Hdr = port._backend.VirtioHeaderLength; // and the switch port's, so the frames' here
        public int Queued;
        public long QueuedBytes;
    }

    /// <summary>
    /// Hands one frame (<paramref name="n"/> fragments, <paramref name="total"/> bytes with the
    /// virtio-net header) to the kernel, or counts why not. A chain (a super-frame) goes out
    /// straight from its fragments when the backend can (no staging copy); anything else is
    /// copied into the backend's TX ring. Under the transmit lock.
    /// </summary>
    private unsafe void SendFrame(ref TransmitRound tx, FrameFragment* iov, int n, int total)
    {
        var backend = tx.Backend;
        int hdr = tx.Hdr;
        PortDropReason? drop = null;
        Span<byte> dst = default;
        if (tx.Link != LinkState.Up) drop = tx.Link == LinkState.Removed ? PortDropReason.InterfaceRemoved : PortDropReason.LinkDown;
        else if (n > MaxChain) drop = PortDropReason.Oversize; // the switch never makes one
        else if (CheckFrame(iov, n, total, hdr, tx.Mtu) is { } bad) drop = bad;
        else if (n > 1 && backend.TransmitGather(iov, n, total))
        {
            tx.Queued++;
            tx.QueuedBytes += total - hdr;
            return;
        }
        else
        {
            dst = backend.BeginTransmit(total);
            if (dst.IsEmpty && tx.Queued > 0)
            {
                // The kernel's ring is full of our own unsent requests: kick it and retry once.
                Account(backend.Flush(), tx.Queued, tx.QueuedBytes, hdr);
                tx.Queued = 0; tx.QueuedBytes = 0;
                dst = backend.BeginTransmit(total);
            }
            if (dst.IsEmpty) drop = PortDropReason.KernelRingFull;
            else if (total > dst.Length) drop = PortDropReason.Oversize; // the MTU grew past the ring's frame size
        }
        if (drop is { } reason)
        {
            if (_txDrops[(int)reason]++ == 0)
            {
                string fix = reason switch
                {
                    PortDropReason.Oversize => $"a {total - hdr}-byte frame for interface '{InterfaceName}' (MTU {tx.Mtu}) was dropped; raise its MTU ('ip link set {InterfaceName} mtu N') to the sender's",
                    PortDropReason.BadOffload => $"a frame for interface '{InterfaceName}' was dropped: its virtio-net header does not match it (a sender wrote a bad gso_size, csum_start, csum_offset or hdr_len)",
                    _ => FixFor(rx: false, reason, 0),
                };
                if (reason is PortDropReason.Oversize or PortDropReason.BadOffload) _lastError = fix;
                Report(rx: false, reason, fix);
            }
            return;
        }
        int off = 0;
        for (int k = 0; k < n; k++)
        {
            new ReadOnlySpan<byte>(iov[k].Base, (int)iov[k].Length).CopyTo(dst[off..]);
            off += (int)iov[k].Length;
        }
        backend.CommitTransmit(total);
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.FrameQueued);
        tx.Queued++;
        tx.QueuedBytes += total - hdr; // frame bytes, as on the wire
    }

    /// <summary>Rings the doorbell for what the round queued and accounts for it.</summary>
    private void FinishRound(ref TransmitRound tx)
    {
        if (tx.Queued == 0) return;
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.SendStart);
        var sent = tx.Backend.Flush();
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.SendDone);
        Account(sent, tx.Queued, tx.QueuedBytes, tx.Hdr);
        tx.Queued = 0; tx.QueuedBytes = 0;
    }

    /// <summary>
    /// Cut-through (<see cref="IDirectSink"/>): the switch hands us a destination's frames still
    /// in the sending port's slots, and we give them to the kernel from there, so a frame from
    /// another physical port crosses the host with two copies (into the source's slots, into the
    /// kernel's skb) instead of three. netmap has the same count: its VALE copy into a NIC's
    /// buffer is the one copy. Declined (false, nothing sent) while frames delivered earlier
    /// still wait in our RX ring or another thread transmits (the order on the wire is kept),
    /// under drvdom_txsync, and never taken for a domain's frames (the switch only offers frames
    /// from host-owned memory).
    /// </summary>
    unsafe bool IDirectSink.TryTransmitDirect(RxKring rx, ref DirectFrames frames, out long packets, out long bytes)
    {
        packets = 0; bytes = 0;
        if (_owner.DriverDomainTxSync || !rx.IsDrained) return false;
        if (Interlocked.CompareExchange(ref _txLock, 1, 0) != 0) return false;
        bool taken = false;
        try
        {
            // Under the lock hwcur moves only for us: drained now means every frame delivered
            // before (ours included) is on the wire already.
            if (rx.IsDrained)
            {
                taken = true;
                if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.SinkEntered);
                _txInSender++;
                var tx = new TransmitRound(this);
                var iov = stackalloc FrameFragment[MaxChain];
                while (frames.MoveNext())
                {
                    int n = frames.Fragments, total = 0;
                    for (int f = 0; f < n; f++)
                    {
                        iov[f].Base = frames.Buffer(f);
                        iov[f].Length = (nuint)frames.Length(f);
                        total += frames.Length(f);
                    }
                    packets++;
                    bytes += total;
                    SendFrame(ref tx, iov, n, total);
                }
                FinishRound(ref tx);
                _txCutThrough += packets;
            }
        }
        finally
        {
            Interlocked.Exchange(ref _txLock, 0);
        }
        // Senders that found the lock taken, even for the moment a decline held it, left their
        // frames in the ring and the pending flag: the holder sends them (the class comment).
        if (Volatile.Read(ref _txPending) != 0) TryTransmit(inSender: true);
        if (!taken) return false;
        if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.TransmitDone);
        if (t_driverDepth is > 0 and < MaxPollDepth && _driver.Sleeping) PollReceive(); // as in OnDelivered
        return true;
    }

    private long _txCutThrough;

    private readonly byte[] _headScratch = new byte[512];

    /// <summary>
    /// Whether the frame in <paramref name="iov"/> (<paramref name="n"/> fragments, <paramref name="total"/>
    /// bytes with a virtio-net header of <paramref name="hdr"/> bytes) may go to the kernel: its
    /// header must match it (the kernel would refuse it silently in a TX ring), and it, or each
    /// segment the kernel will cut it into, must fit the MTU. Null when it may.
    /// </summary>
    private unsafe PortDropReason? CheckFrame(FrameFragment* iov, int n, int total, int hdr, int mtu)
    {
        var first = new ReadOnlySpan<byte>(iov[0].Base, (int)iov[0].Length);
        if (first.Length < hdr + EthHeader) return PortDropReason.BadOffload; // the switch never makes one
        int limit = mtu + EthHeader + (IsTagged(first[hdr..]) ? VlanTag : 0);
        int len = total - hdr;
        if (hdr == 0 || (first[VirtioNetHeader.FlagsOffset] == 0 && first[VirtioNetHeader.GsoTypeOffset] == 0))
            return len > limit ? PortDropReason.Oversize : null;
        // The headers, gathered from the chain (a hostile sender may have split them over slots).
        var head = _headScratch;
        int got = 0;
        for (int k = 0; k < n && got < head.Length; k++)
        {
            int c = Math.Min((int)iov[k].Length, head.Length - got);
            new ReadOnlySpan<byte>(iov[k].Base, c).CopyTo(head.AsSpan(got));
            got += c;
        }
        fixed (byte* h = head)
        {
            var plan = Offload.Plan(h, h + hdr, len, got - hdr);
            if (plan.Action == OffloadAction.Drop) return PortDropReason.BadOffload;
            int largest = plan.Action == OffloadAction.Segment ? Offload.SegmentLength(plan, len, 0) : len;
            return largest > limit ? PortDropReason.Oversize : null;
        }
    }

    private void Account(TransmitResult r, int queued, long bytes, int hdr)
    {
        _txKicks++;
        _txPackets += queued - r.Unsent;
        _txBytes += bytes - (r.UnsentBytes - (long)r.Unsent * hdr); // the backend's byte counts include the header
        if (!r.Failed) return;
        PortDropReason reason;
        switch (r.Errno)
        {
            case PacketSocket.ENETDOWN:
                reason = PortDropReason.LinkDown;
                _link = LinkState.Down; // until the driver's next check says otherwise
                _linkCheckRequested = true;
                break;
            case PacketSocket.ENXIO or PacketSocket.ENODEV:
                reason = PortDropReason.InterfaceRemoved;
                _linkCheckRequested = true;
                break;
            case PacketSocket.EAGAIN or PacketSocket.ENOBUFS:
                reason = PortDropReason.KernelRingFull;
                break;
            default:
                reason = PortDropReason.SendError;
                _lastError = $"send on interface '{InterfaceName}' failed: {PacketSocket.ErrnoText(r.Errno)}";
                break;
        }
        if (r.Unsent > 0 && _txDrops[(int)reason] == 0) Report(rx: false, reason, FixFor(rx: false, reason, r.Errno));
        _txDrops[(int)reason] += r.Unsent;
    }

    // ================================================================== control

    public PhysicalPortStatistics GetStatistics()
    {
        var rxd = new long[PortDropReasons.Count];
        var txd = new long[PortDropReasons.Count];
        for (int i = 0; i < rxd.Length; i++)
        {
            rxd[i] = Volatile.Read(ref _rxDrops[i]);
            txd[i] = Volatile.Read(ref _txDrops[i]);
        }
        var kernel = KernelPathCounters;
        return new PhysicalPortStatistics
        {
            Name = Name, Interface = InterfaceName, Link = _link.ToString().ToLowerInvariant(), Mtu = _backend.Mtu,
            InterfaceIndex = _backend.InterfaceIndex, Rebinds = Interlocked.Read(ref _rebinds),
            RxPackets = Volatile.Read(ref _rxPackets), RxBytes = Volatile.Read(ref _rxBytes),
            TxPackets = Volatile.Read(ref _txPackets), TxBytes = Volatile.Read(ref _txBytes),
            RxDrops = rxd, TxDrops = txd,
            TxKicks = Volatile.Read(ref _txKicks), TxRoundsInSender = Volatile.Read(ref _txInSender),
            TxRoundsInDriver = Volatile.Read(ref _txInDriver), DriverWakeups = Volatile.Read(ref _wakeups),
            RxRoundsElsewhere = Interlocked.Read(ref _rxPolledElsewhere),
            TxCutThrough = Volatile.Read(ref _txCutThrough),
            KernelPath = FastPath is { } fp ? (fp.IsEnabled(this) ? "on" : "off") : FastPathUnavailable ?? "off",
            KernelRxPackets = kernel.RxPackets, KernelRxBytes = kernel.RxBytes,
            KernelTxPackets = kernel.TxPackets, KernelTxBytes = kernel.TxBytes,
            DriverCpuNs = DriverTid != 0 && !IsDetached ? CpuTime.ThreadNs(DriverTid) : -1,
        };
    }

    /// <summary>
    /// Detaches the port: stops the driver thread, takes the port off the bridge (waiting until
    /// no sender is inside its sink), transmits what was already delivered, closes the sockets
    /// (which leaves promiscuous mode) and frees the rings. Always completes; returns false
    /// when the driver thread did not stop in time (its resources are then left allocated).
    /// </summary>
    internal bool Detach()
    {
        if (Interlocked.Exchange(ref _detached, 1) != 0) return true;
        // Off the kernel fast path first: from here on every frame from or to the port is the switch's.
        if (FastPath is { } fp)
        {
            _fastRetired += fp.Unregister(this);
            FastPath = null;
        }
        lock (_upGate)
        {
            _stop = true; // a re-bind from now on leaves the switch port down
            SwitchPort.Up = false; // from now on senders count port-down drops instead of delivering
        }
        bool joined = _owner.ReleaseDriver(this, _driver); // after it, the driver thread never enters our round again
        // Bridge.Detach waits until no flush that could still reach this port is running, so
        // after it no sender is in OnDelivered.
        SwitchPort.Bridge.Detach(SwitchPort);
        if (!joined)
        {
            _lastError = $"the driver thread of port '{Name}' did not stop within 10 s; its sockets and rings were left open";
            return false;
        }
        try
        {
            Interlocked.Exchange(ref _txPending, 1);
            TryTransmit(inSender: false); // what was delivered before the detach still goes out (or is counted)
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _lastError = $"final transmit of port '{Name}': {e.Message}";
        }
        SwitchPort.Direct = null;
        SwitchPort.Sink = null;
        _port.Dispose();
        _backend.Dispose();
        _memory.Dispose();
        return true;
    }

    public override string ToString() => Name;
}
