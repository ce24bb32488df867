using System.Diagnostics;
using HyperNF.Tests.Control;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Ports;

/// <summary>
/// `hypernf run` as a user runs it: the real CLI binary attaches two veth ends to a bridge and
/// starts an l2fwd domain from an xl config; a ping crosses; SIGTERM stops it cleanly with
/// the counters printed and everything detached.
/// </summary>
public class RunCommandTests(ITestOutputHelper output)
{
    [NetnsFact]
    public void RunAttachesInterfacesForwardsAndStopsCleanlyOnSigterm()
    {
        using var lab = new NetLab();
        var a = lab.Add("a", "10.231.9.1/24");
        var b = lab.Add("b", "10.231.9.2/24");
        using var dir = new TempDir();
        string cfg = dir.File("fw.cfg");
        File.WriteAllText(cfg, "name = \"mid\"\nvif = [ \"type=nmif,bridge=valex:m0\", \"type=nmif,bridge=valey:m1\" ]\nnf = \"l2fwd\"\nkernel = \"/boot/none\"\n");
        var psi = Cli.Start(dir.File("unused.sock"), "run", "--interval", "0", "--attach", $"valex:{a.Outer}", "--attach", $"valey:{b.Outer}", cfg);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            int rc = 1;
            string ping = "";
            for (int i = 0; i < 40 && rc != 0; i++)
            {
                Thread.Sleep(250);
                rc = lab.Exec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "1", b.Ip], 10_000, out ping);
            }
            Assert.True(rc == 0, $"ping through `hypernf run` failed: {ping}");
        }
        finally
        {
            Cli.Signal(p, Cli.SIGTERM);
            Assert.True(p.WaitForExit(30_000), "run stops within 30 s of SIGTERM");
        }
        string outText = stdout.Result, errText = stderr.Result;
        output.WriteLine(outText);
        output.WriteLine(errText);
        Assert.Equal(0, p.ExitCode);
        Assert.Contains($"attached {a.Outer} to valex", outText);
        Assert.Contains("created domain mid", outText);
        Assert.Contains("stopping", outText);
        Assert.Contains("valex", outText.Split("stopping")[1]); // the counters table
        Assert.Contains("kernel: ignored", errText);              // xl keys we do not use: a notice
        // detached: promiscuous mode is off again on the outer ends
        Assert.DoesNotContain("PROMISC", NetLab.Must("ip", "link", "show", a.Outer));
    }
}
