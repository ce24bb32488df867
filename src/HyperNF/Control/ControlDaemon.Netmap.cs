using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using HyperNF.Hypervisor;
using HyperNF.Linux;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using P = HyperNF.Netmap.ProcessProtocol;

namespace HyperNF.Control;

/// <summary>Options a netmap program's library sends in its netmap_open line (hypernf exec's flags).</summary>
public sealed record NetmapOpenOptions(IoModel? IoModel, int Weight, int Cap, IReadOnlyList<int> Cpus, string? Name);

/// <summary>
/// The trusted end of libhypernf-netmap.so (docs/process-domains.md): each /dev/netmap the
/// program opens is one connection that said <c>netmap_open</c> and then speaks the binary
/// protocol of src/preload/hnf_proto.h on a thread of its own. The program's pid comes from
/// SO_PEERCRED. Its first REGISTER creates its process domain; the domain is destroyed when
/// the last connection of that pid closes (exit and SIGKILL included).
/// </summary>
public sealed partial class ControlDaemon
{
    public const string NetmapOpenOp = "netmap_open";

    private sealed class ProcessEntry
    {
        public int Connections;
        public Domain? Domain;
        public NetmapOpenOptions Options = null!;
    }

    private readonly object _netmapGate = new();
    private readonly Dictionary<int, ProcessEntry> _processes = new();
    private readonly ConcurrentDictionary<long, (Socket Socket, Thread Thread)> _netmapConnections = new();
    private long _nextNetmapConnection;

    /// <summary>netmap connections being served (each a /dev/netmap descriptor of some program).</summary>
    public int NetmapConnectionCount => _netmapConnections.Count;

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    private static partial Regex ProcessDomainNameRegex();

    private static NetmapOpenOptions ParseNetmapOpen(ControlRequest r)
    {
        r.AllowOnly("protocol", "io_model", "weight", "cap", "cpus", "name");
        int protocol = r.OptionalInt("protocol") ?? 0;
        if (protocol != P.Version)
            throw ControlException.Invalid($"netmap_open: the preload library speaks protocol {protocol}, the daemon {P.Version}; use the library of this build (artifacts/preload)");
        string? model = r.OptionalString("io_model");
        IoModel? io = string.IsNullOrWhiteSpace(model) ? null : IoModels.Parse(model);
        int weight = r.OptionalInt("weight") ?? 0;
        if (weight == 0) weight = 256;
        if (weight is < 1 or > 65535) throw ControlException.Invalid($"netmap_open: weight must be 1..65535, not {weight}");
        int cap = r.OptionalInt("cap") ?? 0;
        if (cap is < 0 or > 100) throw ControlException.Invalid($"netmap_open: cap must be 0..100 (% of one CPU), not {cap}");
        IReadOnlyList<int> cpus = [];
        string? cpuText = r.OptionalString("cpus");
        if (!string.IsNullOrWhiteSpace(cpuText))
        {
            cpus = ParseCpus(cpuText, "netmap_open: cpus");
        }
        string? name = r.OptionalString("name");
        if (string.IsNullOrWhiteSpace(name)) name = null;
        else if (!ProcessDomainNameRegex().IsMatch(name))
            throw ControlException.Invalid($"netmap_open: '{ControlRequest.Short(name)}' is not a domain name (letters, digits, '_', '.', '-'; at most 64)");
        return new NetmapOpenOptions(io, weight, cap, cpus, name);
    }

    /// <summary>
    /// The first line of a preload connection: validate the options, answer, and hand the socket
    /// to a netmap connection thread. True when the socket now belongs to that thread.
    /// </summary>
    private async Task<bool> NetmapOpenAsync(ControlRequest req, Connection c, Socket socket)
    {
        NetmapOpenOptions options;
        try
        {
            options = ParseNetmapOpen(req);
        }
        catch (Exception e) when (e is ControlException or ArgumentException)
        {
            await c.WriteAsync(ErrorFor(req.Id, e)).ConfigureAwait(false);
            return false;
        }
        if (_stopping)
        {
            await c.WriteAsync(ControlProtocol.Error(req.Id, ControlErrorCodes.ShuttingDown, "the daemon is shutting down")).ConfigureAwait(false);
            return false;
        }
        await c.WriteAsync(ControlProtocol.Ok(req.Id, new DoneResult { Message = "netmap" })).ConfigureAwait(false);
        long id = Interlocked.Increment(ref _nextNetmapConnection);
        var thread = new Thread(() => NetmapConnectionMain(id, socket, options), 256 * 1024) { IsBackground = true, Name = $"hypernf-netmap-{id}" };
        _netmapConnections[id] = (socket, thread);
        thread.Start();
        return true;
    }

