using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using HyperNF.Hypervisor;
using HyperNF.Switch;

namespace HyperNF.Control;

/// <summary>The ops of the control protocol (docs/control-protocol.md), minus the streaming ones.</summary>
public sealed partial class ControlDaemon
{
    /// <summary>
    /// An op. A read (<paramref name="Read"/>) runs where the request arrived. A change
    /// (<paramref name="Change"/>) is split in two: its first part checks and parses the request
    /// where it arrived (a config, a CPU list: work that depends only on the request) and
    /// returns the second, which runs on the change thread, one at a time. So no request can
    /// hold the change thread with parsing, whatever its size.
    /// </summary>
    private sealed record Op(Func<ControlDaemon, ControlRequest, object?>? Read, Func<ControlDaemon, ControlRequest, Func<object?>>? Change = null,
        Func<ControlDaemon, ControlRequest, Task<object?>>? Async = null)
    {
        /// <summary>An op that waits (for a guest, say) between changes: it runs where it arrived and queues its changes itself.</summary>
        public static Op Waits(Func<ControlDaemon, ControlRequest, Task<object?>> run) => new(null, null, run);
        public static Op Reads(Func<ControlDaemon, ControlRequest, object?> run) => new(run);
        public static Op Changes(Func<ControlDaemon, ControlRequest, Func<object?>> prepare) => new(null, prepare);
        /// <summary>A change whose arguments are a few scalars: all of it on the change thread.</summary>
        public static Op Changes(Func<ControlDaemon, ControlRequest, object?> run) => new(null, (d, r) => () => run(d, r));
    }

    private static readonly Dictionary<string, Op> Ops = new(StringComparer.Ordinal)
    {
        ["hello"] = Op.Reads((d, r) => d.Hello(r)),
        ["list"] = Op.Reads((d, r) => d.List(r)),
        ["create"] = Op.Changes((d, r) => d.Create(r)),
        ["destroy"] = Op.Changes((d, r) => d.DestroyOp(r)),
        ["shutdown"] = Op.Waits((d, r) => d.ShutdownOpAsync(r)),
        ["pause"] = Op.Changes((d, r) => d.PauseOp(r, pause: true)),
        ["unpause"] = Op.Changes((d, r) => d.PauseOp(r, pause: false)),
        ["vcpu-pin"] = Op.Changes((d, r) => d.VcpuPin(r)),
        ["sched-credit2"] = Op.Changes((d, r) => d.Schedule(r)),
        ["vale-create"] = Op.Changes((d, r) => d.ValeCreate(r)),
        ["vale-remove"] = Op.Changes((d, r) => d.ValeRemove(r)),
        ["vale-attach"] = Op.Changes((d, r) => d.ValeAttach(r)),
        ["vale-detach"] = Op.Changes((d, r) => d.ValeDetach(r)),
        ["vale-list"] = Op.Reads((d, r) => d.ValeList(r)),
        ["port-hdr-set"] = Op.Changes((d, r) => d.PortHeaderSet(r)),
        ["ctl"] = Op.Changes((d, r) => d.Ctl(r)),
        ["set"] = Op.Changes((d, r) => d.Set(r)),
        ["get"] = Op.Reads((d, r) => d.Get(r)),
        ["io-model"] = Op.Changes((d, r) => d.IoModelOp(r)),
        ["stats"] = Op.Reads((d, r) => d.Stats(r)),
        ["console"] = Op.Reads((d, r) => d.ConsoleOp(r)),
        ["vcpu-list"] = Op.Reads((d, r) => d.VcpuList(r)),
        ["info"] = Op.Reads((d, r) => d.HostInfo(r)),
        ["network-list"] = Op.Reads((d, r) => d.NetworkList(r)),
    };

    private static readonly string[] StreamingOps = ["top", "pkt-gen", "capture"];

    private static IEnumerable<string> OpNames => Ops.Keys.Concat(StreamingOps).Append("stop").Order(StringComparer.Ordinal);

    private static bool IsStreaming(string op) => Array.IndexOf(StreamingOps, op) >= 0;

    // Interfaces attached with vale-ctl -a, (bridge, port) -> interface name.
    private readonly ConcurrentDictionary<(string Bridge, string Port), string> _interfaces = new();

    // ---------------------------------------------------------------- CPU sampling

    private sealed record CpuSample(long VCpuNs, long BackendNs, double VCpuPct, double BackendPct);

    private volatile int _sampleMs;
    private volatile ImmutableDictionary<int, CpuSample> _cpu = ImmutableDictionary<int, CpuSample>.Empty;
    private readonly ConcurrentQueue<(long Seq, string Text)> _events = new();
    private long _eventSeq;

