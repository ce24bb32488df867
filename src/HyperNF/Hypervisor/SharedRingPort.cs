using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using HyperNF.Vmm;

namespace HyperNF.Hypervisor;

/// <summary>
/// A VALE port of a process domain whose ring pairs several registrations of the program hold,
/// one ring each (netmap's NR_REG_ONE_NIC: <c>pkt-gen -p N</c> opens the port once per thread).
/// The port is opened once; each registration gets a <see cref="View"/>: a netmap_if of its own
/// (in a spare port area) that lists only its ring, syncs of only its ring, and its eventfd among
/// those the port's wake-ups signal. A ring is held by one registration at a time (EBUSY); the
/// port is detached when the last view closes.
/// </summary>
public sealed class SharedRingPort
{
    private readonly object _gate = new();
    private readonly DomainMemory _memory;
    private readonly NetmapPort _port;
    private readonly ValePort _vp;
    private readonly bool[] _held;
    private Action[] _signals = [];
    private int _inflight, _views;
    private bool _closed;
    private readonly WakeWord _wake;
    private BackendThread? _backend; // split/merge: one backend for the port, kicked by any view
    private KickChannel? _kick;

    public string Name { get; }
    public ValePort SwitchPort => _vp;
    /// <summary>Called (outside locks) after the last view closed and the port was detached.</summary>
    public Action? OnEmpty { get; set; }

    /// <summary>Opens <paramref name="name"/> on the switch in <paramref name="memory"/> (throws as <see cref="ValeSwitch.OpenPort"/>).</summary>
    public SharedRingPort(ValeSwitch sw, string name, DomainMemory memory)
    {
        Name = name;
        _memory = memory;
        _wake = new WakeWord { External = SignalAll };
        _port = sw.OpenPort(name, memory, _wake, 0);
        _vp = (ValePort)_port.Origin;
        _held = new bool[memory.Layout.RingsPerPort];
    }

    private void SignalAll()
    {
        Interlocked.Increment(ref _inflight); // before reading the list: see Release
        try
        {
            foreach (var s in Volatile.Read(ref _signals)) s();
        }
        finally { Interlocked.Decrement(ref _inflight); }
    }

    /// <summary>The split/merge backend of the port (null in the hypercall model or before the first view of such a program).</summary>
    public BackendThread? Backend { get { lock (_gate) return _backend; } }

    /// <summary>
    /// split/merge: starts the port's backend on the first call (one for the whole port: it
    /// flushes every ring, whichever view kicked it) and returns its kick channel, whose eventfd
    /// each view's program gets; the needs-kick word is in every TX ring, so each view sees it.
    /// </summary>
    public KickChannel EnsureBackend(string name, IReadOnlyList<int> cpus, int spinMicroseconds)
    {
        lock (_gate)
        {
            if (_closed) throw new InvalidOperationException($"port {Name} is closed");
            if (_kick is not null) return _kick;
            var kick = KickChannel.ForProcessPort(_vp);
            try { _backend = new BackendThread(name, [_vp], _wake, cpus, kick, spinMicroseconds); }
            catch
            {
                kick.Dispose();
                throw;
            }
            return _kick = kick;
        }
    }

    /// <summary>A view of ring pair <paramref name="ring"/>; throws InvalidOperationException when a registration holds it (EBUSY).</summary>
    public View Acquire(int ring)
    {
        lock (_gate)
        {
            if (_closed) throw new InvalidOperationException($"port {Name} is closed");
            if ((uint)ring >= (uint)_held.Length) throw new ArgumentOutOfRangeException(nameof(ring), $"port {Name} has {_held.Length} ring pair(s)");
            if (_held[ring]) throw new InvalidOperationException($"ring {ring} of {Name} is registered already");
            int area = _memory.AllocatePortArea($"{Name}-{ring}", 0);
            try { _memory.FormatRingView(area, _port.Area, ring); }
            catch
            {
                _memory.ReleasePortArea(area);
                throw;
            }
            _held[ring] = true;
            _views++;
            return new View(this, ring, area);
        }
    }

    /// <summary>Detaches the port if no view was ever taken (a first registration that failed).</summary>
    public void CloseIfUnused()
    {
        lock (_gate)
        {
            if (_views != 0 || _closed) return;
            _closed = true;
        }
        _port.Dispose();
        OnEmpty?.Invoke();
    }

    /// <summary>One registration's share: ring pair <see cref="Ring"/> of the port.</summary>
    public sealed class View : IProcessPortSource, IPortBackend
    {
        private readonly SharedRingPort _owner;
        private Action? _signal;

        internal View(SharedRingPort owner, int ring, int area)
        {
            _owner = owner;
            Ring = ring;
            Area = area;
        }

        public int Ring { get; }
        /// <summary>The port area whose netmap_if is this registration's.</summary>
        public int Area { get; }
        public SharedRingPort Port => _owner;

        private bool _bound;

        /// <summary>Gives the ring back when the registration failed before it was bound.</summary>
        public void Abandon()
        {
            if (!_bound) Release();
        }

        public NetmapPort Bind(WakeWord wake)
        {
            var o = _owner;
            lock (o._gate)
            {
                _bound = true;
                _signal = wake.Notify;
                Volatile.Write(ref o._signals, [.. o._signals, _signal]);
            }
            return new NetmapPort(o.Name, o._memory, Area, this, Release);
        }

        public void TxSync()
        {
            if (Volatile.Read(ref _owner._backend) is { } b) b.Kick(); // split/merge
            else _owner._vp.Tx[Ring].Sync();
        }
        public void RxSync() => _owner._vp.Rx[Ring].Sync();

        public PollEvents Poll(PollEvents events, int timeoutMs)
        {
            PollEvents ready = PollEvents.None;
            bool Check()
            {
                ready = PollEvents.None;
                if ((events & PollEvents.In) != 0 && _owner._vp.Rx[Ring].Sync()) ready |= PollEvents.In;
                if ((events & PollEvents.Out) != 0 && _owner._vp.Tx[Ring].Sync()) ready |= PollEvents.Out;
                return ready != PollEvents.None;
            }
            if (!Check() && timeoutMs != 0) _owner._vp.Wake.Wait(Check, timeoutMs);
            return ready;
        }

        private void Release()
        {
            var o = _owner;
            bool last;
            lock (o._gate)
            {
                if (_signal is { } s) Volatile.Write(ref o._signals, o._signals.Where(x => x != s).ToArray());
                _signal = null;
                o._held[Ring] = false;
                last = --o._views == 0;
                if (last) o._closed = true;
            }
            // Senders that read the old list are done before the registration's page can go.
            var spin = new SpinWait();
            while (Volatile.Read(ref o._inflight) != 0) spin.SpinOnce();
            o._memory.ReleasePortArea(Area);
            if (last)
            {
                if (o._backend is { } b)
                {
                    // split/merge: stop the backend, then flush what the programs queued, as a
                    // synchronous txsync would have done before close returned.
                    b.Dispose();
                    o._kick?.Dispose();
                    if (!o._vp.Retired) o._vp.TxSync();
                }
                o._port.Dispose(); // detached; its area freed
                o.OnEmpty?.Invoke();
            }
        }
    }
}
