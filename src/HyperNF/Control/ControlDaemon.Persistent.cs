using System.Buffers.Binary;
using HyperNF.Hypervisor;
using HyperNF.Switch;
using P = HyperNF.Netmap.ProcessProtocol;

namespace HyperNF.Control;

/// <summary>
/// netmap's persistent VALE interfaces (VALE_NEWIF/VALE_DELIF, netmap's vale-ctl -n/-r) for
/// programs through the preload library: <see cref="PersistentPort"/>s the daemon keeps until
/// deleted or until it stops (docs/process-domains.md).
/// </summary>
public sealed partial class ControlDaemon
{
    private readonly Dictionary<string, PersistentPort> _persistent = new(StringComparer.Ordinal); // under _netmapGate
    private int _nextPersistentMemId;

    /// <summary>Persistent ports the daemon keeps at most (VALE_NEWIF beyond: ENOMEM).</summary>
    public const int MaxPersistentPorts = 64;

    /// <summary>The persistent ports (name, bridge or null, user domain or null).</summary>
    public IReadOnlyList<PersistentPort> PersistentPorts { get { lock (_netmapGate) return _persistent.Values.ToArray(); } }

    private static bool LinuxInterfaceExists(string name) => Directory.Exists(Path.Combine("/sys/class/net", name));

    /// <summary>VALE_NEWIF: (port, 0) or (null, errno) as netmap answers.</summary>
    private (PersistentPort? Port, int Errno) NewPersistent(string? name)
    {
        // netmap: no VALE prefix, shorter than IFNAMSIZ; a name in use (ours or a Linux interface) is EEXIST.
        if (name is null || name.StartsWith("vale", StringComparison.Ordinal) || !PersistentPort.IsValidName(name)) return (null, P.EINVAL);
        lock (_netmapGate)
        {
            if (_persistent.ContainsKey(name) || LinuxInterfaceExists(name)) return (null, P.EEXIST);
            // Each holds a region: a bound, so no program can make the daemon map memory without end.
            if (_persistent.Count >= MaxPersistentPorts) return (null, P.ENOMEM);
            ushort memId = (ushort)(0x8000 | (++_nextPersistentMemId & 0x7fff));
            PersistentPort pp;
            try { pp = new PersistentPort(name, memId); }
            catch (IOException e)
            {
                Log($"netmap: persistent port {name}: {e.Message}");
                return (null, P.ENOMEM);
            }
            _persistent[name] = pp;
            Log($"persistent port {name} created (VALE_NEWIF, mem_id {memId})");
            return (pp, 0);
        }
    }

    /// <summary>VALE_DELIF: 0, ENXIO (no such port), EINVAL (a Linux interface, not ours), EBUSY (attached or registered).</summary>
    private int DeletePersistent(string? name)
    {
        if (string.IsNullOrEmpty(name)) return P.EINVAL;
        lock (_netmapGate)
        {
            if (!_persistent.TryGetValue(name, out var pp)) return LinuxInterfaceExists(name) ? P.EINVAL : P.ENXIO;
            if (!pp.TryDispose()) return P.EBUSY;
            _persistent.Remove(name);
        }
        Log($"persistent port {name} deleted (VALE_DELIF)");
        return 0;
    }

    /// <summary>
    /// What a REGISTER (or PORT_INFO) name means for persistent ports. Matched false: not one of
    /// them. <c>netmap:NAME</c> or <c>NAME</c>: the port if attached (ENXIO while detached: it has
    /// no switch to send to); <c>valeX:NAME</c>: the port, attached to valeX first if it is
    /// detached (EBUSY when it is on another bridge), as netmap attaches it on open.
    /// </summary>
    private (bool Matched, PersistentPort? Port, int Errno) PersistentFor(string? raw, bool attach)
    {
        if (string.IsNullOrEmpty(raw)) return (false, null, 0);
        string name = raw.StartsWith("netmap:", StringComparison.Ordinal) ? raw[7..] : raw;
        lock (_netmapGate)
        {
            if (!name.StartsWith("vale", StringComparison.Ordinal))
            {
                if (!_persistent.TryGetValue(name, out var direct)) return (false, null, 0);
                return direct.Attached is null ? (true, null, P.ENXIO) : (true, direct, 0);
            }
            string bridge, port;
            try { (bridge, port) = Bridge.ParsePortName(name); }
            catch (ArgumentException) { return (false, null, 0); }
            if (!_persistent.TryGetValue(port, out var pp)) return (false, null, 0);
            if (pp.BridgeName is { } on) return on == bridge ? (true, pp, 0) : (true, null, P.EBUSY);
            if (!attach) return (true, pp, 0);
            try
            {
                pp.Attach(_host.Switch, bridge);
            }
            catch (InvalidOperationException e)
            {
                Log($"netmap: attaching persistent port {port} to {bridge}: {e.Message}");
                return (true, null, P.EBUSY); // a port of that name on the bridge already
            }
            Log($"persistent port {port} attached to {bridge}");
            return (true, pp, 0);
        }
    }