    private void SamplerMain()
    {
        long last = Stopwatch.GetTimestamp();
        while (!_cts.Token.WaitHandle.WaitOne(_sampleMs))
        {
            try
            {
                long now = Stopwatch.GetTimestamp();
                double elapsedNs = Stopwatch.GetElapsedTime(last, now).TotalNanoseconds;
                last = now;
                var prev = _cpu;
                var next = ImmutableDictionary.CreateBuilder<int, CpuSample>();
                foreach (var d in _host.Domains)
                {
                    long v = d.VCpuTimeNs(), b = d.BackendTimeNs();
                    double vp = 0, bp = 0;
                    if (prev.TryGetValue(d.Id, out var p) && elapsedNs > 0)
                    {
                        vp = Math.Max(0, Math.Round(100.0 * (v - p.VCpuNs) / elapsedNs, 1));
                        bp = Math.Max(0, Math.Round(100.0 * (b - p.BackendNs) / elapsedNs, 1));
                    }
                    next[d.Id] = new CpuSample(v, b, vp, bp);
                }
                _cpu = next.ToImmutable();
                PruneBridges(); // a crashed domain's ports have left
                while (_host.TryDequeueEvent(out string? text))
                {
                    if (text is null) continue;
                    Log(text);
                    _events.Enqueue((Interlocked.Increment(ref _eventSeq), text));
                    while (_events.Count > 100) _events.TryDequeue(out _);
                }
            }
            catch (Exception e)
            {
                Log($"sampler: {e.Message}");
            }
        }
    }

    // ---------------------------------------------------------------- helpers

    private Domain FindDomain(string nameOrId)
    {
        var d = _host.Find(nameOrId);
        if (d is not null) return d;
        var names = _host.Domains.Select(x => x.Name).ToArray();
        throw ControlException.NotFound(names.Length == 0
            ? $"no domain '{ControlRequest.Short(nameOrId)}': no domains exist"
            : $"no domain '{ControlRequest.Short(nameOrId)}' (domains: {string.Join(", ", names)})");
    }

    private Bridge FindBridge(string name)
    {
        var b = _host.Switch.FindBridge(name);
        if (b is not null) return b;
        var names = _host.Switch.Bridges.Select(x => x.Name).ToArray();
        throw ControlException.NotFound(names.Length == 0
            ? $"no bridge '{ControlRequest.Short(name)}': no bridges exist"
            : $"no bridge '{ControlRequest.Short(name)}' (bridges: {string.Join(", ", names)})");
    }

    private static ValePort FindPort(Bridge b, string port) =>
        b.FindPort(port) ?? throw ControlException.NotFound(b.Ports.Count == 0
            ? $"bridge {b.Name} has no port '{ControlRequest.Short(port)}': it has no ports"
            : $"bridge {b.Name} has no port '{ControlRequest.Short(port)}' (ports: {string.Join(", ", b.Ports.Select(p => p.PortName))})");

    /// <summary>Who holds each attached port: a live domain, an interface, or code inside the daemon (host).</summary>
    private Dictionary<string, (string Kind, string? Owner)> PortOwners()
    {
        var map = new Dictionary<string, (string, string?)>(StringComparer.Ordinal);
        foreach (var d in _host.Domains)
        {
            bool live = d.State is DomainState.Running or DomainState.Paused;
            foreach (var port in PortNames(d))
                if (live || !map.ContainsKey(port)) map[port] = ("domain", d.Name);
        }
        foreach (var ((bridge, port), ifname) in _interfaces) map[$"{bridge}:{port}"] = ("interface", ifname);
        foreach (var pp in PersistentPorts)
            if (pp.Attached is { } a) map[a.Name] = ("persistent", pp.User);
        return map;
    }

    /// <summary>A domain's ports: its vifs, or a process domain's current registrations.</summary>
    private static IEnumerable<string> PortNames(Domain d) =>
        d.Kind == DomainKind.Process ? d.Ports.Select(p => p.Name) : d.Spec.Vifs.Select(v => v.Port);

    private static (string Kind, string? Owner) OwnerOf(Dictionary<string, (string Kind, string? Owner)> owners, string fullName) =>
        owners.TryGetValue(fullName, out var o) ? o : ("host", null);

    /// <summary>"0-3,6" for a sorted CPU list; "all" for none.</summary>
    public static string FormatCpus(IReadOnlyList<int> cpus)
    {
        if (cpus.Count == 0) return "all";
        var sorted = cpus.Distinct().Order().ToArray();
        var parts = new List<string>();
        for (int i = 0; i < sorted.Length;)
        {
            int j = i;
            while (j + 1 < sorted.Length && sorted[j + 1] == sorted[j] + 1) j++;
            parts.Add(j == i ? sorted[i].ToString(CultureInfo.InvariantCulture)
                : j == i + 1 ? $"{sorted[i]},{sorted[j]}" : $"{sorted[i]}-{sorted[j]}");
            i = j + 1;
        }
        return string.Join(',', parts);
    }

    private static ImmutableArray<int> ParseCpus(string text, string what)
    {
        if (!CpuList.TryParse(text, out var set, out string err))
            throw ControlException.Invalid($"{what}: '{ControlRequest.Short(text)}' is not a CPU list: {err} (want e.g. \"1\", \"0-1\", \"0,2\" or \"all\")");
        int n = Environment.ProcessorCount;
        foreach (int c in set)
            if (c >= n) throw ControlException.Invalid($"{what}: CPU {c} does not exist (this machine has CPUs 0..{n - 1})");
        return set;
    }

