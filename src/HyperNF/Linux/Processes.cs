using System.Diagnostics;

namespace HyperNF.Linux;

/// <summary>Runs a helper program (ip, ovs-vsctl, apt-get ...) and collects its output; never through a shell.</summary>
public static class Processes
{
    /// <summary>Exit code (127: could not start, -1: timed out, then killed) and stdout + stderr.</summary>
    public static int Run(out string output, int timeoutMs, params string[] args)
    {
        var psi = new ProcessStartInfo(args[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args.Skip(1)) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            output = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(timeoutMs))
            {
                p.Kill();
                output = "timed out";
                return -1;
            }
            output += err.Result;
            return p.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            output = e.Message;
            return 127;
        }
    }

    /// <summary>Runs the program and throws, naming the command and its output, unless it exits 0.</summary>
    public static string Must(int timeoutMs, params string[] args)
    {
        int rc = Run(out string output, timeoutMs, args);
        if (rc != 0) throw new InvalidOperationException($"'{string.Join(' ', args)}' failed ({rc}): {output.Trim()}");
        return output;
    }
}
