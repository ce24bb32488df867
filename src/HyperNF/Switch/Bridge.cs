using System.Text.RegularExpressions;

namespace HyperNF.Switch;

/// <summary>
/// Keeps a copy of a bridge's learning table (the kernel fast path of physical ports). Called by
/// a sender at the end of a flush's first pass when a learned answer changed (a new, moved or
/// re-learned address), and after a detach purged a port's addresses. Must not block.
/// </summary>
internal interface IForwardingObserver
{
    void ForwardingChanged();
}

/// <summary>An immutable snapshot of a bridge's ports; replaced as a whole on attach/detach.</summary>
internal sealed class PortTable
{
    public readonly ValePort?[] ByIndex;
    /// <summary>The attached ports, in attach order (netmap's bdg_port_index).</summary>
    public readonly ValePort[] Active;
    /// <summary>The index of each port of <see cref="Active"/> in this table (a port's own Index may already be -1).</summary>
    public readonly int[] ActiveIndex;

    public PortTable(ValePort?[] byIndex)
    {
        ByIndex = byIndex;
        ActiveIndex = Enumerable.Range(0, byIndex.Length).Where(i => byIndex[i] is not null).ToArray();
        Active = ActiveIndex.Select(i => byIndex[i]!).ToArray();
    }

    public static readonly PortTable Empty = new(new ValePort?[Bridge.MaxPorts]);
}

/// <summary>
/// A VALE learning bridge: up to 254 ports, a learning table, and the counters of every port
/// that was ever attached. Forwarding never takes a bridge-wide lock: a sender reads the
/// current <see cref="PortTable"/> once per flush; attach and detach publish a new table and
/// detach then waits until no flush that could still see the old one is running.
/// </summary>
public sealed partial class Bridge
{
    public const int MaxPorts = 254; // NM_BDG_MAXPORTS
    /// <summary>An IP packet of 65535 bytes behind an Ethernet header and two VLAN tags: a GSO super-frame at its largest.</summary>
    public const int DefaultMaxFrameBytes = 65535 + 14 + 8;

    private readonly object _gate = new();
    private volatile PortTable _table = PortTable.Empty;
    private readonly long[] _retiredDrops = new long[DropReasons.Count];
    private long _retiredTx, _retiredTxBytes, _retiredRx, _retiredRxBytes, _retiredFlood, _retiredReinits;
    private int _maxFrameBytes = DefaultMaxFrameBytes;
    // Extra frames made by segmentation (any sender, rarely: the offloading datapath only), kept
    // on the bridge so that a port's detach has nothing of it to retire.
    private long _segmentCopies;

    public string Name { get; }
    public ValeSwitch Switch { get; }
    public ForwardingTable Forwarding { get; }

    internal PortTable Table => _table;

    internal void AddSegmentCopies(long n) => Interlocked.Add(ref _segmentCopies, n);

    /// <summary>Largest frame (all fragments together) the bridge forwards; larger ones are bad-length drops.</summary>
    public int MaxFrameBytes
    {
        get => Volatile.Read(ref _maxFrameBytes);
        set
        {
            if (value < TxKring.MinFrame || value > TxKring.MaxFragments * Memory.RegionLayout.DefaultBufferSize)
                throw new ArgumentOutOfRangeException(nameof(value), value, $"the maximum frame size must be {TxKring.MinFrame}..{TxKring.MaxFragments * Memory.RegionLayout.DefaultBufferSize} bytes");
            Volatile.Write(ref _maxFrameBytes, value);
        }
    }

    private volatile bool _learning = true;

    /// <summary>
    /// False makes the bridge a plain wire: nothing is learned and every frame floods to every
    /// other port (no hairpin drop for traffic between two hosts behind one port). Used for the
    /// private two-port bridge behind a program's <c>netmap:IFNAME</c>. Set it before traffic flows.
    /// </summary>
    public bool Learning { get => _learning; set => _learning = value; }

    internal Bridge(ValeSwitch sw, string name, int tableSize, int agingSeconds)
    {
        Switch = sw;
        Name = name;
        Forwarding = new ForwardingTable(tableSize, agingSeconds);
    }

    public IReadOnlyList<ValePort> Ports => _table.Active;

    /// <summary>Told when the learning table's answers change (see <see cref="IForwardingObserver"/>); null: nobody. Replaced whole.</summary>
    internal volatile IForwardingObserver[]? ForwardingObservers;

    internal void AddForwardingObserver(IForwardingObserver o)
    {
        lock (_gate) ForwardingObservers = ForwardingObservers is { } a ? [.. a, o] : [o];
    }

    internal void RemoveForwardingObserver(IForwardingObserver o)
    {
        lock (_gate)
        {
            if (ForwardingObservers is not { } a) return;
            var rest = a.Where(x => !ReferenceEquals(x, o)).ToArray();
            ForwardingObservers = rest.Length == 0 ? null : rest;
        }
    }