    private DomainInfo Info(Domain d)
    {
        _cpu.TryGetValue(d.Id, out var c);
        var cpus = d.Kind == DomainKind.Process
            ? d.ProcessPorts.Select(p => p.LastCpu >= 0 && p.VCpu is { Cpus.Count: 0 } ? p.LastCpu.ToString(CultureInfo.InvariantCulture) : FormatCpus(d.Spec.CpusOf(0))).ToArray()
            : d.VCpus.Count > 0
            ? d.VCpus.Select(v => FormatCpus(v.Cpus)).ToArray()
            : Enumerable.Range(0, d.Spec.VCpus).Select(i => FormatCpus(d.Spec.CpusOf(i))).ToArray();
        return new DomainInfo
        {
            Id = d.Id, Name = d.Name, State = d.State.ToString().ToLowerInvariant(),
            Vcpus = d.Kind == DomainKind.Process ? d.VCpus.Count(v => !v.Exited) : d.Spec.VCpus, Cpus = cpus,
            CpuPct = c?.VCpuPct ?? 0, BackendPct = c?.BackendPct ?? 0, CpuTimeS = Math.Round((c?.VCpuNs ?? 0) / 1e9, 3),
            Weight = d.Weight, Cap = d.Cap, IoModel = d.IoModel.Key(), Nf = d.Guest?.Name ?? d.Spec.Nf,
            Ports = PortNames(d).ToArray(), CrashReason = d.CrashReason,
            Kind = d.Kind switch { DomainKind.Vm => "vm", DomainKind.Process => "process", _ => "thread" }, Pid = d.ProcessId,
            Kvm = d.Vm?.Machine is { } m ? $"{m.Platform.KindName}, ring {m.Ring}" : null,
            ExitStatus = d.ExitStatus, CrashRegisters = d.CrashRegisters,
            UptimeS = Math.Round((DateTime.UtcNow - d.CreatedAt).TotalSeconds, 1),
        };
    }

    // ---------------------------------------------------------------- ops

    private HelloResult Hello(ControlRequest r)
    {
        r.AllowOnly();
        return new HelloResult
        {
            Protocol = ControlProtocol.Version,
            Version = typeof(ControlDaemon).Assembly.GetName().Version?.ToString() ?? "0",
            Pid = Environment.ProcessId, Socket = _path,
            UptimeS = Math.Round(Stopwatch.GetElapsedTime(_startedAt).TotalSeconds, 1),
        };
    }

    private ListResult List(ControlRequest r)
    {
        r.AllowOnly();
        return new ListResult { SampleMs = _sampleMs, Domains = _host.Domains.Select(Info).ToArray() };
    }

    /// <summary>Longest <c>file</c> name a create request may carry (PATH_MAX); it is quoted in every config message.</summary>
    private const int MaxFileNameChars = 4096;

    /// <summary>Parses and checks the config where the request arrived; the change creates the domain.</summary>
    private Func<object?> Create(ControlRequest r)
    {
        r.AllowOnly("file", "text", "dir", "overrides");
        string text = r.String("text");
        string file = r.OptionalString("file") ?? "(config)";
        if (file.Length == 0) file = "(config)";
        if (file.Length > MaxFileNameChars)
            throw ControlException.Invalid($"create: args.file is {file.Length} characters long; a file name is at most {MaxFileNameChars}");
        string? dir = r.OptionalString("dir");
        if (dir is not null && dir.Length > MaxFileNameChars)
            throw ControlException.Invalid($"create: args.dir is {dir.Length} characters long; a directory name is at most {MaxFileNameChars}");
        if (dir is not null && !Path.IsPathRooted(dir)) throw ControlException.Invalid($"dir: '{ControlRequest.Short(dir)}' is not an absolute path");
        var config = XlConfig.Parse(text, file, r.StringList("overrides"));
        var spec = DomainSpecs.ForHost(config, _host, dir);
        return () =>
        {
            foreach (var v in spec.Vifs) NoteBridgeOf(v.Port);
            Domain d;
            try
            {
                d = _host.Create(spec);
            }
            catch (ArgumentException e)
            {
                PruneBridges();
                throw ControlException.Invalid($"{file}: {StripParameter(e)}");
            }
            catch (InvalidOperationException e)
            {
                PruneBridges();
                throw ControlException.Conflict($"{file}: {e.Message}");
            }
            Log($"created domain '{d.Name}' (id {d.Id}) from {file}");
            return new CreateResult { Domain = Info(d), Notices = config.Notices };
        };
    }

    /// <summary>xl console D: what a VM domain's guest wrote (PUTS), from stream offset <c>from</c>.</summary>
    private ConsoleResult ConsoleOp(ControlRequest r)
    {
        r.AllowOnly("domain", "from");
        var d = FindDomain(r.String("domain"));
        if (d.Vm is not { } vm)
            throw ControlException.Invalid($"domain '{d.Name}' is a thread domain (nf {d.Guest?.Name ?? d.Spec.Nf}); only VM domains (kernel=) have a console");
        long from = r.OptionalLong("from") ?? 0;
        if (from < 0) throw ControlException.Invalid($"from: {from} is negative");
        var (text, next) = vm.Console.Read(from);
        return new ConsoleResult { Domain = d.Name, Text = text, Next = next, Dropped = vm.Console.Dropped, State = d.State.ToString().ToLowerInvariant() };
    }

    private DoneResult DestroyOp(ControlRequest r)
    {
        r.AllowOnly("domain");
        return DestroyDomain(FindDomain(r.String("domain")));
    }

    /// <summary>Longest a shutdown waits for its guest (args.timeout_ms).</summary>
    public const long MaxShutdownWaitMs = 600_000;

