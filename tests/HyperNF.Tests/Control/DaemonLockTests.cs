using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using HyperNF.Control;
using HyperNF.Hypervisor;
using Xunit;

namespace HyperNF.Tests.Control;

/// <summary>Runs as root where setpriv, flock and the user nobody exist; skipped with the reason otherwise.</summary>
public sealed class OtherUserFactAttribute : FactAttribute
{
    public OtherUserFactAttribute()
    {
        if (DaemonLockTests.Missing() is { } why) Skip = why;
    }
}

/// <summary>
/// The one-daemon-per-socket lock against other local users: the real CLI daemon as root,
/// and an unprivileged user (<c>nobody</c>, through setpriv) trying to take the lock first.
/// </summary>
public sealed class DaemonLockTests
{
    private const uint Nobody = 65534;

    /// <summary>Null when the test can run; else why not (it then skips with that message).</summary>
    internal static string? Missing()
    {
        if (HyperNF.Linux.SocketFiles.GetUid() != 0) return "needs root (to act as another user)";
        if (!File.Exists("/usr/bin/setpriv")) return "needs setpriv (util-linux)";
        if (!File.Exists("/usr/bin/flock")) return "needs flock (util-linux)";
        if (!File.ReadLines("/etc/passwd").Any(l => l.Split(':') is { Length: > 2 } f && f[2] == Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            return "needs the user nobody (uid 65534)";
        return null;
    }

    /// <summary>A process as nobody: <c>setpriv --reuid 65534 --regid 65534 --clear-groups -- FILE ARGS</c>.</summary>
    private static ProcessStartInfo AsNobody(string file, params string[] args)
    {
        var psi = new ProcessStartInfo("/usr/bin/setpriv")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (string a in (string[])["--reuid", $"{Nobody}", "--regid", $"{Nobody}", "--clear-groups", "--", file, .. args]) psi.ArgumentList.Add(a);
        psi.Environment["HOME"] = "/";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        return psi;
    }

    private static Cli.Result NobodyRuns(string file, params string[] args) => Cli.RunProcess(AsNobody(file, args), $"(nobody) {file} {string.Join(' ', args)}");

    /// <summary>The real CLI daemon, run as nobody, on <paramref name="socket"/>: it must not start.</summary>
    private static Cli.Result NobodyDaemon(string socket) => NobodyRuns("/usr/bin/dotnet", Cli.Dll, "daemon", "--socket", socket);

    /// <summary>The abstract socket name older builds used as the lock: anyone can bind it.</summary>
    private static Socket BindOldLockName(string socketPath)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        string name = "hypernf-daemon:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(socketPath)))[..32];
        s.Bind(new UnixDomainSocketEndPoint("\0" + name));
        return s;
    }

    [OtherUserFact]
    public void An_unprivileged_user_cannot_take_the_lock_before_or_while_the_daemon_runs()
    {
        using var tmp = new TempDir();
        File.SetUnixFileMode(tmp.Path, (UnixFileMode)0x1ED); // 0755, root's: like /run/hypernf, nobody may enter but not write
        string sock = tmp.File("d.sock");
        string lockFile = ControlDaemon.LockPath(sock);

        // Before the daemon starts, nobody tries every way in: the name the old lock used (an
        // abstract socket: no owner, so binding it here is what any user could do), the lock
        // file with flock(1), and a daemon of its own on the same path.
        using var oldName = BindOldLockName(sock);
        var flock = NobodyRuns("/usr/bin/flock", "-n", lockFile, "true");
        Assert.NotEqual(0, flock.Exit);
        Assert.Contains("Permission denied", flock.Err);
        var theirs = NobodyDaemon(sock);
        Assert.Equal(1, theirs.Exit);
        Assert.Contains($"cannot take the daemon's lock for {sock}: cannot open the lock file {lockFile}: Permission denied", theirs.Err);
        Assert.False(File.Exists(lockFile));

        // Root's daemon starts anyway.
        using var daemon = new DaemonProcess(sock);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(lockFile));
        // (read with cat: .NET's own file streams take a shared flock, which the daemon's lock refuses)
        Assert.Equal($"{daemon.Process.Id}", Cli.RunProcess(new ProcessStartInfo("/bin/cat", lockFile) { RedirectStandardOutput = true, RedirectStandardError = true }, "cat").Out.Trim());

        // While it runs, nobody can neither open the lock nor start a daemon; root is told who runs.
        flock = NobodyRuns("/usr/bin/flock", "-n", lockFile, "true");
        Assert.NotEqual(0, flock.Exit);
        Assert.Contains("Permission denied", flock.Err);
        Assert.Equal(1, NobodyDaemon(sock).Exit);
        var second = Cli.Run(sock, "daemon", "--socket", sock);
        Assert.Equal(1, second.Exit);
        Assert.Contains($"another hypernf daemon (pid {daemon.Process.Id}) is already running on {sock}", second.Err);
        Assert.Equal(0, Cli.Run(sock, "list").Exit);

        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
        Assert.False(File.Exists(lockFile), "the lock file is removed at a clean stop");
        Assert.False(File.Exists(sock));
    }

