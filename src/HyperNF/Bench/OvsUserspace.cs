using System.Diagnostics;
using HyperNF.Linux;

namespace HyperNF.Bench;

/// <summary>
/// A private Open vSwitch instance with the userspace datapath (datapath_type=netdev): its own
/// database, sockets and logs in a temporary directory, daemons started here and stopped by
/// their PID files, so the machine's own OVS (if any) is never touched. Needs Debian's
/// openvswitch-switch, installed on first use when running as root. Userspace TSO is on
/// (other_config:userspace-tso-enable), so veths keep their offloads as for the other paths.
/// </summary>
public sealed class OvsUserspace : IDisposable
{
    private readonly string _dir;
    private readonly string _db;
    private bool _disposed;

    public string Bridge { get; }

    private OvsUserspace(string dir, string bridge)
    {
        _dir = dir;
        _db = $"unix:{Path.Combine(dir, "db.sock")}";
        Bridge = bridge;
    }

    /// <summary>Why OVS cannot be used here (after trying to install it), or null.</summary>
    public static string? Unavailable()
    {
        if (Which("ovs-vswitchd") && Which("ovsdb-server")) return null;
        if (Run(out _, "id", "-u") != 0) return "cannot run 'id'";
        Run(out string uid, "id", "-u");
        if (uid.Trim() != "0") return "openvswitch-switch is not installed and installing it needs root";
        Run(out _, "apt-get", "update", "-qq");
        int rc = Run(out string output, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "openvswitch-switch");
        return rc == 0 && Which("ovs-vswitchd") ? null : $"could not install openvswitch-switch: {output.Trim().Split('\n').LastOrDefault()}";
    }

    /// <summary>Starts ovsdb-server and ovs-vswitchd and creates a netdev bridge with the given ports.</summary>
    public static OvsUserspace Start(string bridge, IEnumerable<string> ports)
    {
        string dir = Directory.CreateTempSubdirectory("hypernf-ovs-").FullName;
        var ovs = new OvsUserspace(dir, bridge);
        try
        {
            string schema = new[] { "/usr/share/openvswitch/vswitch.ovsschema", "/usr/share/ovs/vswitch.ovsschema" }.First(File.Exists);
            Must("ovsdb-tool", "create", Path.Combine(dir, "conf.db"), schema);
            Must("ovsdb-server", Path.Combine(dir, "conf.db"), $"--remote=punix:{Path.Combine(dir, "db.sock")}",
                $"--pidfile={Path.Combine(dir, "ovsdb.pid")}", $"--unixctl={Path.Combine(dir, "ovsdb.ctl")}",
                $"--log-file={Path.Combine(dir, "ovsdb.log")}", "--detach", "--no-chdir");
            ovs.Vsctl("--no-wait", "init");
            // TSO/GSO super-frames and partial checksums through the userspace datapath, as our
            // ports and the Linux bridge take them (OVS 2.13+, read when ovs-vswitchd starts).
            // Without it OVS drops a veth peer's super-frames and TCP does not move at all.
            ovs.Vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true");
            Must("ovs-vswitchd", ovs._db, $"--pidfile={Path.Combine(dir, "vswitchd.pid")}", $"--unixctl={Path.Combine(dir, "vswitchd.ctl")}",
                $"--log-file={Path.Combine(dir, "vswitchd.log")}", "--detach", "--no-chdir");
            ovs.Vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev");
            foreach (string p in ports) ovs.Vsctl("add-port", bridge, p);
            return ovs;
        }
        catch
        {
            ovs.Dispose();
            throw;
        }
    }

    private void Vsctl(params string[] args) => Must(["ovs-vsctl", $"--db={_db}", "--timeout=10", .. args]);

    /// <summary>PIDs of the two daemons (for CPU accounting).</summary>
    public IReadOnlyList<int> Pids()
    {
        var list = new List<int>();
        foreach (string f in new[] { "ovsdb.pid", "vswitchd.pid" })
            if (File.Exists(Path.Combine(_dir, f)) && int.TryParse(File.ReadAllText(Path.Combine(_dir, f)).Trim(), out int pid)) list.Add(pid);
        return list;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try { Vsctl("--if-exists", "del-br", Bridge); } catch (InvalidOperationException) { }
        foreach (int pid in Pids())
        {
            try
            {
                using var p = Process.GetProcessById(pid);
                p.Kill();
                p.WaitForExit(5000);
            }
            catch (ArgumentException) { }
            catch (InvalidOperationException) { }
        }
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private static bool Which(string tool) => Run(out _, "sh", "-c", $"command -v {tool}") == 0;

    private static void Must(params string[] args) => Processes.Must(120_000, args);

    private static int Run(out string output, params string[] args) => Processes.Run(out output, 120_000, args);
}
