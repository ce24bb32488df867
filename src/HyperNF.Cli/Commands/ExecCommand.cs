using System.Collections;
using System.CommandLine;
using System.Runtime.InteropServices;
using HyperNF.Control;
using HyperNF.Hypervisor;

namespace HyperNF.Cli.Commands;

/// <summary>
/// <c>hypernf exec [opts] -- PROGRAM ARGS</c>: runs an unmodified netmap program as a process
/// domain (docs/process-domains.md). It checks the daemon and the preload library, sets
/// LD_PRELOAD, HYPERNF_SOCKET and the options' variables, pins itself to --cpus, and execs
/// the program (same pid: the daemon's SO_PEERCRED sees the program).
/// </summary>
public static class ExecCommand
{
    public const string LibraryName = "libhypernf-netmap.so";

    public static Command Create()
    {
        var socket = new Option<string?>("--socket") { Description = $"The daemon's socket (default: ${ControlProtocol.SocketEnvironmentVariable}, else {ControlProtocol.DefaultSocketPath})" };
        var ioModel = new Option<string?>("--io-model") { Description = "I/O model of the program's domain: hypercall, split or merge (default: the daemon's)" };
        var weight = new Option<int?>("--weight") { Description = "CPU weight of the domain (1..65535, default 256)" };
        var cap = new Option<int?>("--cap") { Description = "CPU cap of the domain in % of one CPU (0 = none)" };
        var cpus = new Option<string?>("--cpus") { Description = "CPUs for the program and its host threads, e.g. 1 or 0-1" };
        var name = new Option<string?>("--name") { Description = "Domain name (default: PROGRAM-PID)" };
        var program = new Argument<string[]>("program") { Description = "-- PROGRAM [ARGS...]: the netmap program and its arguments", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("exec", "Run an unmodified netmap program (pkt-gen, bridge, vale-ctl, lb ...) as a process domain of the running daemon: its /dev/netmap is served by the daemon through " + LibraryName + ".")
        {
            socket, ioModel, weight, cap, cpus, name, program,
        };
        cmd.SetAction(p => Run(ControlProtocol.ResolveSocketPath(p.GetValue(socket)), p.GetValue(ioModel), p.GetValue(weight), p.GetValue(cap),
            p.GetValue(cpus), p.GetValue(name), p.GetValue(program)!));
        return cmd;
    }

    /// <summary>The preload library of this build: $HYPERNF_PRELOAD, else artifacts/preload above the CLI.</summary>
    public static string? FindLibrary()
    {
        string? env = Environment.GetEnvironmentVariable("HYPERNF_PRELOAD");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? Path.GetFullPath(env) : null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "artifacts", "preload", LibraryName);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static int Run(string socketPath, string? ioModel, int? weight, int? cap, string? cpus, string? name, string[] argv)
    {
        try
        {
            if (ioModel is not null) IoModels.Parse(ioModel);
            if (weight is < 1 or > 65535) throw new ArgumentException($"--weight must be 1..65535, not {weight}");
            if (cap is < 0 or > 100) throw new ArgumentException($"--cap must be 0..100 (% of one CPU), not {cap}");
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"hypernf exec: {e.Message}");
            return 1;
        }
        int[] pin = [];
        if (cpus is not null)
        {
            if (!CpuList.TryParse(cpus, out var set, out string err))
            {
                Console.Error.WriteLine($"hypernf exec: --cpus '{cpus}' is not a CPU list: {err}");
                return 1;
            }
            pin = [.. set];
        }
        string? lib = FindLibrary();
        if (lib is null)
        {
            Console.Error.WriteLine($"hypernf exec: {LibraryName} not found (build it with ./hypernf or dotnet build; or set HYPERNF_PRELOAD)");
            return 1;
        }
        try
        {
            using var client = ControlClient.Connect(socketPath);
            client.Call("hello");
        }
        catch (Exception e) when (e is ControlUnavailableException or ControlException)
        {
            Console.Error.WriteLine($"hypernf exec: {ControlProtocol.OneLine(e.Message)}");
            return 2;
        }
        string? path = Resolve(argv[0]);
        if (path is null)
        {
            Console.Error.WriteLine($"hypernf exec: {argv[0]}: command not found");
            return 127;
        }
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables()) env[(string)e.Key] = (string?)e.Value ?? "";
        env["LD_PRELOAD"] = env.TryGetValue("LD_PRELOAD", out var old) && old.Length > 0 ? $"{lib}:{old}" : lib;
        env[ControlProtocol.SocketEnvironmentVariable] = Path.GetFullPath(socketPath);
        if (ioModel is not null) env["HYPERNF_IO_MODEL"] = ioModel;
        if (weight is { } w) env["HYPERNF_WEIGHT"] = w.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (cap is { } c) env["HYPERNF_CAP"] = c.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (cpus is not null) env["HYPERNF_CPUS"] = cpus;
        if (name is not null) env["HYPERNF_NAME"] = name;
        if (pin.Length > 0) HyperNF.Linux.Native.SetAffinity(0, pin); // inherited by the program (this thread execs)
        Console.Out.Flush();
        Console.Error.Flush();
        int errno = HyperNF.Linux.Exec.Execve(path, argv, env.Select(kv => $"{kv.Key}={kv.Value}").ToArray());
        Console.Error.WriteLine($"hypernf exec: {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        return 126;
    }

    private static string? Resolve(string program)
    {
        if (program.Contains('/')) return File.Exists(program) ? Path.GetFullPath(program) : null;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
