using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using HyperNF.Linux;

namespace HyperNF.Netmap;

/// <summary>
/// A domain's event channel: a futex word its threads sleep on in <c>Poll</c>, and a count of
/// sleepers so that whoever delivers work (a sender that published RX slots, a backend that
/// freed TX slots) makes the wake-up system call only when somebody sleeps. All ports of a
/// domain may share one, so a thread polling several ports wakes on any of them.
///
/// Protocol (Dekker): a sleeper increments <see cref="Sleepers"/> (full fence), re-checks its
/// condition, then waits while the sequence is unchanged. A waker publishes its work with a
/// full fence, then reads <see cref="Sleepers"/>; if non-zero it bumps the sequence and wakes.
/// Either the sleeper sees the work or the waker sees the sleeper.
/// </summary>
public sealed unsafe class WakeWord
{
    private readonly int[] _words = GC.AllocateArray<int>(32, pinned: true); // [0] sleepers, [16] sequence: separate lines
    private readonly int* _sleepers;
    private readonly int* _seq;
    private long _wakeups;

    public WakeWord()
    {
        _sleepers = (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_words));
        _seq = _sleepers + 16;
    }

    /// <summary>System calls made to wake sleepers (notifications actually sent).</summary>
    public long Wakeups => Volatile.Read(ref _wakeups);

    public int Sequence => Volatile.Read(ref *_seq);

    /// <summary>
    /// How long a waiter polls its condition before it sleeps (adaptive polling, as NAPI's
    /// busy-poll): a sender that refills a ring a few microseconds after the receiver emptied
    /// it then costs no system call on either side. It yields while it polls, so a backend or
    /// sender sharing the core still runs. 0 disables it.
    /// </summary>
    public static int SpinMicroseconds { get; set; }

    /// <summary>
    /// Sleeps until woken or <paramref name="timeoutMs"/> passes, unless <paramref name="ready"/>
    /// (checked after announcing ourselves) says there is work already.
    /// </summary>
    public void Wait(Func<bool> ready, int timeoutMs)
    {
        int spin = SpinMicroseconds;
        if (spin > 0 && timeoutMs != 0)
        {
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + spin * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
            for (int i = 1; ; i++)
            {
                if (ready()) return;
                if (System.Diagnostics.Stopwatch.GetTimestamp() > until) break;
                Thread.SpinWait(30);
            }
        }
        int seq = Volatile.Read(ref *_seq);
        Interlocked.Increment(ref *_sleepers); // full fence: see the class comment
        if (!ready()) Native.FutexWait(_seq, seq, timeoutMs);
        Interlocked.Decrement(ref *_sleepers);
    }

    /// <summary>
    /// Set for a domain whose waiter is another process (a process domain's port): it is
    /// called instead of the futex path, after the caller's full fence, and decides itself
    /// whether anybody waits (the process's flag in its control page) and how to wake it
    /// (its eventfd). Null: the in-process futex path.
    /// </summary>
    public Action? External { get; init; }

    /// <summary>Wakes sleepers if there are any. The caller has already published its work with a full fence.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Notify()
    {
        if (External is { } ext) ext();
        else if (Volatile.Read(ref *_sleepers) != 0) WakeAll();
    }

    /// <summary>Publishes with a full fence, then notifies: for callers whose work was a plain store.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void FenceAndNotify()
    {
        Interlocked.MemoryBarrier();
        Notify();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void WakeAll()
    {
        Interlocked.Increment(ref *_seq);
        Interlocked.Increment(ref _wakeups);
        Native.FutexWakeAll(_seq);
    }
}
