using HyperNF.Linux;

namespace HyperNF.Ports;

/// <summary>
/// A driver thread and the physical ports it serves: one per bridge (default) or one per port
/// (<see cref="PhysicalPortOptions.DriverPerBridge"/>). The thread runs each
/// member's round (receive into the bridge, transmit what is pending, the link check), keeps
/// polling for <see cref="PhysicalPortOptions.DriverSpinMicroseconds"/> after the last frame,
/// then sleeps in one poll() on every member's sockets and the group's eventfd.
///
/// <para>Why one per bridge: a frame this thread transmits to another member is often answered
/// inside that send() (the kernel runs the receiving namespace's stack there), and the answer is
/// then in the member's ring when the send returns; the same thread takes it in its next round.
/// With a thread per port the kernel also wakes the other port's thread for it (an IPI and a
/// context switch on a busy CPU). With cut-through a frame crosses from port to port inside this
/// thread's flush, and a TCP stream's data and ACKs take no hand-over between threads: on a
/// 2-core VM TCP ran 20-50% faster at 30% less CPU per byte than with a thread per port, ping
/// the same (docs/ports.md, Latency). A thread per port can use more cores for many busy ports.</para>
///
/// <para>Membership changes under <see cref="_roundGate"/>, which the thread holds while it
/// runs the rounds (never while it sleeps): once <see cref="Remove"/> returns, the thread does
/// not touch the port any more. The gate is a spin flag, not a monitor: the thread takes it
/// first thing after every wake-up, and a monitor's code and state, cold after 10 ms of
/// sleep, cost a round trip 3 us there (PortProbe); membership changes are rare and short.</para>
/// </summary>
internal sealed class DriverGroup
{
    private readonly PhysicalPortOptions _options;
    private int _roundGate; // GateOpen, GateDriver while the thread runs rounds, GateOther during a membership change
    private const int GateOpen = 0, GateOther = 1, GateDriver = 2;
    private int _driverThreadId; // managed id of the driver thread
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _started = new();
    private readonly int _wakeFd;
    private volatile PhysicalPort[] _members = [];
    private volatile bool _stop;
    private int _sleeping;

    /// <summary>The bridge this group serves (per-bridge groups), or the port's name.</summary>
    public string Key { get; }
    /// <summary>Kernel thread id of the driver thread.</summary>
    public int Tid { get; private set; }
    /// <summary>Why the thread runs with other scheduling than asked (no CAP_SYS_NICE), or null.</summary>
    public string? SchedulingError { get; private set; }
    /// <summary>True while the thread sleeps in poll() (or is about to): a sender must write the eventfd to wake it.</summary>
    public bool Sleeping => Volatile.Read(ref _sleeping) != 0;

    /// <summary>
    /// False from a wake-up until a member port has received the frames that woke the thread
    /// (the group's own thread only): those say where the next wake-up will come from. Frames
    /// received later in the same wake-up are mostly consequences of our own transmissions (a
    /// reply that the peer's stack produced inside our send(), on our own CPU) and would make the
    /// thread follow itself (DriverFollowsTraffic).
    /// </summary>
    internal bool WakeSourceNoted;
    public int MemberCount => _members.Length;
    /// <summary>Times the thread used up its real-time budget and dropped to ordinary scheduling.</summary>
    public long RealtimeDemotions => Interlocked.Read(ref _demotions);

    private long _demotions;
    private bool _realtime; // the thread runs SCHED_FIFO now
    private long _follows, _unpins;
    private int _pinnedCpu = -1; // DriverFollowsTraffic: the CPU the thread is pinned to now, -1: its base set
    private int[] _baseCpus = [];
    private long _windowTicks;

    /// <summary>The thread's polling window now, in microseconds (adaptive, 0..<see cref="PhysicalPortOptions.DriverSpinMicroseconds"/>).</summary>
    public double PollWindowMicroseconds => Volatile.Read(ref _windowTicks) * 1e6 / System.Diagnostics.Stopwatch.Frequency;