    /// <summary>
    /// xl shutdown: a VM domain's guest is asked to stop and given args.timeout_ms (default
    /// 30 s) to exit; then the domain is destroyed (xl's on_poweroff="destroy"). A guest that
    /// does not exit in time is left running and the answer says so (destroy is the forced
    /// path). Thread and process domains have no guest kernel to ask: their shutdown is destroy.
    /// The wait happens here, off the change thread; the request and the destroy are changes.
    /// </summary>
    private async Task<object?> ShutdownOpAsync(ControlRequest r)
    {
        r.AllowOnly("domain", "timeout_ms");
        string name = r.String("domain");
        long timeoutMs = r.OptionalLong("timeout_ms") ?? 30_000;
        if (timeoutMs < 0 || timeoutMs > MaxShutdownWaitMs)
            throw ControlException.Invalid($"shutdown: timeout_ms must be 0..{MaxShutdownWaitMs}, not {timeoutMs}");
        var (d, asked) = await RunChangeAsync(() =>
        {
            var dom = FindDomain(name);
            return (dom, dom.RequestShutdown());
        }).ConfigureAwait(false);
        if (asked)
        {
            Log($"asked domain '{d.Name}' (id {d.Id}) to shut down");
            var until = Stopwatch.GetTimestamp() + timeoutMs * Stopwatch.Frequency / 1000;
            while (d.State is DomainState.Running or DomainState.Paused && Stopwatch.GetTimestamp() < until)
                await Task.Delay(10).ConfigureAwait(false);
            if (d.State is DomainState.Running or DomainState.Paused)
                throw ControlException.Conflict($"domain '{d.Name}' (id {d.Id}) did not shut down within {timeoutMs / 1000.0:0.###} s " +
                                                $"(it is {d.State.ToString().ToLowerInvariant()}: its guest has not acted on the request); 'destroy {d.Name}' stops it");
        }
        _ = await RunChangeAsync(() => DestroyDomain(d)).ConfigureAwait(false);
        string how = !asked ? "no guest kernel to ask: destroyed"
            : d.ExitStatus is { } st ? $"its guest exited with status {st}" : $"its guest {d.State.ToString().ToLowerInvariant()}";
        return new DoneResult { Message = $"shut down domain '{d.Name}' (id {d.Id}): {how}" };
    }

    private DoneResult DestroyDomain(Domain d)
    {
        if (!_host.Destroy(d))
            throw ControlException.Conflict($"domain '{d.Name}' (id {d.Id}) did not stop within {_host.DestroyTimeout.TotalSeconds:F0} s; " +
                                            "it is left crashed with its memory held until its vCPUs exit; try destroy again later");
        Log($"destroyed domain '{d.Name}' (id {d.Id})");
        PruneBridges();
        return new DoneResult { Message = $"destroyed domain '{d.Name}' (id {d.Id})" };
    }

    private DomainInfo PauseOp(ControlRequest r, bool pause)
    {
        r.AllowOnly("domain");
        var d = FindDomain(r.String("domain"));
        if (pause) d.Pause();
        else d.Unpause();
        return Info(d);
    }

    /// <summary>Parses the CPU list where the request arrived; the change finds the domain and pins.</summary>
    private Func<object?> VcpuPin(ControlRequest r)
    {
        r.AllowOnly("domain", "vcpu", "cpus");
        string domain = r.String("domain");
        string vcpu = r.OptionalScalarText("vcpu") ?? throw ControlException.BadRequest("vcpu-pin: args.vcpu is missing (a vCPU number or \"all\")");
        var set = ParseCpus(r.String("cpus"), "vcpu-pin");
        // "all" is an empty list; a running thread has to be given every CPU to be unpinned.
        if (set.IsEmpty) set = [.. Enumerable.Range(0, Environment.ProcessorCount)];
        return () => Pin(FindDomain(domain), vcpu, set);
    }

