using HyperNF.Linux;
using HyperNF.Netmap;
using HyperNF.Switch;
using HyperNF.Vmm;

namespace HyperNF.Hypervisor;

/// <summary>
/// The split/merge baseline: one backend thread per domain (Xen netback, vhost) that runs the
/// switch flush for the domain's TX rings when the domain kicks it. It is pinned to the
/// backend cores (split) or to the domain's own core (merge), and its CPU time is the host's,
/// not the domain's: exactly the difference the paper measures.
///
/// Kick protocol (virtio-style notification suppression): the guest sets <c>_pending</c> with
/// a full fence and makes the wake-up system call only if the backend sleeps. The backend
/// clears <c>_pending</c> before each round, so a kick that lands during a round triggers
/// another round.
///
/// For a VM domain the kick is the VM's <see cref="KickChannel"/> instead: the guest stores to
/// an ioeventfd only when the needs-kick word in its RAM is set. The backend clears the word
/// while it works, polls the rings (head != hwcur) for <see cref="SpinMicroseconds"/> after its
/// last round, then sets the word with a full fence, re-checks the rings and only then blocks
/// in poll(2) on the eventfd (and a stop eventfd; 200 ms timeout as a backstop).
/// </summary>
public sealed class BackendThread : IDisposable
{
    private readonly Thread _thread;
    private readonly ValePort[] _ports;
    private readonly WakeWord _guestWake;
    private readonly WakeWord _wake = new();
    private readonly ManualResetEventSlim _started = new();
    private readonly Func<bool> _hasWork;
    private readonly KickChannel? _vmKick;
    private int _pending;
    private volatile bool _stop;
    private long _rounds, _kicks, _lateRounds;

    public string Name { get; }
    public IReadOnlyList<int> Cpus { get; private set; }
    public int Tid { get; private set; }
    public long Rounds => Interlocked.Read(ref _rounds);
    public long Kicks => Interlocked.Read(ref _kicks);
    /// <summary>
    /// VM backend: times it found work only after its backstop timeout, with no kick (a lost
    /// kick would show here; it stays 0 when the handshake works).
    /// </summary>
    public long LateRounds => Interlocked.Read(ref _lateRounds);
    /// <summary>Wake-up system calls the guests made to reach this thread.</summary>
    public long Notifications => _vmKick?.Wakeups ?? _wake.Wakeups;
    /// <summary>A VM domain's backend: kicked through the VM's ioeventfd; null for thread and process domains.</summary>
    public KickChannel? VmKick => _vmKick;
    /// <summary>
    /// A VM backend polls the rings this long after its last round before it asks for a kick
    /// and sleeps (Solo5 spins 4096 pauses). 0 for merge: spinning on the vCPU's own core only
    /// takes time from the vCPU that would produce the work.
    /// </summary>
    public int SpinMicroseconds { get; }

    public BackendThread(string name, IReadOnlyList<ValePort> ports, WakeWord guestWake, IReadOnlyList<int> cpus,
        KickChannel? vmKick = null, int spinMicroseconds = 0)
    {
        Name = name;
        _ports = ports.ToArray();
        _guestWake = guestWake;
        Cpus = cpus;
        _vmKick = vmKick;
        SpinMicroseconds = Math.Max(0, spinMicroseconds);
        _hasWork = () => Volatile.Read(ref _pending) != 0 || _stop;
        _thread = new Thread(vmKick is null ? Main : VmMain) { IsBackground = true, Name = name };
        _thread.Start();
        _started.Wait();
    }

    /// <summary>Called by the guest's TxSync: ask the backend to flush this domain's TX rings.</summary>
    public void Kick()
    {
        Interlocked.Increment(ref _kicks);
        if (_vmKick is { } vk)
        {
            vk.Kick();
            return;
        }
        // Exchange is a full fence: the guest's ring head stores are visible before the flag,
        // and the flag before the read of the sleeper count inside Notify.
        if (Interlocked.Exchange(ref _pending, 1) == 0) _wake.Notify();
    }

    public void Pin(IReadOnlyList<int> cpus)
    {
        if (Tid != 0 && cpus.Count > 0) Native.SetAffinity(Tid, cpus.ToArray());
        Cpus = cpus;
    }