    /// <summary>Times the thread pinned itself to the CPU its frames arrive on (<see cref="PhysicalPortOptions.DriverFollowsTraffic"/>).</summary>
    public long FollowPins => Interlocked.Read(ref _follows);
    /// <summary>Times the thread, pinned and awake past <see cref="PhysicalPortOptions.DriverFollowBudgetMicroseconds"/>, went back to its base CPU set.</summary>
    public long FollowUnpins => Interlocked.Read(ref _unpins);
    /// <summary>The CPU the thread is pinned to by following the traffic, or -1.</summary>
    public int FollowCpu => Volatile.Read(ref _pinnedCpu);

    public DriverGroup(string key, PhysicalPortOptions options)
    {
        Key = key;
        _options = options;
        _wakeFd = PacketSocket.EventFd(0, PacketSocket.EFD_CLOEXEC | PacketSocket.EFD_NONBLOCK);
        _thread = new Thread(Main) { IsBackground = true, Name = $"hypernf-nic-{key}" };
        _thread.Start();
        _started.Wait();
    }

    /// <summary>Adds a port; its first round runs at once.</summary>
    public void Add(PhysicalPort port)
    {
        bool gate = EnterGate();
        _members = [.. _members, port];
        if (gate) ExitGate();
        Wake();
    }

    /// <summary>Removes a port; when this returns the thread is not in the port's round and will not enter it again.</summary>
    public void Remove(PhysicalPort port)
    {
        bool gate = EnterGate();
        _members = _members.Where(p => !ReferenceEquals(p, port)).ToArray();
        if (gate) ExitGate();
        Wake();
    }

    /// <summary>
    /// Takes the gate for a membership change; false (nothing taken) when the caller is the driver
    /// thread inside its own rounds: an event handler called from a round (<see cref="PhysicalPorts.OnEvent"/>)
    /// may attach or detach, as it could under the monitor this gate replaced. Changing the
    /// array there is safe: the round iterates the array it read.
    /// </summary>
    private bool EnterGate()
    {
        if (Environment.CurrentManagedThreadId == _driverThreadId && Volatile.Read(ref _roundGate) == GateDriver) return false;
        Take(GateOther);
        return true;
    }