    private VcpuPinResult Pin(Domain d, string vcpu, ImmutableArray<int> set)
    {
        if (d.State is not (DomainState.Running or DomainState.Paused))
            throw ControlException.Conflict($"domain '{d.Name}' is {d.State.ToString().ToLowerInvariant()}; only a running or paused domain can be pinned");
        IEnumerable<VCpu> targets;
        if (vcpu.Equals("all", StringComparison.OrdinalIgnoreCase)) targets = d.VCpus;
        else if (int.TryParse(vcpu, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < d.VCpus.Count) targets = [d.VCpus[i]];
        else throw ControlException.NotFound($"domain '{d.Name}' has no vCPU '{ControlRequest.Short(vcpu)}' (it has vCPUs 0..{d.VCpus.Count - 1}, or use all)");
        foreach (var v in targets)
        {
            try
            {
                v.Pin(set);
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                throw ControlException.Invalid($"cannot pin vCPU {v.Index} of '{d.Name}' to CPUs {FormatCpus(set)}: {e.Message}");
            }
        }
        _host.CpuPolicy?.Apply(d);
        return new VcpuPinResult
        {
            Domain = d.Name,
            Vcpus = d.VCpus.Select(v => new VcpuInfo { Vcpu = v.Index, Cpus = FormatCpus(v.Cpus), Tid = v.Tid }).ToArray(),
        };
    }

    private ScheduleInfo ScheduleOf(Domain d) => new()
    {
        Name = d.Name, Id = d.Id, Weight = d.Weight, Cap = d.Cap, Enforced = _host.CpuPolicy is not null,
    };

    private ScheduleResult Schedule(ControlRequest r)
    {
        r.AllowOnly("domain", "weight", "cap");
        string? name = r.OptionalString("domain");
        int? weight = r.OptionalInt("weight");
        int? cap = r.OptionalInt("cap");
        if (name is null)
        {
            if (weight is not null || cap is not null) throw ControlException.BadRequest("sched-credit2: -w and -c need -d DOMAIN");
            return new ScheduleResult { Domains = _host.Domains.Select(ScheduleOf).ToArray() };
        }
        var d = FindDomain(name);
        if (weight is not null || cap is not null)
        {
            _host.SetSchedule(d, weight, cap);
            Log($"domain '{d.Name}': weight {d.Weight}, cap {d.Cap}");
        }
        return new ScheduleResult { Domains = [ScheduleOf(d)] };
    }

    private DoneResult ValeCreate(ControlRequest r)
    {
        r.AllowOnly("bridge");
        string name = r.String("bridge");
        if (name.Contains(':'))
            throw ControlException.Invalid($"'{ControlRequest.Short(name)}' is a port name; vale-ctl -n takes a bridge name such as valex");
        bool existed = _host.Switch.FindBridge(name) is not null;
        var b = _host.Switch.GetOrCreateBridge(name);
        return new DoneResult { Message = existed ? $"bridge {b.Name} already exists" : $"created bridge {b.Name}" };
    }

    private DoneResult ValeRemove(ControlRequest r)
    {
        r.AllowOnly("bridge");
        var b = FindBridge(r.String("bridge"));
        if (b.Ports.Count > 0)
            throw ControlException.Conflict($"bridge {b.Name} still has {b.Ports.Count} port(s) ({string.Join(", ", b.Ports.Select(p => p.PortName))}); detach them or destroy their domains first");
        _host.Switch.RemoveBridge(b.Name);
        return new DoneResult { Message = $"removed bridge {b.Name}" };
    }

    private const string NoAttacher = "attaching physical interfaces is not available in this build";

    // Bridges come and go with their ports, as in VALE: a bridge that had a port (a domain's
    // vif, an interface, a pkt-gen port) is removed when its last port has left.
    private readonly ConcurrentDictionary<string, byte> _usedBridges = new(StringComparer.Ordinal);

    private void NoteBridgeOf(string portName)
    {
        int colon = portName.IndexOf(':');
        if (colon > 0) _usedBridges[portName[..colon]] = 0;
    }

    /// <summary>Removes the bridges whose last port has left; safe from any thread (the switch locks).</summary>
    internal void PruneBridges()
    {
        foreach (var b in _host.Switch.Bridges)
        {
            if (b.Ports.Count != 0 || !_usedBridges.ContainsKey(b.Name)) continue;
            if (_interfaces.Keys.Any(k => k.Bridge == b.Name)) continue; // an interface the daemon attached is still recorded there
            try
            {
                if (_host.Switch.RemoveBridge(b.Name))
                {
                    _usedBridges.TryRemove(b.Name, out _);
                    Log($"removed bridge {b.Name}: its last port left");
                }
            }
            catch (InvalidOperationException)
            {
                // A port attached meanwhile: the bridge stays.
            }
        }
    }

    private DoneResult ValeAttach(ControlRequest r)
    {
        r.AllowOnly("bridge", "interface");
        string bridge = r.String("bridge"), ifname = r.String("interface");
        Bridge.ParsePortName($"{bridge}:{ifname}");
        var attacher = Attacher ?? throw ControlException.Unsupported(NoAttacher);
        var b = _host.Switch.GetOrCreateBridge(bridge);
        _usedBridges[b.Name] = 0;
        if (b.FindPort(ifname) is not null)
            throw ControlException.Conflict($"bridge {b.Name} already has a port named '{ifname}'");
        // Recorded before the attach, which takes a while (sockets, ring memory): the sampler's
        // PruneBridges skips a bridge with a recorded interface, so it cannot remove this one,
        // still without ports, under the attach (a re-created bridge would lose its settings).
        _interfaces[(b.Name, ifname)] = ifname;
        try
        {
            attacher.Attach(b, ifname);
        }
        catch (Exception e)
        {
            _interfaces.TryRemove((b.Name, ifname), out _);
            PruneBridges();
            if (e is ControlException) throw;
            throw ControlException.Invalid($"cannot attach {ifname} to {b.Name}: {e.Message}");
        }
        Log($"attached interface {ifname} to {b.Name}");
        return new DoneResult { Message = $"attached {ifname} to {b.Name}" };
    }

    private DoneResult ValeDetach(ControlRequest r)
    {
        r.AllowOnly("bridge", "port");
        var b = FindBridge(r.String("bridge"));
        var p = FindPort(b, r.String("port"));
        var (kind, owner) = OwnerOf(PortOwners(), p.Name);
        if (kind == "domain")
            throw ControlException.Conflict($"port {p.Name} belongs to domain '{owner}'; destroy the domain to detach it");
        var attacher = Attacher ?? throw ControlException.Unsupported(NoAttacher);
        if (kind != "interface")
            throw ControlException.Conflict($"port {p.Name} was not attached with vale-ctl -a; only interface ports can be detached");
        try
        {
            attacher.Detach(b, p.PortName);
        }
        catch (Exception e) when (e is not ControlException)
        {
            throw ControlException.Invalid($"cannot detach {p.Name}: {e.Message}");
        }
        _interfaces.TryRemove((b.Name, p.PortName), out _);
        Log($"detached interface {p.Name}");
        PruneBridges();
        return new DoneResult { Message = $"detached {p.Name}" };
    }

    /// <summary>netmap's PORT_HDR_SET for any port of a bridge: the virtio-net header length, 0, 10 or 12.</summary>
    private DoneResult PortHeaderSet(ControlRequest r)
    {
        r.AllowOnly("bridge", "port", "length");
        var b = FindBridge(r.String("bridge"));
        var p = FindPort(b, r.String("port"));
        int length = r.Int("length");
        if (!VirtioNetHeader.IsValidLength(length)) throw ControlException.Invalid(VirtioNetHeader.InvalidLengthMessage(length));
        int old = p.VirtioHeaderLength;
        p.VirtioHeaderLength = length;
        Log($"port {p.Name}: virtio-net header length {old} -> {length}");
        return new DoneResult { Message = $"port {p.Name}: virtio-net header length {length}" + (old == length ? " (unchanged)" : $" (was {old})") };
    }

    private ValeListResult ValeList(ControlRequest r)
    {
        r.AllowOnly();
        var owners = PortOwners();
        return new ValeListResult
        {
            InterfacesAvailable = Attacher is not null,
            Persistent = PersistentPorts.OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => new PersistentPortInfo
            {
                Name = p.Name, Bridge = p.BridgeName, User = p.User, MemId = p.MemId, VirtioHeaderLength = p.SwitchPort?.VirtioHeaderLength ?? 0,
            }).ToArray(),
            Bridges = _host.Switch.Bridges.Select(b => new BridgeInfo
            {
                Name = b.Name,
                Ports = b.Ports.Select(p =>
                {
                    var (kind, owner) = OwnerOf(owners, p.Name);
                    var iface = kind == "interface" ? Attacher?.Describe(b, p.PortName) : null;
                    return new ValePortInfo
                    {
                        // An interface port is up only when its Linux link is: never "up" next to a link that is down.
                        Name = p.Name, Port = p.PortName, Index = p.BridgeIndex, Kind = kind, Owner = owner, Up = p.Up && (iface is null || iface.Link == "up"),
                        Interface = iface,
                    };
                }).ToArray(),
            }).ToArray(),
        };
    }

