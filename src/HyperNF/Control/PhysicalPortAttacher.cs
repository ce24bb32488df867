using HyperNF.Ports;
using HyperNF.Switch;

namespace HyperNF.Control;

/// <summary>vale-ctl -a/-d for the daemon: Linux interfaces attached through <see cref="PhysicalPorts"/> (AF_PACKET or AF_XDP, as its options say).</summary>
public sealed class PhysicalPortAttacher(PhysicalPorts ports) : IInterfaceAttacher, IDisposable
{
    public PhysicalPorts Ports { get; } = ports;

    public void Attach(Bridge bridge, string interfaceName) => Ports.Attach(bridge.Name, interfaceName);

    public void Detach(Bridge bridge, string portName)
    {
        if (!Ports.Detach(bridge.Name, portName))
            throw new InvalidOperationException($"'{bridge.Name}:{portName}' is not an attached interface (vale-ctl -l lists them)");
    }

    public InterfacePortInfo? Describe(Bridge bridge, string portName)
    {
        if (Ports.Find($"{bridge.Name}:{portName}") is not { } port) return null;
        var s = port.GetStatistics();
        return new InterfacePortInfo
        {
            Link = s.Link, IfIndex = s.InterfaceIndex, Mtu = s.Mtu, Backend = port.Backend.Description,
            Rebinds = s.Rebinds, LastError = port.LastError, VnetHdr = port.SwitchPort.VirtioHeaderLength,
            Drops = PortDropReasons.All.SelectMany(r => new[] { ($"rx:{r.Key()}", s.RxDrop(r)), ($"tx:{r.Key()}", s.TxDrop(r)) })
                .Where(x => x.Item2 != 0).ToDictionary(x => x.Item1, x => x.Item2),
            KernelPath = s.KernelPath, KernelRxPackets = s.KernelRxPackets, KernelTxPackets = s.KernelTxPackets,
        };
    }

    public void Dispose() => Ports.Dispose();
}