    [OtherUserFact]
    public void A_lock_file_another_user_made_or_a_directory_others_can_write_is_refused_clearly()
    {
        using var tmp = new TempDir();
        File.SetUnixFileMode(tmp.Path, (UnixFileMode)0x1ED);

        // A sticky directory anyone can write (like /tmp): nobody creates the lock file first and
        // holds it. It is not this user's file, so it is no lock of ours: refused, naming its owner.
        string sticky = Path.Combine(tmp.Path, "sticky");
        Directory.CreateDirectory(sticky);
        File.SetUnixFileMode(sticky, (UnixFileMode)0x3FF); // 01777
        string sock = Path.Combine(sticky, "d.sock");
        using (var holder = Process.Start(AsNobody("/usr/bin/flock", ControlDaemon.LockPath(sock), "sleep", "60"))!)
        {
            try
            {
                var until = DateTime.UtcNow.AddSeconds(15);
                while (!File.Exists(ControlDaemon.LockPath(sock)) && DateTime.UtcNow < until) Thread.Sleep(20);
                using var host = new Host();
                var d = new ControlDaemon(host, new ControlDaemonOptions { SocketPath = sock });
                var e = Assert.Throws<DaemonStartException>(d.Start);
                Assert.Contains($"the lock file {ControlDaemon.LockPath(sock)} belongs to uid 65534 (nobody), not to this daemon's user", e.Message);
                Assert.DoesNotContain("already running", e.Message);
            }
            finally
            {
                if (!holder.HasExited) Cli.Signal(holder, Cli.SIGKILL);
                holder.WaitForExit();
            }
        }
        Assert.False(File.Exists(sock));

        // nobody's own daemon on that path (a sticky directory is fine for it too), whose lock file
        // nobody then removes: the socket left at the path is nobody's, and is not replaced.
        File.Delete(ControlDaemon.LockPath(sock));
        var nobodyPsi = AsNobody("/usr/bin/dotnet", Cli.Dll, "daemon", "--socket", sock);
        using (var theirDaemon = new DaemonProcess(sock, nobodyPsi))
        {
            Assert.Contains($"{Nobody}", Cli.RunProcess(new ProcessStartInfo("/usr/bin/stat", ["-c", "%u", sock]) { RedirectStandardOutput = true, RedirectStandardError = true }, "stat").Out);
            Assert.Equal(0, NobodyRuns("/bin/rm", ControlDaemon.LockPath(sock)).Exit);
            using var host = new Host();
            var d = new ControlDaemon(host, new ControlDaemonOptions { SocketPath = sock });
            var e = Assert.Throws<DaemonStartException>(d.Start);
            Assert.Contains($"{sock} is a socket of uid 65534 (nobody), not of this daemon's user", e.Message);
            Assert.True(File.Exists(sock));
            Cli.Signal(theirDaemon.Process, Cli.SIGTERM);
            Assert.Equal(0, theirDaemon.WaitExit());
        }

        // A directory others can write without the sticky bit: anyone could swap the lock file.
        string open = Path.Combine(tmp.Path, "open");
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0x1FF); // 0777
        var r = Cli.Run(Path.Combine(open, "d.sock"), "daemon", "--socket", Path.Combine(open, "d.sock"));
        Assert.Equal(1, r.Exit);
        Assert.Contains("is writable by other users and not sticky", r.Err);
        Assert.False(File.Exists(Path.Combine(open, "d.sock.lock")));

        // A directory owned by another user: that user could replace the lock.
        string theirs = Path.Combine(tmp.Path, "theirs");
        Directory.CreateDirectory(theirs);
        File.SetUnixFileMode(theirs, (UnixFileMode)0x1ED);
        Assert.Equal(0, Chown(theirs, Nobody, Nobody));
        r = Cli.Run(Path.Combine(theirs, "d.sock"), "daemon", "--socket", Path.Combine(theirs, "d.sock"));
        Assert.Equal(1, r.Exit);
        Assert.Contains("belongs to uid 65534 (nobody), who could replace the daemon's lock and socket", r.Err);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown(string path, uint uid, uint gid);
}