    // ---------------------------------------------------------------- settings and ctl

    private sealed record Setting(string Key, string Description, Func<ControlDaemon, string> Get, Action<ControlDaemon, string> Set);

    private static readonly Setting[] Settings =
    [
        new("bridge_batch", "slots collected before each flush, 0..1024 (0: drop-everything test mode); ctl op 1",
            d => d._host.Switch.BridgeBatch.ToString(CultureInfo.InvariantCulture),
            (d, v) => d._host.Switch.BridgeBatch = IntIn("bridge_batch", v, 0, TxKring.MaxBatch)),
        new("drvdom_txsync", "1: NIC transmission by the port's driver thread instead of the sender's context; ctl op 5",
            d => d._host.Settings.DriverDomainTxSync ? "1" : "0",
            (d, v) => d._host.Settings.DriverDomainTxSync = Bool("drvdom_txsync", v)),
        new("io_model", "I/O model of new domains without io_model=: hypercall, split or merge",
            d => d._host.DefaultIoModel.Key(),
            (d, v) => d._host.DefaultIoModel = IoModels.Parse(v)),
        new("watchdog_ms", "a vCPU that does not check in for this long crashes its domain, 100..3600000",
            d => ((long)d._host.WatchdogTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
            (d, v) => d._host.WatchdogTimeout = TimeSpan.FromMilliseconds(IntIn("watchdog_ms", v, 100, 3_600_000))),
        new("destroy_timeout_ms", "how long destroy waits for a domain's vCPUs to stop, 100..60000",
            d => ((long)d._host.DestroyTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture),
            (d, v) => d._host.DestroyTimeout = TimeSpan.FromMilliseconds(IntIn("destroy_timeout_ms", v, 100, 60_000))),
        new("sample_ms", "interval of list's cpu% sampling, 100..60000",
            d => d._sampleMs.ToString(CultureInfo.InvariantCulture),
            (d, v) => d._sampleMs = IntIn("sample_ms", v, 100, 60_000)),
        new("backend_cpus", "CPUs for split-model backend threads: a CPU list, or auto (cores no vCPU is pinned to)",
            d => d._host.BackendCpus is { } c ? FormatCpus(c) : "auto",
            (d, v) => d._host.BackendCpus = v.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase) ? null : NonEmpty(ParseCpus(v, "backend_cpus"))),
    ];

    private static ImmutableArray<int> NonEmpty(ImmutableArray<int> cpus) =>
        cpus.IsEmpty ? throw ControlException.Invalid("backend_cpus: 'all' is not a placement; give CPUs or auto") : cpus;

    private static int IntIn(string key, string v, int min, int max)
    {
        if (!long.TryParse(v.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l))
            throw ControlException.Invalid($"{key}: '{ControlRequest.Short(v)}' is not an integer (want {min}..{max})");
        if (l < min || l > max) throw ControlException.Invalid($"{key}: {l} is out of range (want {min}..{max})");
        return (int)l;
    }

    private static bool Bool(string key, string v) => v.Trim().ToLowerInvariant() switch
    {
        "1" or "true" or "on" or "yes" => true,
        "0" or "false" or "off" or "no" => false,
        _ => throw ControlException.Invalid($"{key}: '{ControlRequest.Short(v)}' is not 0 or 1"),
    };

