using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Tools;

public class EndpointRangeTests
{
    [Theory]
    [InlineData("10.0.0.1", 0x0A000001u, 0x0A000001u, 1234, 1234)]
    [InlineData("10.0.0.1-10.0.0.100", 0x0A000001u, 0x0A000064u, 1234, 1234)]
    [InlineData("10.0.0.1:80", 0x0A000001u, 0x0A000001u, 80, 80)]
    [InlineData(" 10.0.0.1-10.0.1.0:1000-1010 ", 0x0A000001u, 0x0A000100u, 1000, 1010)]
    [InlineData("255.255.255.255:65535", 0xFFFFFFFFu, 0xFFFFFFFFu, 65535, 65535)]
    public void Parses(string text, uint a0, uint a1, int p0, int p1)
    {
        var r = EndpointRange.Parse(text);
        Assert.Equal(new EndpointRange(a0, a1, (ushort)p0, (ushort)p1), r);
        Assert.Equal(r, EndpointRange.Parse(r.ToString()));
    }

    [Theory]
    [InlineData("", "empty address range")]
    [InlineData("10.0.0", "'10.0.0' in '10.0.0' is not an IPv4 address")]
    [InlineData("10.0.0.256", "is not an IPv4 address")]
    [InlineData("010.0.0.1", "is not an IPv4 address")]
    [InlineData("10.0.0.1-x", "'x' in '10.0.0.1-x' is not an IPv4 address")]
    [InlineData("10.0.0.9-10.0.0.1", "runs backwards; write 10.0.0.1-10.0.0.9")]
    [InlineData("10.0.0.1:", "is not a UDP port")]
    [InlineData("10.0.0.1:70000", "is not a UDP port")]
    [InlineData("10.0.0.1:20-10", "port range '20-10' in '10.0.0.1:20-10' runs backwards; write 10-20")]
    public void Errors_say_what_is_wrong(string text, string message)
    {
        var e = Assert.Throws<FormatException>(() => EndpointRange.Parse(text));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Cursor_cycles_source_port_then_address_then_destination_like_pkt_gen()
    {
        var src = EndpointRange.Parse("10.0.0.1-10.0.0.2:1-2");
        var dst = EndpointRange.Parse("10.1.0.1:7-8");
        var c = new EndpointCursor(src, dst);
        var seen = new List<string>();
        for (int i = 0; i < 9; i++)
        {
            seen.Add($"{c.SrcIp & 255}:{c.SrcPort}>{c.DstPort}");
            c.Advance();
        }
        Assert.Equal(["1:1>7", "1:2>7", "2:1>7", "2:2>7", "1:1>8", "1:2>8", "2:1>8", "2:2>8", "1:1>7"], seen);
        Assert.Equal(4ul, src.Count);
    }
}
