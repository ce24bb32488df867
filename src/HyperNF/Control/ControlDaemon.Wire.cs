using System.Collections.Concurrent;
using HyperNF.Hypervisor;
using P = HyperNF.Netmap.ProcessProtocol;

namespace HyperNF.Control;

/// <summary>
/// <c>netmap:IFNAME</c> for netmap programs (docs/process-domains.md): what netmap's emulated
/// adapter gives, through our port backends. The registration gets a private two-port bridge,
/// a plain wire (<see cref="Switch.Bridge.Learning"/> off, so traffic between two hosts behind
/// the interface is not dropped as hairpin): the interface attached as with <c>vale-ctl -a</c>
/// (the daemon's backend, AF_PACKET by default) and the program's port. Closing the
/// registration detaches the interface and removes the bridge.
/// </summary>
public sealed partial class ControlDaemon
{
    private readonly ConcurrentDictionary<ProcessPort, (string Bridge, string Interface)> _wires = new();
    private int _nextWire;

    /// <summary>The program's port name on a wire bridge (the interface has its own name there).</summary>
    private static string WirePortName(string ifname) => ifname == "app" ? "app0" : "app";

    /// <summary>0 when <paramref name="ifname"/> can be given to a program as netmap:IFNAME, else netmap's errno.</summary>
    private int WireCheck(string ifname)
    {
        if (Attacher is null) return P.ENXIO; // no port backends in this daemon
        if (!LinuxInterfaceExists(ifname)) return P.ENXIO;
        // In netmap mode already (a bridge of ours or another program's wire): busy.
        if (_interfaces.Keys.Any(k => k.Port == ifname)) return P.EBUSY;
        return 0;
    }

    /// <summary>Makes the wire bridge with the interface on it; returns the program's port name, or throws ControlException.</summary>
    private string OpenWire(string ifname)
    {
        string bridge = $"vale_nm{Interlocked.Increment(ref _nextWire)}";
        _host.Switch.GetOrCreateBridge(bridge).Learning = false;
        try
        {
            var req = ControlRequest.Parse(ControlProtocol.Request("vale-attach", new { bridge, @interface = ifname }));
            RunChangeAsync(() => ValeAttach(req)).GetAwaiter().GetResult();
        }
        catch
        {
            _host.Switch.RemoveBridge(bridge);
            throw;
        }
        return $"{bridge}:{WirePortName(ifname)}";
    }

    private void CloseWire(string bridge, string ifname)
    {
        try
        {
            var req = ControlRequest.Parse(ControlProtocol.Request("vale-detach", new { bridge, port = ifname }));
            RunChangeAsync(() => ValeDetach(req)).GetAwaiter().GetResult();
        }
        catch (ControlException e)
        {
            Log($"netmap: detaching {ifname} from {bridge}: {e.Message}");
        }
        try { _host.Switch.RemoveBridge(bridge); }
        catch (InvalidOperationException e) { Log($"netmap: removing {bridge}: {e.Message}"); }
    }

    /// <summary>The registration ended: its wire goes with it.</summary>
    private void EndWire(ProcessPort? registered)
    {
        if (registered is not null && _wires.TryRemove(registered, out var w)) CloseWire(w.Bridge, w.Interface);
    }
}
