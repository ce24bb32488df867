using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Netmap;
using P = HyperNF.Netmap.ProcessProtocol;

namespace HyperNF.Control;

/// <summary>
/// netmap pipes for process domains (docs/process-domains.md, "Pipes"): <c>NAME{ID</c> (master)
/// and <c>NAME}ID</c> (slave), or netmap's legacy NR_REG_PIPE_MASTER/SLAVE with the id in
/// nr_ringid, where NAME is a VALE port some program has registered (the parent). Both ends live
/// in the parent's region, as netmap's pipes share their parent's memory: the program that owns
/// the parent and the programs that open the other ends map that region and swap buffers through
/// it without copying (lb hands frames to its consumers this way). A pipe goes when its last
/// registered end closes; a parent's domain that ends first closes the other programs' ends
/// (their next sync fails with EIO, as when the daemon goes away).
/// </summary>
public sealed partial class ControlDaemon
{
    private readonly Dictionary<string, (NetmapPipe Pipe, Domain Owner)> _pipes = new(); // under _netmapGate
    private readonly ConcurrentDictionary<ProcessPort, (Socket Socket, int Pid, NetmapPipe Pipe)> _pipeRegistrations = new();

    /// <summary>Pipes open now (both ends allocated in their parent's region).</summary>
    public int PipeCount
    {
        get { lock (_netmapGate) return _pipes.Count; }
    }

    [GeneratedRegex("^[A-Za-z0-9_]{1,15}$")]
    private static partial Regex PipeIdRegex();

    /// <summary>Whether a REGISTER names a pipe, and which: parent port, side, id; or an errno.</summary>
    internal static (bool IsPipe, string? Parent, bool Master, string? Id, int Errno) ParsePipe(string? name, uint mode, uint ringid)
    {
        if (string.IsNullOrEmpty(name)) return (false, null, false, null, 0);
        string n = name.StartsWith("netmap:", StringComparison.Ordinal) ? name[7..] : name;
        int i = n.IndexOfAny(['{', '}']);
        if (i >= 0)
        {
            string parent = n[..i], id = n[(i + 1)..];
            bool master = n[i] == '{';
            if (parent.Length == 0 || !PipeIdRegex().IsMatch(id)) return (true, null, master, null, P.EINVAL);
            // A pipe end has one ring pair: all of it, or ring 0 of it.
            if (mode is not (P.RegDefault or P.RegAllNic) && !(mode == P.RegOneNic && ringid == 0)) return (true, null, master, null, P.EINVAL);
            return (true, parent, master, id, 0);
        }
        if (mode is P.RegPipeMaster or P.RegPipeSlave)
            return ringid > 0xfff ? (true, null, false, null, P.EINVAL) : (true, n, mode == P.RegPipeMaster, ringid.ToString(System.Globalization.CultureInfo.InvariantCulture), 0);
        return (false, null, false, null, 0);
    }

