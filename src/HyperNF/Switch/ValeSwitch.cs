using System.Collections.Concurrent;
using HyperNF.Memory;
using HyperNF.Netmap;

namespace HyperNF.Switch;

/// <summary>
/// All VALE bridges of a host and the switch-wide settings (netmap's module parameters).
/// Opening a port on a bridge that does not exist yet creates it, as netmap does.
/// </summary>
public sealed class ValeSwitch
{
    private readonly ConcurrentDictionary<string, Bridge> _bridges = new(StringComparer.Ordinal);
    private readonly object _gate = new();
    private int _bridgeBatch = TxKring.MaxBatch;

    /// <summary>Learning-table buckets of bridges created from now on (power of two).</summary>
    public int TableSize { get; init; } = ForwardingTable.DefaultSize;
    public int AgingSeconds { get; init; } = ForwardingTable.DefaultAgingSeconds;

    /// <summary>
    /// Slots collected before a flush (netmap's bridge_batch; ctl op 1): 1..1024, or 0 for
    /// the drop-everything test mode. Changes take effect at the next sync.
    /// </summary>
    public int BridgeBatch
    {
        get => Volatile.Read(ref _bridgeBatch);
        set
        {
            if ((uint)value > TxKring.MaxBatch)
                throw new ArgumentOutOfRangeException(nameof(value), value, $"bridge_batch must be 0..{TxKring.MaxBatch}");
            Volatile.Write(ref _bridgeBatch, value);
        }
    }

    public IReadOnlyCollection<Bridge> Bridges => _bridges.Values.OrderBy(b => b.Name, StringComparer.Ordinal).ToArray();

    public Bridge? FindBridge(string name) => _bridges.TryGetValue(name, out var b) ? b : null;

    /// <summary>Creates bridge <paramref name="name"/> if needed (vale-ctl -n).</summary>
    public Bridge GetOrCreateBridge(string name)
    {
        Bridge.ParsePortName(name + ":x"); // validates the bridge part
        return _bridges.GetOrAdd(name, n => new Bridge(this, n, TableSize, AgingSeconds));
    }

    /// <summary>Removes an empty bridge; a bridge with ports stays.</summary>
    public bool RemoveBridge(string name)
    {
        lock (_gate)
        {
            if (!_bridges.TryGetValue(name, out var b)) return false;
            if (b.Ports.Count != 0) throw new InvalidOperationException($"bridge '{name}' still has {b.Ports.Count} port(s); detach them first");
            return _bridges.TryRemove(name, out _);
        }
    }

    /// <summary>
    /// Opens port <paramref name="fullName"/> ("valex:lx0") with its rings in
    /// <paramref name="memory"/>: formats a port area in the region, creates the bridge if
    /// needed and attaches the port. Disposing the returned port detaches it.
    /// </summary>
    /// <param name="extraBuffers">Spare buffers chained from the port's ni_bufs_head (at most the layout's; -1: all of them).</param>
    public NetmapPort OpenPort(string fullName, DomainMemory memory, WakeWord? wake = null, int extraBuffers = -1)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var (bridgeName, portName) = Bridge.ParsePortName(fullName);
        lock (_gate)
        {
            var bridge = GetOrCreateBridge(bridgeName);
            int area = memory.AllocatePortArea(fullName, extraBuffers);
            ValePort vp;
            try
            {
                vp = new ValePort(bridge, portName, memory, area, wake);
                bridge.Attach(vp);
            }
            catch
            {
                memory.ReleasePortArea(area);
                throw;
            }
            return new NetmapPort(fullName, memory, area, vp, () =>
            {
                vp.Up = false;
                bridge.Detach(vp);
                memory.ReleasePortArea(area);
            });
        }
    }

    /// <summary>The switch port behind a port opened with <see cref="OpenPort"/>.</summary>
    public static ValePort? HostPortOf(NetmapPort port) => port.Origin as ValePort;
}
