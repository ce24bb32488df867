using System.Buffers.Binary;
using System.Text.Json;
using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Ports;
using HyperNF.Tests.Control;
using HyperNF.Tests.Ports;
using Xunit;

namespace HyperNF.Tests.Processes;

/// <summary>
/// netmap's control requests beyond REGISTER, made by our own netmap program (nm_tool) through
/// libhypernf-netmap.so against an in-process daemon: PORT_HDR_SET/GET (both APIs) with frames
/// crossing ports of different virtio-net header lengths; VALE_NEWIF/DELIF persistent ports;
/// netmap:IFNAME on a veth pair in a namespace.
/// </summary>
public sealed class NetmapRequestTests
{
    private static string Bridge(string tag) => $"vale{tag}{Environment.ProcessId % 1000}";

    private const int EINVAL = 22, ENXIO = 6, EEXIST = 17, EBUSY = 16;

    [Fact]
    public void PortHdrSet_ConvertsHeadersBetweenAPortWithAndAPortWithout_BothDirections()
    {
        using var h = new NetmapHost();
        string br = Bridge("hdr");
        var p = NetmapProgram.Run(h.Socket, "vnet", $"{br}:a", $"{br}:b");
        // netmap's errnos: a bad length before the lookup, a port that does not exist.
        Assert.Equal(EINVAL, p.Long("set_bad_len"));
        Assert.Equal(ENXIO, p.Long("set_no_port"));
        Assert.Equal(ENXIO, p.Long("get_no_port"));
        // The legacy forms (nr_cmd NETMAP_BDG_VNET_HDR / NETMAP_VNET_HDR_GET).
        Assert.Equal(0, p.Long("legacy_set"));
        Assert.Equal(0, p.Long("legacy_get"));
        Assert.Equal(12, p.Long("legacy_len"));
        Assert.Equal(0, p.Long("set_a"));
        Assert.Equal(0, p.Long("set_b"));
        Assert.Equal(10, p.Long("hdr_a"));
        Assert.Equal(0, p.Long("hdr_b"));
        // The daemon's ports have the lengths the program set.
        var bridge = h.Host.Switch.FindBridge(br)!;
        // A -> B with NEEDS_CSUM: header gone, UDP checksum completed (compared with the full one).
        Assert.Equal(14 + 20 + 8 + 100, p.Long("a2b_csum_len"));
        Assert.Equal(1, p.Long("a2b_csum_ok"));
        Assert.Equal(14 + 20 + 8 + 40, p.Long("a2b_len"));
        Assert.Equal(1, p.Long("a2b_ok"));
        // B -> A: a zeroed 10-byte header in front of the untouched frame.
        Assert.Equal(10 + p.Long("sent_len"), p.Long("b2a_len"));
        Assert.Equal(1, p.Long("b2a_ok"));
        var s = bridge.GetStatistics();
        Assert.Equal(0, s.Unaccounted);
        Assert.Equal(3, s.Delivered);
        Assert.Contains("virtio-net header length 0 -> 10 (PORT_HDR_SET)", h.LogText);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ValeAttach_OfAnInterfaceThatDoesNotExist_IsEnxio_AsNetmapAnswers(bool legacy)
    {
        // netmap's vale-ctl -a valeX:nosuch fails with ENXIO ("No such device or address");
        // it was EINVAL here until the acceptance run with netmap's own vale-ctl showed it.
        using var h = new NetmapHost();
        Assert.Equal(ENXIO, Ctl(h, "attach", $"{Bridge("nx")}:hnfnoif{Environment.ProcessId % 1000}", legacy).Long("errno"));
        Assert.Null(h.Host.Switch.FindBridge(Bridge("nx")));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ValeAttach_WithTheHostStack_IsRefused_NotServedAsAPlainAttach(bool legacy)
    {
        // netmap's vale-ctl -h asks for the interface and its host rings (NR_REG_NIC_SW); we have
        // no host rings, so it is refused (EOPNOTSUPP) instead of quietly attaching the NIC only.
        using var h = new NetmapHost();
        string[] args = ["ctl", "attach", $"{Bridge("hs")}:lo", "--mode", "3", .. (legacy ? new[] { "--legacy" } : [])];
        Assert.Equal(95, NetmapProgram.Run(h.Socket, args).Long("errno"));
        Assert.Null(h.Host.Switch.FindBridge(Bridge("hs")));
    }

    private static NetmapProgram Ctl(NetmapHost h, string op, string name, bool legacy = false) =>
        legacy ? NetmapProgram.Run(h.Socket, "ctl", op, name, "--legacy") : NetmapProgram.Run(h.Socket, "ctl", op, name);

    private static JsonElement ValeList(NetmapHost h)
    {
        var r = Cli.Run(h.Socket, "vale-ctl", "-l", "--json");
        Assert.True(r.Exit == 0, r.ToString());
        return JsonDocument.Parse(r.Out).RootElement.Clone();
    }

    private static JsonElement? PersistentEntry(JsonElement list, string name)
    {
        foreach (var e in list.GetProperty("persistent").EnumerateArray())
            if (e.GetProperty("name").GetString() == name) return e;
        return null;
    }

    /// <summary>A string property, or null when absent or null (the JSON leaves nulls out).</summary>
    private static string? Str(JsonElement e, string key) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    [Theory]
    [InlineData(IoModel.Hypercall)]
    [InlineData(IoModel.Split)]
    public void PersistentPort_OutlivesItsPrograms_KeepsFramesForTheNext_AndIsDeletedOnlyWhenIdle(IoModel model)
    {
        using var h = new NetmapHost(model);
        string br = Bridge($"per{(int)model}"), name = $"hnfp{(int)model}{Environment.ProcessId % 10000}";
        // VALE_NEWIF (nmreq API) and its answers; netmap's errnos for bad names.
        var made = Ctl(h, "newif", name);
        Assert.Equal(0, made.Long("errno"));
        Assert.True(made.Long("mem_id") >= 0x8000, made.ToString());
        Assert.Equal(1024, made.Long("slots"));
        Assert.Equal(1, made.Long("rings"));
        Assert.Equal(EEXIST, Ctl(h, "newif", name, legacy: true).Long("errno"));
        Assert.Equal(EEXIST, Ctl(h, "newif", "lo").Long("errno"));            // a Linux interface has the name
        Assert.Equal(EINVAL, Ctl(h, "newif", "valeq").Long("errno"));         // no VALE prefix
        Assert.Equal(EINVAL, Ctl(h, "newif", "abcdefghijklmnop").Long("errno")); // IFNAMSIZ
        Assert.Equal(ENXIO, Ctl(h, "delif", "hnfnosuch").Long("errno"));
        Assert.Equal(EINVAL, Ctl(h, "delif", "lo").Long("errno"));             // not a VALE port
        var e = PersistentEntry(ValeList(h), name);
        Assert.NotNull(e);
        Assert.Null(Str(e.Value, "bridge"));
        // netmap:NAME while detached: nothing to send to.
        using (var early = new NetmapProgram(h.Socket, "info", $"netmap:{name}"))
        {
            Assert.Equal(1, early.WaitExit());
            Assert.Contains("No such device or address", early.Errors);
        }

        // A program registers valeX:NAME: the port is attached to valeX, and frames flow to a receiver.
        using (var rx = new NetmapProgram(h.Socket, "rx", $"{br}:r", "50", "--timeout", "10000"))
        {
            rx.WaitReady();
            var tx = NetmapProgram.Run(h.Socket, "tx", $"{br}:{name}", "50", "60");
            Assert.Equal(50, tx.Long("sent"));
            Assert.Equal(0, rx.WaitExit());
            Assert.Equal(50, rx.Long("received"));
        }
        // The program is gone; the port stays on the bridge, registered by nobody.
        Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText);
        e = PersistentEntry(ValeList(h), name);
        Assert.Equal(br, Str(e!.Value, "bridge"));
        Assert.Null(Str(e.Value, "user"));
        string table = Cli.Run(h.Socket, "vale-ctl", "-l").Out;
        Assert.Contains(name, table);
        Assert.Contains("persistent", table);

        // Frames sent to it while nobody has it wait in its RX ring for the next program (netmap:NAME).
        NetmapProgram.Run(h.Socket, "tx", $"{br}:t2", "20", "60");
        using (var holder = new NetmapProgram(h.Socket, "hold", $"netmap:{name}"))
        {
            holder.WaitReady();
            Assert.Equal(h.ProcessDomains.Single().Name, Str(PersistentEntry(ValeList(h), name)!.Value, "user"));
            // One program at a time; and no delete or detach while it is registered.
            using (var second = new NetmapProgram(h.Socket, "info", $"netmap:{name}"))
            {
                Assert.Equal(1, second.WaitExit());
                Assert.Contains("Device or resource busy", second.Errors);
            }
            Assert.Equal(EBUSY, Ctl(h, "detach", $"{br}:{name}").Long("errno"));
        } // SIGKILL: the daemon releases the port when the connection hangs up
        Assert.True(NetmapHost.Eventually(() => h.ProcessDomains.Length == 0), h.LogText);
        Assert.Null(Str(PersistentEntry(ValeList(h), name)!.Value, "user"));
        var late = NetmapProgram.Run(h.Socket, "rx", $"netmap:{name}", "20", "--timeout", "3000");
        Assert.Equal(20, late.Long("received"));
        Assert.Equal(0, late.Long("bad"));

        // Delete: refused while attached (EBUSY), then detach and delete (legacy API: its names
        // are IFNAMSIZ long, too short for BRIDGE:NAME here).
        Assert.Equal(EBUSY, Ctl(h, "delif", name).Long("errno"));
        Assert.Equal(0, h.Host.Switch.FindBridge(br)!.GetStatistics().Unaccounted);
        Assert.Equal(0, Ctl(h, "detach", $"{br}:{name}").Long("errno"));
        Assert.Null(h.Host.Switch.FindBridge(br)?.FindPort(name)); // (the bridge may go with its last port)
        Assert.Equal(0, Ctl(h, "delif", name, legacy: true).Long("errno"));
        Assert.Null(PersistentEntry(ValeList(h), name));
        Assert.Equal(ENXIO, Ctl(h, "delif", name).Long("errno"));
    }

    [Fact]
    public void PersistentPorts_AreBounded_SoNoProgramMapsMemoryWithoutEnd()
    {
        using var h = new NetmapHost();
        int max = HyperNF.Control.ControlDaemon.MaxPersistentPorts;
        var p = NetmapProgram.Run(h.Socket, "many", $"hnfm{Environment.ProcessId % 1000}x", $"{max + 3}");
        Assert.Equal(max, p.Long("made"));
        Assert.Equal(12, p.Long("last_errno")); // ENOMEM
        Assert.Equal(max, p.Long("deleted"));
        Assert.Empty(h.Daemon.PersistentPorts);
    }

    /// <summary>A frame in nm_tool's format (its check() accepts it) from <paramref name="src"/> to <paramref name="dst"/>.</summary>
    private static byte[] ToolFrame(uint seq, byte src, byte dst, int size = 60)
    {
        var f = new byte[size];
        byte[] mac = [0x02, 0, 0, 0, 0x0b, 0];
        mac.CopyTo(f, 0);
        f[5] = dst;
        mac.CopyTo(f, 6);
        f[11] = src;
        f[12] = 0x88;
        f[13] = 0xb5;
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(14), seq);
        for (int i = 18; i < size; i++) f[i] = (byte)(seq + i);
        return f;
    }