    private void Take(int holder)
    {
        // Acquire (CompareExchange is a full fence): the holder's writes are visible to the next.
        if (Interlocked.CompareExchange(ref _roundGate, holder, GateOpen) == GateOpen) return;
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref _roundGate, holder, GateOpen) != GateOpen) spin.SpinOnce();
    }

    // Release: everything done under the gate is visible before it opens.
    private void ExitGate() => Volatile.Write(ref _roundGate, 0);

    /// <summary>
    /// Keeps the thread out of its rounds until <see cref="ReleaseRounds"/> (it may still wake, and
    /// then waits at the gate). For tests that need frames to stay where a sender left them.
    /// </summary>
    internal void HoldRounds() => Take(GateOther);

    internal void ReleaseRounds() => ExitGate();

    /// <summary>Wakes the thread (a membership change, a pending transmission, a detach).</summary>
    public void Wake() => PacketSocket.SignalEventFd(_wakeFd);

    /// <summary>Stops the thread; false when it did not stop within 10 s (then nothing is freed).</summary>
    public bool Stop()
    {
        _stop = true;
        Wake();
        if (!_thread.Join(TimeSpan.FromSeconds(10))) return false;
        Native.Close(_wakeFd);
        _started.Dispose();
        return true;
    }

    private void Main()
    {
        Tid = Native.GetTid();
        _driverThreadId = Environment.CurrentManagedThreadId;
        PhysicalPort.EnterDriverThread();
        if (_options.DriverNice != 0 && Native.SetThreadNice(Tid, _options.DriverNice) is int niceErr and not 0)
            SchedulingError = $"the driver thread '{Key}' stays at nice 0 (setpriority {_options.DriverNice}: errno {niceErr}; needs CAP_SYS_NICE)";
        try { if (_options.DriverCpus.Count > 0) Native.SetAffinity(0, _options.DriverCpus.ToArray()); }
        catch (IOException) { /* stays unpinned */ }
        bool wantRealtime = _options.DriverRealtimePriority > 0;
        if (wantRealtime && Native.SetScheduler(0, Native.SCHED_FIFO, _options.DriverRealtimePriority) is int rtErr and not 0)
        {
            SchedulingError = $"the driver thread '{Key}' stays at ordinary scheduling (SCHED_FIFO {_options.DriverRealtimePriority}: errno {rtErr}; needs CAP_SYS_NICE)";
            wantRealtime = false;
        }
        _realtime = wantRealtime;
        bool follow = _options.DriverFollowsTraffic && _options.DriverCpus.Count == 0;
        if (follow)
        {
            try { _baseCpus = Native.GetAffinity(0); }
            catch (IOException) { follow = false; }
        }
        long followBudgetTicks = _options.DriverFollowBudgetMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        long followSince = 0; // when the thread last woke while pinned; 0: not yet seen in this wake-up
        _started.Set();
        long lastBusy = 0;
        long spinTicks = _options.DriverSpinMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        long windowTicks = spinTicks, sleptAt = 0; // the adaptive polling window; when the thread last went to sleep
        _windowTicks = windowTicks;
        long budgetTicks = _options.DriverRealtimeBudgetMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
        long awakeSince = System.Diagnostics.Stopwatch.GetTimestamp();
        while (!_stop)
        {
            // Real time only in short stretches: awake longer than the budget (a flood keeps the
            // thread polling), it runs as an ordinary thread until it sleeps again.
            if (_realtime && System.Diagnostics.Stopwatch.GetTimestamp() - awakeSince > budgetTicks
                && Native.SetScheduler(0, Native.SCHED_OTHER, 0) == 0)
            {
                _realtime = false;
                Interlocked.Increment(ref _demotions);
            }
            bool busy = false;
            Take(GateDriver);
            try
            {
                if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.GateTaken);
                foreach (var port in _members) busy |= port.DriverRound();
            }
            finally
            {
                ExitGate();
            }
            long ts = System.Diagnostics.Stopwatch.GetTimestamp();
            if (_pinnedCpu >= 0)
            {
                // Pinned, awake too long: a stream keeps the thread polling; let the scheduler
                // place it as any busy thread (it pins itself again when it next goes to sleep).
                if (followSince == 0) followSince = ts;
                else if (ts - followSince > followBudgetTicks) Unpin();
            }
            if (busy)
            {
                lastBusy = ts;
                continue;
            }
            // NAPI-style: while frames keep coming, keep polling for a short while instead of
            // sleeping (each frame would otherwise wake us, a context switch per frame); idle
            // longer than that, sleep in poll() and burn nothing.
            if (sleptAt != 0)
            {
                // The first round after a sleep: adapt the polling window (as the kernel's
                // haltpoll does). Frames that came back soon after we slept would have been
                // caught by a longer window: grow it. A long sleep means the window polled for
                // nothing: shrink it, down to none, so that request-response traffic (a ping, an
                // RPC) gets the CPU back at once, for the thread its reply just woke on this CPU.
                long slept = ts - sleptAt;
                sleptAt = 0;
                if (slept < 2 * spinTicks) windowTicks = Math.Min(spinTicks, Math.Max(2 * windowTicks, spinTicks / 4));
                else if (slept > 8 * spinTicks) windowTicks = windowTicks / 2 < spinTicks / 8 ? 0 : windowTicks / 2;
                Volatile.Write(ref _windowTicks, windowTicks);
            }
            if (ts - lastBusy < windowTicks)
            {
                Thread.SpinWait(20);
                continue;
            }
            if (PortProbe.Enabled) PortProbe.Sleeping();
            // Dekker with PhysicalPort.OnDelivered: announce the sleep, then re-check the flags.
            Interlocked.Exchange(ref _sleeping, 1);
            try
            {
                var members = _members;
                if (!_stop && !members.Any(p => p.TransmitPending))
                {
                    // Only while the traffic is sparse (the window has shrunk to nothing: frames
                    // come one by one, a request and its reply); a stream gets the scheduler's
                    // placement, which spreads its two directions over the CPUs.
                    if (follow)
                    {
                        if (windowTicks == 0) FollowTraffic(members);
                        else if (_pinnedCpu >= 0) Unpin();
                    }
                    followSince = 0;
                    sleptAt = ts;
                    Sleep(members);
                    WakeSourceNoted = false;
                    if (PortProbe.Enabled) PortProbe.Mark(PortProbe.Stage.SleepReturned);
                    if (wantRealtime)
                    {
                        if (!_realtime) _realtime = Native.SetScheduler(0, Native.SCHED_FIFO, _options.DriverRealtimePriority) == 0;
                        awakeSince = System.Diagnostics.Stopwatch.GetTimestamp(); // only the budget needs it: no clock read on the frame's path otherwise
                    }
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A driver thread must not take the host down; report and keep serving.
                foreach (var p in _members) p.ReportDriverError(e);
                Thread.Sleep(_options.IdleTimeoutMs);
            }
            Volatile.Write(ref _sleeping, 0);
        }
    }

    // Before sleeping: pin to the CPU the frames of the most recent wake-up arrived on, so the
    // next one from the same sender wakes us there (PhysicalPortOptions.DriverFollowsTraffic).
    private void FollowTraffic(PhysicalPort[] members)
    {
        int cpu = -1;
        long newest = 0;
        foreach (var p in members)
        {
            long seq = p.LastRxSequence;
            if (seq > newest)
            {
                newest = seq;
                cpu = p.LastRxCpu;
            }
        }
        if (cpu < 0 || cpu == _pinnedCpu || Array.IndexOf(_baseCpus, cpu) < 0) return;
        try
        {
            Native.SetAffinity(0, [cpu]);
            Volatile.Write(ref _pinnedCpu, cpu);
            Interlocked.Increment(ref _follows);
        }
        catch (IOException)
        {
            // The CPU went offline or the cpuset shrank: stay where we are.
        }
    }

    private void Unpin()
    {
        try
        {
            Native.SetAffinity(0, _baseCpus);
            Volatile.Write(ref _pinnedCpu, -1);
            Interlocked.Increment(ref _unpins);
        }
        catch (IOException)
        {
            Volatile.Write(ref _pinnedCpu, -1); // do not retry every round
        }
    }

    private unsafe void Sleep(PhysicalPort[] members)
    {
        int count = 1;
        long now = Environment.TickCount64, next = now + _options.IdleTimeoutMs;
        foreach (var p in members)
        {
            if (p.PollsBackend) count += p.CurrentBackend.PollFds.Length;
            next = Math.Min(next, p.NextLinkCheck);
        }
        var fds = count <= 64 ? stackalloc PacketSocket.PollFd[count] : new PacketSocket.PollFd[count];
        var owners = count <= 64 ? stackalloc short[count] : new short[count]; // member index of each fd
        int n = 0;
        for (int i = 0; i < members.Length; i++)
        {
            if (!members[i].PollsBackend) continue;
            foreach (int fd in members[i].CurrentBackend.PollFds)
            {
                owners[n] = (short)i;
                fds[n++] = new PacketSocket.PollFd { Fd = fd, Events = PacketSocket.POLLIN };
            }
        }
        fds[n++] = new PacketSocket.PollFd { Fd = _wakeFd, Events = PacketSocket.POLLIN };
        int timeout = (int)Math.Clamp(next - now, 1, _options.IdleTimeoutMs);
        int r;
        fixed (PacketSocket.PollFd* f = fds) r = PacketSocket.Poll(f, (nuint)n, timeout);
        if (r <= 0) return; // timeout, or EINTR: the loop runs the rounds anyway
        if (PortProbe.Enabled) PortProbe.Woke();
        if ((fds[n - 1].REvents & PacketSocket.POLLIN) != 0) PacketSocket.DrainEventFd(_wakeFd);
        for (int k = 0; k < n - 1; k++)
        {
            if ((fds[k].REvents & (PacketSocket.POLLERR | PacketSocket.POLLHUP | PacketSocket.POLLNVAL)) == 0) continue;
            Take(GateDriver);
            try
            {
                // Only a port still served: a detached one's sockets may be closed by now.
                if (Array.IndexOf(_members, members[owners[k]]) >= 0) members[owners[k]].OnPollError();
            }
            finally
            {
                ExitGate();
            }
        }
    }
}