    private void Main()
    {
        Tid = Native.GetTid();
        try { if (Cpus.Count > 0) Native.SetAffinity(0, Cpus.ToArray()); }
        catch (IOException) { /* stays unpinned; reported by Cpus vs. observed affinity */ }
        _started.Set();
        while (!_stop)
        {
            if (Interlocked.Exchange(ref _pending, 0) == 0)
            {
                _wake.Wait(_hasWork, 200);
                continue;
            }
            Interlocked.Increment(ref _rounds);
            foreach (var p in _ports) p.TxSync();
            // The domain may be waiting for TX space: ring tails were plain stores, hence the fence.
            _guestWake.FenceAndNotify();
        }
    }

    private void VmMain()
    {
        var kick = _vmKick!;
        Tid = Native.GetTid();
        try { if (Cpus.Count > 0) Native.SetAffinity(0, Cpus.ToArray()); }
        catch (IOException) { /* stays unpinned; reported by Cpus vs. observed affinity */ }
        _started.Set();
        long spinTicks = SpinMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        long lastWork = System.Diagnostics.Stopwatch.GetTimestamp();
        kick.ClearNeedsKick();
        while (!_stop)
        {
            if (AnyPending())
            {
                Interlocked.Increment(ref _rounds);
                foreach (var p in _ports) p.TxSync();
                // The guest may be blocked in POLL waiting for TX space: tails were plain stores, hence the fence.
                _guestWake.FenceAndNotify();
                lastWork = System.Diagnostics.Stopwatch.GetTimestamp();
                continue;
            }
            if (System.Diagnostics.Stopwatch.GetTimestamp() - lastWork < spinTicks)
            {
                Thread.SpinWait(20);
                continue;
            }
            kick.SetNeedsKick(); // full fence, then the re-check: the guest's mfence pairs with it
            // Late: the backstop timeout found work and no kick follows within a millisecond
            // (a kick store in flight when the timeout fired is not a lost one).
            if (!AnyPending() && !_stop && !kick.Wait(200) && AnyPending() && !kick.Wait(1)) Interlocked.Increment(ref _lateRounds);
            kick.ClearNeedsKick();
            lastWork = System.Diagnostics.Stopwatch.GetTimestamp();
        }
    }

    /// <summary>Some live port has TX frames the switch has not taken (advisory reads of the guest's head).</summary>
    private bool AnyPending()
    {
        foreach (var p in _ports)
            if (!p.Retired && p.AnyTxPending()) return true;
        return false;
    }

    public void Dispose()
    {
        _stop = true;
        _vmKick?.Stop();
        _wake.WakeAll();
        _thread.Join(TimeSpan.FromSeconds(5));
    }
}

/// <summary>
/// The port backend a domain sees in the split and merge models: TxSync only kicks the
/// backend thread; RxSync is done by the guest itself (it only moves indices, as a virtio
/// driver consumes its used ring without an exit); Poll waits for RX frames or TX space.
/// </summary>
public sealed class BackendPort : IPortBackend
{
    private readonly ValePort _port;
    private readonly BackendThread _backend;
    private readonly Func<bool> _txSpace;
    private readonly Func<bool> _rxPublished;
    private readonly Func<bool> _either;

    public BackendPort(ValePort port, BackendThread backend)
    {
        _port = port;
        _backend = backend;
        _txSpace = () => _port.Retired || _port.AnyTxSpace();
        _rxPublished = () => _port.Retired || _port.AnyRxPublished();
        _either = () => _port.Retired || _port.AnyTxSpace() || _port.AnyRxPublished();
    }

    public void TxSync() => _backend.Kick();

    public void RxSync() => _port.RxSync();

    public PollEvents Poll(PollEvents events, int timeoutMs)
    {
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        while (true)
        {
            if (_port.Retired) return PollEvents.None; // closed: nothing will ever be ready
            PollEvents ready = PollEvents.None;
            if ((events & PollEvents.Out) != 0)
            {
                // Advisory reads of the owner's own TX ring (see ValePort, "Port state changes").
                if (_port.AnyTxSpace()) ready |= PollEvents.Out;
                else if (_port.AnyTxPending()) _backend.Kick();
            }
            if ((events & PollEvents.In) != 0 && _port.RxSyncReady()) ready |= PollEvents.In;
            if (ready != PollEvents.None || timeoutMs == 0) return ready;
            long remaining = deadline - Environment.TickCount64;
            if (remaining <= 0) return PollEvents.None;
            var cond = events switch
            {
                PollEvents.In => _rxPublished,
                PollEvents.Out => _txSpace,
                _ => _either,
            };
            _port.Wake.Wait(cond, (int)Math.Min(remaining, int.MaxValue));
        }
    }
}
