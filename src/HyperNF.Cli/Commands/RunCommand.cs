using System.CommandLine;
using System.Runtime.InteropServices;
using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Ports;
using HyperNF.Switch;
using Spectre.Console;

namespace HyperNF.Cli.Commands;

/// <summary>
/// hypernf run: a host in the foreground. Physical interfaces are attached first, then the
/// domains start; it runs until Ctrl-C or SIGTERM, then destroys the domains, detaches the
/// interfaces cleanly and prints the counters.
/// </summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--io-model") { Description = "Default I/O model for domains that do not set io_model", DefaultValueFactory = _ => "hypercall" };
        var attach = new Option<string[]>("--attach", "-a") { Description = "Attach a Linux interface to a bridge: BRIDGE:IFNAME (repeatable)", AllowMultipleArgumentsPerToken = false };
        var seconds = new Option<double>("--seconds") { Description = "Stop by itself after this long (0 = until Ctrl-C/SIGTERM)" };
        var interval = new Option<double>("--interval") { Description = "Seconds between status lines (0 = none)", DefaultValueFactory = _ => 5 };
        var drvdom = new Option<bool>("--drvdom-txsync") { Description = "NIC transmission by the port's driver thread (ctl op 5 = 1)" };
        var backend = new Option<string>("--port-backend") { Description = "How attached interfaces are opened: af_packet or af_xdp (XDP program + AF_XDP sockets; MTU up to 3822)", DefaultValueFactory = _ => "af_packet" };
        backend.AcceptOnlyFromAmong([.. PhysicalPortOptions.BackendNames]);
        var driverThreads = new Option<string>("--driver-threads") { Description = "Driver threads of attached interfaces: one per bridge (one poll() for all its interfaces) or one per port", DefaultValueFactory = _ => new PhysicalPortOptions().DriverPerBridge ? "bridge" : "port" };
        driverThreads.AcceptOnlyFromAmong("bridge", "port");
        var rtPriority = new Option<int>("--driver-rt-priority") { Description = "SCHED_FIFO priority (1..99) of the interfaces' driver threads while awake at most 2 ms at a time (0: none, the default)" };
        var driverSpin = new Option<int>("--driver-spin") { Description = "Microseconds a driver thread keeps polling after its last frame before it sleeps (0: sleep at once)", DefaultValueFactory = _ => new PhysicalPortOptions().DriverSpinMicroseconds };
        var driverCpus = DriverCpusOption.Create();
        var driverNice = new Option<int>("--driver-nice") { Description = "Nice value of the interfaces' driver threads (-20..19; below 0 needs CAP_SYS_NICE)", DefaultValueFactory = _ => new PhysicalPortOptions().DriverNice };
        var txMode = new Option<string>("--af-packet-tx") { Description = "af_packet ports: transmission through a TPACKET_V2 ring (default) or sendmmsg", DefaultValueFactory = _ => new PhysicalPortOptions().TxRing ? "ring" : "sendmmsg" };
        txMode.AcceptOnlyFromAmong("ring", "sendmmsg");
        var xdpMode = new Option<string>("--xdp-mode") { Description = "af_xdp ports: where the XDP program runs: native (in the driver), generic (after the kernel built the skb; super-frames keep their offloads through a packet socket) or auto (generic on a veth, else native, falling back to generic)", DefaultValueFactory = _ => new PhysicalPortOptions().XdpMode };
        xdpMode.AcceptOnlyFromAmong("auto", "native", "generic");
        var fastPath = new Option<string>("--kernel-fast-path") { Description = "af_packet ports: unicast frames between two attached interfaces are forwarded in the kernel's receive path by BPF programs that follow the bridge's learning table (on), or all by the switch's driver thread (off)", DefaultValueFactory = _ => new PhysicalPortOptions().KernelFastPath ? "on" : "off" };
        fastPath.AcceptOnlyFromAmong("on", "off");
        var configs = new Argument<string[]>("DOMAIN.cfg") { Description = "xl-style domain configs to create", Arity = ArgumentArity.ZeroOrMore };
        var cmd = new Command("run", "Run a host in the foreground until interrupted: attach interfaces, create domains, print counters on exit.")
        {
            model, attach, seconds, interval, drvdom, backend, driverThreads, rtPriority, driverSpin, driverCpus, driverNice, txMode, xdpMode, fastPath, configs,
        };
        cmd.SetAction(p => Run(IoModels.Parse(p.GetValue(model)!), p.GetValue(attach) ?? [], p.GetValue(configs) ?? [],
            p.GetValue(seconds), p.GetValue(interval), p.GetValue(drvdom), p.GetValue(backend)!, p.GetValue(driverThreads) == "bridge", p.GetValue(rtPriority), p.GetValue(driverSpin), p.GetValue(driverCpus), p.GetValue(driverNice), p.GetValue(txMode) == "ring", p.GetValue(xdpMode)!, p.GetValue(fastPath) == "on"));
        return cmd;
    }

    private static int Run(IoModel model, string[] attach, string[] configs, double seconds, double interval, bool drvdom, string backend, bool driverPerBridge, int rtPriority, int driverSpin, string? driverCpus, int driverNice, bool txRing, string xdpMode, bool kernelFastPath)
    {
        // Parse every config before touching anything: a bad line stops the run with file:line:key.
        var parsed = new List<DomainConfig>();
        foreach (string path in configs)
        {
            DomainConfig cfg;
            try
            {
                cfg = XlConfig.Load(path);
            }
            catch (Exception e) when (e is XlConfigException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"hypernf run: {e.Message}");
                return 1;
            }
            foreach (string n in cfg.Notices) Console.Error.WriteLine($"{path}: {n}");
            parsed.Add(cfg);
        }
        using var stop = new ManualResetEventSlim();
        using var sigInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
        using var sigTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });

        if (!DriverCpusOption.TryParse(driverCpus, out var cpuSet, out bool follow, out string cpuErr))
        {
            Console.Error.WriteLine($"hypernf run: --driver-cpus: {cpuErr}");
            return 1;
        }
        var portOptions = new PhysicalPortOptions
        {
            Backend = backend, DriverPerBridge = driverPerBridge, DriverRealtimePriority = rtPriority, DriverSpinMicroseconds = driverSpin,
            DriverCpus = cpuSet, DriverFollowsTraffic = follow, DriverNice = driverNice, TxRing = txRing, XdpMode = xdpMode,
            KernelFastPath = kernelFastPath,
        };
        try
        {
            portOptions.Validate();
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"hypernf run: {e.Message}");
            return 1;
        }
        var host = new Host { DefaultIoModel = model };
        string? cpuWarning = host.EnableCpuControl();
        if (cpuWarning is not null) Console.Error.WriteLine($"hypernf: {cpuWarning}");
        host.Settings.DriverDomainTxSync = drvdom;
        var ports = new PhysicalPorts(host, portOptions) { DriverDomainTxSync = drvdom };
        int rc = 0;
        try
        {
            // What the parser cannot know (CPUs of this machine, nf names, nf_args) is checked
            // against the host before anything is attached, still as file:line: key: errors.
            var specs = parsed.Select(c => DomainSpecs.ForHost(c, host)).ToList();
            foreach (string a in attach)
            {
                var port = ports.Attach(a);
                Console.WriteLine($"attached {port.InterfaceName} to {port.BridgeName} (link {port.Link.ToString().ToLowerInvariant()}, mtu {port.Backend.Mtu}, {port.Backend.Description}, kernel fast path {port.GetStatistics().KernelPath})");
            }
            while (ports.TryDequeueEvent(out var attachEvent)) Console.WriteLine(attachEvent);
            foreach (var spec in specs)
            {
                var d = host.Create(spec);
                Console.WriteLine($"created domain {d.Name} (id {d.Id}, {d.IoModel.Key()}, vcpus {d.VCpus.Count}, nf {d.Guest?.Name}, ports {string.Join(' ', d.Ports.Select(x => x.Name))})");
            }
            Console.WriteLine($"running; Ctrl-C or SIGTERM to stop (pid {Environment.ProcessId})");
            var started = DateTime.UtcNow;
            var snap = CpuAccounting.Sample(host.Domains);
            var nextStatus = interval > 0 ? started.AddSeconds(interval) : DateTime.MaxValue;
            while (true)
            {
                // Events (link changes, re-binds, the first drop of each cause with its fix) as they
                // happen; the status line every interval.
                if (stop.Wait(TimeSpan.FromMilliseconds(250))) break;
                while (host.TryDequeueEvent(out var ev)) Console.Error.WriteLine($"hypernf: {ev}");
                while (ports.TryDequeueEvent(out var pev)) Console.WriteLine($"[{(DateTime.UtcNow - started).TotalSeconds,6:F0}s] {pev}");
                if (interval > 0 && DateTime.UtcNow >= nextStatus)
                {
                    nextStatus = DateTime.UtcNow.AddSeconds(interval);
                    var now = CpuAccounting.Sample(host.Domains);
                    var cpu = CpuAccounting.Between(snap, now);
                    snap = now;
                    Console.WriteLine($"[{(DateTime.UtcNow - started).TotalSeconds,6:F0}s] {StatusLine(host, ports)}" +
                                      (cpu.Count > 0 ? "  " + string.Join("  ", cpu.Select(c => $"{c.Domain} {c.VCpuPct:F0}%{(c.BackendPct > 0 ? $"+{c.BackendPct:F0}%" : "")}")) : ""));
                }
                if (seconds > 0 && (DateTime.UtcNow - started).TotalSeconds >= seconds) break;
            }
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException or XlConfigException)
        {
            Console.Error.WriteLine($"hypernf run: {e.Message}");
            rc = 1;
        }
        finally
        {
            Console.WriteLine("stopping: destroying domains, detaching interfaces ...");
            var portStats = ports.List().Select(x => x.GetStatistics()).ToList();
            foreach (var d in host.Domains) host.Destroy(d);
            var bridges = host.Switch.Bridges.Select(b => b.GetStatistics()).ToList();
            ports.Dispose();
            host.Dispose();
            PrintCounters(bridges, portStats);
        }
        return rc;
    }

    /// <summary>delivered and dropped per bridge (drops by reason), then per port its link and drops by direction and reason.</summary>
    internal static string StatusLine(Host host, PhysicalPorts ports)
    {
        var parts = new List<string>();
        foreach (var b in host.Switch.Bridges)
        {
            var s = b.GetStatistics();
            string drops = s.Dropped == 0 ? "" : " (" + string.Join(", ", DropReasons.All.Where(r => s.Drops[(int)r] != 0).Select(r => $"{r.Key()} {s.Drops[(int)r]}")) + ")";
            parts.Add($"{b.Name}: delivered {s.Delivered} dropped {s.Dropped}{drops}");
        }
        foreach (var p in ports.List())
        {
            var s = p.GetStatistics();
            string text = $"{p.Name} {s.Link} rx {s.RxPackets} tx {s.TxPackets}";
            if (s.KernelRxPackets + s.KernelTxPackets > 0) text += $" kernel rx {s.KernelRxPackets} tx {s.KernelTxPackets}";
            if (s.TotalRxDrops > 0) text += " rx drops (" + string.Join(", ", PortDropReasons.All.Where(r => s.RxDrop(r) != 0).Select(r => $"{r.Key()} {s.RxDrop(r)}")) + ")";
            if (s.TotalTxDrops > 0) text += " tx drops (" + string.Join(", ", PortDropReasons.All.Where(r => s.TxDrop(r) != 0).Select(r => $"{r.Key()} {s.TxDrop(r)}")) + ")";
            if (s.Rebinds > 0) text += $" rebinds {s.Rebinds}";
            parts.Add(text);
        }
        return parts.Count == 0 ? "no bridges" : string.Join("; ", parts);
    }

    private static string DropText(long[] drops) =>
        drops.Sum() == 0 ? "0" : string.Join(", ", PortDropReasons.All.Where(r => drops[(int)r] != 0).Select(r => $"{r.Key()} {drops[(int)r]}"));

    private static void PrintCounters(IReadOnlyList<BridgeStatistics> bridges, IReadOnlyList<PhysicalPortStatistics> ports)
    {
        var t = new Table().AddColumns("bridge", "ports", "sent", "delivered", "dropped", "drops by reason", "unaccounted", "MACs");
        foreach (var b in bridges)
            t.AddRow(b.Name, $"{b.Ports}", $"{b.Sent}", $"{b.Delivered}", $"{b.Dropped}",
                Markup.Escape(b.Dropped == 0 ? "none" : string.Join(", ", DropReasons.All.Where(r => b.Drops[(int)r] != 0).Select(r => $"{r.Key()} {b.Drops[(int)r]}"))),
                $"{b.Unaccounted}", $"{b.TableEntries}/{b.TableCapacity}");
        if (bridges.Count > 0) AnsiConsole.Write(t);
        if (ports.Count == 0) return;
        var pt = new Table().AddColumns("port", "interface", "ifindex", "link", "rebinds", "rx pkts", "rx bytes", "tx pkts", "tx bytes", "cut-through", "kernel rx", "kernel tx", "rx drops", "tx drops");
        foreach (var s in ports)
            pt.AddRow(s.Name, s.Interface, $"{s.InterfaceIndex}", s.Link, $"{s.Rebinds}", $"{s.RxPackets}", $"{s.RxBytes}", $"{s.TxPackets}", $"{s.TxBytes}", $"{s.TxCutThrough}",
                $"{s.KernelRxPackets}", $"{s.KernelTxPackets}", Markup.Escape(DropText(s.RxDrops)), Markup.Escape(DropText(s.TxDrops)));
        AnsiConsole.Write(pt);
    }
}
