using HyperNF.Tests.Control;
using Xunit;

namespace HyperNF.Tests.Processes;

/// <summary>
/// netmap's control requests beyond REGISTER, made by our own netmap program (nm_tool) through
/// libhypernf-netmap.so against an in-process daemon: PORT_HDR_SET/GET (both APIs) with frames
/// crossing ports of different virtio-net header lengths.
/// </summary>
public sealed class NetmapRequestTests
{
    private static string Bridge(string tag) => $"vale{tag}{Environment.ProcessId % 1000}";

    private const int EINVAL = 22, ENXIO = 6;

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
}
