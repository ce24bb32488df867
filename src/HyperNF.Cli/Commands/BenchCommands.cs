using System.CommandLine;
using System.Diagnostics;
using System.Text.RegularExpressions;
using HyperNF.Bench;
using HyperNF.Ports;
using HyperNF.Bench.Experiments;
using HyperNF.Hypervisor;
using Spectre.Console;

namespace HyperNF.Cli.Commands;

internal static partial class BenchCommands
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks that print figures and write JSON.");
        bench.Subcommands.Add(CreateSwitch());
        foreach (var (name, what, run) in Experiments)
            bench.Subcommands.Add(CreateExperiment(name, what, run));
        bench.Subcommands.Add(CreatePorts());
        bench.Subcommands.Add(CreateHypercall());
        bench.Subcommands.Add(CreateProcess());
        return bench;
    }

    private static Command CreateHypercall()
    {
        var seconds = new Option<double>("--seconds", "-s") { Description = "Measured seconds per point", DefaultValueFactory = _ => 2 };
        var batches = new Option<string>("--batches") { Description = "Sender batch sizes, comma-separated", DefaultValueFactory = _ => "1,4,16,64,256,1024" };
        var noThreads = new Option<bool>("--no-threads") { Description = "Skip the thread-domain baseline" };
        var json = new Option<string?>("--json") { Description = "JSON output path", DefaultValueFactory = _ => "artifacts/bench/hypercall.json" };
        var md = new Option<string?>("--md") { Description = "Markdown table path", DefaultValueFactory = _ => "artifacts/bench/hypercall.md" };
        var cmd = new Command("hypercall", "VM domains: one hypercall's round trip, and 64 B Mpps tx VM -> rx VM against batch size next to thread domains (names the KVM kind)")
        {
            seconds, batches, noThreads, json, md,
        };
        cmd.SetAction(p =>
        {
            var started = DateTime.UtcNow;
            var report = VmBenchmark.Run(new VmBenchOptions
            {
                Seconds = p.GetValue(seconds),
                Batches = p.GetValue(batches)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
                Threads = !p.GetValue(noThreads),
                Log = line => Console.WriteLine(line),
            });
            string table = report.Markdown();
            Console.WriteLine();
            Console.WriteLine(table);
            if (p.GetValue(md) is { Length: > 0 } mdPath)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(mdPath))!);
                File.WriteAllText(mdPath, $"## bench hypercall\n\nMeasured {started:yyyy-MM-dd HH:mm} UTC: `./hypernf bench hypercall`\n\n{table}");
                Console.Error.WriteLine($"wrote {mdPath}");
            }
            Json.Write(p.GetValue(json), new { measured_utc = started, report });
            return report.Points.All(x => x.Unaccounted == 0) ? 0 : 2;
        });
        return cmd;
    }

    private static readonly (string Name, string What, Func<ExperimentOptions, ExperimentReport> Run)[] Experiments =
    [
        ("throughput", "NF cost sweep under hypercall, split and merge: Mpps and the gain of hypercall", ThroughputExperiment.Run),
        ("utilization", "CPU per Mpps (NF domain plus backend) by model at fixed offered loads", UtilizationExperiment.Run),
        ("fairness", "Three NFs with different weights/caps/traffic on one core: CPU used against allocation", FairnessExperiment.Run),
        ("adapt", "Offered load shifting between two NFs: throughput time series per model", AdaptExperiment.Run),
        ("chain", "Service chains of 1..8 NFs: throughput and latency per length and model", ChainExperiment.Run),
    ];

    private static Command CreateExperiment(string name, string what, Func<ExperimentOptions, ExperimentReport> run)
    {
        var quick = new Option<bool>("--quick") { Description = "Fewer points, shorter runs (under 2 minutes on 2 cores)" };
        var domains = new Option<string>("--domains") { Description = "thread (built-in NFs on host threads) or vm (KVM VMs booted from the guest images; outputs get a -vm suffix and name the KVM kind)", DefaultValueFactory = _ => "thread" };
        var json = new Option<string?>("--json") { Description = "JSON output path (default artifacts/bench/NAME[-vm].json)" };
        var plot = new Option<string?>("--plot") { Description = "PNG plot path (default artifacts/bench/NAME[-vm].png)" };
        var md = new Option<string?>("--md") { Description = "Markdown table path (default artifacts/bench/NAME[-vm].md)" };
        var models = new Option<string>("--models") { Description = "I/O models, comma-separated", DefaultValueFactory = _ => "hypercall,split,merge" };
        var noCg = new Option<bool>("--no-cgroups") { Description = "Do not enforce weights and caps with cgroups (accounting only)" };
        var cmd = new Command(name, what) { quick, domains, json, plot, md, models, noCg };
        cmd.SetAction(p =>
        {
            bool useCg = !p.GetValue(noCg);
            BenchDomainKind kind;
            try { kind = BenchDomains.ParseKind(p.GetValue(domains)!); }
            catch (ArgumentException e) { Console.Error.WriteLine($"hypernf: {e.Message}"); return 1; }
            var factory = BenchDomains.For(kind);
            try { factory.Check(); }
            catch (Exception e) when (e is InvalidOperationException or FileNotFoundException) { Console.Error.WriteLine($"hypernf: bench {name} --domains vm: {e.Message}"); return 1; }
            string stem = kind == BenchDomainKind.Vm ? $"artifacts/bench/{name}-vm" : $"artifacts/bench/{name}";
            var opts = new ExperimentOptions
            {
                Quick = p.GetValue(quick),
                Log = line => Console.WriteLine(line),
                Models = p.GetValue(models)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(IoModels.Parse).ToArray(),
                CpuPolicy = useCg ? () => HostCpuControl.Detect(out _) : null,
                Domains = kind,
            };
            if (factory.KvmDescription is { } kvm) Console.WriteLine($"VM domains on {kvm}");
            var started = DateTime.UtcNow;
            var report = run(opts);
            var elapsed = DateTime.UtcNow - started;
            string command = $"./hypernf bench {name}{(kind == BenchDomainKind.Vm ? " --domains vm" : "")}{(opts.Quick ? " --quick" : "")}";
            string header = $"## {name}{(kind == BenchDomainKind.Vm ? $" (VM domains, KVM kind {factory.KvmKind})" : "")}\n\nMeasured {started:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} CPUs in {elapsed.TotalSeconds:F0} s: `{command}`\n\n";
            Console.WriteLine();
            Console.WriteLine(report.Markdown);
            string? mdPath = p.GetValue(md) ?? stem + ".md";
            if (!string.IsNullOrEmpty(mdPath))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(mdPath))!);
                File.WriteAllText(mdPath, header + report.Markdown);
                Console.Error.WriteLine($"wrote {mdPath}");
            }
            Json.Write(p.GetValue(json) ?? stem + ".json", report.ToJson(started, opts.Quick, elapsed.TotalSeconds));
            string? plotPath = p.GetValue(plot) ?? stem + ".png";
            if (!string.IsNullOrEmpty(plotPath) && report.Plots.Count > 0) Plotter.Save(report.Plots, plotPath);
            return 0;
        });
        return cmd;
    }

    private static Command CreatePorts()
    {
        var sizes = new Option<string>("--frame-sizes", "-l") { Description = "Comma-separated frame sizes (60..1514)", DefaultValueFactory = _ => "64,1514" };
        var seconds = new Option<double>("--seconds", "-s") { Description = "Measured seconds per point", DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch", "-b") { Description = "Frames per send() of the sender", DefaultValueFactory = _ => 256 };
        var only = new Option<string?>("--path") { Description = "sender-only, hypernf, hypernf-xdp, linux-bridge or ovs-netdev (default: all, the sender-only yardstick first)" };
        var drvdom = new Option<bool>("--drvdom-txsync") { Description = "HyperNF: the port driver thread transmits (ctl op 5 = 1)" };
        var xdpMode = new Option<string>("--xdp-mode") { Description = "hypernf-xdp: where the XDP program runs", DefaultValueFactory = _ => "auto" };
        xdpMode.AcceptOnlyFromAmong("auto", "native", "generic");
        var txMode = new Option<string>("--af-packet-tx") { Description = "hypernf path: AF_PACKET transmission through a TPACKET_V2 ring or sendmmsg", DefaultValueFactory = _ => new PhysicalPortOptions().TxRing ? "ring" : "sendmmsg" };
        txMode.AcceptOnlyFromAmong("ring", "sendmmsg");
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this path" };
        var noPps = new Option<bool>("--no-pps") { Description = "Skip the Mpps part (our own sender, frames to an unknown MAC)" };
        var noTraffic = new Option<bool>("--no-traffic") { Description = "Skip the TCP and ping part (iperf3 and ping between the namespaces, offloads on)" };
        var pings = new Option<int>("--pings") { Description = "Pings per path for the round-trip percentiles (10 ms apart)", DefaultValueFactory = _ => 300 };
        var rounds = new Option<int>("--rounds") { Description = "TCP and ping part: measure every path this many times, in rotating order, and compare each with the bridge of the same round (medians and ranges)", DefaultValueFactory = _ => 1 };
        rounds.Validators.Add(r => { if (r.GetValueOrDefault<int>() is < 1 or > 50) r.AddError("--rounds must be 1..50"); });
        var driverThreads = new Option<string>("--driver-threads") { Description = "HyperNF: port driver threads, one per bridge (default) or one per port", DefaultValueFactory = _ => new PhysicalPortOptions().DriverPerBridge ? "bridge" : "port" };
        driverThreads.AcceptOnlyFromAmong("bridge", "port");
        var rtPriority = new Option<int>("--driver-rt-priority") { Description = "HyperNF: SCHED_FIFO priority of the port driver threads, bounded per wake-up (0: none)" };
        var driverCpus = DriverCpusOption.Create("HyperNF, TCP and ping part: ");
        var driverSpin = new Option<int>("--driver-spin") { Description = "HyperNF: microseconds a port driver thread keeps polling after its last frame (0: sleep at once)", DefaultValueFactory = _ => new PhysicalPortOptions().DriverSpinMicroseconds };
        var fastPath = new Option<string>("--kernel-fast-path") { Description = "HyperNF af_packet, TCP and ping part: frames between the two interfaces forwarded in the kernel's receive path following the switch's table (on) or all by the switch's driver thread (off)", DefaultValueFactory = _ => new PhysicalPortOptions().KernelFastPath ? "on" : "off" };
        fastPath.AcceptOnlyFromAmong("on", "off");
        var cmd = new Command("ports", "Two veth-attached namespaces through HyperNF (af_packet and af_xdp ports), a Linux bridge and OVS userspace: Mpps and switching CPU per frame against a sender-only yardstick, then TCP Gbit/s and ping p50/p99 with the veths' offloads on (root).")
        {
            sizes, seconds, batch, only, drvdom, xdpMode, txMode, json, noPps, noTraffic, pings, rounds, driverThreads, rtPriority, driverSpin, driverCpus, fastPath,
        };
        cmd.SetAction(p =>
        {
            if (PortsBenchmark.Unavailable() is { } why)
            {
                AnsiConsole.MarkupLine($"[red]ports benchmark: {Markup.Escape(why)}[/]");
                return 1;
            }
            var paths = p.GetValue(only) switch
            {
                null => new[] { PortsBenchmarkPath.SenderOnly, PortsBenchmarkPath.HyperNF, PortsBenchmarkPath.HyperNFXdp, PortsBenchmarkPath.LinuxBridge, PortsBenchmarkPath.OvsUserspace },
                "sender-only" => [PortsBenchmarkPath.SenderOnly],
                "hypernf-xdp" or "xdp" => [PortsBenchmarkPath.HyperNFXdp],
                "ovs-netdev" or "ovs" => [PortsBenchmarkPath.OvsUserspace],
                "hypernf" => [PortsBenchmarkPath.HyperNF],
                "linux-bridge" => [PortsBenchmarkPath.LinuxBridge],
                var other => throw new ArgumentException($"--path must be sender-only, hypernf, hypernf-xdp, linux-bridge or ovs-netdev, not '{other}'"),
            };
            int last = Environment.ProcessorCount - 1;
            var o = new PortsBenchmarkOptions
            {
                FrameSizes = p.GetValue(sizes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
                Seconds = p.GetValue(seconds), Batch = p.GetValue(batch), Paths = paths,
                SenderCpu = 0, DriverCpu = last > 0 ? last : -1, DriverDomainTxSync = p.GetValue(drvdom), XdpMode = p.GetValue(xdpMode)!,
                TxRing = p.GetValue(txMode) == "ring",
                DriverPerBridge = p.GetValue(driverThreads) == "bridge",
                DriverRealtimePriority = p.GetValue(rtPriority),
                DriverSpinMicroseconds = p.GetValue(driverSpin),
            };
            IReadOnlyList<PortsBenchmarkResult> results = [];
            if (!p.GetValue(noPps))
            {
                results = PortsBenchmark.Run(o, Console.WriteLine);
                var table = new Table().AddColumns("path", "frame B", "Mpps", "offered Mpps", "Gbit/s", "CPU %", "sender %", "driver %", "ns/pkt", "switching ns/pkt", "port drops", "switch drops");
                foreach (var r in results)
                    table.AddRow(r.Path, $"{r.FrameSize}", $"{r.Mpps:F3}", $"{r.MppsOffered:F3}", $"{r.Gbps:F2}", $"{r.CpuPct:F0}", $"{r.SenderCpuPct:F0}",
                        $"{r.DriverCpuPct:F0}", $"{r.NsPerPacket:F0}", r.SwitchNsPerPacket is { } sn ? $"{sn:F0}" : "-", $"{r.PortDrops}", $"{r.SwitchDrops}");
                AnsiConsole.Write(table);
            }
            IReadOnlyList<PortsTrafficResult> traffic = [];
            if (!p.GetValue(noTraffic))
            {
                if (!DriverCpusOption.TryParse(p.GetValue(driverCpus), out var cpuSet, out bool follow, out string cpuErr))
                {
                    AnsiConsole.MarkupLine($"[red]--driver-cpus: {Markup.Escape(cpuErr)}[/]");
                    return 1;
                }
                traffic = PortsTraffic.Run(paths, p.GetValue(seconds), p.GetValue(pings), Console.WriteLine, rounds: p.GetValue(rounds), portOptions: new PhysicalPortOptions
                {
                    DriverCpus = cpuSet, DriverFollowsTraffic = follow,
                    DriverPerBridge = o.DriverPerBridge, DriverRealtimePriority = o.DriverRealtimePriority,
                    DriverSpinMicroseconds = o.DriverSpinMicroseconds, TxRing = o.TxRing, XdpMode = o.XdpMode,
                    KernelFastPath = p.GetValue(fastPath) == "on",
                });
                var summary = PortsTraffic.Summarize(traffic);
                int n = p.GetValue(rounds);
                string Ratio(RatioRange? r) => r is null ? "-" : n == 1 ? $"{r.Median:F2}x" : $"{r.Median:F2}x ({r.Min:F2}-{r.Max:F2})";
                var tt = new Table().AddColumns("path (offloads on)", n == 1 ? "TCP Gbit/s" : $"TCP Gbit/s (median of {n})", "vs bridge",
                    "ping p50 us", "vs bridge", "ping p99 us", "vs bridge", "lost");
                foreach (var t in summary)
                {
                    if (t.Error is not null) { tt.AddRow(t.Path, Markup.Escape(t.Error), "", "", "", "", "", ""); continue; }
                    tt.AddRow(t.Path + (t.Failed > 0 ? $" ({t.Failed} failed)" : ""), $"{t.TcpGbps:F2}", Ratio(t.TcpVsBridge), $"{t.PingP50Us:F0}", Ratio(t.P50VsBridge),
                        $"{t.PingP99Us:F0}", Ratio(t.P99VsBridge), $"{t.PingLost}/{t.PingCount}");
                }
                AnsiConsole.Write(tt);
                if (n > 1) Console.WriteLine("vs bridge: each round's figure over the Linux bridge's in the same round; median (lowest-highest) over the rounds");
                Json.Write(p.GetValue(json), new { results, traffic, traffic_summary = summary });
                return 0;
            }
            Json.Write(p.GetValue(json), new { results, traffic });
            return 0;
        });
        return cmd;
    }

    private static Command CreateProcess()
    {
        var models = new Option<string>("--models") { Description = "I/O models, comma-separated", DefaultValueFactory = _ => "hypercall,split,merge" };
        var batches = new Option<string>("--batches", "-b") { Description = "Sender batch sizes (frames per sync, 1..1024), comma-separated", DefaultValueFactory = _ => "1,32,256" };
        var frame = new Option<int>("--frame-size", "-l") { Description = "Frame size in bytes (60..2048)", DefaultValueFactory = _ => 64 };
        var seconds = new Option<double>("--seconds", "-s") { Description = "Measured seconds per point", DefaultValueFactory = _ => 3 };
        var noThreads = new Option<bool>("--no-threads") { Description = "Skip the thread-domain pairs" };
        var noCg = new Option<bool>("--no-cgroups") { Description = "Do not put the domains in cgroups (accounting only)" };
        var json = new Option<string?>("--json") { Description = "JSON output path", DefaultValueFactory = _ => "artifacts/bench/process.json" };
        var cmd = new Command("process", "Two netmap programs in separate processes (nm-pktgen under libhypernf-netmap.so, each a process domain) per I/O model and batch, next to thread domains: Mpps, CPU per domain, drops, latency, and the cost of one sync.")
        {
            models, batches, frame, seconds, noThreads, noCg, json,
        };
        cmd.SetAction(p =>
        {
            string? lib = ExecCommand.FindLibrary();
            string? tool = FindArtifact(Path.Combine("netmap-tools", "nm-pktgen"));
            if (lib is null || tool is null)
            {
                AnsiConsole.MarkupLine("[red]bench process: nm-pktgen or libhypernf-netmap.so not built (./hypernf builds them; gcc is needed)[/]");
                return 1;
            }
            if (Environment.ProcessorCount < 2) AnsiConsole.MarkupLine("[yellow]only one CPU: sender and receiver share it[/]");
            var o = new ProcessBenchmarkOptions
            {
                Models = p.GetValue(models)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(IoModels.Parse).ToArray(),
                Batches = p.GetValue(batches)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
                FrameSize = p.GetValue(frame), Seconds = p.GetValue(seconds), ThreadDomains = !p.GetValue(noThreads),
                CpuPolicy = p.GetValue(noCg) ? null : () => HostCpuControl.Detect(out _),
                Tool = tool, Library = lib, Log = Console.WriteLine,
            };
            var started = DateTime.UtcNow;
            var r = ProcessBenchmark.Run(o);
            var table = new Table().AddColumns("domains", "model", "batch", "rx Mpps", "tx Mpps", "thread/process rx", "tx dom CPU %", "(program/host)", "rx dom CPU %", "(program/host)",
                "backends %", "tx ns/frame", "rx ns/frame", "drops", "p50 us", "p99 us", "unacc.");
            foreach (var x in r.Points)
            {
                var twin = r.Points.FirstOrDefault(t => t.Domains == "thread" && t.IoModel == x.IoModel && t.Batch == x.Batch);
                string ratio = x.Domains == "process" && twin is { RxMpps: > 0 } && x.RxMpps > 0 ? $"{twin.RxMpps / x.RxMpps:F2}" : "";
                table.AddRow(x.Domains, x.IoModel, $"{x.Batch}", $"{x.RxMpps:F3}", $"{x.TxMpps:F3}", ratio,
                    $"{x.TxDomainCpuPct:F0}", x.Domains == "process" ? $"{x.TxProgramCpuPct:F0}/{x.TxHostThreadCpuPct:F0}" : "",
                    $"{x.RxDomainCpuPct:F0}", x.Domains == "process" ? $"{x.RxProgramCpuPct:F0}/{x.RxHostThreadCpuPct:F0}" : "",
                    $"{x.BackendCpuPct:F0}", $"{x.TxCpuNsPerFrame:F0}", $"{x.RxCpuNsPerFrame:F0}", $"{x.Dropped}", $"{x.LatencyP50Us:F1}", $"{x.LatencyP99Us:F1}", $"{x.Unaccounted}");
            }
            AnsiConsole.Write(table);
            foreach (var h in r.HandOff)
                Console.WriteLine($"one sync with nothing to do, {h.IoModel}: process domain {h.ProcessNsPerSync:F0} ns, thread domain {h.ThreadNsPerSync:F0} ns");
            Console.WriteLine($"kernel VALE (published, ../shared/reference/anchors.md): ~{r.KernelValeMpps:F0} Mpps per core at 64 B; load average at start {r.LoadAverage:F1} on {r.Cpus} CPUs; cgroups {(r.Cgroups ? "on" : "off")}; {(DateTime.UtcNow - started).TotalSeconds:F0} s");
            Json.Write(p.GetValue(json), r);
            return r.Points.All(x => x.Unaccounted == 0) ? 0 : 2;
        });
        return cmd;
    }

    /// <summary>artifacts/RELATIVE above the CLI's directory (the repository's artifacts).</summary>
    private static string? FindArtifact(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "artifacts", relative);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static Command CreateSwitch()
    {
        var frame = new Option<int>("--frame-size", "-l") { Description = "Frame size in bytes (14..2048)", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch", "-b") { Description = "Frames per TxSync and bridge_batch (1..1024)", DefaultValueFactory = _ => 256 };
        var ports = new Option<int>("--ports") { Description = "Ports on the bridge (2..254; extra ports are idle)", DefaultValueFactory = _ => 2 };
        var seconds = new Option<double>("--seconds", "-s") { Description = "Measured seconds per point", DefaultValueFactory = _ => 5 };
        var sweep = new Option<bool>("--sweep") { Description = "Batch-size curve: 1, 2, 4 ... 1024 at the given frame size" };
        var compare = new Option<bool>("--compare") { Description = "Also run ../shared/tools/limit-ring.sh and anchor-memif.sh in the same run" };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this path" };
        var capture = new Option<string>("--capture") { Description = "Open a capture on the receiving port while measuring: none, in, out or both (in: the frames it receives)", DefaultValueFactory = _ => "none" };
        capture.AcceptOnlyFromAmong("none", "in", "out", "both");
        var cmd = new Command("switch", "One sender to one receiver on the other core through one bridge: Mpps and Gbit/s.")
        {
            frame, batch, ports, seconds, sweep, compare, json, capture,
        };
        cmd.SetAction(p =>
        {
            var baseOpt = new SwitchBenchmarkOptions
            {
                FrameSize = p.GetValue(frame), Batch = p.GetValue(batch), Ports = p.GetValue(ports), Seconds = p.GetValue(seconds),
                Capture = p.GetValue(capture) switch
                {
                    "in" => HyperNF.Switch.CaptureDirection.In, "out" => HyperNF.Switch.CaptureDirection.Out,
                    "both" => HyperNF.Switch.CaptureDirection.Both, _ => null,
                },
            };
            if (Environment.ProcessorCount < 2)
                AnsiConsole.MarkupLine("[yellow]only one CPU: sender and receiver share it; figures will be low[/]");
            else
                baseOpt = baseOpt with { SenderCpu = 0, ReceiverCpu = 1 };
            var results = new List<SwitchBenchmarkResult>();
            var batches = p.GetValue(sweep) ? new[] { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 } : new[] { baseOpt.Batch };
            foreach (int b in batches)
            {
                var r = SwitchBenchmark.Run(baseOpt with { Batch = b });
                results.Add(r);
                Console.WriteLine($"switch {r.FrameSize} B batch {r.Batch,4}: {r.Mpps,7:F2} Mpps {r.Gbps,7:F2} Gbit/s  sender {r.SenderNsPerPacket:F1} ns/pkt  drops {r.Dropped} (ring full {r.RingFull})  unaccounted {r.Unaccounted}" +
                                  (r.Capture == "none" ? "" : $"  capture {r.Capture}: {r.Captured} captured, {r.CaptureDropped} lost by the tap"));
            }
            var table = new Table().AddColumns("frame B", "batch", "Mpps", "Gbit/s", "sender CPU %", "receiver CPU %", "ns/pkt (sender)", "dropped", "unaccounted");
            foreach (var r in results)
                table.AddRow($"{r.FrameSize}", $"{r.Batch}", $"{r.Mpps:F2}", $"{r.Gbps:F2}", $"{r.SenderCpuPct:F0}", $"{r.ReceiverCpuPct:F0}", $"{r.SenderNsPerPacket:F1}", $"{r.Dropped}", $"{r.Unaccounted}");
            AnsiConsole.Write(table);
            var anchors = new Dictionary<string, double>();
            if (p.GetValue(compare)) RunAnchors(baseOpt.FrameSize, anchors);
            object doc = results.Count == 1 && anchors.Count == 0
                ? results[0]
                : new { results = results, mpps = results[^1].Mpps, gbps = results[^1].Gbps, frame_size = baseOpt.FrameSize, batch = results[^1].Batch, anchors };
            Json.Write(p.GetValue(json), doc);
            return results.All(r => r.Unaccounted == 0) ? 0 : 2;
        });
        return cmd;
    }

    private static void RunAnchors(int frameSize, Dictionary<string, double> anchors)
    {
        string? tools = FindSharedTools();
        if (tools is null)
        {
            AnsiConsole.MarkupLine("[yellow]../shared/tools not found: no anchors measured[/]");
            return;
        }
        string limit = RunScript(Path.Combine(tools, "limit-ring.sh"), "3");
        foreach (Match m in LimitLine().Matches(limit))
            anchors[$"limit_ring_{m.Groups[1].Value}B_mpps"] = double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        string memif = RunScript(Path.Combine(tools, "anchor-memif.sh"), $"10 {frameSize}");
        var mm = MemifLine().Match(memif);
        if (mm.Success) anchors[$"dpdk_memif_{frameSize}B_mpps"] = double.Parse(mm.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (k, v) in anchors) Console.WriteLine($"anchor {k}: {v:F2}");
    }

    private static string? FindSharedTools()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string t = Path.Combine(d.FullName, "shared", "tools");
            if (File.Exists(Path.Combine(t, "limit-ring.sh"))) return t;
        }
        return null;
    }

    private static string RunScript(string path, string args)
    {
        Console.Error.WriteLine($"running {path} {args} ...");
        var psi = new ProcessStartInfo("bash", $"{path} {args}") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var proc = Process.Start(psi)!;
        string output = proc.StandardOutput.ReadToEnd();
        proc.StandardError.ReadToEnd();
        proc.WaitForExit();
        Console.Write(output);
        return output;
    }

    [GeneratedRegex(@"len (\d+) batch \d+: ([0-9.]+) Mpps")]
    private static partial Regex LimitLine();

    [GeneratedRegex(@"anchor dpdk-memif \d+B Mpps: ([0-9.]+)")]
    private static partial Regex MemifLine();
}
