using HyperNF.Hypervisor;
using HyperNF.Switch;

namespace HyperNF.Ports;

/// <summary>
/// The physical ports of a switch: attach a Linux interface to a bridge as port
/// <c>BRIDGE:IFNAME</c>, detach it, list them (vale-ctl -a / -d / -l, <c>hypernf run --attach</c>).
/// Also holds <see cref="DriverDomainTxSync"/>, HyperNF's ctl op 5.
/// </summary>
public sealed class PhysicalPorts : IDisposable
{
    /// <summary>HyperNF's xennet_ctrl op number for <see cref="DriverDomainTxSync"/>.</summary>
    public const int CtlOpDriverDomainTxSync = 5;

    private readonly object _gate = new();
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _events = new();
    private readonly List<PhysicalPort> _ports = new();
    private readonly Dictionary<string, DriverGroup> _drivers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, KernelFastPath> _fastPaths = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _fastPathErrors = new(StringComparer.Ordinal);
    private volatile bool _driverDomainTxSync;
    private bool _disposed;

    public ValeSwitch Switch { get; }
    public PhysicalPortOptions Options { get; }

    public PhysicalPorts(ValeSwitch sw, PhysicalPortOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(sw);
        Switch = sw;
        Options = options ?? new PhysicalPortOptions();
        Options.Validate();
    }

    private readonly HostSettings? _settings;

    /// <summary>Ports of <paramref name="host"/>: drvdom_txsync is then the host's setting (ctl op 5 on the host reaches every port).</summary>
    public PhysicalPorts(Host host, PhysicalPortOptions? options = null) : this(host?.Switch ?? throw new ArgumentNullException(nameof(host)), options)
    {
        _settings = host.Settings;
    }

    /// <summary>
    /// drvdom_txsync (ctl op 5). False (default): frames for a physical port are pushed to the
    /// kernel by the sender, in its own context. True: the port's driver thread does it, woken
    /// by the sender. Takes effect at the next delivery, on every port.
    /// </summary>
    public bool DriverDomainTxSync
    {
        get => _settings?.DriverDomainTxSync ?? _driverDomainTxSync;
        set
        {
            if (_settings is not null) _settings.DriverDomainTxSync = value;
            _driverDomainTxSync = value;
        }
    }

    /// <summary>
    /// Where the ports report what a user should know as it happens: link changes, re-binds, and
    /// the first drop of each cause with its fix. Null (default): kept for <see cref="TryDequeueEvent"/>
    /// (at most 1000 waiting). Called on the ports' driver threads and the senders' threads.
    /// </summary>
    public Action<string>? OnEvent { get; set; }

    /// <summary>The next port event (see <see cref="OnEvent"/>), oldest first.</summary>
    public bool TryDequeueEvent(out string? text) => _events.TryDequeue(out text);

    internal void Post(string text)
    {
        if (OnEvent is { } handler)
        {
            try { handler(text); } catch (Exception e) when (e is IOException or ObjectDisposedException) { }
        }
        else if (_events.Count < 1000) _events.Enqueue(text);
    }

    /// <summary>Applies a ctl op if it is one of ours (op 5); returns false for other ops.</summary>
    public bool TryApplyCtl(int op, int value)
    {
        if (op != CtlOpDriverDomainTxSync) return false;
        if (value is not (0 or 1)) throw new ArgumentOutOfRangeException(nameof(value), value, "ctl op 5 (drvdom_txsync) takes 0 or 1");
        DriverDomainTxSync = value == 1;
        return true;
    }

