using System.Text.Json;
using HyperNF.Tests.Control;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// vale-ctl against a running daemon with real interfaces: -a attaches two veth ends (with the
/// backend the daemon was started with), -l shows them with their Linux side, a ping crosses,
/// -d detaches and the interface is left as it was (no XDP program, not promiscuous).
/// </summary>
public class DaemonValeCtlTests(ITestOutputHelper output)
{
    private static Cli.Result Ok(string socket, params string[] args)
    {
        var r = Cli.Run(socket, args);
        Assert.True(r.Exit == 0, $"hypernf {string.Join(' ', args)}: {r}");
        return r;
    }

    [NetnsTheory]
    [InlineData("af_packet")]
    [InlineData("af_xdp")]
    public void ValeCtlAttachesListsAndDetachesInterfacesOfARunningDaemon(string backend)
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.234.1.1/24");
        var b = lab.Add("b", "10.234.1.2/24");
        using var dir = new TempDir();
        using var daemon = new DaemonProcess(dir.File("d.sock"), true, "--port-backend", backend);
        string sock = daemon.Socket;
        try
        {
            Assert.Contains($"attached {a.Outer} to valex", Ok(sock, "vale-ctl", "-a", $"valex:{a.Outer}").Out);
            Ok(sock, "vale-ctl", "-a", $"valex:{b.Outer}");

            int rc = lab.Exec(a, ["ping", "-c", "3", "-i", "0.2", "-W", "2", b.Ip], 15_000, out string ping);
            Assert.True(rc == 0, $"ping through the daemon's bridge: {ping}");

            using var doc = JsonDocument.Parse(Ok(sock, "vale-ctl", "-l", "--json").Out);
            var ports = doc.RootElement.GetProperty("bridges").EnumerateArray()
                .Single(x => x.GetProperty("name").GetString() == "valex").GetProperty("ports").EnumerateArray().ToList();
            var pa = ports.Single(p => p.GetProperty("port").GetString() == a.Outer);
            Assert.Equal("interface", pa.GetProperty("kind").GetString());
            var info = pa.GetProperty("interface");
            output.WriteLine(info.GetRawText());
            Assert.Equal("up", info.GetProperty("link").GetString());
            int ifindex = int.Parse(File.ReadAllText($"/sys/class/net/{a.Outer}/ifindex").Trim());
            Assert.Equal(ifindex, info.GetProperty("if_index").GetInt32());
            Assert.Equal(1500, info.GetProperty("mtu").GetInt32());
            Assert.StartsWith(backend, info.GetProperty("backend").GetString());
            string table = Ok(sock, "vale-ctl", "-l").Out;
            Assert.Contains($"ifindex {ifindex}", table);
            if (backend == "af_xdp") Assert.Contains("prog/xdp", NetLab.Must("ip", "link", "show", "dev", a.Outer));

            Assert.Contains("detached", Ok(sock, "vale-ctl", "-d", $"valex:{a.Outer}").Out);
            string link = NetLab.Must("ip", "link", "show", "dev", a.Outer);
            Assert.DoesNotContain("prog/xdp", link);
            Assert.DoesNotContain("PROMISC", link);
            Assert.DoesNotContain(a.Outer, Ok(sock, "vale-ctl", "-l").Out);
        }
        finally
        {
            output.WriteLine(daemon.Log);
        }
    }

    [NetnsFact]
    public void ValeCtlBringsADownInterfaceUpShowsItsLinkStateAndSetsHeaderLengths()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.234.2.1/24");
        NetLab.Must("ip", "link", "set", a.Outer, "down");
        using var dir = new TempDir();
        using var daemon = new DaemonProcess(dir.File("d.sock"));
        string sock = daemon.Socket;
        try
        {
            // -a brings the interface up, as examples/init.sh says it does.
            Ok(sock, "vale-ctl", "-a", $"valex:{a.Outer}");
            Assert.Matches(@"<[^>]*\bUP\b", NetLab.Must("ip", "link", "show", "dev", a.Outer));
            JsonElement Port()
            {
                using var doc = JsonDocument.Parse(Ok(sock, "vale-ctl", "-l", "--json").Out);
                return doc.RootElement.GetProperty("bridges").EnumerateArray().Single(x => x.GetProperty("name").GetString() == "valex")
                    .GetProperty("ports").EnumerateArray().Single(p => p.GetProperty("port").GetString() == a.Outer).Clone();
            }
            var up = Port();
            Assert.True(up.GetProperty("up").GetBoolean());
            Assert.Equal("up", up.GetProperty("interface").GetProperty("link").GetString());
            Assert.Equal(10, up.GetProperty("interface").GetProperty("vnet_hdr").GetInt32());

            // The peer goes down: the port's Linux link is down, and -l never says "up: yes" next to it.
            NetLab.Must("ip", "-n", a.Ns, "link", "set", a.Inner, "down");
            JsonElement down = up;
            for (int i = 0; i < 50 && (down = Port()).GetProperty("interface").GetProperty("link").GetString() != "down"; i++) Thread.Sleep(100);
            Assert.Equal("down", down.GetProperty("interface").GetProperty("link").GetString());
            Assert.False(down.GetProperty("up").GetBoolean());
            string table = Ok(sock, "vale-ctl", "-l").Out;
            output.WriteLine(table);
            Assert.Contains("no (link down)", table);
            Assert.Contains("link down", daemon.Log); // reported as it happened

            // PORT_HDR_SET from the toolstack: 0, 10, 12 only.
            var bad = Cli.Run(sock, "vale-ctl", "-H", $"valex:{a.Outer}=11");
            Assert.NotEqual(0, bad.Exit);
            Assert.Contains("0 (none), 10 (virtio_net_hdr) or 12", bad.Err + bad.Out);
            Assert.Contains("virtio-net header length 12", Ok(sock, "vale-ctl", "-H", $"valex:{a.Outer}=12").Out);
            Assert.Equal(12, Port().GetProperty("interface").GetProperty("vnet_hdr").GetInt32());
        }
        finally
        {
            output.WriteLine(daemon.Log);
        }
    }
}
