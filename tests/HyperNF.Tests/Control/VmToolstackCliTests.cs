using System.Text.Json;
using HyperNF.Tests.Vmm;
using HyperNF.Vmm;
using Xunit;

namespace HyperNF.Tests.Control;

/// <summary>
/// A VM domain through the toolstack: the real CLI binary against a real daemon child process
/// (its socket in a temporary directory). create with kernel= (and io_model=split, which must
/// reach the VM), list with the kind and the KVM, console, pause/unpause, vcpu-pin,
/// sched-credit2 and destroy.
/// </summary>
public class VmToolstackCliTests
{
    private static Cli.Result Ok(string socket, params string[] args)
    {
        var r = Cli.Run(socket, args);
        Assert.True(r.Exit == 0, $"hypernf {string.Join(' ', args)}: {r}");
        return r;
    }

    private static JsonElement Domain(string sock) =>
        JsonDocument.Parse(Ok(sock, "list", "--json").Out).RootElement.GetProperty("domains").EnumerateArray().Single().Clone();

    [KvmFact]
    public void Vm_domain_create_list_console_pause_pin_sched_destroy_through_the_daemon()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        string cfg = tmp.File("vm.cfg");
        File.WriteAllText(cfg, $$"""
            name = "vmcli"
            kernel = "{{GuestImages.Path("l2fwd")}}"
            extra = "report=100"
            memory = 8
            vcpus = 1
            io_model = "split"
            vif = [ "type=nmif,bridge=valevcli:a", "type=nmif,bridge=valevclj:b" ]
            """);
        var created = Ok(sock, "create", cfg);
        Assert.Contains("created VM domain", created.Out);
        Assert.Contains(KvmPlatform.Current.KindName, created.Out);

        var d = Domain(sock);
        Assert.Equal("vmcli", d.GetProperty("name").GetString());
        Assert.Equal("vm", d.GetProperty("kind").GetString());
        Assert.Contains(KvmPlatform.Current.KindName, d.GetProperty("kvm").GetString());
        Assert.Equal("running", d.GetProperty("state").GetString());
        Assert.Equal("split", d.GetProperty("io_model").GetString());
        var table = Ok(sock, "list").Out;
        Assert.Contains("vmcli", table);
        Assert.Contains($"vm ({d.GetProperty("kvm").GetString()})", table);

        // The guest's own output, through the daemon: l2fwd reports while idle.
        Assert.True(VmKit.WaitFor(() => Ok(sock, "console", "vmcli").Out.Contains("l2fwd: frames=", StringComparison.Ordinal), TimeSpan.FromSeconds(20)),
            $"console: {Ok(sock, "console", "vmcli").Out}");

        Ok(sock, "pause", "vmcli");
        Assert.Equal("paused", Domain(sock).GetProperty("state").GetString());
        // Paused: the vCPU is out of KVM_RUN, so the console stops growing.
        Thread.Sleep(300);
        string frozen = Ok(sock, "console", "vmcli").Out;
        Thread.Sleep(400);
        Assert.Equal(frozen, Ok(sock, "console", "vmcli").Out);
        Ok(sock, "unpause", "vmcli");
        Assert.Equal("running", Domain(sock).GetProperty("state").GetString());
        Assert.True(VmKit.WaitFor(() => Ok(sock, "console", "vmcli").Out.Length > frozen.Length, TimeSpan.FromSeconds(20)), "console grows again after unpause");

        int cpu = Environment.ProcessorCount - 1;
        Ok(sock, "vcpu-pin", "vmcli", "0", $"{cpu}");
        Assert.Equal($"{cpu}", Domain(sock).GetProperty("cpus")[0].GetString());

        Ok(sock, "sched-credit2", "-d", "vmcli", "-w", "512", "-c", "40");
        var sched = JsonDocument.Parse(Ok(sock, "sched-credit2", "-d", "vmcli", "--json").Out).RootElement.GetProperty("domains")[0];
        Assert.Equal(512, sched.GetProperty("weight").GetInt32());
        Assert.Equal(40, sched.GetProperty("cap").GetInt32());

        Assert.Equal("running", Domain(sock).GetProperty("state").GetString()); // nothing above crashed it
        Assert.Contains("destroyed domain 'vmcli'", Ok(sock, "destroy", "vmcli").Out);
        Assert.Empty(JsonDocument.Parse(Ok(sock, "list", "--json").Out).RootElement.GetProperty("domains").EnumerateArray());

        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
        Assert.False(File.Exists(sock));
    }

    [KvmFact]
    public void Shutdown_asks_a_vm_guest_to_stop_and_gives_up_on_one_that_ignores_it()
    {
        using var tmp = new TempDir();
        string sock = tmp.File("d.sock");
        using var daemon = new DaemonProcess(sock);
        string cfg = tmp.File("vm.cfg");
        File.WriteAllText(cfg, $$"""
            name = "vmsd"
            kernel = "{{GuestImages.Path("l2fwd")}}"
            vif = [ "type=nmif,bridge=valevsdc:a", "type=nmif,bridge=valevsdc:b" ]
            """);
        Ok(sock, "create", cfg);
        var r = Ok(sock, "shutdown", "vmsd");
        Assert.Contains("shut down domain 'vmsd'", r.Out);
        Assert.Contains("its guest exited with status 0", r.Out);
        Assert.Empty(JsonDocument.Parse(Ok(sock, "list", "--json").Out).RootElement.GetProperty("domains").EnumerateArray());

        string deaf = tmp.File("deaf.cfg");
        File.WriteAllText(deaf, $$"""
            name = "vmdeaf"
            kernel = "{{GuestImages.Path("hostile")}}"
            extra = "mode=loop"
            """);
        Ok(sock, "create", deaf);
        var refused = Cli.Run(sock, "shutdown", "vmdeaf", "--timeout", "1");
        Assert.True(refused.Exit != 0, $"a guest that ignores the request: {refused}");
        Assert.Contains("did not shut down within 1 s", refused.Out + refused.Err);
        Assert.Equal("running", Domain(sock).GetProperty("state").GetString()); // asking is not forcing
        Assert.Contains("destroyed domain 'vmdeaf'", Ok(sock, "destroy", "vmdeaf").Out);

        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
    }
}