    private static Setting FindSetting(string key) =>
        Settings.FirstOrDefault(s => s.Key == key.Trim().ToLowerInvariant().Replace('-', '_'))
        ?? throw ControlException.NotFound($"unknown setting '{ControlRequest.Short(key)}'; settings: {string.Join(", ", Settings.Select(s => s.Key))}");

    private SettingInfo InfoOf(Setting s) => new() { Key = s.Key, Value = s.Get(this), Description = s.Description };

    private SettingsResult Get(ControlRequest r)
    {
        r.AllowOnly("key");
        string? key = r.OptionalString("key");
        return new SettingsResult { Settings = key is null ? Settings.Select(InfoOf).ToArray() : [InfoOf(FindSetting(key))] };
    }

    private SettingsResult Set(ControlRequest r)
    {
        r.AllowOnly("key", "value");
        var s = FindSetting(r.String("key"));
        string value = r.OptionalScalarText("value") ?? throw ControlException.BadRequest("set: args.value is missing");
        try
        {
            s.Set(this, value);
        }
        catch (ArgumentException e)
        {
            throw ControlException.Invalid($"{s.Key}: {StripParameter(e)}");
        }
        Log($"{s.Key} = {s.Get(this)}");
        return new SettingsResult { Settings = [InfoOf(s)] };
    }

    private SettingsResult IoModelOp(ControlRequest r)
    {
        r.AllowOnly("model");
        var s = FindSetting("io_model");
        if (r.OptionalString("model") is { } m)
        {
            try
            {
                s.Set(this, m);
            }
            catch (ArgumentException e)
            {
                throw ControlException.Invalid(StripParameter(e));
            }
            Log($"io_model = {s.Get(this)}");
        }
        return new SettingsResult { Settings = [InfoOf(s)] };
    }

    /// <summary>xennet_ctrl's op numbers (reference §5.1).</summary>
    private static readonly string[] CtlNames = ["", "SET_BDG_BATCH", "SET_I40E_BUSY_WAIT", "SET_CSCHED2_MIN_TIMER", "SET_CSCHED2_CREDIT_INIT", "SET_DRVDOM_TXSYNC"];

    private CtlResult Ctl(ControlRequest r)
    {
        r.AllowOnly("op", "value");
        long op = r.Long("op");
        long value = r.Long("value");
        switch (op)
        {
            case 1:
                if (value is < 0 or > TxKring.MaxBatch)
                    throw ControlException.Invalid($"ctl op 1 (bridge batch): {value} is out of range; use 0..{TxKring.MaxBatch} (0 is the drop-everything test mode)");
                _host.Switch.BridgeBatch = (int)value;
                Log($"ctl op 1: bridge_batch = {value}");
                return new CtlResult { Op = 1, Name = CtlNames[1], Key = "bridge_batch", Value = value.ToString(CultureInfo.InvariantCulture) };
            case 2:
                throw ControlException.Unsupported("ctl op 2 (SET_I40E_BUSY_WAIT, NIC busy-wait) cannot be honoured: no NIC driver runs in the switching path here to busy-wait in (the reference Xen does not implement it either); nothing was changed");
            case 3:
                throw ControlException.Unsupported("ctl op 3 (SET_CSCHED2_MIN_TIMER, scheduler minimum timer) cannot be honoured: domains are Linux threads and the kernel's scheduler has no per-host minimum timer to set (the reference Xen does not implement it either); nothing was changed");
            case 4:
                throw ControlException.Unsupported("ctl op 4 (SET_CSCHED2_CREDIT_INIT, scheduler initial credit) cannot be honoured: the kernel's scheduler has no credit to initialise; use sched-credit2 -w/-c for weights and caps (the reference Xen does not implement it either); nothing was changed");
            case 5:
                _host.Settings.DriverDomainTxSync = value != 0;
                Log($"ctl op 5: drvdom_txsync = {(value != 0 ? 1 : 0)} ({(value != 0 ? "driver domain operates HW txsync" : "the sender's context operates HW txsync")})");
                return new CtlResult { Op = 5, Name = CtlNames[5], Key = "drvdom_txsync", Value = value != 0 ? "1" : "0" };
            default:
                throw ControlException.Invalid($"unknown ctl op {op}; ops: 1 bridge batch, 2 NIC busy-wait, 3 scheduler min timer, 4 scheduler initial credit, 5 driver-domain txsync");
        }
    }

    // ---------------------------------------------------------------- stats

    private static Dictionary<string, long> DropMap(long[] drops)
    {
        var map = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var reason in DropReasons.All) map[reason.Key()] = drops[(int)reason];
        return map;
    }

    // stats --clear (testpmd's "clear port stats"): a baseline per port (and per bridge when all of
    // it is cleared) that stats subtracts. The live counters the switch writes are never touched,
    // so the bridge's accounting invariant holds; "unaccounted" is always computed over the lifetime.
    private sealed record Baseline(PortStatistics Stats, long At);
    private sealed record BridgeBaseline(BridgeStatistics Stats, long At);
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<ValePort, Baseline> _portBaselines = new();
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<Bridge, BridgeBaseline> _bridgeBaselines = new();

    private static long[] Minus(long[] a, long[] b) => a.Select((v, i) => v - b[i]).ToArray();

