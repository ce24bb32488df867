using System.CommandLine;
using System.Globalization;
using HyperNF.Control;
using Spectre.Console;

namespace HyperNF.Cli.Commands;

/// <summary>xl's commands beyond create/list/destroy: shutdown, vcpu-list, info, uptime, network-list, and the refused ones.</summary>
public static partial class ToolstackCommands
{
    /// <summary>An xl command that does something else here: it takes xl's arguments and says how we differ.</summary>
    private static Command Refusal(string name, string description)
    {
        var rest = new Argument<string[]>("args") { Arity = ArgumentArity.ZeroOrMore, Description = "xl's arguments" };
        var cmd = new Command(name, description) { rest };
        cmd.TreatUnmatchedTokensAsErrors = false;
        cmd.SetAction(_ => Fail($"{name}: {XlDifferences[name]}"));
        return cmd;
    }

    private static Command Shutdown()
    {
        var socket = SocketOption();
        var domain = new Argument<string>("domain") { Description = "Domain name or id" };
        var wait = new Option<bool>("-w") { Description = "Wait for the domain to be gone (always the case here)" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds the guest gets to stop before the command gives up (the domain then keeps running; destroy stops it)", DefaultValueFactory = _ => 30 };
        var cmd = new Command("shutdown", "Stop a domain in order (xl shutdown). A VM domain's guest is asked to stop (the shutdown word of docs/guest-abi.md): it finishes, prints its summary and exits, then the domain is destroyed (xl's on_poweroff=\"destroy\"). Thread and process domains have no kernel to ask: their shutdown is destroy. Returns when the domain is gone.")
        {
            domain, wait, timeout, socket,
        };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            double t = p.GetValue(timeout);
            if (!(t >= 0 && t * 1000 <= ControlDaemon.MaxShutdownWaitMs)) return Fail($"shutdown: --timeout must be 0..{ControlDaemon.MaxShutdownWaitMs / 1000} seconds, not {t}");
            var r = As<DoneResult>(c.Call("shutdown", new { domain = p.GetValue(domain), timeout_ms = (long)(t * 1000) }, TimeSpan.FromSeconds(t + 60)));
            Console.WriteLine(r.Message);
            return 0;
        }));
        return cmd;
    }

    private static Command VcpuList()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var domain = new Argument<string?>("domain") { Description = "Only this domain", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("vcpu-list", "vCPUs of the domains (xl vcpu-list): the CPU each last ran on, state (r running, b blocked, p paused), CPU time, affinity, thread id.")
        {
            domain, socket, json,
        };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var result = c.Call("vcpu-list", new { domain = p.GetValue(domain) });
            if (p.GetValue(json))
            {
                PrintJson(result);
                return 0;
            }
            var r = As<VcpuListResult>(result);
            Console.WriteLine($"{"Name",-32} {"ID",5} {"VCPU",5} {"CPU",4} {"State",5} {"Time(s)",10} {"Affinity",-12} {"TID",7}");
            foreach (var v in r.Vcpus)
                Console.WriteLine($"{v.Domain,-32} {v.Id,5} {v.Vcpu,5} {(v.Cpu < 0 ? "-" : v.Cpu.ToString(CultureInfo.InvariantCulture)),4} {v.State,5} {F(v.TimeS),10} {v.Affinity,-12} {v.Tid,7}");
            return 0;
        }));
        return cmd;
    }

    private static Command Info()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var cmd = new Command("info", "The host (xl info): CPUs, memory, versions, I/O model, CPU control, domains and bridges.") { socket, json };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var result = c.Call("info");
            if (p.GetValue(json))
            {
                PrintJson(result);
                return 0;
            }
            var r = As<HostInfoResult>(result);
            (string, string)[] rows =
            [
                ("host", r.Host), ("release", r.Release), ("machine", r.Machine), ("nr_cpus", $"{r.NrCpus}"),
                ("total_memory", $"{r.TotalMemoryMb}"), ("free_memory", $"{r.FreeMemoryMb}"), ("hypernf_version", r.HypernfVersion),
                ("control_protocol", $"{r.Protocol}"), ("runtime", r.Runtime), ("io_model", r.IoModel), ("bridge_batch", $"{r.BridgeBatch}"),
                ("cpu_control", r.CpuControl), ("nr_domains", $"{r.Domains}"), ("nr_bridges", $"{r.Bridges}"), ("daemon_uptime", $"{F(r.UptimeS)} s"),
            ];
            foreach (var (k, v) in rows) Console.WriteLine($"{k,-22}: {v}");
            return 0;
        }));
        return cmd;
    }

    private static Command Uptime()
    {
        var socket = SocketOption();
        var domains = new Argument<string[]>("domain") { Description = "Only these domains", Arity = ArgumentArity.ZeroOrMore };
        var cmd = new Command("uptime", "How long each domain has run (xl uptime).") { domains, socket };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var r = As<ListResult>(c.Call("list"));
            var only = p.GetValue(domains) ?? [];
            foreach (string n in only)
                if (!r.Domains.Any(d => d.Name == n || d.Id.ToString(CultureInfo.InvariantCulture) == n))
                    return Fail($"no domain '{n}'{(r.Domains.Count == 0 ? ": no domains exist" : $" (domains: {string.Join(", ", r.Domains.Select(d => d.Name))})")}");
            Console.WriteLine($"{"Name",-32} {"ID",5} Uptime");
            foreach (var d in r.Domains.Where(d => only.Length == 0 || only.Contains(d.Name) || only.Contains(d.Id.ToString(CultureInfo.InvariantCulture))))
            {
                var t = TimeSpan.FromSeconds(d.UptimeS);
                string up = t.Days > 0 ? $"{t.Days} days, {t:hh\\:mm\\:ss}" : t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture);
                Console.WriteLine($"{d.Name,-32} {d.Id,5} {up}");
            }
            return 0;
        }));
        return cmd;
    }

    private static Command NetworkList()
    {
        var socket = SocketOption();
        var json = JsonOption();
        var domain = new Argument<string>("domain") { Description = "Domain name or id" };
        var cmd = new Command("network-list", "A domain's vifs (xl network-list): index, VALE port, MAC, state, frames sent and received.") { domain, socket, json };
        cmd.SetAction(p => WithDaemon(p, socket, c =>
        {
            var result = c.Call("network-list", new { domain = p.GetValue(domain) });
            if (p.GetValue(json))
            {
                PrintJson(result);
                return 0;
            }
            var r = As<NetworkListResult>(result);
            var t = new Table().Border(TableBorder.None).AddColumns("Idx", "Port", "Mac", "State", "tx pkts", "rx pkts");
            foreach (var v in r.Vifs) t.AddRow($"{v.Idx}", Esc(v.Port), Esc(v.Mac), Esc(v.State), $"{v.TxPackets}", $"{v.RxPackets}");
            AnsiConsole.Write(t);
            return 0;
        }));
        return cmd;
    }
}
