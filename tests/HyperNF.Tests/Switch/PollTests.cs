using System.Diagnostics;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>netmap's poll() on a switch port: readiness, timeouts, and the wake-up from a sender's thread.</summary>
[Collection("Threads")]
public class PollTests
{
    [Fact]
    public void Poll_reports_readiness_without_blocking()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valepoll:a", Macs.Unicast(1));
        using var b = new Node(sw, "valepoll:b", Macs.Unicast(2));
        Assert.Equal(PollEvents.None, b.Port.Poll(PollEvents.In, 0));
        Assert.Equal(PollEvents.Out, b.Port.Poll(PollEvents.Out, -1)); // a VALE TX ring always has room after a sync
        a.Send(a.FrameTo(b.Mac));
        // Poll syncs the RX ring itself: the frame becomes visible without an explicit RxSync
        Assert.Equal(PollEvents.In | PollEvents.Out, b.Port.Poll(PollEvents.In | PollEvents.Out, 0));
        Assert.Equal(1u, b.Rx.Tail);
        Assert.Single(b.Receive());
        Assert.Equal(PollEvents.None, b.Port.Poll(PollEvents.In, 0));
    }

    [Fact]
    public void Poll_times_out_when_nothing_arrives()
    {
        var sw = new ValeSwitch();
        using var b = new Node(sw, "valepoll:b", Macs.Unicast(2));
        var clock = Stopwatch.StartNew();
        Assert.Equal(PollEvents.None, b.Port.Poll(PollEvents.In, 150));
        Assert.InRange(clock.ElapsedMilliseconds, 140, 5000);
    }

    [Fact]
    public void A_thread_waiting_in_Poll_sleeps_instead_of_spinning()
    {
        // The waiter's own CPU time (schedstat of its tid) over a 600 ms wait: a sleeping
        // thread uses next to none; a spinning one would use most of the wait even on a busy machine.
        var sw = new ValeSwitch();
        using var b = new Node(sw, "valepoll:b", Macs.Unicast(2));
        long cpuNs = -1, wallMs = 0;
        PollEvents result = PollEvents.In;
        var waiter = new Thread(() =>
        {
            int tid = HyperNF.Linux.Native.GetTid();
            long c0 = HyperNF.Linux.CpuTime.ThreadNs(tid);
            var clock = Stopwatch.StartNew();
            result = b.Port.Poll(PollEvents.In, 600);
            wallMs = clock.ElapsedMilliseconds;
            cpuNs = HyperNF.Linux.CpuTime.ThreadNs(tid) - c0;
        });
        waiter.Start();
        Assert.True(waiter.Join(30_000));
        Assert.Equal(PollEvents.None, result);
        Assert.InRange(wallMs, 590, 30_000);
        Assert.InRange(cpuNs, 0, 60_000_000); // at most 10% of the wait
    }

    [Fact]
    public void Closing_a_port_wakes_a_thread_sleeping_in_Poll_on_it()
    {
        // An NF's vCPU thread waits for traffic without a timeout; the control plane closes the port.
        var sw = new ValeSwitch();
        var b = new Node(sw, "valepoll:b", Macs.Unicast(2));
        PollEvents result = PollEvents.In;
        var waiter = new Thread(() => result = b.Port.Poll(PollEvents.In, -1)) { IsBackground = true };
        waiter.Start();
        Thread.Sleep(50);
        b.Port.Dispose();
        bool woke = waiter.Join(30_000); // "never returns" vs "returns": a generous bound for a busy machine
        if (woke) b.Dispose(); // else leak the region: the waiter still reads its ring
        Assert.True(woke, "Poll(-1) on a closed port never returned");
        Assert.Equal(PollEvents.None, result);
    }

    [Fact]
    public void Poll_on_a_closed_port_returns_at_once()
    {
        var sw = new ValeSwitch();
        using var mem = new HyperNF.Memory.DomainMemory(new HyperNF.Memory.RegionLayout { MaxPorts = 1, SlotsPerRing = 8 });
        var p = sw.OpenPort("valepoll:c", mem);
        p.Dispose();
        // "at once" vs "after the timeout": the timeout is long enough that a loaded machine
        // never blurs the two; a Poll that sleeps on a closed port takes 30 s and fails.
        var clock = Stopwatch.StartNew();
        Assert.Equal(PollEvents.None, p.Poll(PollEvents.In | PollEvents.Out, 30_000));
        Assert.True(clock.ElapsedMilliseconds < 10_000, $"Poll on a closed port took {clock.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void A_sleeping_Poll_is_woken_by_a_sender_on_another_thread()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valepoll:a", Macs.Unicast(1));
        using var b = new Node(sw, "valepoll:b", Macs.Unicast(2));
        for (int round = 0; round < 20; round++)
        {
            PollEvents result = PollEvents.None;
            long wokeAt = 0;
            var clock = Stopwatch.StartNew();
            var waiter = new Thread(() =>
            {
                result = b.Port.Poll(PollEvents.In, 60_000);
                wokeAt = clock.ElapsedMilliseconds;
            });
            waiter.Start();
            Thread.Sleep(20); // let it go to sleep (if it has not, the test is merely weaker)
            long sentAt = clock.ElapsedMilliseconds;
            a.Send(a.FrameTo(b.Mac, 60, (uint)round));
            // Woken by the send, not by the 60 s timeout: the bounds leave a loaded machine
            // plenty of time to schedule the waiter, and a missed wake-up still fails here.
            Assert.True(waiter.Join(40_000), "Poll was not woken");
            Assert.Equal(PollEvents.In, result);
            Assert.True(wokeAt - sentAt < 10_000, $"woken {wokeAt - sentAt} ms after the send");
            Assert.Single(b.Receive());
        }
    }
}