    /// <summary>VALE_NEWIF, VALE_DELIF, and VALE_ATTACH/DETACH of a persistent port; null when <paramref name="name"/> is none of ours.</summary>
    private byte[]? PersistentRequest(ushort reqtype, string? name)
    {
        switch (reqtype)
        {
            case P.ReqValeNewIf:
            {
                var (pp, errno) = NewPersistent(name);
                if (pp is null) return ValeError(errno);
                var msg = P.Reply(P.MsgVale, P.ValeRepBytes, out var b);
                // NEWIF's answer (nmreq_vale_newif): mem_id in bridge_idx, slots in port_idx, rings in hdr_len.
                BinaryPrimitives.WriteUInt16LittleEndian(b[4..], pp.MemId);
                BinaryPrimitives.WriteUInt32LittleEndian(b[8..], (uint)pp.Memory.Layout.SlotsPerRing);
                BinaryPrimitives.WriteUInt32LittleEndian(b[12..], (uint)pp.Memory.Layout.RingsPerPort);
                return msg;
            }
            case P.ReqValeDelIf:
            {
                int errno = DeletePersistent(name);
                return errno == 0 ? P.Reply(P.MsgVale, P.ValeRepBytes, out _) : ValeError(errno);
            }
            case P.ReqValeAttach or P.ReqValeDetach:
            {
                if (name is null || !name.StartsWith("vale", StringComparison.Ordinal)) return null;
                string bridge, port;
                try { (bridge, port) = Bridge.ParsePortName(name); }
                catch (ArgumentException) { return null; }
                PersistentPort? pp;
                lock (_netmapGate) if (!_persistent.TryGetValue(port, out pp)) return null;
                if (reqtype == P.ReqValeAttach)
                {
                    // netmap: attaching a port that is on a bridge already is EBUSY.
                    if (pp.BridgeName is not null) return ValeError(P.EBUSY);
                    var (_, got, errno) = PersistentFor(name, attach: true);
                    if (got is null) return ValeError(errno);
                }
                else
                {
                    if (pp.BridgeName != bridge) return ValeError(P.ENXIO);
                    int index = pp.SwitchPort?.BridgeIndex ?? 0;
                    if (!pp.Detach()) return ValeError(P.EBUSY);
                    Log($"persistent port {port} detached from {bridge}");
                    var dm = P.Reply(P.MsgVale, P.ValeRepBytes, out var db);
                    BinaryPrimitives.WriteUInt32LittleEndian(db[8..], (uint)Math.Max(0, index));
                    return dm;
                }
                var msg = P.Reply(P.MsgVale, P.ValeRepBytes, out var b);
                BinaryPrimitives.WriteUInt32LittleEndian(b[8..], (uint)Math.Max(0, pp.SwitchPort?.BridgeIndex ?? 0));
                return msg;
            }
            default:
                return null;
        }
    }

    private void DisposePersistentPorts()
    {
        PersistentPort[] all;
        lock (_netmapGate)
        {
            all = _persistent.Values.ToArray();
            _persistent.Clear();
        }
        foreach (var pp in all)
        {
            try { pp.Dispose(); }
            catch (Exception e) when (e is InvalidOperationException or IOException) { Log($"persistent port {pp.Name}: {e.Message}"); }
        }
    }
}