    /// <summary>Attaches interface <paramref name="ifName"/> to bridge <paramref name="bridgeName"/> (created if needed).</summary>
    public PhysicalPort Attach(string bridgeName, string ifName)
    {
        ArgumentException.ThrowIfNullOrEmpty(bridgeName);
        ArgumentException.ThrowIfNullOrEmpty(ifName);
        ValidateInterfaceName(ifName);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            string name = $"{bridgeName}:{ifName}";
            if (_ports.Any(p => p.Name == name))
                throw new InvalidOperationException($"interface '{ifName}' is already attached to bridge '{bridgeName}'");
            var other = _ports.FirstOrDefault(p => p.InterfaceName == ifName);
            if (other is not null)
                throw new InvalidOperationException($"interface '{ifName}' is already attached to bridge '{other.BridgeName}'; detach it first (vale-ctl -d {other.Name})");
            bool broughtUp = Options.BringUp && InterfaceAdmin.BringUp(ifName);
            // One driver thread per bridge (or per port): see DriverGroup.
            string key = Options.DriverPerBridge ? bridgeName : name;
            if (!_drivers.TryGetValue(key, out var driver)) _drivers[key] = driver = new DriverGroup(key, Options);
            PhysicalPort port;
            try
            {
                port = new PhysicalPort(this, Switch, bridgeName, ifName, Options, driver);
            }
            catch
            {
                if (driver.MemberCount == 0)
                {
                    _drivers.Remove(key);
                    driver.Stop();
                }
                throw;
            }
            _ports.Add(port);
            JoinFastPath(port);
            if (broughtUp) Post($"port {port.Name}: interface '{ifName}' was down; brought it up");
            return port;
        }
    }

    /// <summary>Puts a new port on its bridge's kernel fast path (created with the bridge's first port), or notes why not.</summary>
    private void JoinFastPath(PhysicalPort port)
    {
        if (!Options.KernelFastPath)
        {
            port.FastPathUnavailable = "off (turned off)";
            return;
        }
        if (port.CurrentBackend is not AfPacketBackend)
        {
            port.FastPathUnavailable = $"unavailable ({Options.Backend} ports take the switch path only)";
            return;
        }
        if (!_fastPaths.TryGetValue(port.BridgeName, out var fp))
        {
            fp = KernelFastPath.TryCreate(port.Bridge, out string? error);
            if (fp is null)
            {
                port.FastPathUnavailable = $"unavailable ({error})";
                if (_fastPathErrors.TryAdd(port.BridgeName, error!))
                    Post($"bridge {port.BridgeName}: no kernel fast path ({error}); frames between its interfaces take the switch's driver thread");
                return;
            }
            _fastPaths[port.BridgeName] = fp;
        }
        string? why = fp.Register(port);
        if (why is null)
        {
            port.FastPath = fp;
            fp.Refresh(port);
        }
        else
        {
            port.FastPathUnavailable = $"unavailable ({why})";
            Post($"port {port.Name}: no kernel fast path ({why}); its frames take the switch's driver thread");
        }
    }

    /// <summary>Closes a bridge's fast path when its last physical port has left.</summary>
    private void LeaveFastPath(string bridgeName)
    {
        lock (_gate)
        {
            if (_ports.Any(p => p.BridgeName == bridgeName) || !_fastPaths.Remove(bridgeName, out var fp)) return;
            fp.Dispose();
        }
    }

    /// <summary>The kernel fast path of a bridge, while it has one (tests, listings).</summary>
    internal KernelFastPath? FastPathOf(string bridgeName)
    {
        lock (_gate) return _fastPaths.GetValueOrDefault(bridgeName);
    }

    /// <summary>
    /// Takes a detaching port off its driver thread, and stops the thread when it served the
    /// last port of its group. False when the thread did not stop in time.
    /// </summary>
    internal bool ReleaseDriver(PhysicalPort port, DriverGroup driver)
    {
        driver.Remove(port);
        lock (_gate)
        {
            // An attach in between may have joined the group: it then lives on.
            if (driver.MemberCount > 0 || !_drivers.TryGetValue(driver.Key, out var current) || !ReferenceEquals(current, driver)) return true;
            _drivers.Remove(driver.Key);
        }
        return driver.Stop();
    }

    /// <summary>Attaches "BRIDGE:IFNAME".</summary>
    public PhysicalPort Attach(string portName)
    {
        var (b, i) = Split(portName);
        return Attach(b, i);
    }

    /// <summary>Detaches the port; false if no such port is attached. Always completes.</summary>
    public bool Detach(string bridgeName, string ifName)
    {
        PhysicalPort? port;
        lock (_gate)
        {
            port = _ports.FirstOrDefault(p => p.BridgeName == bridgeName && p.InterfaceName == ifName);
            if (port is null) return false;
            _ports.Remove(port);
        }
        port.Detach();
        LeaveFastPath(bridgeName);
        return true;
    }

    /// <summary>Detaches "BRIDGE:IFNAME".</summary>
    public bool Detach(string portName)
    {
        var (b, i) = Split(portName);
        return Detach(b, i);
    }

    public IReadOnlyList<PhysicalPort> List()
    {
        lock (_gate) return _ports.OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
    }

    public PhysicalPort? Find(string portName)
    {
        lock (_gate) return _ports.FirstOrDefault(p => p.Name == portName);
    }

    /// <summary>Linux's rules for interface names (dev_valid_name), checked before anything is opened.</summary>
    public static void ValidateInterfaceName(string ifName)
    {
        ArgumentNullException.ThrowIfNull(ifName);
        if (ifName.Length is 0 or > 15 || ifName is "." or ".." || ifName.AsSpan().IndexOfAny("/: \t\n") >= 0)
            throw new ArgumentException($"'{ifName}' is not an interface name: Linux names have 1..15 characters and no '/', ':' or spaces");
    }

    private static (string Bridge, string If) Split(string portName)
    {
        ArgumentNullException.ThrowIfNull(portName);
        int colon = portName.IndexOf(':');
        if (colon <= 0 || colon == portName.Length - 1)
            throw new ArgumentException($"'{portName}' is not a physical port name: write BRIDGE:IFNAME, e.g. valex:eth1");
        return (portName[..colon], portName[(colon + 1)..]);
    }

    /// <summary>Detaches every port.</summary>
    public void Dispose()
    {
        PhysicalPort[] ports;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            ports = _ports.ToArray();
            _ports.Clear();
        }
        foreach (var p in ports) p.Detach();
        lock (_gate)
        {
            foreach (var fp in _fastPaths.Values) fp.Dispose();
            _fastPaths.Clear();
        }
    }
}