    private void StopNetmapConnections()
    {
        foreach (var (_, (socket, _)) in _netmapConnections)
        {
            try { FdSocket.ShutdownBoth((int)socket.Handle); } catch (ObjectDisposedException) { }
        }
        foreach (var (_, (_, thread)) in _netmapConnections.ToArray()) thread.Join(TimeSpan.FromSeconds(5));
    }

    private void NetmapConnectionMain(long id, Socket socket, NetmapOpenOptions options)
    {
        int fd = (int)socket.Handle;
        int pid = 0;
        ProcessPort? registered = null;
        ProcessEntry? entry = null;
        var fds = new List<int>();
        try
        {
            (pid, _, _) = FdSocket.PeerCredentials(fd);
            lock (_netmapGate)
            {
                if (!_processes.TryGetValue(pid, out entry))
                    _processes[pid] = entry = new ProcessEntry { Options = options };
                entry.Connections++;
            }
            var header = new byte[P.HeaderBytes];
            while (!_stopping)
            {
                CloseAll(fds);
                if (!FdSocket.ReceiveExactly(fd, header, fds)) break;
                uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
                uint len = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4));
                int expect = type switch
                {
                    P.MsgRegister => P.RegisterReqBytes,
                    P.MsgPortInfo => P.InfoReqBytes,
                    P.MsgVale => P.ValeReqBytes,
                    _ => -1,
                };
                if (expect < 0 || len != expect)
                {
                    Log($"netmap: pid {pid} sent a malformed message (type {type}, {len} bytes); closing its connection");
                    break;
                }
                var body = new byte[len];
                if (!FdSocket.ReceiveExactly(fd, body, fds)) break;
                byte[] reply;
                int[] passFds = [];
                switch (type)
                {
                    case P.MsgRegister:
                        reply = Register(pid, entry, body, fds, socket, ref registered, out passFds);
                        break;
                    case P.MsgPortInfo:
                        reply = PortInfo(pid, body);
                        break;
                    default:
                        reply = Vale(body);
                        break;
                }
                FdSocket.Send(fd, reply, passFds);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            // The program went away mid-message, or the daemon is stopping.
        }
        catch (Exception e)
        {
            Log($"netmap connection of pid {pid} failed: {e}");
        }
        finally
        {
            CloseAll(fds);
            try { EndNetmapConnection(pid, entry, registered); }
            catch (Exception e) { Log($"netmap: cleaning up pid {pid}: {e}"); }
            socket.Dispose();
            _netmapConnections.TryRemove(id, out _);
        }
    }

    private static void CloseAll(List<int> fds)
    {
        foreach (int f in fds) Native.Close(f);
        fds.Clear();
    }

    private void EndNetmapConnection(int pid, ProcessEntry? entry, ProcessPort? registered)
    {
        if (entry is null) return;
        Domain? destroy = null, owner;
        lock (_netmapGate) owner = entry.Domain;
        // Outside the lock: closing waits for the port's host thread.
        if (registered is not null && owner is not null) owner.CloseProcessPort(registered);
        if (registered is not null) _pipeRegistrations.TryRemove(registered, out _);
        EndWire(registered);
        lock (_netmapGate)
        {
            if (--entry.Connections == 0)
            {
                _processes.Remove(pid);
                destroy = entry.Domain;
            }
        }
        if (destroy is not null)
        {
            EndPipesOf(destroy, pid);
            bool clean = _host.Destroy(destroy);
            Log($"process domain '{destroy.Name}' (id {destroy.Id}, pid {pid}) destroyed: its program closed its last /dev/netmap{(clean ? "" : " (a host thread did not stop in time)")}");
        }
    }

    // ---------------------------------------------------------------- requests

    private static byte[] RegisterError(int errno)
    {
        var msg = P.Reply(P.MsgRegister, P.RegisterRepBytes, out var b);
        BinaryPrimitives.WriteInt32LittleEndian(b, errno);
        return msg;
    }

    [GeneratedRegex("^[A-Za-z0-9_.-]{1,15}$")]
    private static partial Regex InterfaceNameRegex();

    /// <summary>IFNAME of <c>netmap:IFNAME</c> (or a bare IFNAME), or null when the name cannot be a Linux interface.</summary>
    private static string? InterfaceName(string? name)
    {
        if (name is null) return null;
        string n = name.StartsWith("netmap:", StringComparison.Ordinal) ? name[7..] : name;
        return !n.StartsWith("vale", StringComparison.Ordinal) && InterfaceNameRegex().IsMatch(n) ? n : null;
    }

    /// <summary>The port a netmap name stands for: (VALE port name, null) or (null, errno).</summary>
    private static (string? Port, int Errno) ResolveNetmapName(string? name)
    {
        if (name is null || name.Length == 0) return (null, P.EINVAL);
        if (name.StartsWith("netmap:", StringComparison.Ordinal)) name = name[7..];
        if (!name.StartsWith("vale", StringComparison.Ordinal))
            return (null, P.ENXIO); // netmap:IFNAME ports: not served to programs yet (docs/process-domains.md)
        try
        {
            Bridge.ParsePortName(name);
            return (name, 0);
        }
        catch (ArgumentException)
        {
            return (null, P.EINVAL);
        }
    }

    private byte[] Register(int pid, ProcessEntry entry, byte[] body, List<int> fds, Socket socket, ref ProcessPort? registered, out int[] passFds)
    {
        passFds = [];
        // Every field read once, from our copy of the message.
        string? name = P.ReadName(body.AsSpan(0, 64));
        uint mode = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(64));
        uint ringid = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(68));
        ulong flags = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(72));
        uint extra = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(80));
        int wantRings = Math.Max(BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(92)), BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(94)));
        if (registered is not null) return RegisterError(P.EBUSY);
        if (fds.Count != 1) return RegisterError(P.EINVAL);
        if ((flags & (P.FlagMonitorTx | P.FlagMonitorRx | P.FlagZcopyMon)) != 0) return RegisterError(P.EOPNOTSUPP); // no monitor ports
        // A netmap pipe: NAME{ID / NAME}ID, or the legacy NR_REG_PIPE_MASTER/SLAVE with the id in nr_ringid.
        var pipe = ParsePipe(name, mode, ringid);
        if (pipe.IsPipe) return RegisterPipe(pid, entry, pipe, flags, fds, socket, ref registered, out passFds);
        // A persistent port (VALE_NEWIF) first: netmap:NAME, or valeX:NAME which attaches it.
        var (isPersistent, persistent, perrno) = PersistentFor(name, attach: true);
        if (isPersistent && persistent is null) return RegisterError(perrno);
        string? port;
        int errno;
        if (persistent is not null) (port, errno) = (persistent.Attached?.Name, persistent.Attached is null ? P.ENXIO : 0);
        else (port, errno) = ResolveNetmapName(name);
        string? wireIf = null;
        if (port is null && errno == P.ENXIO && InterfaceName(name) is { } ifname)
        {
            // netmap:IFNAME: the interface through our port backends, on a private wire (made below).
            errno = WireCheck(ifname);
            if (errno == 0) (wireIf, port) = (ifname, ifname);
        }
        if (port is null) return RegisterError(errno);
        // A VALE port of the program's region has the region's ring pairs (set by its first
        // registration's nr_tx_rings/nr_rx_rings); persistent ports and wires have one.
        int rings = persistent is not null || wireIf is not null ? 1 : RegionRings(entry, wantRings);
        switch (mode)
        {
            case P.RegDefault or P.RegAllNic:
                break;
            case P.RegOneNic:
                if (ringid >= rings) return RegisterError(P.EINVAL);
                break;
            default:
                return RegisterError(P.EINVAL); // host rings, pipes, NULL: VALE ports have none of them
        }
        if (_stopping) return RegisterError(P.ENXIO);

        var d = EnsureProcessDomain(pid, entry, wantRings);
        if (d is null) return RegisterError(P.EINVAL);
        if (wireIf is not null)
        {
            try
            {
                port = OpenWire(wireIf);
            }
            catch (ControlException e)
            {
                Log($"netmap: pid {pid}: netmap:{wireIf}: {e.Message}");
                return RegisterError(e.Code == ControlErrorCodes.Conflict ? P.EBUSY : P.ENXIO);
            }
        }
        // One ring of a port with several (NR_REG_ONE_NIC): the port is shared by the program's
        // registrations of its rings (pkt-gen -p N), each with a netmap_if listing only its ring.
        if (mode == P.RegOneNic && rings > 1 && persistent is null && wireIf is null)
            return RegisterRing(pid, d, port, (int)ringid, flags, fds, ref registered, out passFds);
        int efd = fds[0];
        fds.Clear(); // the port owns the eventfd now (closed on failure too)
        try
        {
            registered = _host.OpenProcessPort(d, port, (int)Math.Min(extra, (uint)ProcessExtraBuffers), efd, persistent);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            Log($"netmap: pid {pid}: cannot register {port}: {e.Message}");
            if (wireIf is not null) CloseWire(Bridge.ParsePortName(port).Bridge, wireIf);
            if (e is ArgumentException) return RegisterError(P.EINVAL);
            // All port areas in use, a port of that name on the bridge already, the domain ending.
            return RegisterError(e.Message.Contains("all in use", StringComparison.Ordinal) ? P.ENOMEM : P.EBUSY);
        }
        if (wireIf is not null)
        {
            _wires[registered] = (Bridge.ParsePortName(port).Bridge, wireIf);
            Log($"process domain '{d.Name}': netmap:{wireIf} is {port} (a private wire to the interface)");
        }
        // A persistent port's rings are in its own region, with its own mem_id (no spare buffers).
        var L = persistent?.Memory.Layout ?? d.Memory.Layout;
        long offset = L.PortAreaOffset(registered.Port.Area);
        uint granted = persistent is not null ? 0 : Math.Min(extra, (uint)Math.Min(ProcessExtraBuffers, L.ExtraBuffersPerPort));
        uint first = mode == P.RegOneNic ? ringid : 0, last = mode == P.RegOneNic ? ringid : (uint)rings - 1;
        var msg = RegisterReply(granted, offset, L, persistent?.MemId ?? MemId(d), d.Id, first, last, flags, ((ValePort)registered.Port.Origin).BridgeIndex,
            registered.RxSelfServed, registered.Kick is not null);
        passFds = registered.Kick is { } kick
            ? [(persistent?.Memory ?? d.Memory).FileDescriptor, registered.Channel.FileDescriptor, kick.KickFd]
            : [(persistent?.Memory ?? d.Memory).FileDescriptor, registered.Channel.FileDescriptor];
        return msg;
    }

    private readonly Dictionary<(int Domain, string Port), SharedRingPort> _sharedPorts = new(); // under _netmapGate

    private byte[] RegisterRing(int pid, Domain d, string port, int ring, ulong flags, List<int> fds, ref ProcessPort? registered, out int[] passFds)
    {
        passFds = [];
        var key = (d.Id, port);
        SharedRingPort.View view;
        lock (_netmapGate)
        {
            bool made = false;
            if (!_sharedPorts.TryGetValue(key, out var shared))
            {
                try
                {
                    shared = new SharedRingPort(_host.Switch, port, d.Memory);
                }
                catch (Exception e) when (e is InvalidOperationException or ArgumentException)
                {
                    Log($"netmap: pid {pid}: cannot register {port}: {e.Message}");
                    if (e is ArgumentException) return RegisterError(P.EINVAL);
                    return RegisterError(e.Message.Contains("all in use", StringComparison.Ordinal) ? P.ENOMEM : P.EBUSY);
                }
                var s = shared;
                shared.OnEmpty = () =>
                {
                    lock (_netmapGate)
                        if (_sharedPorts.TryGetValue(key, out var cur) && cur == s) _sharedPorts.Remove(key);
                };
                _sharedPorts[key] = shared;
                made = true;
            }
            try
            {
                view = shared.Acquire(ring);
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentOutOfRangeException)
            {
                Log($"netmap: pid {pid}: {port} ring {ring}: {e.Message}");
                if (made) shared.CloseIfUnused();
                return RegisterError(e is ArgumentOutOfRangeException ? P.EINVAL : e.Message.Contains("all in use", StringComparison.Ordinal) ? P.ENOMEM : P.EBUSY);
            }
        }
        int efd = fds[0];
        fds.Clear(); // the port owns the eventfd now (closed on failure too)
        try
        {
            registered = _host.OpenProcessPort(d, port, 0, efd, null, view);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            Log($"netmap: pid {pid}: cannot register {port} ring {ring}: {e.Message}");
            view.Abandon();
            return RegisterError(P.EBUSY);
        }
        var msg = RegisterReply(0, d.Memory.Layout.PortAreaOffset(view.Area), d.Memory.Layout, MemId(d), d.Id, (uint)ring, (uint)ring, flags, view.Port.SwitchPort.BridgeIndex,
            registered.RxSelfServed, registered.Kick is not null);
        passFds = registered.Kick is { } kick
            ? [d.Memory.FileDescriptor, registered.Channel.FileDescriptor, kick.KickFd]
            : [d.Memory.FileDescriptor, registered.Channel.FileDescriptor];
        return msg;
    }

    /// <summary>Ring pairs of the ports of the process's region: its domain's, or what its first registration will make.</summary>
    private int RegionRings(ProcessEntry entry, int wanted)
    {
        lock (_netmapGate)
            return entry.Domain is { State: not (DomainState.Crashed or DomainState.Destroyed) } d
                ? d.Memory.Layout.RingsPerPort
                : Math.Clamp(wanted, 1, DomainSpec.MaxProcessRings);
    }

    /// <summary>The process's domain, created on its first registration; null when it cannot be.</summary>
    private Domain? EnsureProcessDomain(int pid, ProcessEntry entry, int rings = 1)
    {
        lock (_netmapGate)
        {
            if (entry.Domain is null || entry.Domain.State is DomainState.Crashed or DomainState.Destroyed)
            {
                var o = entry.Options;
                string domainName = o.Name ?? $"{ProcessName(pid)}-{pid}";
                var spec = new DomainSpec
                {
                    Name = domainName, ProcessId = pid, Weight = o.Weight, Cap = o.Cap, IoModel = o.IoModel,
                    Cpus = o.Cpus.Count > 0 ? [o.Cpus] : [], ExtraBuffersPerPort = ProcessExtraBuffers,
                    ProcessRingsPerPort = Math.Clamp(rings, 1, DomainSpec.MaxProcessRings),
                };
                try
                {
                    entry.Domain = _host.CreateProcessDomain(spec);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException)
                {
                    Log($"netmap: pid {pid}: cannot create its domain: {e.Message}");
                    return null;
                }
                Log($"process domain '{entry.Domain.Name}' (id {entry.Domain.Id}, pid {pid}, {entry.Domain.IoModel.Key()}) created");
            }
            return entry.Domain;
        }
    }

    /// <summary>
    /// The REGISTER reply (ProcessProtocol): spare buffers granted, where the netmap_if is in the
    /// region and the region's shape, its mem_id, the caller's domain, the rings bound
    /// [first, last] in each direction (an empty range, first + 1 > first, for the direction
    /// NR_TX_RINGS_ONLY / NR_RX_RINGS_ONLY leaves out), the port's index on its bridge and the
    /// features the library must follow (<see cref="P.FeatRxSelf"/>: it runs rxsync itself;
    /// <see cref="P.FeatTxKick"/>: split/merge, it kicks the backend itself with the third descriptor).
    /// </summary>
    private static byte[] RegisterReply(uint granted, long offset, RegionLayout L, ushort memId, int domainId, uint first, uint last, ulong flags,
        int bridgeIndex, bool rxSelfServed, bool txKick = false)
    {
        bool txOnly = (flags & P.FlagTxRingsOnly) != 0, rxOnly = (flags & P.FlagRxRingsOnly) != 0;
        var msg = P.Reply(P.MsgRegister, P.RegisterRepBytes, out var b);
        BinaryPrimitives.WriteInt32LittleEndian(b, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], granted);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], (ulong)offset);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], (ulong)L.TotalBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(b[24..], (uint)L.SlotsPerRing);
        BinaryPrimitives.WriteUInt32LittleEndian(b[28..], (uint)L.SlotsPerRing);
        BinaryPrimitives.WriteUInt16LittleEndian(b[32..], (ushort)L.RingsPerPort);
        BinaryPrimitives.WriteUInt16LittleEndian(b[34..], (ushort)L.RingsPerPort);
        BinaryPrimitives.WriteUInt16LittleEndian(b[36..], memId);
        BinaryPrimitives.WriteUInt16LittleEndian(b[38..], (ushort)domainId);
        BinaryPrimitives.WriteUInt32LittleEndian(b[40..], rxOnly ? first + 1 : first);
        BinaryPrimitives.WriteUInt32LittleEndian(b[44..], rxOnly ? first : last);
        BinaryPrimitives.WriteUInt32LittleEndian(b[48..], txOnly ? first + 1 : first);
        BinaryPrimitives.WriteUInt32LittleEndian(b[52..], txOnly ? first : last);
        BinaryPrimitives.WriteUInt32LittleEndian(b[56..], (uint)Math.Max(0, bridgeIndex));
        BinaryPrimitives.WriteUInt32LittleEndian(b[60..], (rxSelfServed ? P.FeatRxSelf : 0u) | (txKick ? P.FeatTxKick : 0u));
        return msg;
    }

    /// <summary>Spare buffers a process port may ask for (nr_extra_bufs); their pages are touched only when granted.</summary>
    public const int ProcessExtraBuffers = 4096;

    /// <summary>A region id per domain, as netmap's nr_mem_id: ports with the same id share memory (zero-copy).</summary>
    private static ushort MemId(Domain d) => (ushort)(d.Id + 1);

    private static string ProcessName(int pid)
    {
        try
        {
            string comm = File.ReadAllText($"/proc/{pid}/comm").Trim();
            var clean = new string(comm.Where(ch => char.IsAsciiLetterOrDigit(ch) || ch is '_' or '.' or '-').ToArray());
            return clean.Length > 0 && char.IsAsciiLetterOrDigit(clean[0]) ? clean : "netmap";
        }
        catch (IOException)
        {
            return "netmap";
        }
    }

    /// <summary>PORT_INFO_GET, POOLS_INFO_GET and NIOCGINFO: what a registration of that name would get.</summary>
    private byte[] PortInfo(int pid, byte[] body)
    {
        var msg = P.Reply(P.MsgPortInfo, P.InfoRepBytes, out var b);
        string? name = P.ReadName(body.AsSpan(0, 64));
        Domain? d;
        lock (_netmapGate) d = _processes.TryGetValue(pid, out var e) ? e.Domain : null;
        var (isPersistent, persistent, perrno) = PersistentFor(name, attach: false);
        if (isPersistent && persistent is null)
        {
            BinaryPrimitives.WriteInt32LittleEndian(b, perrno);
            return msg;
        }
        if (persistent is null && !string.IsNullOrEmpty(name))
        {
            var (port, errno) = ResolveNetmapName(name);
            if (port is null && errno == P.ENXIO && InterfaceName(name) is { } ifname && WireCheck(ifname) is not P.ENXIO) errno = 0;
            if (port is null && errno != 0)
            {
                BinaryPrimitives.WriteInt32LittleEndian(b, errno);
                return msg;
            }
        }
        var L = persistent?.Memory.Layout ?? d?.Memory.Layout ?? Domain.LayoutFor(new DomainSpec { Name = "info", ProcessId = pid, ExtraBuffersPerPort = ProcessExtraBuffers });
        BinaryPrimitives.WriteInt32LittleEndian(b, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], persistent?.MemId ?? (d is null ? (ushort)0 : MemId(d)));
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], (ulong)L.TotalBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], (uint)L.SlotsPerRing);
        BinaryPrimitives.WriteUInt32LittleEndian(b[20..], (uint)L.SlotsPerRing);
        BinaryPrimitives.WriteUInt16LittleEndian(b[24..], (ushort)L.RingsPerPort);
        BinaryPrimitives.WriteUInt16LittleEndian(b[26..], (ushort)L.RingsPerPort);
        // Pools: port areas (netmap_if and rings), then the buffers.
        BinaryPrimitives.WriteUInt64LittleEndian(b[32..], (ulong)L.PortAreaOffset(0));
        BinaryPrimitives.WriteUInt32LittleEndian(b[40..], (uint)L.MaxPorts);
        BinaryPrimitives.WriteUInt32LittleEndian(b[44..], (uint)L.InterfaceBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(b[48..], (ulong)(L.PortAreaOffset(0) + L.InterfaceBytes));
        BinaryPrimitives.WriteUInt32LittleEndian(b[56..], (uint)(2 * L.RingsPerPort * L.MaxPorts));
        BinaryPrimitives.WriteUInt32LittleEndian(b[60..], (uint)L.RingBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(b[64..], (ulong)L.BufferOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(b[72..], L.BufferCount);
        BinaryPrimitives.WriteUInt32LittleEndian(b[76..], (uint)L.BufferSize);
        return msg;
    }

    private byte[] ValeError(int errno)
    {
        var msg = P.Reply(P.MsgVale, P.ValeRepBytes, out var b);
        BinaryPrimitives.WriteInt32LittleEndian(b, errno);
        return msg;
    }

    /// <summary>VALE_LIST/ATTACH/DETACH, PORT_HDR_GET/SET, VALE_NEWIF/DELIF (vale-ctl's requests).</summary>
    private byte[] Vale(byte[] body)
    {
        ushort reqtype = BinaryPrimitives.ReadUInt16LittleEndian(body);
        ushort bridgeIdx = BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(2));
        uint portIdx = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(4));
        string? name = P.ReadName(body.AsSpan(8, 64));
        uint hdrLen = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(72));
        if (PersistentRequest(reqtype, name) is { } persistent) return persistent;
        switch (reqtype)
        {
            case P.ReqValeList:
                return ValeListEntry(name, bridgeIdx, portIdx);
            case P.ReqValeAttach or P.ReqValeDetach:
            {
                if (name is null || !name.StartsWith("vale", StringComparison.Ordinal)) return ValeError(P.EINVAL);
                string bridge, ifname;
                try { (bridge, ifname) = Bridge.ParsePortName(name); }
                catch (ArgumentException) { return ValeError(P.EINVAL); }
                // netmap answers ENXIO for an interface that does not exist (vale-ctl -a valeX:nosuch).
                if (reqtype == P.ReqValeAttach && !Directory.Exists($"/sys/class/net/{ifname}")) return ValeError(P.ENXIO);
                try
                {
                    var req = ControlRequest.Parse(ControlProtocol.Request(reqtype == P.ReqValeAttach ? "vale-attach" : "vale-detach",
                        reqtype == P.ReqValeAttach ? new { bridge, @interface = ifname } : new { bridge, port = ifname }));
                    RunChangeAsync(() => reqtype == P.ReqValeAttach ? ValeAttach(req) : ValeDetach(req)).GetAwaiter().GetResult();
                }
                catch (ControlException e)
                {
                    Log($"netmap: {(reqtype == P.ReqValeAttach ? "attach" : "detach")} {name}: {e.Message}");
                    return ValeError(e.Code switch
                    {
                        ControlErrorCodes.NotFound => P.ENXIO,
                        ControlErrorCodes.Conflict => P.EBUSY,
                        ControlErrorCodes.Unsupported => P.EOPNOTSUPP,
                        _ => P.EINVAL,
                    });
                }
                var msg = P.Reply(P.MsgVale, P.ValeRepBytes, out var b);
                var port = _host.Switch.FindBridge(bridge)?.FindPort(ifname);
                BinaryPrimitives.WriteUInt32LittleEndian(b[8..], (uint)Math.Max(0, port?.BridgeIndex ?? 0));
                return msg;
            }
            case P.ReqPortHdrGet or P.ReqPortHdrSet:
            {
                // netmap checks the length before it looks the port up: 0, 10 or 12, else EINVAL.
                if (reqtype == P.ReqPortHdrSet && hdrLen is not (0 or 10 or 12))
                    return ValeError(P.EINVAL);
                var (port, errno) = ResolveNetmapName(name);
                if (port is null) return ValeError(errno);
                var (bn, pn) = Bridge.ParsePortName(port);
                var vp = _host.Switch.FindBridge(bn)?.FindPort(pn);
                if (vp is null) return ValeError(P.ENXIO); // netmap: no such VALE port
                if (reqtype == P.ReqPortHdrSet)
                {
                    // An interface's port has its backend's length (AF_PACKET 10, AF_XDP 0).
                    if (_interfaces.ContainsKey((bn, pn))) return ValeError(P.EOPNOTSUPP);
                    int old = vp.VirtioHeaderLength;
                    vp.VirtioHeaderLength = (int)hdrLen;
                    if (old != (int)hdrLen) Log($"port {vp.Name}: virtio-net header length {old} -> {hdrLen} (PORT_HDR_SET)");
                }
                var msg = P.Reply(P.MsgVale, P.ValeRepBytes, out var b);
                BinaryPrimitives.WriteUInt32LittleEndian(b[12..], (uint)vp.VirtioHeaderLength);
                return msg;
            }
            default:
                return ValeError(P.EINVAL);
        }
    }

    /// <summary>
    /// netmap's VALE_LIST: with a name, that port's (bridge, port) indices; without, the first
    /// port at or after (bridge_idx, port_idx) in bridge order, with its name; ENOENT past the end.
    /// </summary>
    private byte[] ValeListEntry(string? name, ushort bridgeIdx, uint portIdx)
    {
        var bridges = _host.Switch.Bridges.ToArray();
        if (!string.IsNullOrEmpty(name))
        {
            var (port, errno) = ResolveNetmapName(name);
            if (port is null) return ValeError(errno);
            var (bn, pn) = Bridge.ParsePortName(port);
            int bi = Array.FindIndex(bridges, x => x.Name == bn);
            var vp = bi >= 0 ? bridges[bi].FindPort(pn) : null;
            if (vp is null) return ValeError(P.ENXIO);
            var m = P.Reply(P.MsgVale, P.ValeRepBytes, out var rb);
            BinaryPrimitives.WriteUInt16LittleEndian(rb[4..], (ushort)bi);
            BinaryPrimitives.WriteUInt32LittleEndian(rb[8..], (uint)vp.BridgeIndex);
            P.WriteName(rb.Slice(16, 64), vp.Name);
            return m;
        }
        for (int b = bridgeIdx; b < bridges.Length; b++)
        {
            var ports = bridges[b].Ports.OrderBy(p => p.BridgeIndex).ToArray();
            foreach (var p in ports)
            {
                if (b == bridgeIdx && p.BridgeIndex < portIdx) continue;
                var m = P.Reply(P.MsgVale, P.ValeRepBytes, out var rb);
                BinaryPrimitives.WriteUInt16LittleEndian(rb[4..], (ushort)b);
                BinaryPrimitives.WriteUInt32LittleEndian(rb[8..], (uint)p.BridgeIndex);
                P.WriteName(rb.Slice(16, 64), p.Name);
                return m;
            }
        }
        return ValeError(P.ENOENT);
    }
}