    public ValePort? FindPort(string portName) => _table.Active.FirstOrDefault(p => p.PortName == portName);

    internal void Attach(ValePort port)
    {
        lock (_gate)
        {
            var current = _table;
            if (current.Active.Any(p => p.PortName == port.PortName))
                throw new InvalidOperationException($"bridge '{Name}' already has a port named '{port.PortName}'; pick another name or detach it first");
            int free = Array.IndexOf(current.ByIndex, null);
            if (free < 0)
                throw new InvalidOperationException($"bridge '{Name}' has {MaxPorts} ports, the maximum; detach one first");
            var next = (ValePort?[])current.ByIndex.Clone();
            next[free] = port;
            port.Index = free;
            _table = new PortTable(next); // volatile write: publishes the fully built table
        }
    }

    internal void Detach(ValePort port)
    {
        lock (_gate)
        {
            var old = _table;
            int idx = Array.IndexOf(old.ByIndex, port);
            if (idx < 0) return;
            var next = (ValePort?[])old.ByIndex.Clone();
            next[idx] = null;
            _table = new PortTable(next);
            port.Index = -1;
            port.Retired = true;
            // StoreLoad: the new table (and Retired) must be visible before we look at the
            // senders' Seq words; a sender's TryEnter is a full fence before its read of the
            // table and of Retired, so any sender we see as idle will read the new table on
            // its next flush, and a sync of this port that we see as idle counts nothing more.
            Interlocked.MemoryBarrier();
            foreach (var p in old.Active)
                p.WaitQuiescent();           // senders: every TX ring of the old table
            port.WaitRxQuiescent();          // the port's own receivers (a stale handle's RxSync)
            port.Wake.WakeAll(); // a thread sleeping in Poll on the port returns (Poll checks Retired)
            // No flush can reach the port any more: forget its MACs and keep its counters.
            Forwarding.Purge(idx);
            if (ForwardingObservers is { } observers)
                foreach (var o in observers) o.ForwardingChanged();
            var s = port.GetStatistics();
            _retiredTx += s.TxPackets; _retiredTxBytes += s.TxBytes;
            _retiredRx += s.RxPackets; _retiredRxBytes += s.RxBytes;
            _retiredFlood += s.FloodCopies; _retiredReinits += s.CorruptRingIndex;
            for (int r = 0; r < DropReasons.Count; r++) _retiredDrops[r] += s.Drops[r];
        }
    }

    public BridgeStatistics GetStatistics()
    {
        lock (_gate)
        {
            var drops = (long[])_retiredDrops.Clone();
            long tx = _retiredTx, txb = _retiredTxBytes, rx = _retiredRx, rxb = _retiredRxBytes, fl = _retiredFlood, re = _retiredReinits;
            var table = _table;
            foreach (var p in table.Active)
            {
                var s = p.GetStatistics();
                tx += s.TxPackets; txb += s.TxBytes; rx += s.RxPackets; rxb += s.RxBytes; fl += s.FloodCopies; re += s.CorruptRingIndex;
                for (int r = 0; r < DropReasons.Count; r++) drops[r] += s.Drops[r];
            }
            return new BridgeStatistics
            {
                Name = Name, Ports = table.Active.Length, Sent = tx, SentBytes = txb, Delivered = rx, DeliveredBytes = rxb,
                FloodCopies = fl, SegmentCopies = Interlocked.Read(ref _segmentCopies), Drops = drops, CorruptRingIndex = re,
                TableEntries = Forwarding.Occupancy, TableCapacity = Forwarding.Capacity,
            };
        }
    }

    [GeneratedRegex("^vale[A-Za-z0-9_]*$")]
    private static partial Regex BridgeNameRegex();

    [GeneratedRegex("^[A-Za-z0-9_.\\-]{1,15}$")]
    private static partial Regex PortNameRegex();

    /// <summary>Splits "valex:lx0" into bridge and port names, or says what is wrong with it.</summary>
    public static (string Bridge, string Port) ParsePortName(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        int colon = fullName.IndexOf(':');
        if (colon < 0)
            throw new ArgumentException($"'{fullName}' is not a VALE port name: write BRIDGE:PORT, e.g. valex:lx0");
        string b = fullName[..colon], p = fullName[(colon + 1)..];
        if (!BridgeNameRegex().IsMatch(b) || b.Length > 15)
            throw new ArgumentException($"'{b}' is not a VALE bridge name: it must start with 'vale' and use letters, digits or '_' (at most 15 characters)");
        if (!PortNameRegex().IsMatch(p))
            throw new ArgumentException($"'{p}' is not a port name: use 1..15 letters, digits, '_', '.' or '-'");
        return (b, p);
    }

    public override string ToString() => Name;
}