    private PortCounters Counters(ValePort p, (string Kind, string? Owner) owner)
    {
        var s = p.GetStatistics();
        double? ago = null;
        if (_portBaselines.TryGetValue(p, out var b))
        {
            var z = b.Stats;
            s = s with
            {
                TxPackets = s.TxPackets - z.TxPackets, TxBytes = s.TxBytes - z.TxBytes, RxPackets = s.RxPackets - z.RxPackets, RxBytes = s.RxBytes - z.RxBytes,
                FloodCopies = s.FloodCopies - z.FloodCopies, Drops = Minus(s.Drops, z.Drops),
                CorruptRingIndex = s.CorruptRingIndex - z.CorruptRingIndex, BusySkips = s.BusySkips - z.BusySkips,
            };
            ago = Math.Round(Stopwatch.GetElapsedTime(b.At).TotalSeconds, 1);
        }
        return new PortCounters
        {
            Name = p.Name, Kind = owner.Kind, Owner = owner.Owner, Index = p.BridgeIndex,
            TxPackets = s.TxPackets, TxBytes = s.TxBytes, RxPackets = s.RxPackets, RxBytes = s.RxBytes,
            FloodCopies = s.FloodCopies, Dropped = s.TotalDrops, Drops = DropMap(s.Drops),
            CorruptRingIndex = s.CorruptRingIndex, BusySkips = s.BusySkips, ClearedSAgo = ago,
        };
    }

    private BridgeCounters BridgeStats(Bridge b, Dictionary<string, (string, string?)> owners, ValePort? only)
    {
        var s = b.GetStatistics();
        long unaccounted = s.Unaccounted;
        double? ago = null;
        if (_bridgeBaselines.TryGetValue(b, out var bb))
        {
            var z = bb.Stats;
            s = s with
            {
                Sent = s.Sent - z.Sent, SentBytes = s.SentBytes - z.SentBytes, Delivered = s.Delivered - z.Delivered, DeliveredBytes = s.DeliveredBytes - z.DeliveredBytes,
                FloodCopies = s.FloodCopies - z.FloodCopies, Drops = Minus(s.Drops, z.Drops), CorruptRingIndex = s.CorruptRingIndex - z.CorruptRingIndex,
            };
            ago = Math.Round(Stopwatch.GetElapsedTime(bb.At).TotalSeconds, 1);
        }
        var ports = b.Ports;
        var byIndex = ports.ToDictionary(p => p.BridgeIndex, p => p.PortName);
        var learning = b.Forwarding.Entries()
            .Where(e => only is null || e.Port == only.BridgeIndex)
            .Select(e => new LearnedMac
            {
                Mac = ForwardingTable.FormatMac(e.Mac),
                Port = byIndex.TryGetValue(e.Port, out var n) ? n : $"#{e.Port}",
                AgeS = e.AgeSeconds,
            })
            .OrderBy(e => e.Port, StringComparer.Ordinal).ThenBy(e => e.Mac, StringComparer.Ordinal)
            .ToArray();
        return new BridgeCounters
        {
            Name = b.Name, Sent = s.Sent, SentBytes = s.SentBytes, Delivered = s.Delivered, DeliveredBytes = s.DeliveredBytes,
            FloodCopies = s.FloodCopies, Dropped = s.Dropped, Drops = DropMap(s.Drops), Unaccounted = unaccounted,
            CorruptRingIndex = s.CorruptRingIndex, TableEntries = s.TableEntries, TableCapacity = s.TableCapacity, ClearedSAgo = ago,
            Ports = (only is null ? ports : [only]).Select(p => Counters(p, OwnerOf(owners, p.Name))).ToArray(),
            Learning = learning,
        };
    }

    private StatsResult Stats(ControlRequest r)
    {
        r.AllowOnly("port", "clear");
        string? which = r.OptionalString("port");
        bool clear = r.OptionalBool("clear") ?? false;
        var owners = PortOwners();
        List<(Bridge Bridge, ValePort? Only)> scope;
        if (which is null)
            scope = _host.Switch.Bridges.Select(b => (b, (ValePort?)null)).ToList();
        else if (which.IndexOf(':') is int colon and >= 0)
        {
            var b = FindBridge(which[..colon]);
            scope = [(b, FindPort(b, which[(colon + 1)..]))];
        }
        else
            scope = [(FindBridge(which), null)];
        var bridges = scope.Select(x => BridgeStats(x.Bridge, owners, x.Only)).ToArray();
        List<string>? cleared = null;
        if (clear)
        {
            cleared = [];
            long now = Stopwatch.GetTimestamp();
            foreach (var (b, only) in scope)
            {
                if (only is null) _bridgeBaselines.AddOrUpdate(b, new BridgeBaseline(b.GetStatistics(), now));
                foreach (var p in only is null ? b.Ports : [only])
                {
                    _portBaselines.AddOrUpdate(p, new Baseline(p.GetStatistics(), now));
                    cleared.Add(p.Name);
                }
            }
            Log($"stats cleared for {(which is null ? "every port" : which)} ({cleared.Count} port(s))");
        }
        var vms = _host.Domains.Where(d => d.Kind == DomainKind.Vm).Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        var list = bridges.Select(b => vms.Count == 0 ? b : b with
        {
            Ports = b.Ports.Select(pc => pc.Kind == "domain" && pc.Owner is { } o && vms.Contains(o) ? pc with { DomainKind = "vm" } : pc).ToArray(),
        }).ToArray();
        var kvm = Vmm.KvmPlatform.Current;
        return new StatsResult
        {
            BridgeBatch = _host.Switch.BridgeBatch, Bridges = list, Cleared = cleared,
            Kvm = vms.Count == 0 ? null : kvm.Describe(),
        };
    }
}
