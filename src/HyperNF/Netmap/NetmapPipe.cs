using HyperNF.Memory;

namespace HyperNF.Netmap;

/// <summary>
/// A netmap pipe (netmap's <c>NAME{ID</c> master and <c>NAME}ID</c> slave): two ends, each a
/// port area with one TX and one RX ring, in the region of the port it hangs off (its parent),
/// so a program can hand frames to another without copying. A TX sync of one end moves the slots
/// between its hwcur and head into the other end's RX ring by swapping whole slots, as netmap
/// does: the receiver gets the sender's buffer, the sender gets the receiver's free buffer back
/// (both marked <c>NS_BUF_CHANGED</c>). Nothing is copied and no buffer is ever touched by the
/// host: only slot fields move, each read once. A slot whose buffer index is outside the region
/// or whose length exceeds a buffer is not moved but returned to its sender and counted in
/// <see cref="BadSlots"/>; head/cur outside the ring's window reset the ring and count
/// <see cref="CorruptRingIndex"/>. Frames sent to an end nobody has registered wait in its RX
/// ring until it is full (the sender's TX then stops, as with netmap: pipes do not drop).
/// </summary>
public sealed unsafe class NetmapPipe
{
    /// <summary>One direction: the sender's TX ring into the receiver's RX ring, with the host's private indices.</summary>
    internal sealed class Direction(NetmapRing tx, NetmapRing rx)
    {
        public readonly object Gate = new();
        public readonly NetmapRing Tx = tx, Rx = rx;
        public uint TxHwcur;            // next TX slot to move
        public uint RxHwcur;            // first RX slot the receiver has not released
        public uint RxHwtail;           // next RX slot to fill
        public long Moved;
    }

    /// <summary>One side of the pipe; the backend of the port a registration of that side gets.</summary>
    public sealed class End : IPortBackend, IProcessPortSource
    {
        private readonly NetmapPipe _pipe;
        private readonly Direction _out, _in;
        private WakeWord? _wake;
        private NetmapPort? _port;

        internal End(NetmapPipe pipe, bool master, int area, Direction outbound, Direction inbound)
        {
            _pipe = pipe;
            IsMaster = master;
            Area = area;
            _out = outbound;
            _in = inbound;
        }

        public bool IsMaster { get; }
        public int Area { get; }
        public string Name => _pipe.Parent + (IsMaster ? "{" : "}") + _pipe.Id;
        public NetmapPipe Pipe => _pipe;
        public bool Bound { get { lock (_pipe._gate) return _port is not null; } }

        internal End Peer => IsMaster ? _pipe.Slave : _pipe.Master;
        internal WakeWord? Wake => Volatile.Read(ref _wake);

        /// <summary>TX: move [hwcur, head) into the peer's RX ring, as far as it has room.</summary>
        public void TxSync()
        {
            var d = _out;
            lock (d.Gate)
            {
                uint n = d.Tx.NumSlots;
                uint head = d.Tx.Head, cur = d.Tx.Cur; // read once
                uint rtail = RingRules.Prev(d.TxHwcur, n);
                if (!RingRules.IsLegalMove(head, cur, d.TxHwcur, rtail, n))
                {
                    Interlocked.Increment(ref _pipe._corrupt);
                    d.Tx.Head = d.Tx.Cur = d.TxHwcur;
                    d.Tx.Tail = rtail;
                    return;
                }
                uint pending = RingRules.Distance(d.TxHwcur, head, n);
                uint room = RingRules.Distance(d.RxHwtail, RingRules.Prev(d.RxHwcur, n), n);
                uint m = Math.Min(pending, room);
                uint bufferCount = _pipe.Memory.BufferCount;
                int bufferSize = _pipe.Memory.Layout.BufferSize;
                for (uint i = 0; i < m; i++)
                {
                    ref var ts = ref d.Tx.Slot(d.TxHwcur);
                    NetmapSlot t = ts; // read once
                    if (t.BufIdx - RegionLayout.ReservedBuffers >= bufferCount - RegionLayout.ReservedBuffers || t.Len > bufferSize)
                    {
                        Interlocked.Increment(ref _pipe._badSlots); // returned to the sender unmoved
                    }
                    else
                    {
                        ref var rs = ref d.Rx.Slot(d.RxHwtail);
                        NetmapSlot r = rs;
                        t.Flags |= SlotFlags.BufChanged;
                        r.Flags = SlotFlags.BufChanged;
                        r.Len = 0;
                        rs = t;
                        ts = r;
                        d.RxHwtail = RingRules.Next(d.RxHwtail, n);
                        d.Moved++;
                    }
                    d.TxHwcur = RingRules.Next(d.TxHwcur, n);
                }
                d.Tx.Tail = RingRules.Prev(d.TxHwcur, n);
                // Under the lock: an end being unbound takes both locks before its wake word goes.
                if (m > 0) Peer.Wake?.FenceAndNotify();
            }
        }

