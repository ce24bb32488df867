using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using HyperNF.Control;
using HyperNF.Hypervisor;
using Spectre.Console;

namespace HyperNF.Cli.Commands;

/// <summary>
/// The toolstack: <c>hypernf daemon</c> and the commands that talk to it over its socket
/// (xl's create/list/destroy/pause/unpause/vcpu-pin/sched-credit2, netmap's vale-ctl and
/// pkt-gen, xennet_ctrl's ctl, and set/get/stats/top/io-model). Protocol: docs/control-protocol.md.
/// Exit codes: 0 success, 1 refused (one-line reason on stderr), 2 no daemon reachable.
/// </summary>
public static partial class ToolstackCommands
{
    /// <summary>
    /// Called by <c>hypernf daemon</c> after the host and daemon are built and before the socket
    /// opens: the place to install <see cref="ControlDaemon.Attacher"/> (physical interfaces)
    /// and <see cref="Host.CpuPolicy"/> (cgroups).
    /// </summary>
    public static Action<Host, ControlDaemon>? ConfigureDaemon { get; set; }

    public static IEnumerable<Command> Create() =>
    [
        Daemon(), CreateDomain(), List(), DomainOp("destroy", "Destroy a domain (xl destroy): stop its vCPUs, detach its ports, free its memory."),
        DomainOp("pause", "Pause a domain's vCPUs (xl pause)."), DomainOp("unpause", "Resume a paused domain (xl unpause)."),
        VcpuPin(), SchedCredit2(), ValeCtl(), Ctl(), Set(), Get(), Stats(), Top(), PacketGen(), IoModelCommand(), ConsoleCommand(), Capture(),
        Shutdown(), VcpuList(), Info(), Uptime(), NetworkList(),
        Refusal("network-attach", "xl network-attach: refused here (vifs are fixed at create)"), Refusal("network-detach", "xl network-detach: refused here (vifs are fixed at create)"),
    ];

    private const int Refused = 1;
    private const int Unreachable = 2;

