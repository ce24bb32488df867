using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Switch;

/// <summary>
/// Port state changes while traffic flows (issue 10): close/re-open churn with handles still
/// syncing, destinations flapping up and down, under mixed unicast and broadcast traffic from
/// several threads. Canaries in the freed area and in the re-used area catch any write by a
/// stale handle; the accounting invariant is checked after quiescing. See ValePort, "Port
/// state changes". HYPERNF_STRESS_SECONDS lengthens the runs.
/// </summary>
[Collection("Threads")]
public sealed class PortLifecycleTests(ITestOutputHelper output)
{
    private static TimeSpan Duration(double defaultSeconds) =>
        TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("HYPERNF_STRESS_SECONDS"), out var s) && s > 0 ? s : defaultSeconds);

    private const uint Canary = 0xC0FFEE00;

    /// <summary>Senders sending a mix of unicast (to the given MACs) and broadcast until stopped.</summary>
    private static Thread[] StartSenders(Node[] senders, byte[][] targets, Func<bool> stop, Action<string> fail)
    {
        return senders.Select((s, i) =>
        {
            var t = new Thread(() =>
            {
                try
                {
                    var rnd = new Random(77 + i);
                    var frames = new List<byte[]>();
                    uint tag = 0;
                    while (!stop())
                    {
                        frames.Clear();
                        int n = rnd.Next(1, 64);
                        for (int k = 0; k < n; k++)
                        {
                            var dst = rnd.Next(4) == 0 ? Macs.Broadcast : targets[rnd.Next(targets.Length)];
                            frames.Add(s.FrameTo(dst, 60 + rnd.Next(200), tag++));
                        }
                        var ring = s.Tx;
                        if (RingRules.Distance(ring.Cur, ring.Tail, ring.NumSlots) < 64) { s.Port.TxSync(); continue; }
                        s.Queue(frames);
                        s.Port.TxSync();
                        s.Drain(); // floods come back to senders too
                    }
                }
                catch (Exception e) { fail($"sender {i}: {e}"); }
            }) { IsBackground = true, Name = $"lc-sender{i}" };
            t.Start();
            return t;
        }).ToArray();
    }

    /// <summary>A receiver that keeps draining <paramref name="node"/> as a domain would.</summary>
    /// <remarks>With <paramref name="release"/> false it only makes host calls (no user-side
    /// writes), so every write into a freed area would be the host's.</remarks>
    private static Thread StartDrainer(Func<NetmapPort?> port, Func<bool> stop, Action<string> fail, string name, bool release = true)
    {
        var t = new Thread(() =>
        {
            try
            {
                while (!stop())
                {
                    var p = port();
                    if (p is null) { Thread.Yield(); continue; }
                    // Syncs on a handle that may be closed under us at any moment: the race under test.
                    p.RxSync();
                    if (!release) { p.RxSync(); p.RxSync(); continue; } // the write-back race of RxSync, as often as possible
                    if (release)
                    {
                        var r = p.RxRing(0);
                        r.Head = r.Cur = r.Tail;
                        p.RxSync();
                    }
                    p.TxSync();
                    p.Poll(PollEvents.In | PollEvents.Out, 0);
                }
            }
            catch (Exception e) { fail($"{name}: {e}"); }
        }) { IsBackground = true, Name = name };
        t.Start();
        return t;
    }

    /// <summary>One broadcast frame from <paramref name="mac"/>, so the bridge learns where it is.</summary>
    private static void Announce(NetmapPort port, byte[] mac)
    {
        var ring = port.TxRing(0);
        ref var slot = ref ring.Slot(ring.Cur);
        TestFrames.Make(Macs.Broadcast, mac, 60, 1).CopyTo(ring.Buffer(slot));
        slot.Len = 60;
        ring.Head = ring.Cur = ring.Next(ring.Cur);
        port.TxSync();
    }

    private static void WriteCanaries(NetmapPort closed)
    {
        for (int r = 0; r < closed.TxRingCount; r++) SetRing(closed.TxRing(r), Canary + (uint)r);
        for (int r = 0; r < closed.RxRingCount; r++) SetRing(closed.RxRing(r), Canary + 0x80 + (uint)r);
    }

    private static void SetRing(NetmapRing ring, uint v)
    {
        ring.Head = v;
        ring.Cur = v;
        ring.Tail = v;
    }

    /// <summary>Number of ring control words of the freed area that are no longer our canaries.</summary>
    private static int CanaryDamage(NetmapPort closed)
    {
        int bad = 0;
        for (int r = 0; r < closed.TxRingCount; r++) bad += Damage(closed.TxRing(r), Canary + (uint)r);
        for (int r = 0; r < closed.RxRingCount; r++) bad += Damage(closed.RxRing(r), Canary + 0x80 + (uint)r);
        return bad;
    }

    private static int Damage(NetmapRing ring, uint v) => (ring.Head != v ? 1 : 0) + (ring.Cur != v ? 1 : 0) + (ring.Tail != v ? 1 : 0);

    /// <summary>A freshly opened port's rings as the owner finds them before its first sync.</summary>
    private static string? NotPristine(NetmapPort fresh)
    {
        var tx = fresh.TxRing(0);
        var rx = fresh.RxRing(0);
        if (tx.Head != 0 || tx.Cur != 0 || tx.Tail != tx.NumSlots - 1) return $"TX ring {tx.Head}/{tx.Cur}/{tx.Tail}";
        if (rx.Head != 0 || rx.Cur != 0 || rx.Tail != 0) return $"RX ring {rx.Head}/{rx.Cur}/{rx.Tail} (phantom frames)";
        return null;
    }

    [Fact]
    public void Close_reopen_churn_under_traffic_never_writes_the_freed_or_reused_area_and_keeps_the_invariant()
    {
        var sw = new ValeSwitch { BridgeBatch = 64 };
        var senders = new[] { new Node(sw, "valelc:s1", Macs.Unicast(1)), new Node(sw, "valelc:s2", Macs.Unicast(2)) };
        var other = new Node(sw, "valelc:d", Macs.Unicast(3));
        // The churned port lives in area 1 of a shared region; area 0 stays open, so every
        // re-open lands in the area just freed.
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 2 }, "valelc-churn");
        using var keeper = sw.OpenPort("valelc:keep", mem);
        var churnMac = Macs.Unicast(9);
        NetmapPort? current = null;
        bool stop = false;
        string? failure = null;
        void Fail(string m) => Interlocked.CompareExchange(ref failure, m, null);
        long cycles = 0, freedDamage = 0, reusedDamage = 0;
        string? firstReused = null;
        var threads = new List<Thread>();
        try
        {
            threads.AddRange(StartSenders(senders, [churnMac, other.Mac, Macs.Unicast(3)], () => Volatile.Read(ref stop), Fail));
            threads.Add(StartDrainer(() => Volatile.Read(ref current), () => Volatile.Read(ref stop), Fail, "lc-stale", release: false));
            threads.Add(StartDrainer(() => other.Port, () => Volatile.Read(ref stop), Fail, "lc-other"));

            var until = DateTime.UtcNow + Duration(10);
            var rnd = new Random(5);
            while (DateTime.UtcNow < until && failure is null)
            {
                var port = sw.OpenPort("valelc:c", mem);
                Assert.Equal(1, port.Area);
                Thread.SpinWait(rnd.Next(100, 5_000)); // the previous handle is still being synced
                if (NotPristine(port) is { } why) { reusedDamage++; firstReused ??= why; }
                // Announce the churned MAC so unicast finds it, then let the stale-handle thread at it.
                Announce(port, churnMac);
                Volatile.Write(ref current, port);
                Thread.SpinWait(rnd.Next(100, 20_000));
                port.Dispose(); // the drainer thread may be inside any of its syncs right now
                WriteCanaries(port);
                Thread.SpinWait(rnd.Next(100, 5_000));
                freedDamage += CanaryDamage(port);
                cycles++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(10)), $"{t.Name} did not stop");
        }
        Assert.Null(failure);
        output.WriteLine($"{cycles} close/re-open cycles; freed-area canary damage {freedDamage}, re-used area not pristine {reusedDamage}");
        Assert.True(cycles > 100, $"only {cycles} churn cycles: the test did not exercise the race");
        Assert.True(freedDamage == 0, $"a stale handle wrote {freedDamage} ring words of the freed area");
        Assert.True(reusedDamage == 0, $"a re-opened port found its rings written before its first sync {reusedDamage} times, e.g. {firstReused}");
        var s = StatsAssert.Balanced(sw, "valelc");
        output.WriteLine($"sent {s.Sent}, flood copies {s.FloodCopies}, delivered {s.Delivered}, dropped {s.Dropped}");
        Assert.True(s.FloodCopies > 0 && s.Delivered > 0, "no mixed traffic crossed the bridge");
        foreach (var n in senders) n.Dispose();
        other.Dispose();
    }

    [Fact]
    public void Destinations_flapping_and_detaching_mid_batch_keep_sent_plus_flood_equal_delivered_plus_dropped()
    {
        var sw = new ValeSwitch { BridgeBatch = 256 };
        var senders = new[] { new Node(sw, "valelf:s1", Macs.Unicast(1)), new Node(sw, "valelf:s2", Macs.Unicast(2)) };
        var flap = new Node(sw, "valelf:f", Macs.Unicast(3));
        var steady = new Node(sw, "valelf:d", Macs.Unicast(4));
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 1 }, "valelf-churn");
        var churnMac = Macs.Unicast(9);
        NetmapPort? current = null;
        bool stop = false;
        string? failure = null;
        void Fail(string m) => Interlocked.CompareExchange(ref failure, m, null);
        long flaps = 0, churns = 0;
        var threads = new List<Thread>();
        try
        {
            foreach (var n in new[] { flap, steady }) n.Announce();
            threads.AddRange(StartSenders(senders, [flap.Mac, steady.Mac, churnMac], () => Volatile.Read(ref stop), Fail));
            threads.Add(StartDrainer(() => flap.Port, () => Volatile.Read(ref stop), Fail, "lf-flap"));
            threads.Add(StartDrainer(() => steady.Port, () => Volatile.Read(ref stop), Fail, "lf-steady"));
            threads.Add(StartDrainer(() => Volatile.Read(ref current), () => Volatile.Read(ref stop), Fail, "lf-churn"));
            var flapper = new Thread(() =>
            {
                var rnd = new Random(9);
                while (!Volatile.Read(ref stop))
                {
                    flap.Host.Up = !flap.Host.Up; // a link that flaps, as a physical port's does
                    flaps++;
                    Thread.SpinWait(rnd.Next(10, 2000));
                }
                flap.Host.Up = true;
            }) { IsBackground = true, Name = "lf-flapper" };
            flapper.Start();
            threads.Add(flapper);

            var until = DateTime.UtcNow + Duration(10);
            var r = new Random(11);
            while (DateTime.UtcNow < until && failure is null)
            {
                var port = sw.OpenPort("valelf:c", mem);
                Announce(port, churnMac);
                Volatile.Write(ref current, port);
                Thread.SpinWait(r.Next(1000, 50_000));
                port.Dispose();
                churns++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(10)), $"{t.Name} did not stop");
        }
        Assert.Null(failure);
        var s = StatsAssert.Balanced(sw, "valelf");
        output.WriteLine($"{flaps} flaps, {churns} close/re-opens; sent {s.Sent}, flood copies {s.FloodCopies}, delivered {s.Delivered}, " +
                         $"port-down {s.Drops[(int)DropReason.PortDown]}, ring-full {s.Drops[(int)DropReason.RingFull]}");
        Assert.True(flaps > 1000 && churns > 50, $"too little change: {flaps} flaps, {churns} churns");
        Assert.True(s.Drops[(int)DropReason.PortDown] > 0 && s.FloodCopies > 0, "the flapping port never dropped or nothing was flooded: the race was not exercised");
        foreach (var n in senders) n.Dispose();
        flap.Dispose();
        steady.Dispose();
    }

    [Fact]
    public void Disposing_memory_with_an_open_port_is_refused_and_senders_into_it_go_on()
    {
        var sw = new ValeSwitch();
        using var tx = new Node(sw, "valemd:tx", Macs.Unicast(1));
        var mem = new DomainMemory(new RegionLayout { MaxPorts = 1 }, "valemd-rx");
        var rx = new Node(sw, "valemd:rx", Macs.Unicast(2), mem);
        rx.Announce();
        tx.Drain();
        var e = Assert.Throws<InvalidOperationException>(() => mem.Dispose());
        Assert.Contains("valemd:rx", e.Message);
        Assert.Contains("close", e.Message);
        tx.Send(tx.FrameTo(rx.Mac, 60, 7)); // would fault the host had the region been unmapped
        Assert.Single(rx.Receive());
        rx.Port.Dispose();
        mem.Dispose(); // now allowed
        mem.Dispose(); // and idempotent
        tx.Send(tx.FrameTo(rx.Mac, 60, 8));
        StatsAssert.Balanced(sw, "valemd");
    }

    [Fact]
    public void A_stale_handle_after_close_does_nothing_and_poll_returns_at_once()
    {
        var sw = new ValeSwitch();
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 1 }, "valest");
        var port = sw.OpenPort("valest:a", mem);
        port.Dispose();
        WriteCanaries(port);
        port.TxSync();
        port.RxSync();
        var t0 = Environment.TickCount64;
        Assert.Equal(PollEvents.None, port.Poll(PollEvents.In | PollEvents.Out, 5000));
        Assert.True(Environment.TickCount64 - t0 < 1000, "Poll on a closed port slept");
        Assert.Equal(0, CanaryDamage(port));
        using var again = sw.OpenPort("valest:b", mem);
        Assert.Null(NotPristine(again));
        port.RxSync();
        port.TxSync();
        Assert.Null(NotPristine(again));
    }
}