    private byte[] RegisterPipe(int pid, ProcessEntry entry, (bool IsPipe, string? Parent, bool Master, string? Id, int Errno) pipe, ulong flags,
        List<int> fds, Socket socket, ref ProcessPort? registered, out int[] passFds)
    {
        passFds = [];
        if (pipe.Errno != 0) return RegisterError(pipe.Errno);
        // The parent: a VALE port that a program has registered (its region holds the pipe).
        var (parent, perrno) = ResolveNetmapName(pipe.Parent);
        if (parent is null) return RegisterError(perrno);
        if (_stopping) return RegisterError(P.ENXIO);
        var caller = EnsureProcessDomain(pid, entry);
        if (caller is null) return RegisterError(P.EINVAL);
        string key = parent + "{" + pipe.Id;
        NetmapPipe p;
        Domain owner;
        lock (_netmapGate)
        {
            if (_pipes.TryGetValue(key, out var existing)) (p, owner) = existing;
            else
            {
                var found = _processes.Values.Select(e => e.Domain)
                    .FirstOrDefault(d => d is { State: DomainState.Running or DomainState.Paused } && d.Memory.OpenPorts.Contains(parent));
                if (found is null) return RegisterError(P.ENXIO); // netmap: the parent port does not exist
                owner = found;
                try
                {
                    p = new NetmapPipe(owner.Memory, parent, pipe.Id!);
                }
                catch (InvalidOperationException e)
                {
                    Log($"netmap: pid {pid}: pipe {key}: {e.Message}");
                    return RegisterError(P.ENOMEM); // the parent's region has no port areas left
                }
                var made = p;
                p.OnEmpty = () => ReleasePipe(key, made);
                _pipes[key] = (p, owner);
                Log($"pipe {key} created in the region of '{owner.Name}'");
            }
        }
        var end = pipe.Master ? p.Master : p.Slave;
        if (fds.Count != 1) return RegisterError(P.EINVAL);
        int efd = fds[0];
        fds.Clear(); // the port owns the eventfd now (closed on failure too)
        try
        {
            registered = _host.OpenProcessPort(caller, end.Name, 0, efd, null, end);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            Log($"netmap: pid {pid}: cannot register {end.Name}: {e.Message}");
            if (!p.Master.Bound && !p.Slave.Bound) ReleasePipe(key, p);
            return RegisterError(e is ArgumentException ? P.EINVAL : P.EBUSY); // netmap: the end is in use
        }
        _pipeRegistrations[registered] = (socket, pid, p);
        // No spare buffers on a pipe; the parent's mem_id: zero-copy with it; no bridge.
        var msg = RegisterReply(0, owner.Memory.Layout.PortAreaOffset(end.Area), owner.Memory.Layout, MemId(owner), caller.Id, 0, 0, flags, 0, rxSelfServed: false);
        passFds = [owner.Memory.FileDescriptor, registered.Channel.FileDescriptor];
        if (owner != caller) Log($"process domain '{caller.Name}': {end.Name} (in the region of '{owner.Name}', mem_id {MemId(owner)})");
        return msg;
    }

    private void ReleasePipe(string key, NetmapPipe p)
    {
        lock (_netmapGate)
        {
            if (!_pipes.TryGetValue(key, out var cur) || cur.Pipe != p) return;
            if (!p.Release()) return; // an end was registered again meanwhile
            _pipes.Remove(key);
        }
        var (toSlave, toMaster) = p.Moved;
        Log($"pipe {key} closed: {toSlave} frame(s) master->slave, {toMaster} slave->master, {p.BadSlots} bad slot(s), {p.CorruptRingIndex} ring reset(s)");
    }

    /// <summary>
    /// The parent's domain is ending: other programs' ends of its pipes are closed first (their
    /// connections are shut down, so their syncs fail with EIO), then the pipes are released,
    /// so the region is unmapped with nothing of it in use.
    /// </summary>
    private void EndPipesOf(Domain owner, int ownerPid)
    {
        List<NetmapPipe> owned;
        lock (_netmapGate) owned = _pipes.Values.Where(x => x.Owner == owner).Select(x => x.Pipe).ToList();
        if (owned.Count == 0) return;
        foreach (var (pp, (sock, pid, pipe)) in _pipeRegistrations)
        {
            if (pid == ownerPid || !owned.Contains(pipe)) continue;
            Log($"pipe {pipe.Parent}{{{pipe.Id}: its parent's domain '{owner.Name}' ends; closing {pp.Port.Name} of pid {pid}");
            try { FdSocket.ShutdownBoth((int)sock.Handle); } catch (ObjectDisposedException) { }
        }
        var until = DateTime.UtcNow.AddSeconds(5);
        while (DateTime.UtcNow < until)
        {
            lock (_netmapGate) if (!_pipes.Values.Any(x => x.Owner == owner)) return;
            Thread.Sleep(10);
        }
        Log($"pipes of '{owner.Name}': other programs did not close their ends within 5 s");
    }
}
