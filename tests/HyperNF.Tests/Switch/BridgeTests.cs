using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>Bridges and ports: isolation, names, limits, port state, several rings per port.</summary>
public class BridgeTests
{
    private static readonly RegionLayout Tiny = new() { MaxPorts = 1, SlotsPerRing = 8 };

    [Fact]
    public void Bridges_are_isolated_from_each_other()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valex:a", Macs.Unicast(1));
        using var b = new Node(sw, "valex:b", Macs.Unicast(2));
        using var c = new Node(sw, "valey:c", Macs.Unicast(1)); // the same MAC as a, on the other bridge
        using var d = new Node(sw, "valey:d", Macs.Unicast(2));
        var bc = a.FrameTo(Macs.Broadcast, 60, 1);
        var uc = a.FrameTo(d.Mac, 60, 2); // d's MAC lives on valey only (and b has it on valex)
        c.Send(c.FrameTo(Macs.Broadcast)); // teaches valey where "1" is
        d.Drain();
        a.Send(bc, uc, a.FrameTo(Macs.Unicast(0x77), 60, 3));
        Assert.Equal(3, b.Receive().Count);
        Assert.Empty(c.Receive());
        Assert.Empty(d.Receive());
        var x = StatsAssert.Balanced(sw, "valex");
        var y = StatsAssert.Balanced(sw, "valey");
        Assert.Equal((3, 3), (x.Sent, x.Delivered));
        Assert.Equal((1, 1), (y.Sent, y.Delivered));
        Assert.Equal(["valex", "valey"], sw.Bridges.Select(br => br.Name));
        Assert.Equal(c.Host.BridgeIndex, sw.FindBridge("valey")!.Forwarding.Lookup(Macs.ToTable(c.Mac), ForwardingTable.Now()));
        Assert.Equal(a.Host.BridgeIndex, sw.FindBridge("valex")!.Forwarding.Lookup(Macs.ToTable(a.Mac), ForwardingTable.Now()));
    }

    [Theory]
    [InlineData("foo", "foo", "BRIDGE:PORT")]
    [InlineData("valex:", "''", "port name")]
    [InlineData("notvale:x", "notvale", "must start with 'vale'")]
    [InlineData(":x", "''", "must start with 'vale'")]
    [InlineData("vale-x:p", "vale-x", "bridge name")]
    [InlineData("valexxxxxxxxxxxxx:p", "valexxxxxxxxxxxxx", "at most 15")]
    [InlineData("valex:has space", "has space", "port name")]
    [InlineData("valex:sixteen_chars_xx", "sixteen_chars_xx", "1..15")]
    [InlineData("valex:a:b", "a:b", "port name")]
    public void Bad_port_names_are_refused_with_a_message_that_names_the_problem(string name, string quoted, string hint)
    {
        var sw = new ValeSwitch();
        using var mem = new DomainMemory(Tiny);
        var e = Assert.Throws<ArgumentException>(() => sw.OpenPort(name, mem));
        Assert.Contains(quoted.Trim('\''), e.Message);
        Assert.Contains(hint, e.Message);
        Assert.Empty(sw.Bridges); // nothing was created
        using var ok = sw.OpenPort("valex:ok", mem); // and the region's only port area is still free
        Assert.Throws<ArgumentNullException>(() => sw.OpenPort(null!, mem));
        Assert.Throws<ArgumentNullException>(() => sw.OpenPort("valex:p", null!));
    }

    [Theory]
    [InlineData("vale:p")]
    [InlineData("vale0:p.1-x_y")]
    [InlineData("valeABC_9:123456789012345")]
    public void Good_port_names_are_accepted(string name)
    {
        var sw = new ValeSwitch();
        using var mem = new DomainMemory(Tiny);
        using var p = sw.OpenPort(name, mem);
        Assert.Equal(name, p.Name);
        var host = ValeSwitch.HostPortOf(p)!;
        Assert.Equal(name, host.Name);
        Assert.Same(host, sw.FindBridge(name[..name.IndexOf(':')])!.FindPort(name[(name.IndexOf(':') + 1)..]));
    }

    [Fact]
    public void A_bridge_holds_254_ports_and_refuses_the_255th_clearly()
    {
        var sw = new ValeSwitch();
        using var many = new DomainMemory(new RegionLayout { MaxPorts = 254, SlotsPerRing = 8 });
        var ports = Enumerable.Range(0, Bridge.MaxPorts).Select(i => sw.OpenPort($"valemax:p{i}", many)).ToList();
        try
        {
            using var extra = new DomainMemory(Tiny);
            var e = Assert.Throws<InvalidOperationException>(() => sw.OpenPort("valemax:p254", extra));
            Assert.Contains("valemax", e.Message);
            Assert.Contains("254", e.Message);
            Assert.Contains("detach", e.Message);
            // the refused port gave its area back: the region can still open a port elsewhere
            using (sw.OpenPort("valeother:p", extra)) { }

            // all 254 are live: a broadcast from one reaches the other 253
            var p0 = ports[0];
            var tx = p0.TxRing(0);
            TestFrames.Make(Macs.Broadcast, Macs.Unicast(1), 60, 0).CopyTo(tx.Buffer(tx.Slot(0)));
            tx.Slot(0).Len = 60;
            tx.Head = tx.Cur = 1;
            p0.TxSync();
            var s = StatsAssert.Balanced(sw, "valemax");
            Assert.Equal((254, 1, 253, 252), (s.Ports, s.Sent, s.Delivered, s.FloodCopies));

            // once one leaves, the next one fits, in the freed index
            int freedIndex = ValeSwitch.HostPortOf(ports[100])!.BridgeIndex;
            ports[100].Dispose();
            using var late = sw.OpenPort("valemax:late", extra);
            Assert.Equal(freedIndex, ValeSwitch.HostPortOf(late)!.BridgeIndex);
        }
        finally
        {
            foreach (var p in ports) p.Dispose();
        }
    }

    [Fact]
    public void A_region_refuses_more_ports_than_it_was_made_for()
    {
        var sw = new ValeSwitch();
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 2, SlotsPerRing = 8 }, "two-ports");
        var p0 = sw.OpenPort("valer1:p0", mem);
        using var p1 = sw.OpenPort("valer2:p1", mem);
        var e = Assert.Throws<InvalidOperationException>(() => sw.OpenPort("valer1:p2", mem));
        Assert.Contains("two-ports", e.Message);
        Assert.Contains("2 ports", e.Message);
        Assert.Null(sw.FindBridge("valer1")!.FindPort("p2"));
        // closing a port frees its area, which is formatted afresh for the next one
        var tx = p0.TxRing(0);
        tx.Head = tx.Cur = 5;
        p0.TxSync();
        int area = p0.Area;
        p0.Dispose();
        using var again = sw.OpenPort("valer1:p3", mem);
        Assert.Equal(area, again.Area);
        Assert.Equal((0u, 0u, 7u), (again.TxRing(0).Head, again.TxRing(0).Cur, again.TxRing(0).Tail));
        Assert.Equal((0u, 0u, 0u), (again.RxRing(0).Head, again.RxRing(0).Cur, again.RxRing(0).Tail));
    }

    [Fact]
    public void Port_names_are_unique_per_bridge_and_a_bridge_with_ports_stays()
    {
        var sw = new ValeSwitch();
        using var m1 = new DomainMemory(Tiny);
        using var m2 = new DomainMemory(Tiny);
        var p = sw.OpenPort("valeu:p", m1);
        var e = Assert.Throws<InvalidOperationException>(() => sw.OpenPort("valeu:p", m2));
        Assert.Contains("already has a port named 'p'", e.Message);
        using (sw.OpenPort("valev:p", m2)) { } // the same name on another bridge is fine
        Assert.Throws<InvalidOperationException>(() => sw.RemoveBridge("valeu"));
        p.Dispose();
        p.Dispose(); // idempotent
        Assert.True(sw.RemoveBridge("valeu"));
        Assert.False(sw.RemoveBridge("valeu"));
        Assert.Null(sw.FindBridge("valeu"));
    }

    [Fact]
    public void A_port_that_is_down_neither_sends_nor_receives_and_both_are_counted()
    {
        var sw = new ValeSwitch();
        using var a = new Node(sw, "valed:a", Macs.Unicast(1));
        using var b = new Node(sw, "valed:b", Macs.Unicast(2));
        using var c = new Node(sw, "valed:c", Macs.Unicast(3));
        b.Announce();
        a.Drain(); c.Drain();
        b.Host.Up = false;
        a.Send(a.FrameTo(b.Mac), a.FrameTo(Macs.Broadcast));
        Assert.Empty(b.Receive());
        Assert.Single(c.Receive()); // the flood skips the port that is down
        b.Send(b.FrameTo(a.Mac));
        Assert.Empty(a.Receive());
        var s = StatsAssert.Balanced(sw, "valed");
        Assert.Equal(2, s.Drops[(int)DropReason.PortDown]);
        b.Host.Up = true;
        var f = a.FrameTo(b.Mac);
        a.Send(f);
        Assert.Equal(f, Assert.Single(b.Receive()).Bytes);
    }

    [Fact]
    public void Every_TX_ring_of_a_port_is_synced_and_delivers_to_the_matching_RX_ring()
    {
        var sw = new ValeSwitch();
        var two = new RegionLayout { MaxPorts = 1, RingsPerPort = 2, SlotsPerRing = 64 };
        using var a = new Node(sw, "valemr:a", Macs.Unicast(1), two);
        using var b = new Node(sw, "valemr:b", Macs.Unicast(2), two);
        using var c = new Node(sw, "valemr:c", Macs.Unicast(3)); // one ring
        Assert.Equal((2, 2), (a.Port.TxRingCount, a.Port.RxRingCount));
        var f0 = a.FrameTo(Macs.Broadcast, 60, 0);
        var f1 = a.FrameTo(Macs.Broadcast, 70, 1);
        foreach (var (ring, frame) in new[] { (a.Port.TxRing(0), f0), (a.Port.TxRing(1), f1) })
        {
            frame.CopyTo(ring.Buffer(ring.Slot(0)));
            ring.Slot(0).Len = (ushort)frame.Length;
            ring.Head = ring.Cur = 1;
        }
        a.Port.TxSync(); // one sync flushes both rings
        b.Port.RxSync();
        Assert.Equal(f0, b.Port.RxRing(0).Frame(b.Port.RxRing(0).Slot(0)).ToArray());
        Assert.Equal(f1, b.Port.RxRing(1).Frame(b.Port.RxRing(1).Slot(0)).ToArray());
        Assert.Equal((1u, 1u), (b.Port.RxRing(0).Tail, b.Port.RxRing(1).Tail));
        Assert.Equal([f0, f1], c.Receive().Select(r => r.Bytes)); // a one-ring port gets both on ring 0
        StatsAssert.Balanced(sw, "valemr");
    }
}