    private static Option<string?> SocketOption() => new("--socket")
    {
        Description = $"The daemon's socket (default: ${ControlProtocol.SocketEnvironmentVariable}, else {ControlProtocol.DefaultSocketPath})",
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Print the daemon's answer as JSON (for scripts)" };

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"hypernf: {ControlProtocol.OneLine(message)}");
        return Refused;
    }

    /// <summary>Connects, runs <paramref name="body"/>, and turns refusals into one line on stderr and an exit code.</summary>
    private static int WithDaemon(ParseResult p, Option<string?> socket, Func<ControlClient, int> body)
    {
        try
        {
            using var client = ControlClient.Connect(ControlProtocol.ResolveSocketPath(p.GetValue(socket)));
            return body(client);
        }
        catch (ControlUnavailableException e)
        {
            Console.Error.WriteLine($"hypernf: {ControlProtocol.OneLine(e.Message)}");
            return Unreachable;
        }
        catch (ControlException e)
        {
            return Fail(e.Message);
        }
    }

    private static void PrintJson(JsonElement e) => Console.WriteLine(JsonSerializer.Serialize(e, ControlProtocol.JsonIndented));

    private static T As<T>(JsonElement e) => e.Deserialize<T>(ControlProtocol.Json)!;

    private static string Esc(string? s) => Markup.Escape(s ?? "");

    private static string F(double v, string format = "F1") => v.ToString(format, CultureInfo.InvariantCulture);

    // ---------------------------------------------------------------- daemon

    private static Command Daemon()
    {
        var socket = SocketOption();
        var backend = new Option<string>("--port-backend") { Description = "How interfaces attached with vale-ctl -a are opened: af_packet or af_xdp", DefaultValueFactory = _ => "af_packet" };
        backend.AcceptOnlyFromAmong([.. HyperNF.Ports.PhysicalPortOptions.BackendNames]);
        var fastPath = new Option<string>("--kernel-fast-path") { Description = "af_packet interfaces: unicast frames between two of a bridge's interfaces forwarded in the kernel's receive path following the bridge's learning table (on), or all by the switch (off)", DefaultValueFactory = _ => "on" };
        fastPath.AcceptOnlyFromAmong("on", "off");
        var ioModel = new Option<string>("--io-model")
        {
            Description = "I/O model of domains whose config sets no io_model: hypercall, split or merge (change later with hypernf io-model)",
            DefaultValueFactory = _ => "hypercall",
        };
        var metrics = new Option<string?>("--metrics")
        {
            Description = "Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464): ports, drops by reason, bridges, domains",
            HelpName = "ADDR:PORT",
        };
        var cmd = new Command("daemon", "Run the host: bridges, ports and domains, controlled over a Unix socket (mode 0600). SIGTERM or Ctrl-C stops it cleanly.")
        {
            socket, ioModel, backend, fastPath, metrics,
        };
        cmd.SetAction(p =>
        {
            string path = ControlProtocol.ResolveSocketPath(p.GetValue(socket));
            var model = IoModels.Parse(p.GetValue(ioModel)!);
            using var host = new Host { DefaultIoModel = model };
            var daemon = new ControlDaemon(host, new ControlDaemonOptions
            {
                SocketPath = path,
                Log = line => Console.Error.WriteLine($"hypernf daemon: {line}"),
            });
            // Kernel CPU enforcement (cgroups) and physical interfaces, unless a test replaced them.
            if (host.EnableCpuControl() is { } cpuWarning) Console.Error.WriteLine($"hypernf daemon: {cpuWarning}");
            daemon.Attacher = new PhysicalPortAttacher(new HyperNF.Ports.PhysicalPorts(host, new HyperNF.Ports.PhysicalPortOptions { Backend = p.GetValue(backend)!, KernelFastPath = p.GetValue(fastPath) == "on" })
            {
                // Link changes, re-binds and the first drop of each cause (with the fix), as they happen.
                OnEvent = line => Console.Error.WriteLine($"hypernf daemon: {line}"),
            });
            ConfigureDaemon?.Invoke(host, daemon);
            using var exporter = MetricsExporter.Start(p.GetValue(metrics), host, out string? metricsError);
            if (metricsError is not null)
            {
                Console.Error.WriteLine($"hypernf daemon: {metricsError}");
                daemon.Dispose();
                return Refused;
            }
            try
            {
                daemon.Start();
            }
            catch (DaemonStartException e)
            {
                Console.Error.WriteLine($"hypernf daemon: {ControlProtocol.OneLine(e.Message)}");
                return Refused;
            }
            if (exporter is not null) Console.Error.WriteLine($"hypernf daemon: metrics at {exporter.Url}");
            var signals = new List<PosixSignalRegistration>();
            foreach (var sig in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT, PosixSignal.SIGHUP })
                signals.Add(PosixSignalRegistration.Create(sig, ctx =>
                {
                    ctx.Cancel = true;
                    daemon.RequestStop();
                }));
            try
            {
                daemon.WaitForStopRequest();
                Console.Error.WriteLine("hypernf daemon: stopping");
                daemon.Stop();
            }
            finally
            {
                foreach (var s in signals) s.Dispose();
            }
            return 0;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- domains

    /// <summary>Largest config sent: it travels JSON-escaped in one request line of at most 1 MiB.</summary>
    private const int MaxConfigBytes = 256 * 1024;

    /// <summary>xl commands and flags that do something else here, and how (each refused with this).</summary>
    internal static readonly Dictionary<string, string> XlDifferences = new(StringComparer.Ordinal)
    {
        ["create -c"] = "xl create -c attaches to the new domain's console at once; here create it, then run hypernf console D -f (VM domains have a console; thread domains, whose NF runs inside the daemon, do not)",
        ["network-attach"] = "vifs are fixed when a domain is created here (its memory region holds exactly its vifs' rings); destroy it and create it again with the new vif list (hypernf create CFG 'vif=[...]')",
        ["network-detach"] = "vifs are fixed when a domain is created here (its memory region holds exactly its vifs' rings); destroy it and create it again without that vif",
    };

    private static Command CreateDomain()
    {
        var socket = SocketOption();
        var config = new Argument<string>("config") { Description = "xl domain config file (name, vcpus, cpus, vif=[\"type=nmif,bridge=valex:lx0\"], nf, ...)" };
        var overrides = new Argument<string[]>("KEY=VALUE") { Description = "Settings that replace the file's (xl's overrides), e.g. vcpus=2 'name=\"nf2\"'", Arity = ArgumentArity.ZeroOrMore };
        var console = new Option<bool>("-c") { Description = "xl: attach to the console (refused: create, then hypernf console D -f)" };
        var cmd = new Command("create", "Create a domain from an xl config (xl create CFG [KEY=VALUE ...]). Settings without effect here are listed as notices.")
        {
            config, overrides, console, socket,
        };
        cmd.SetAction(p =>
        {
            if (p.GetValue(console)) return Fail($"create -c: {XlDifferences["create -c"]}");
            string path = p.GetValue(config)!;
            string text;
            if (Directory.Exists(path)) return Fail($"{path} is a directory; give the domain's config file");
            try
            {
                var info = new FileInfo(path);
                if (info.Exists && info.Length > MaxConfigBytes) return Fail($"{path}: {info.Length} bytes is too large for a domain config (at most {MaxConfigBytes})");
                text = File.ReadAllText(path);
            }
            catch (FileNotFoundException)
            {
                return Fail($"{path}: no such file");
            }
            catch (DirectoryNotFoundException)
            {
                return Fail($"{path}: no such file (its directory does not exist)");
            }
            catch (UnauthorizedAccessException)
            {
                return Fail($"{path}: permission denied");
            }
            catch (IOException e)
            {
                return Fail($"cannot read {path}: {e.Message}");
            }
            var extra = p.GetValue(overrides) ?? [];
            return WithDaemon(p, socket, c =>
            {
                // kernel= paths relative to the config are resolved by the daemon against its directory.
                string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? Directory.GetCurrentDirectory();
                var r = As<CreateResult>(c.Call("create", new { file = path, text, dir, overrides = extra }));
                foreach (string n in r.Notices) Console.Error.WriteLine($"notice: {n}");
                var d = r.Domain;
                Console.WriteLine($"created {(d.Kind == "vm" ? $"VM domain ({d.Kvm})" : "domain")} {d.Name} (id {d.Id}): {d.Vcpus} vCPU(s) on CPUs {string.Join(" ", d.Cpus)}, {(d.Kind == "vm" ? "kernel" : "nf")} {d.Nf ?? "-"}, " +
                                  $"io model {d.IoModel}, ports {(d.Ports.Count == 0 ? "none" : string.Join(", ", d.Ports))}");
                return 0;
            });
        });
        return cmd;
    }

    private static Command List()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var domains = new Argument<string[]>("domain") { Description = "Only these domains (names or ids)", Arity = ArgumentArity.ZeroOrMore };
        var longFormat = new Option<bool>("--long", "-l") { Description = "Everything about each domain, as JSON (xl list -l)" };
        var cmd = new Command("list", "List domains (xl list [-l] [DOMAIN...]): state, vCPUs, CPU % over the last sample interval, weight, cap, ports.")
        {
            domains, longFormat, socket, json,
        };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var result = c.Call("list");
            var r = As<ListResult>(result);
            var only = p.GetValue(domains) ?? [];
            if (only.Length > 0)
            {
                var picked = new List<DomainInfo>();
                foreach (string name in only)
                {
                    var d = r.Domains.FirstOrDefault(x => x.Name == name || x.Id.ToString(CultureInfo.InvariantCulture) == name)
                        ?? throw new ControlException(ControlErrorCodes.NotFound, r.Domains.Count == 0
                            ? $"no domain '{name}': no domains exist"
                            : $"no domain '{name}' (domains: {string.Join(", ", r.Domains.Select(x => x.Name))})");
                    if (!picked.Contains(d)) picked.Add(d);
                }
                r = r with { Domains = picked };
            }
            if (p.GetValue(longFormat))
            {
                Console.WriteLine(JsonSerializer.Serialize(r.Domains, ControlProtocol.JsonIndented));
                return 0;
            }
            if (p.GetValue(json))
            {
                if (only.Length == 0) PrintJson(result);
                else Console.WriteLine(JsonSerializer.Serialize(r, ControlProtocol.JsonIndented));
                return 0;
            }
            var t = new Table().Border(TableBorder.None).AddColumns("Name", "ID", "Kind", "State", "VCPUs", "CPUs", "CPU%", "Weight", "Cap", "I/O", "NF", "Ports");
            foreach (var col in new[] { 1, 4, 6, 7, 8 }) t.Columns[col].RightAligned();
            foreach (var d in r.Domains)
            {
                string cpu = d.BackendPct > 0 ? $"{F(d.CpuPct)} (+{F(d.BackendPct)})" : F(d.CpuPct);
                string kind = d.Kind == "vm" ? $"vm ({d.Kvm})" : d.Kind;
                string state = d.ExitStatus is { } st ? $"{d.State}({st})" : d.State;
                t.AddRow(Esc(d.Name), $"{d.Id}", Esc(kind), Esc(state), $"{d.Vcpus}", Esc(string.Join(" ", d.Cpus)), cpu, $"{d.Weight}", $"{d.Cap}",
                    Esc(d.IoModel), Esc(d.Nf ?? "-"), Esc(d.Ports.Count == 0 ? "-" : string.Join(",", d.Ports)));
            }
            AnsiConsole.Write(t);
            foreach (var d in r.Domains.Where(d => d.CrashReason is not null))
            {
                Console.WriteLine($"{d.Name}: {d.State}: {d.CrashReason}");
                if (d.CrashRegisters is { } regs)
                    foreach (string line in regs.Split('\n')) Console.WriteLine($"  {line}");
            }
            return 0;
        }));
        return cmd;
    }

    private static Command ConsoleCommand()
    {
        var socket = SocketOption();
        var domain = new Argument<string>("domain") { Description = "Domain name or id (a VM domain)" };
        var follow = new Option<bool>("-f", "--follow") { Description = "Keep printing new output until the domain stops (Ctrl-C to leave)" };
        var cmd = new Command("console", "Print a VM domain's console: what its guest wrote (xl console).") { domain, follow, socket };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            long from = 0;
            while (true)
            {
                var r = As<ConsoleResult>(c.Call("console", new { domain = p.GetValue(domain), from }));
                Console.Write(r.Text);
                from = r.Next;
                if (!p.GetValue(follow) || r.State is not ("running" or "paused")) return 0;
                Thread.Sleep(200);
            }
        }));
        return cmd;
    }

    private static Command DomainOp(string op, string description)
    {
        var socket = SocketOption();
        var domain = new Argument<string>("domain") { Description = "Domain name or id" };
        var cmd = new Command(op, description) { domain, socket };
        var force = new Option<bool>("-f") { Description = "Force (xl destroy -f): destroy is always immediate here, so this changes nothing" };
        if (op == "destroy") cmd.Options.Add(force);
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var r = c.Call(op, new { domain = p.GetValue(domain) });
            if (op == "destroy") Console.WriteLine(As<DoneResult>(r).Message);
            else
            {
                var d = As<DomainInfo>(r);
                Console.WriteLine($"domain {d.Name} (id {d.Id}) is {d.State}");
            }
            return 0;
        }));
        return cmd;
    }

    private static Command VcpuPin()
    {
        var socket = SocketOption();
        var domain = new Argument<string>("domain") { Description = "Domain name or id" };
        var vcpu = new Argument<string>("vcpu") { Description = "vCPU number, or all" };
        var cpus = new Argument<string>("cpus") { Description = "CPU list: 1, 0-1, 0,2, or all" };
        var cmd = new Command("vcpu-pin", "Pin a domain's vCPU(s) to CPUs (xl vcpu-pin D V CPUS).") { domain, vcpu, cpus, socket };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var r = As<VcpuPinResult>(c.Call("vcpu-pin", new { domain = p.GetValue(domain), vcpu = p.GetValue(vcpu), cpus = p.GetValue(cpus) }));
            foreach (var v in r.Vcpus) Console.WriteLine($"{r.Domain} vCPU {v.Vcpu}: CPUs {v.Cpus}");
            return 0;
        }));
        return cmd;
    }

    private static Command SchedCredit2()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var domain = new Option<string?>("--domain", "-d") { Description = "Domain name or id" };
        var weight = new Option<int?>("--weight", "-w") { Description = "Weight, 1..65535 (default 256)" };
        var cap = new Option<int?>("--cap", "-c") { Description = "Cap in % of one CPU, 0 = none" };
        var sched = new Option<bool>("--schedparam", "-s") { Description = "Scheduler-wide parameters (with -r)" };
        var pool = new Option<string?>("--cpupool", "-p") { Description = "CPU pool (only Pool-0 exists)" };
        var rate = new Option<int?>("--ratelimit_us", "-r") { Description = "Scheduler rate limit in µs (only 0: there is none)" };
        var cmd = new Command("sched-credit2", "Get or set a domain's weight and cap (xl sched-credit2 -d D [-w W] [-c C]); only the given values change.")
        {
            domain, weight, cap, sched, pool, rate, socket, json,
        };
        cmd.SetAction(p =>
        {
            if (p.GetValue(sched) || p.GetValue(rate) is not null)
            {
                if (p.GetValue(pool) is { } pl && pl != "Pool-0") return Fail($"there is no CPU pool '{pl}'; HyperNF has one pool, Pool-0");
                int r = p.GetValue(rate) ?? 0;
                if (r != 0)
                    return Fail($"cannot set a scheduler rate limit of {r} µs: domains are Linux threads and the kernel's scheduler has no rate limit to set; nothing was changed");
                Console.WriteLine("Cpupool Pool-0: ratelimit=0us (HyperNF's scheduler has no rate limit; nothing to change)");
                return 0;
            }
            return WithDaemon(p, socket, c =>
            {
                int? w = p.GetValue(weight), cp = p.GetValue(cap);
                var result = c.Call("sched-credit2", new { domain = p.GetValue(domain), weight = w, cap = cp });
                var r = As<ScheduleResult>(result);
                if (w is not null || cp is not null)
                {
                    if (r.Domains.Any(d => !d.Enforced))
                        Console.Error.WriteLine("notice: weight and cap are recorded; no CPU policy is installed in the daemon to enforce them");
                    if (p.GetValue(json)) PrintJson(result);
                    return 0;
                }
                if (p.GetValue(json))
                {
                    PrintJson(result);
                    return 0;
                }
                Console.WriteLine($"{"Name",-32} {"ID",5} {"Weight",6} {"Cap",4}");
                foreach (var d in r.Domains) Console.WriteLine($"{d.Name,-32} {d.Id,5} {d.Weight,6} {d.Cap,4}");
                return 0;
            });
        });
        return cmd;
    }

    // ---------------------------------------------------------------- switch

    /// <summary>What netmap's vale-ctl flags do there, and why HyperNF does something else (each refused with this).</summary>
    internal static readonly Dictionary<string, string> ValeCtlDifferences = new(StringComparer.Ordinal)
    {
        ["-n"] = "in netmap, vale-ctl -n NAME creates a persistent VALE port; HyperNF has no persistent ports (a port is a domain's vif or an interface attached with -a) and its bridges come and go with their ports, as VALE's do; nothing was done",
        ["-r"] = "in netmap, vale-ctl -r NAME removes a persistent VALE port; HyperNF has none, and a bridge is removed when its last port leaves (destroy the domain or vale-ctl -d the interface); nothing was done",
        ["-h"] = "in netmap, vale-ctl -h BRIDGE:IF attaches IF together with its host stack (the host rings); HyperNF attaches the NIC side only, with -a BRIDGE:IF (AF_PACKET or AF_XDP), and the host's own traffic keeps the kernel's path; nothing was done",
        ["-p"] = "netmap's polling threads (-p) are not used: the switch runs in each sender's own context (the hypercall), and an interface port has its own driver thread; nothing was done",
        ["-P"] = "netmap's polling threads (-P stops them) are not used: the switch runs in each sender's own context, so there is nothing to stop; nothing was done",
        ["-C"] = "ring and slot counts (-C) belong to a domain's memory region here (set when the domain is created), not to a VALE port; nothing was changed",
        ["-m"] = "memory allocators (-m) do not exist here: every domain has its own region and every interface port a host-owned one; nothing was changed",
    };

    private static Command ValeCtl()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var attach = new Option<string?>("-a") { Description = "Attach host interface IF to BRIDGE (the bridge is created if needed)", HelpName = "BRIDGE:IF" };
        var detach = new Option<string?>("-d") { Description = "Detach interface port PORT from BRIDGE (the bridge goes with its last port)", HelpName = "BRIDGE:PORT" };
        var list = new Option<string?>("-l") { Description = "List bridges and their ports (the default); with BRIDGE or BRIDGE:PORT, only that one", HelpName = "BRIDGE[:PORT]", Arity = ArgumentArity.ZeroOrOne };
        var hdr = new Option<string?>("-H") { Description = "Set the virtio-net header length of a port (netmap's PORT_HDR_SET): 0, 10 or 12", HelpName = "BRIDGE:PORT=LEN" };
        var refused = new (Option Option, string Help)[]
        {
            (new Option<string?>("-n") { HelpName = "NAME" }, "netmap: create a persistent VALE port (refused, see the message)"),
            (new Option<string?>("-r") { HelpName = "NAME" }, "netmap: remove a persistent VALE port (refused)"),
            (new Option<string?>("-h") { HelpName = "BRIDGE:IF" }, "netmap: attach IF with its host stack (refused; use -a)"),
            (new Option<string?>("-p") { HelpName = "BRIDGE:PORT", Arity = ArgumentArity.ZeroOrOne }, "netmap: start a polling thread (refused)"),
            (new Option<string?>("-P") { HelpName = "BRIDGE:PORT", Arity = ArgumentArity.ZeroOrOne }, "netmap: stop a polling thread (refused)"),
            (new Option<string?>("-C") { HelpName = "SPEC" }, "netmap: ring and slot counts (refused)"),
            (new Option<string?>("-m") { HelpName = "ID" }, "netmap: memory allocator (refused)"),
        };
        var cmd = new Command("vale-ctl", "VALE bridges (netmap's vale-ctl): -a attach an interface, -d detach it, -l list, -H a port's virtio-net header length. Bridges are created by their first port and removed with their last. Flags of netmap's that do something else here are refused with the difference (docs/compatibility.md).")
        {
            attach, detach, list, hdr, socket, json,
        };
        foreach (var (o, help) in refused)
        {
            o.Description = help;
            cmd.Options.Add(o);
        }
        cmd.SetAction(p =>
        {
            var given = refused.Where(x => p.GetResult(x.Option) is not null).Select(x => x.Option.Name).ToList();
            if (given.Count > 0) return Fail($"vale-ctl {given[0]}: {ValeCtlDifferences[given[0]]}");
            bool listing = p.GetResult(list) is not null;
            int count = new[] { p.GetValue(attach), p.GetValue(detach), p.GetValue(hdr) }.Count(v => v is not null) + (listing ? 1 : 0);
            if (count > 1) return Fail("vale-ctl: give one of -a, -d, -l, -H");
            return WithDaemon(p, socket, c =>
            {
                if (p.GetValue(hdr) is { } h)
                {
                    int eq = h.LastIndexOf('=');
                    if (eq < 0 || !int.TryParse(h.AsSpan(eq + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out int len))
                        throw new ControlException(ControlErrorCodes.Invalid, $"vale-ctl -H {h}: write BRIDGE:PORT=LEN, e.g. valex:vtx=10");
                    var (b, port) = SplitPort(h[..eq], "-H", "valex:vtx=10");
                    Console.WriteLine(As<DoneResult>(c.Call("port-hdr-set", new { bridge = b, port, length = len })).Message);
                    return 0;
                }
                if (p.GetValue(attach) is { } a)
                {
                    var (b, iface) = SplitPort(a, "-a", "valex:eth1");
                    Console.WriteLine(As<DoneResult>(c.Call("vale-attach", new { bridge = b, @interface = iface })).Message);
                    return 0;
                }
                if (p.GetValue(detach) is { } d)
                {
                    var (b, port) = SplitPort(d, "-d", "valex:eth1");
                    Console.WriteLine(As<DoneResult>(c.Call("vale-detach", new { bridge = b, port })).Message);
                    return 0;
                }
                string? only = p.GetValue(list);
                var result = c.Call("vale-list");
                var r = As<ValeListResult>(result);
                if (only is not null)
                {
                    int colon = only.IndexOf(':');
                    string bn = colon < 0 ? only : only[..colon];
                    var bridge = r.Bridges.FirstOrDefault(x => x.Name == bn)
                        ?? throw new ControlException(ControlErrorCodes.NotFound, r.Bridges.Count == 0 ? $"no bridge '{bn}': no bridges exist" : $"no bridge '{bn}' (bridges: {string.Join(", ", r.Bridges.Select(x => x.Name))})");
                    if (colon >= 0)
                    {
                        string pn = only[(colon + 1)..];
                        var port = bridge.Ports.FirstOrDefault(x => x.Port == pn)
                            ?? throw new ControlException(ControlErrorCodes.NotFound, $"bridge {bn} has no port '{pn}'{(bridge.Ports.Count == 0 ? "" : $" (ports: {string.Join(", ", bridge.Ports.Select(x => x.Port))})")}");
                        bridge = bridge with { Ports = [port] };
                    }
                    r = r with { Bridges = [bridge] };
                }
                if (p.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(r, ControlProtocol.JsonIndented));
                    return 0;
                }
                if (r.Persistent.Count > 0)
                {
                    // netmap's persistent VALE ports (VALE_NEWIF by a netmap program's vale-ctl -n).
                    var pt = new Table().Border(TableBorder.Rounded).AddColumns("persistent port", "bridge", "registered by", "mem_id", "vnet hdr");
                    foreach (var pp in r.Persistent)
                        pt.AddRow(Esc(pp.Name), Esc(pp.Bridge ?? "-"), Esc(pp.User ?? "-"), $"{pp.MemId}", $"{pp.VirtioHeaderLength}");
                    AnsiConsole.Write(pt);
                }
                if (r.Bridges.Count == 0)
                {
                    Console.WriteLine("no bridges");
                    return 0;
                }
                var t = new Table().Border(TableBorder.Rounded).AddColumns("bridge", "port", "index", "kind", "owner", "up", "interface");
                foreach (var b in r.Bridges)
                {
                    if (b.Ports.Count == 0) t.AddRow(Esc(b.Name), "-", "", "", "", "", "");
                    foreach (var port in b.Ports)
                        t.AddRow(Esc(b.Name), Esc(port.Port), $"{port.Index}", Esc(port.Kind), Esc(port.Owner ?? "-"),
                            // An interface port shows its Linux link state (up, down, removed).
                            port.Interface is { } li ? (li.Link == "up" && port.Up ? "yes" : $"no (link {Esc(li.Link)})") : port.Up ? "yes" : "no",
                            port.Interface is { } i
                                ? Esc($"link {i.Link}, ifindex {i.IfIndex}, mtu {i.Mtu}, {i.Backend}{(i.Rebinds > 0 ? $", rebinds {i.Rebinds}" : "")}, kernel path {i.KernelPath}" +
                                      $"{(i.KernelRxPackets + i.KernelTxPackets > 0 ? $" (rx {i.KernelRxPackets} tx {i.KernelTxPackets})" : "")}" +
                                      $"{(i.Drops.Count > 0 ? ", drops " + string.Join(" ", i.Drops.Select(kv => $"{kv.Key} {kv.Value}")) : "")}{(i.LastError is null ? "" : $"; {i.LastError}")}")
                                : "");
                }
                AnsiConsole.Write(t);
                return 0;
            });
        });
        return cmd;
    }

    private static (string Bridge, string Port) SplitPort(string text, string flag, string example)
    {
        int colon = text.IndexOf(':');
        if (colon <= 0 || colon == text.Length - 1)
            throw new ControlException(ControlErrorCodes.Invalid, $"vale-ctl {flag} {text}: write BRIDGE:NAME, e.g. {example}");
        return (text[..colon], text[(colon + 1)..]);
    }

    private static Command Ctl()
    {
        var socket = SocketOption();
        var op = new Option<int>("-o") { Description = "Op: 1 bridge batch, 2 NIC busy-wait, 3 scheduler min timer, 4 scheduler initial credit, 5 driver-domain txsync", Required = true, HelpName = "OP" };
        var value = new Option<long>("-v") { Description = "Value", Required = true, HelpName = "VAL" };
        var cmd = new Command("ctl", "Set a switch parameter by xennet_ctrl op number (xennet_ctrl -o OP -v VAL). Ops 2-4 cannot be honoured and fail.")
        {
            op, value, socket,
        };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var r = As<CtlResult>(c.Call("ctl", new { op = p.GetValue(op), value = p.GetValue(value) }));
            Console.WriteLine($"{r.Key} = {r.Value} (op {r.Op}, {r.Name})");
            return 0;
        }));
        return cmd;
    }

    private static Command Set()
    {
        var socket = SocketOption();
        var key = new Argument<string>("key") { Description = "bridge_batch, drvdom_txsync, io_model, watchdog_ms, destroy_timeout_ms, sample_ms, backend_cpus" };
        var value = new Argument<string>("value") { Description = "New value" };
        var cmd = new Command("set", "Set a daemon setting by name (see hypernf get).") { key, value, socket };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var r = As<SettingsResult>(c.Call("set", new { key = p.GetValue(key), value = p.GetValue(value) }));
            foreach (var s in r.Settings) Console.WriteLine($"{s.Key} = {s.Value}");
            return 0;
        }));
        return cmd;
    }

    private static Command Get()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var key = new Argument<string?>("key") { Description = "Setting name; all settings when left out", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("get", "Print a daemon setting's value, or all settings with their meaning.") { key, socket, json };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            string? k = p.GetValue(key);
            var result = c.Call("get", new { key = k });
            if (p.GetValue(json))
            {
                PrintJson(result);
                return 0;
            }
            var r = As<SettingsResult>(result);
            if (k is not null)
            {
                Console.WriteLine(r.Settings[0].Value);
                return 0;
            }
            var t = new Table().Border(TableBorder.None).AddColumns("setting", "value", "meaning");
            foreach (var s in r.Settings) t.AddRow(Esc(s.Key), Esc(s.Value), Esc(s.Description));
            AnsiConsole.Write(t);
            return 0;
        }));
        return cmd;
    }

    private static Command IoModelCommand()
    {
        var socket = SocketOption();
        var model = new Argument<string?>("model") { Description = "hypercall, split or merge; prints the current one when left out", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("io-model", "Get or set the I/O model of new domains (a config's io_model= overrides it).") { model, socket };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var r = As<SettingsResult>(c.Call("io-model", new { model = p.GetValue(model) }));
            Console.WriteLine(r.Settings[0].Value);
            return 0;
        }));
        return cmd;
    }

    // ---------------------------------------------------------------- stats and top

    private static Command Stats()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var port = new Argument<string?>("port") { Description = "BRIDGE:PORT or BRIDGE; every bridge when left out", Arity = ArgumentArity.ZeroOrOne };
        var clear = new Option<bool>("--clear") { Description = "Reset the counters shown from now on (testpmd's clear port stats); the switch's lifetime totals, the accounting check and /metrics are kept" };
        var cmd = new Command("stats", "Per-port counters, drops by reason and the learning table.") { port, clear, socket, json };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            if (p.GetValue(clear))
            {
                var cr = As<StatsResult>(c.Call("stats", new { port = p.GetValue(port), clear = true }));
                var names = cr.Cleared ?? [];
                Console.WriteLine(names.Count == 0 ? "no ports to clear" : $"statistics cleared for {names.Count} port(s): {string.Join(", ", names)}");
                return 0;
            }
            var result = c.Call("stats", new { port = p.GetValue(port) });
            if (p.GetValue(json))
            {
                PrintJson(result);
                return 0;
            }
            var r = As<StatsResult>(result);
            if (r.Bridges.Count == 0) Console.WriteLine("no bridges");
            if (r.Kvm is { } kvm) Console.WriteLine($"VM domains run on {kvm}");
            foreach (var b in r.Bridges)
            {
                AnsiConsole.MarkupLine($"[bold]{Esc(b.Name)}[/]: sent {b.Sent} delivered {b.Delivered} flood copies {b.FloodCopies} dropped {b.Dropped}" +
                                       $"{DropText(b.Drops)}{(b.ClearedSAgo is { } ca ? $" (since cleared {F(ca)} s ago)" : "")}, unaccounted {b.Unaccounted} (lifetime); learning table {b.TableEntries}/{b.TableCapacity}; bridge_batch {r.BridgeBatch}");
                var t = new Table().Border(TableBorder.Rounded).AddColumns("port", "owner", "tx pkts", "tx bytes", "rx pkts", "rx bytes", "flood", "dropped", "drops by reason", "ring resets");
                for (int i = 2; i <= 7; i++) t.Columns[i].RightAligned();
                foreach (var pc in b.Ports)
                    t.AddRow(Esc(pc.Name), Esc(pc.Owner is null ? pc.Kind : $"{pc.DomainKind ?? pc.Kind} {pc.Owner}"), $"{pc.TxPackets}", $"{pc.TxBytes}", $"{pc.RxPackets}", $"{pc.RxBytes}",
                        $"{pc.FloodCopies}", $"{pc.Dropped}", Esc(DropText(pc.Drops).TrimStart(' ', '(').TrimEnd(')') is { Length: > 0 } s ? s : "-"), $"{pc.CorruptRingIndex}");
                if (b.Ports.Count > 0) AnsiConsole.Write(t);
                if (b.Learning.Count > 0)
                {
                    var lt = new Table().Border(TableBorder.Simple).AddColumns("MAC", "port", "age s");
                    foreach (var e in b.Learning) lt.AddRow(e.Mac, Esc(e.Port), $"{e.AgeS}");
                    AnsiConsole.Write(lt);
                }
            }
            return 0;
        }));
        return cmd;
    }

    private static string DropText(IReadOnlyDictionary<string, long> drops)
    {
        var nz = drops.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key} {kv.Value}").ToArray();
        return nz.Length == 0 ? "" : $" ({string.Join(", ", nz)})";
    }

    private static Command Top()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var iterations = new Option<int>("--iterations", "-n") { Description = "Frames to show, then exit (0: until Ctrl-C)", DefaultValueFactory = _ => 0 };
        var interval = new Option<double>("--interval", "-i") { Description = "Seconds between frames", DefaultValueFactory = _ => 1.0 };
        var cmd = new Command("top", "A live view of domains (CPU %) and ports (packet rates, drops).") { iterations, interval, socket, json };
        cmd.SetAction(p =>
        {
            int n = p.GetValue(iterations);
            double sec = p.GetValue(interval);
            if (n < 0) return Fail("top: --iterations must be 0 or more");
            if (sec is < 0.05 or > 60) return Fail("top: --interval must be 0.05..60 seconds");
            bool asJson = p.GetValue(json);
            return WithDaemon(p, socket, c =>
            {
                using var stop = new CancellationTokenSource();
                using (StopOnSignals(stop))
                {
                    var args = new { interval_ms = (int)Math.Round(sec * 1000), iterations = n };
                    if (asJson)
                    {
                        c.Stream("top", args, (kind, data) => { if (kind == "top") Console.WriteLine(data.GetRawText()); }, stop.Token, null);
                    }
                    else if (!Console.IsOutputRedirected)
                    {
                        AnsiConsole.Live(new Markup("[grey]waiting for the first sample ...[/]")).AutoClear(false).Start(ctx =>
                        {
                            c.Stream("top", args, (kind, data) =>
                            {
                                if (kind != "top") return;
                                ctx.UpdateTarget(TopView(As<TopSnapshot>(data)));
                                ctx.Refresh();
                            }, stop.Token, null);
                        });
                    }
                    else
                    {
                        c.Stream("top", args, (kind, data) =>
                        {
                            if (kind != "top") return;
                            AnsiConsole.Write(TopView(As<TopSnapshot>(data)));
                            Console.WriteLine();
                        }, stop.Token, null);
                    }
                }
                return 0;
            });
        });
        return cmd;
    }

    private static Rows TopView(TopSnapshot s)
    {
        var head = new Markup($"[bold]hypernf top[/]  frame {s.Iteration}, {F(s.IntervalS, "F2")} s  io_model {Esc(s.IoModel)}  bridge_batch {s.BridgeBatch}  " +
                              $"{s.Domains.Count} domain(s), {s.Ports.Count} port(s)");
        var dt = new Table().Border(TableBorder.Rounded).AddColumns("domain", "id", "state", "vCPUs", "CPU%", "backend%", "weight", "cap", "I/O", "nf");
        foreach (int i in new[] { 1, 3, 4, 5, 6, 7 }) dt.Columns[i].RightAligned();
        foreach (var d in s.Domains)
            dt.AddRow(Esc(d.Name), $"{d.Id}", Esc(d.State), $"{d.Vcpus}", F(d.CpuPct), F(d.BackendPct), $"{d.Weight}", $"{d.Cap}", Esc(d.IoModel), Esc(d.Nf ?? "-"));
        var pt = new Table().Border(TableBorder.Rounded).AddColumns("port", "owner", "tx pps", "rx pps", "tx Mbit/s", "rx Mbit/s", "drops/s", "tx total", "rx total", "dropped");
        for (int i = 2; i <= 9; i++) pt.Columns[i].RightAligned();
        foreach (var p in s.Ports)
            pt.AddRow(Esc(p.Name), Esc(p.Owner is null ? p.Kind : $"{p.Kind} {p.Owner}"), F(p.TxPps, "F0"), F(p.RxPps, "F0"), F(p.TxMbps, "F2"), F(p.RxMbps, "F2"),
                F(p.DropsPs, "F0"), $"{p.TxPackets}", $"{p.RxPackets}", $"{p.Dropped}");
        var items = new List<Spectre.Console.Rendering.IRenderable> { head, dt, pt };
        foreach (string e in s.Events) items.Add(new Markup($"[yellow]{Esc(e)}[/]"));
        return new Rows(items);
    }

    /// <summary>
    /// The first SIGINT (Ctrl-C) or SIGTERM asks the daemon to end the stream, which still
    /// answers (pkt-gen's summary); a second one ends the client at once.
    /// </summary>
    private static IDisposable StopOnSignals(CancellationTokenSource stop)
    {
        var regs = new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM }.Select(sig => PosixSignalRegistration.Create(sig, ctx =>
        {
            if (stop.IsCancellationRequested) return;
            ctx.Cancel = true;
            stop.Cancel();
        })).ToArray();
        return new Registrations(regs);
    }

    private sealed class Registrations(PosixSignalRegistration[] regs) : IDisposable
    {
        public void Dispose()
        {
            foreach (var r in regs) r.Dispose();
        }
    }

    // ---------------------------------------------------------------- pkt-gen

    private static Command PacketGen()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var port = new Option<string>("-i") { Description = "Port to open on a bridge of the daemon, e.g. valex:vtx (created for the run)", Required = true, HelpName = "BRIDGE:PORT" };
        var function = new Option<string>("-f") { Description = "tx, rx (the default, as in netmap), ping (round trips to a pong) or pong (echo)", DefaultValueFactory = _ => "rx", HelpName = "tx|rx|ping|pong" };
        var length = new Option<string[]>("-l") { Description = "Frame length without CRC, 60..9014", HelpName = "LEN", AllowMultipleArgumentsPerToken = false };
        string[][] valued =
        [
            ["-n", "Frames to send or receive (0: no limit)", "COUNT"],
            ["-R", "Rate in frames/s (e.g. 1M)", "RATE"],
            ["-b", "Batch: frames per sync", "BATCH"],
            ["-s", "Source IP[:port] range, e.g. 10.0.0.1-10.0.0.9:1234", "SRC"],
            ["-d", "Destination IP[:port] range", "DST"],
            ["-S", "Source MAC", "MAC"],
            ["-D", "Destination MAC (default broadcast)", "MAC"],
            ["-t", "Stop after this many seconds", "SECONDS"],
            ["-T", "Report interval in ms (default 1000)", "MS"],
            ["-a", "Pin the generator's domain to this CPU", "CPU"],
            ["-w", "Wait this many seconds for the link before starting (netmap's wait_link)", "SECONDS"],
            ["-p", "netmap: threads (refused: one thread per run, see the message)", "THREADS"],
            ["-c", "netmap: cores (refused: one vCPU per run, pin it with -a)", "CORES"],
            ["-P", "netmap: replay a pcap file (refused)", "FILE"],
        ];
        var options = valued.Select(v => new Option<string?>(v[0]) { Description = v[1], HelpName = v[2] }).ToArray();
        string[][] flags =
        [
            ["-z", "Random source address and port (within -s) per frame"],
            ["-Z", "Random destination address and port (within -d) per frame"],
            ["-v", "Verbose: also print the run's details (domain, bridge, other ports)"],
            ["--busy-poll", "Spin instead of sleeping when there is nothing to do (one full core)"],
        ];
        var switches = flags.Select(f => new Option<bool>(f[0]) { Description = f[1] }).ToArray();
        var cmd = new Command("pkt-gen", "netmap's pkt-gen on a port of the running daemon: a temporary domain (pktgen-N) sends or receives; Ctrl-C ends the run with its summary. Flags of netmap's that are not offered are refused with the difference (docs/compatibility.md).")
        {
            port, function, length, socket, json,
        };
        foreach (var o in options) cmd.Options.Add(o);
        foreach (var o in switches) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var args = new List<string> { "-f", p.GetValue(function)! };
            foreach (string l in p.GetValue(length) ?? []) args.AddRange(["-l", l]);
            foreach (var o in options)
                if (p.GetValue(o) is { } v) args.AddRange([o.Name, v]);
            foreach (var o in switches)
                if (p.GetValue(o)) args.Add(o.Name);
            bool asJson = p.GetValue(json);
            bool verbose = args.Contains("-v");
            try
            {
                HyperNF.Tools.PacketGenArgs.Parse(args.Where((_, i) => !(args[i] == "-a" || (i > 0 && args[i - 1] == "-a"))).ToList(), out _);
            }
            catch (ArgumentException e)
            {
                return Fail(e.Message); // refused here, before a domain is made
            }
            return WithDaemon(p, socket, c =>
            {
                using var stop = new CancellationTokenSource();
                using (StopOnSignals(stop))
                {
                    var result = c.Stream("pkt-gen", new { port = p.GetValue(port), args }, (kind, data) =>
                    {
                        if (kind == "started")
                        {
                            var s = As<PacketGenStarted>(data);
                            Console.Error.WriteLine($"pkt-gen: {s.Function} on {s.Port} in domain {s.Domain} (id {s.Id}); Ctrl-C to stop");
                            string bridge = s.Port.Split(':')[0];
                            if (s.NewBridge)
                                Console.Error.WriteLine($"pkt-gen: warning: bridge {bridge} did not exist; it was created for this run and goes away with it " +
                                                        $"({(s.Bridges.Count == 0 ? "no other bridges exist" : "existing bridges: " + string.Join(", ", s.Bridges))})");
                            if (s.OtherPorts == 0 && s.Function == "tx")
                                Console.Error.WriteLine($"pkt-gen: warning: {bridge} has no other port: every frame sent is dropped (counted as no_destination)");
                            if (verbose)
                                Console.Error.WriteLine($"pkt-gen: {bridge} had {s.OtherPorts} other port(s) when the run started");
                        }
                        else if (kind == "interval" && !asJson)
                        {
                            Console.WriteLine(As<PacketGenLine>(data).Line);
                        }
                    }, stop.Token, null);
                    if (asJson) PrintJson(result);
                    else Console.WriteLine(As<PacketGenResult>(result).Summary);
                }
                return 0;
            });
        });
        return cmd;
    }
}
