using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;

namespace HyperNF.Hypervisor;

/// <summary>
/// netmap's persistent VALE interface (VALE_NEWIF, vale-ctl -n; docs/process-domains.md): a
/// port the daemon keeps until VALE_DELIF, with rings in a region of its own. Attached to a
/// bridge (VALE_ATTACH, or the first REGISTER of <c>valeX:NAME</c>) it stays there while no
/// program uses it: frames sent to it wait in its RX ring for the next program that registers
/// it (<c>netmap:NAME</c> or <c>valeX:NAME</c>), one program at a time. Its virtio-net header
/// length survives detach and re-attach.
/// </summary>
public sealed class PersistentPort : IDisposable
{
    private readonly object _gate = new();
    private readonly WakeWord _wake;
    private Action? _signal;
    private int _signalling;
    private int _headerLength;
    private bool _disposed;

    public string Name { get; }
    /// <summary>The region of its rings (one port area), mapped by the program that registers it.</summary>
    public DomainMemory Memory { get; }
    /// <summary>Its nr_mem_id: a region of its own, never a process domain's.</summary>
    public ushort MemId { get; }
    /// <summary>The port on its bridge; null while detached.</summary>
    public NetmapPort? Attached { get; private set; }
    public ValePort? SwitchPort => Attached?.Origin as ValePort;
    /// <summary>The domain whose program has it registered, or null.</summary>
    public string? User { get; private set; }

    /// <summary>Valid names: an interface-style name (1..15 of letters, digits, '_', '.', '-') not starting with "vale" (netmap's rule).</summary>
    public static bool IsValidName(string? name) =>
        name is { Length: > 0 and < 16 } && !name.StartsWith("vale", StringComparison.Ordinal) && char.IsAsciiLetterOrDigit(name[0])
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-');

    public PersistentPort(string name, ushort memId)
    {
        if (!IsValidName(name)) throw new ArgumentException($"'{name}' is not a persistent port name (1..15 letters, digits, '_', '.', '-', not starting with 'vale')");
        Name = name;
        MemId = memId;
        Memory = new DomainMemory(new RegionLayout { MaxPorts = 1 }, $"hypernf-persist-{name}");
        // Wakes go to whichever program has the port registered (its eventfd), else nowhere.
        _wake = new WakeWord { External = Signal };
    }

    private void Signal()
    {
        Interlocked.Increment(ref _signalling); // full fence before reading the target (see Release)
        try { Volatile.Read(ref _signal)?.Invoke(); }
        finally { Interlocked.Decrement(ref _signalling); }
    }

    /// <summary>The bridge it is attached to, or null.</summary>
    public string? BridgeName => SwitchPort?.Bridge.Name;

    /// <summary>Attaches it to <paramref name="bridge"/> (created on first use). False when it is attached already.</summary>
    public bool Attach(ValeSwitch sw, string bridge)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (Attached is not null) return false;
            var port = sw.OpenPort($"{bridge}:{Name}", Memory, _wake, extraBuffers: 0);
            ((ValePort)port.Origin).VirtioHeaderLength = _headerLength;
            Attached = port;
            return true;
        }
    }

    /// <summary>Detaches it from its bridge. False while a program has it registered (netmap: EBUSY) or when it is not attached.</summary>
    public bool Detach()
    {
        lock (_gate)
        {
            if (Attached is null || User is not null) return false;
            _headerLength = SwitchPort!.VirtioHeaderLength;
            Attached.Dispose();
            Attached = null;
            return true;
        }
    }

    /// <summary>A program's registration takes the port: its sync channel's signal becomes the port's wake-up. False when another program has it.</summary>
    internal bool TryAcquire(string user, Action signal)
    {
        lock (_gate)
        {
            if (User is not null || Attached is null) return false;
            User = user;
            Volatile.Write(ref _signal, signal);
            return true;
        }
    }

    /// <summary>
    /// The registration ends: no sender calls its signal once this returns (the target is
    /// swapped out with a full fence, then senders still inside <see cref="Signal"/> are
    /// waited for), so the caller may free its control page.
    /// </summary>
    internal void Release()
    {
        lock (_gate)
        {
            Interlocked.Exchange(ref _signal, null);
            var spin = new SpinWait();
            while (Volatile.Read(ref _signalling) != 0) spin.SpinOnce();
            User = null;
        }
    }

    /// <summary>VALE_DELIF: false while attached or registered (netmap: EBUSY).</summary>
    public bool TryDispose()
    {
        lock (_gate)
        {
            if (_disposed) return true;
            if (Attached is not null || User is not null) return false;
            _disposed = true;
        }
        Memory.Dispose();
        return true;
    }

    /// <summary>Daemon shutdown: detaches (the users are gone by then) and frees the region.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            Attached?.Dispose();
            Attached = null;
            _disposed = true;
        }
        Memory.Dispose();
    }
}