    [NetnsFact]
    public void NetmapIfname_GivesTheProgramTheInterface_OnAPrivateWire_BothWays()
    {
        using var lab = new NetLab();
        var a = lab.Add("nm", "10.236.7.1/24");
        using var h = new NetmapHost();
        h.Daemon.Attacher = new PhysicalPortAttacher(new PhysicalPorts(h.Host, new PhysicalPortOptions()));
        using var wire = lab.Wire(a);

        // Wire -> program: unicast both ways between two hosts behind the interface (a learning
        // bridge would drop all but the first as hairpin once it learned both behind one port).
        const int n = 60;
        using (var rx = new NetmapProgram(h.Socket, "rx", $"netmap:{a.Outer}", $"{n}", "--only-test", "--timeout", "10000"))
        {
            rx.WaitReady();
            var bridge = Assert.Single(h.Host.Switch.Bridges, b => b.Name.StartsWith("vale_nm", StringComparison.Ordinal));
            Assert.False(bridge.Learning);
            Assert.NotNull(bridge.FindPort(a.Outer));
            // One program at a time per interface, as netmap's adapter.
            using (var second = new NetmapProgram(h.Socket, "info", $"netmap:{a.Outer}"))
            {
                Assert.Equal(1, second.WaitExit());
                Assert.Contains("Device or resource busy", second.Errors);
            }
            for (uint i = 0; i < n; i++) wire.Send(i % 2 == 0 ? ToolFrame(i, 0x0a, 0x0b) : ToolFrame(i, 0x0b, 0x0a));
            Assert.True(rx.WaitExit(30_000) == 0, rx.ToString());
            Assert.Equal(n, rx.Long("received"));
            Assert.Equal(0, rx.Long("bad"));
            Assert.Equal(0, bridge.GetStatistics().Drops[(int)HyperNF.Switch.DropReason.Hairpin]);
        }
        // The registration ended: the wire is gone, the interface left as it was.
        Assert.True(NetmapHost.Eventually(() => !h.Host.Switch.Bridges.Any(b => b.Name.StartsWith("vale_nm", StringComparison.Ordinal))), h.LogText);
        Assert.DoesNotContain("PROMISC", NetLab.Must("ip", "link", "show", "dev", a.Outer));

        // Program -> wire: the raw socket on the peer gets every frame, intact.
        var tx = NetmapProgram.Run(h.Socket, "tx", $"netmap:{a.Outer}", $"{n}", "60", "--batch", "8");
        Assert.Equal(n, tx.Long("sent"));
        int got = 0, bad = 0;
        var until = Environment.TickCount64 + 10_000;
        while (got < n && Environment.TickCount64 < until)
        {
            var f = wire.Receive(500);
            if (f is null || f.Length < 18 || f[12] != 0x88 || f[13] != 0xb5) continue;
            uint seq = BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(14));
            for (int i = 18; i < 60; i++) if (f[i] != (byte)(seq + i)) { bad++; break; }
            got++;
        }
        Assert.Equal(n, got);
        Assert.Equal(0, bad);
        // netmap's errno for an interface that does not exist.
        using var none = new NetmapProgram(h.Socket, "info", "netmap:hnfnosuch0");
        Assert.Equal(1, none.WaitExit());
        Assert.Contains("No such device or address", none.Errors);
    }
}
