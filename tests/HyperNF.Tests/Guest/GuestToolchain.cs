using System.Diagnostics;
using Xunit;

namespace HyperNF.Tests.Guest;

/// <summary>A fact that needs the host's gcc, make and objdump (the guest SDK's toolchain); skipped with the reason when one is missing.</summary>
public sealed class GuestToolchainFactAttribute : FactAttribute
{
    public GuestToolchainFactAttribute()
    {
        if (GuestToolchain.Missing is { } why) Skip = why;
    }
}

/// <summary>A theory that needs the guest SDK's toolchain (see <see cref="GuestToolchainFactAttribute"/>).</summary>
public sealed class GuestToolchainTheoryAttribute : TheoryAttribute
{
    public GuestToolchainTheoryAttribute()
    {
        if (GuestToolchain.Missing is { } why) Skip = why;
    }
}

/// <summary>
/// Paths of the guest SDK (guest/) and its images (artifacts/guest/), and small process
/// helpers for the tests that build and inspect them.
/// </summary>
internal static class GuestToolchain
{
    public static readonly string[] Images = ["hello", "pkt-gen", "l2fwd", "router", "cost", "hostile"];

    public static string RepoRoot { get; } = FindRoot();
    public static string GuestDir => Path.Combine(RepoRoot, "guest");
    public static string ImageDir => Path.Combine(RepoRoot, "artifacts", "guest");

    /// <summary>Null when gcc, make and objdump are on PATH, else what is missing.</summary>
    public static string? Missing { get; } = Probe();

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "HyperNF.slnx"))) return d.FullName;
        throw new DirectoryNotFoundException($"no HyperNF.slnx above {AppContext.BaseDirectory}");
    }

    private static string? Probe()
    {
        var missing = new[] { "gcc", "make", "objdump" }.Where(t => Which(t) is null).ToArray();
        return missing.Length == 0 ? null : $"the guest SDK's toolchain is missing: {string.Join(", ", missing)} (Debian: apt-get install build-essential binutils)";
    }

    public static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>Path of an image the build produced; fails with the command that makes it when it is missing.</summary>
    public static string Image(string name)
    {
        string path = Path.Combine(ImageDir, name + ".elf");
        Assert.True(File.Exists(path), $"{path} is missing: the .NET build makes it (dotnet build tests/HyperNF.Tests), or run make -C guest");
        return path;
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string All => Stdout + Stderr;
    }

    /// <summary>Runs a program to completion (stdin closed) within <paramref name="timeoutMs"/>; output captured.</summary>
    public static Result Run(string file, IEnumerable<string> args, int timeoutMs = 120_000, string? workDir = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workDir ?? RepoRoot,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in {timeoutMs} ms");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A fresh directory under the system temp folder, named for this SDK's tests.</summary>
    public static string TempDir(string what)
    {
        string d = Path.Combine(Path.GetTempPath(), $"guest-sdk-{what}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(d);
        return d;
    }
}

/// <summary>
/// guest/test/hosttest.c compiled for the host (once per test run) and kept running: the
/// SDK's portable C code answering one command per line (see the C file's header).
/// </summary>
internal sealed class HostTest : IDisposable
{
    private static readonly Lazy<string> Binary = new(Build);
    private static readonly Lock Gate = new();
    private static HostTest? _shared;

    private readonly Process _p;

    private HostTest(string binary)
    {
        var psi = new ProcessStartInfo(binary)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        _p = Process.Start(psi)!;
        _p.ErrorDataReceived += (_, _) => { };
        _p.BeginErrorReadLine();
    }

    /// <summary>The shared instance (commands are serialised).</summary>
    public static HostTest Shared
    {
        get
        {
            lock (Gate)
            {
                if (_shared is null || _shared._p.HasExited) _shared = new HostTest(Binary.Value);
                return _shared;
            }
        }
    }

    private static string Build()
    {
        string dir = GuestToolchain.TempDir("hosttest");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        string bin = Path.Combine(dir, "hosttest");
        string g = GuestToolchain.GuestDir;
        var r = GuestToolchain.Run("gcc", [
            "-O2", "-Wall", "-Wextra", "-Werror", "-DHNF_HOST", "-I" + Path.Combine(g, "include"), "-o", bin,
            Path.Combine(g, "test", "hosttest.c"), Path.Combine(g, "lib", "fmt.c"), Path.Combine(g, "lib", "args.c"),
            Path.Combine(g, "lib", "net.c"), Path.Combine(g, "lib", "router.c")]);
        Assert.True(r.ExitCode == 0, $"compiling guest/test/hosttest.c failed:\n{r.All}");
        return bin;
    }

    /// <summary>Sends one command; returns the answer lines (until "end" for multi-line answers).</summary>
    public string Ask(string command) => AskLines(command, multi: false)[0];

    public List<string> AskLines(string command, bool multi = true)
    {
        lock (Gate)
        {
            Assert.DoesNotContain('\n', command);
            _p.StandardInput.WriteLine(command);
            _p.StandardInput.Flush();
            var lines = new List<string>();
            while (true)
            {
                var read = _p.StandardOutput.ReadLineAsync();
                if (!read.Wait(30_000))
                {
                    // The stream is now unusable (a read is pending): the next caller gets a fresh process.
                    _p.Kill();
                    Assert.Fail($"hosttest did not answer '{Trim(command)}' in 30 s");
                }
                string? line = read.Result;
                Assert.True(line is not null, $"hosttest ended while answering '{Trim(command)}'");
                if (multi && line == "end") return lines;
                lines.Add(line!);
                if (!multi) return lines;
            }
        }
    }

    private static string Trim(string s) => s.Length > 80 ? s[..80] + "..." : s;

    public static string Hex(ReadOnlySpan<byte> b) => Convert.ToHexString(b).ToLowerInvariant();
    public static byte[] Bytes(string hex) => Convert.FromHexString(hex);

    public void Dispose()
    {
        try { _p.StandardInput.Close(); _p.WaitForExit(5000); } catch (IOException) { }
        if (!_p.HasExited) _p.Kill();
        _p.Dispose();
    }
}
