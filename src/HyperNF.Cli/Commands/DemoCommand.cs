using System.CommandLine;
using HyperNF.Bench;
using HyperNF.Hypervisor;
using Spectre.Console;

namespace HyperNF.Cli.Commands;

/// <summary>
/// The mission in one command: bridges valex and valey, a pkt-gen sender domain on valex, an
/// NF domain between them, a pkt-gen receiver domain on valey; each I/O model in turn; one table.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var seconds = new Option<double>("--seconds") { Description = "Measured seconds per I/O model", DefaultValueFactory = _ => 3 };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this path" };
        var nf = new Option<string>("--nf") { Description = "NF in the middle domain (l2fwd, firewall, router, nat, cost, encrypt)", DefaultValueFactory = _ => "l2fwd" };
        var nfArgs = new Option<string?>("--nf-args") { Description = "Arguments of the NF (key=value,...)" };
        var frame = new Option<int>("--frame-size", "-l") { Description = "Frame length in bytes (60..2048)", DefaultValueFactory = _ => 60 };
        var models = new Option<string>("--models") { Description = "I/O models to run, comma-separated", DefaultValueFactory = _ => "hypercall,split,merge" };
        var domains = new Option<string>("--domains") { Description = "thread (NF code on host threads) or vm (KVM VMs booted from the guest SDK's images)", DefaultValueFactory = _ => "thread" };
        var cmd = new Command("demo", "Traffic through an NF domain under each I/O model (hypercall, split, merge), one table.")
        {
            seconds, json, nf, nfArgs, frame, models, domains,
        };
        cmd.SetAction(p =>
        {
            BenchDomainKind kind;
            try { kind = BenchDomains.ParseKind(p.GetValue(domains)!); }
            catch (ArgumentException e) { Console.Error.WriteLine($"hypernf: {e.Message}"); return 1; }
            var factory = BenchDomains.For(kind);
            var list = p.GetValue(models)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(IoModels.Parse).ToArray();
            string nfName = p.GetValue(nf)!;
            string? args = p.GetValue(nfArgs) ?? ChainScenario.DefaultNfArgs(nfName);
            if (!factory.Supports(nfName)) { Console.Error.WriteLine($"hypernf: VM domains have no nf '{nfName}' (guest images: l2fwd, cost, router)"); return 1; }
            try { factory.Check(); }
            catch (Exception e) when (e is InvalidOperationException or FileNotFoundException) { Console.Error.WriteLine($"hypernf: demo --domains vm: {e.Message}"); return 1; }
            var place = Placement.For(Environment.ProcessorCount);
            string what = kind == BenchDomainKind.Vm ? " VM" : "";
            AnsiConsole.MarkupLine($"[bold]HyperNF demo{(kind == BenchDomainKind.Vm ? ", VM domains" : "")}[/]{(factory.KvmDescription is { } kvm ? $" on {Markup.Escape(kvm)}" : "")}: " +
                                   $"pkt-gen tx{what} (CPU {place.TxCpu}) -> valex -> [bold]{Markup.Escape(nfName)}{what}[/] (CPU {string.Join(',', place.NfCpus)}) -> valey -> pkt-gen rx{what} (CPU {place.RxCpu}); " +
                                   $"split backends on CPU {string.Join(',', place.BackendCpus)}, merge backends on the NF's CPU; {Environment.ProcessorCount} CPUs");
            var results = new List<ChainResult>();
            double secs = p.GetValue(seconds);
            ChainResult RunModel(IoModel m, Action<double> progress) => ChainScenario.Run(new ChainOptions
            {
                IoModel = m, Nf = nfName, NfArgs = args, FrameSize = p.GetValue(frame), Seconds = secs,
                Placement = place, Progress = progress, Bridges = ["valex", "valey"], Domains = kind,
            });
            if (AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected)
            {
                AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        foreach (var m in list)
                        {
                            var task = ctx.AddTask($"{m.Key(),-9}", maxValue: 1.0);
                            results.Add(RunModel(m, f => task.Value = f));
                            task.Value = 1.0;
                        }
                    });
            }
            else
            {
                // Not a terminal (a log, a pipe): a text progress bar per model, redrawn at each quarter.
                foreach (var m in list)
                {
                    int shown = -1;
                    results.Add(RunModel(m, f =>
                    {
                        int q = (int)Math.Floor(f * 4);
                        if (q == shown) return;
                        shown = q;
                        Console.WriteLine($"{m.Key(),-9} [{new string('#', q * 5)}{new string('.', 20 - q * 5)}] {f * secs:F1}/{secs:F1} s measured");
                    }));
                }
            }
            Render(results, factory);
            if (factory.KvmDescription is { } k)
                AnsiConsole.MarkupLine($"KVM: {Markup.Escape(k)}. hypercall: each TXSYNC is a VM exit to this process and the switch runs in it, on the sending VM's vCPU thread; " +
                                       "split/merge: the guest kicks its backend through an ioeventfd (no exit to this process) only when the backend asked for it.");
            Json.Write(p.GetValue(json), new { domains = factory.KindKey, kvm = factory.KvmDescription, kvm_kind = factory.KvmKind, nf = nfName, frame_size = p.GetValue(frame), cpus = Environment.ProcessorCount, models = results });
            return results.All(r => r.Unaccounted == 0) ? 0 : 2;
        });
        return cmd;
    }

    private static void Render(IReadOnlyList<ChainResult> results, BenchDomains kind)
    {
        var cpuNames = results.SelectMany(r => r.Cpu.Select(c => c.Domain)).Distinct().ToArray();
        double window = results.Count > 0 ? results[0].WindowSeconds : 0;
        var t = new Table().Border(TableBorder.Rounded).Title($"[bold]forwarding through one NF domain ({Markup.Escape(kind.Label)} domains)[/] (rates, CPU and drops over the same {window:F1} s window, after warm-up)");
        t.AddColumn("model");
        t.AddColumn(new TableColumn("offered Mpps").RightAligned());
        t.AddColumn(new TableColumn("Mpps").RightAligned());
        t.AddColumn(new TableColumn("Gbit/s").RightAligned());
        foreach (var n in cpuNames) t.AddColumn(new TableColumn($"CPU {n} %").RightAligned());
        t.AddColumn(new TableColumn("backend CPU % (billed to the host)").RightAligned());
        t.AddColumn(new TableColumn("NF CPU%/Mpps").RightAligned());
        t.AddColumn("drops by reason");
        t.AddColumn(new TableColumn("unaccounted (whole run)").RightAligned());
        t.AddColumn(new TableColumn("p50 µs").RightAligned());
        t.AddColumn(new TableColumn("p99 µs").RightAligned());
        foreach (var r in results)
        {
            var row = new List<string> { r.IoModel, $"{r.OfferedMpps:F2}", r.Mpps < 1 ? $"{r.Mpps:F3}" : $"{r.Mpps:F2}", $"{r.Gbps:F2}" };
            foreach (var n in cpuNames)
            {
                var c = r.Cpu.FirstOrDefault(x => x.Domain == n);
                row.Add(c is null ? "-" : c.BackendPct > 0 ? $"{c.VCpuPct:F0} (+{c.BackendPct:F0} backend)" : $"{c.VCpuPct:F0}");
            }
            row.Add($"{r.HostCpuPct:F0}");
            row.Add($"{r.NfCpuPerMpps:F1}");
            row.Add(r.WindowDrops.Count == 0 ? "none" : string.Join(", ", r.WindowDrops.Select(kv => $"{kv.Key} {kv.Value}")));
            row.Add(r.Unaccounted == 0 ? "[green]0[/]" : $"[red]{r.Unaccounted}[/]");
            row.Add($"{r.LatencyP50Us:F1}");
            row.Add($"{r.LatencyP99Us:F1}");
            t.AddRow(row.Select(s => s.Contains('[') && !s.StartsWith("[green]") && !s.StartsWith("[red]") ? Markup.Escape(s) : s).ToArray());
        }
        AnsiConsole.Write(t);
        AnsiConsole.MarkupLine("offered: what the sender put on valex; Mpps: what reached the receiver. CPU: vCPU time is billed to the domain; " +
                               "[italic]backend[/] time (split/merge) is done for the domain but billed to the host. Drops: the measured window; " +
                               "the JSON also has the whole run's (warm-up and drain included), which the accounting check uses.");
    }
}