        /// <summary>RX: release [hwcur, head) to the peer's TX and publish what it moved in.</summary>
        public void RxSync()
        {
            var d = _in;
            lock (d.Gate)
            {
                uint n = d.Rx.NumSlots;
                uint head = d.Rx.Head, cur = d.Rx.Cur; // read once
                // The window the receiver may move in: [hwcur, hwtail] (what it was given so far).
                if (!RingRules.IsLegalMove(head, cur, d.RxHwcur, d.RxHwtail, n))
                {
                    Interlocked.Increment(ref _pipe._corrupt);
                    d.Rx.Head = d.Rx.Cur = d.RxHwcur;
                    d.Rx.Tail = d.RxHwtail;
                    return;
                }
                bool freed = head != d.RxHwcur;
                d.RxHwcur = head;
                d.Rx.Tail = d.RxHwtail;
                if (freed) Peer.Wake?.FenceAndNotify(); // the peer's TX may have room again
            }
        }

        public PollEvents Poll(PollEvents events, int timeoutMs)
        {
            var wake = Wake ?? throw new InvalidOperationException($"pipe end {Name} is not registered");
            PollEvents ready = PollEvents.None;
            bool Check()
            {
                ready = PollEvents.None;
                if ((events & PollEvents.In) != 0)
                {
                    RxSync();
                    if (_in.Rx.Cur != _in.Rx.Tail) ready |= PollEvents.In;
                }
                if ((events & PollEvents.Out) != 0)
                {
                    TxSync();
                    if (_out.Tx.Cur != _out.Tx.Tail) ready |= PollEvents.Out;
                }
                return ready != PollEvents.None;
            }
            if (!Check() && timeoutMs != 0) wake.Wait(Check, timeoutMs);
            return ready;
        }

        /// <summary>Hands this end to a registration: its port (closing it unbinds), its wake-ups to <paramref name="wake"/>.</summary>
        public NetmapPort Bind(WakeWord wake)
        {
            lock (_pipe._gate)
            {
                if (_port is not null) throw new InvalidOperationException($"pipe end {Name} is registered already");
                if (_pipe._released) throw new InvalidOperationException($"pipe {_pipe.Parent}{{{_pipe.Id} is gone");
                Volatile.Write(ref _wake, wake);
                _port = new NetmapPort(Name, _pipe.Memory, Area, this, Unbind);
                return _port;
            }
        }

        private void Unbind()
        {
            // The peer notifies us only under one of the two direction locks: once we held both,
            // nobody touches the old wake word (and the registration's control page) again.
            lock (_pipe._m2s.Gate) lock (_pipe._s2m.Gate) Volatile.Write(ref _wake, null);
            Action? empty;
            lock (_pipe._gate)
            {
                _port = null;
                empty = _pipe.Master._port is null && _pipe.Slave._port is null ? _pipe.OnEmpty : null;
            }
            empty?.Invoke();
        }
    }

    private readonly object _gate = new();
    private bool _released;
    private long _badSlots, _corrupt;

    public string Parent { get; }
    public string Id { get; }
    public DomainMemory Memory { get; }
    public End Master { get; }
    public End Slave { get; }

    /// <summary>Called (outside locks) when the last registered end is closed: the owner releases the pipe.</summary>
    public Action? OnEmpty { get; set; }

    /// <summary>Slots not moved because of a bad buffer index or length (returned to their sender).</summary>
    public long BadSlots => Interlocked.Read(ref _badSlots);
    /// <summary>Syncs refused because head/cur left the ring's window (the ring was reset).</summary>
    public long CorruptRingIndex => Interlocked.Read(ref _corrupt);
    /// <summary>Frames moved master -> slave and slave -> master.</summary>
    public (long ToSlave, long ToMaster) Moved => (Interlocked.Read(ref _m2s.Moved), Interlocked.Read(ref _s2m.Moved));

    private readonly Direction _m2s, _s2m;

    /// <summary>Makes both ends in <paramref name="memory"/> (two port areas; throws when the region has none left).</summary>
    public NetmapPipe(DomainMemory memory, string parent, string id)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Memory = memory;
        Parent = parent;
        Id = id;
        int ma = memory.AllocatePortArea(parent + "{" + id, 0);
        int sa;
        try { sa = memory.AllocatePortArea(parent + "}" + id, 0); }
        catch
        {
            memory.ReleasePortArea(ma);
            throw;
        }
        var L = memory.Layout;
        NetmapRing Ring(int area, int r) => new(memory.RingAddress(area, r), memory.BufferBase, (uint)L.SlotsPerRing, memory.BufferCount, L.BufferSize);
        // ring 0 of each direction: TX of one end into RX of the other
        _m2s = new Direction(Ring(ma, 0), Ring(sa, L.RingsPerPort));
        _s2m = new Direction(Ring(sa, 0), Ring(ma, L.RingsPerPort));
        Master = new End(this, true, ma, _m2s, _s2m);
        Slave = new End(this, false, sa, _s2m, _m2s);
    }

    /// <summary>Frees both areas. Refused (false) while an end is registered.</summary>
    public bool Release()
    {
        lock (_gate)
        {
            if (_released) return true;
            if (Master.Bound || Slave.Bound) return false;
            _released = true;
        }
        Memory.ReleasePortArea(Master.Area);
        Memory.ReleasePortArea(Slave.Area);
        return true;
    }
}
