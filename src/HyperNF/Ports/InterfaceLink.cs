using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Ports;

/// <summary>
/// Link state of an interface by name, as the backends see it: three ioctls on a socket the
/// backend keeps for it (opened with the backend, so in the network namespace its packet sockets
/// are in), not a socket created and closed per ioctl (nine syscalls, a file allocation each,
/// per port every 100 ms on the driver thread, beside the frames).
/// </summary>
internal sealed class InterfaceLink : IDisposable
{
    private int _fd;

    /// <summary>Opens the query socket; if that fails, queries use a socket each (as before).</summary>
    public InterfaceLink() => _fd = Socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    /// <summary>
    /// Removed when the name is gone or now belongs to another interface (the sockets are bound
    /// to the old one), Up when both IFF_UP and IFF_RUNNING are set, Down otherwise.
    /// <paramref name="mtu"/> is the current MTU, or 0 when it could not be read.
    /// </summary>
    public LinkState Query(string ifName, int ifIndex, out int mtu)
    {
        mtu = 0;
        int err = Ask(ifName, SIOCGIFINDEX, out int idx);
        if (err == ENODEV || (err == 0 && idx != ifIndex)) return LinkState.Removed;
        if (err != 0) return LinkState.Down;
        if (Ask(ifName, SIOCGIFMTU, out int m) == 0 && m > 0) mtu = m;
        if (Ask(ifName, SIOCGIFFLAGS, out int flags) != 0) return LinkState.Down;
        return (flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING) ? LinkState.Up : LinkState.Down;
    }

    private int Ask(string ifName, ulong request, out int value) =>
        _fd >= 0 ? InterfaceQuery(_fd, ifName, request, out value) : InterfaceQuery(ifName, request, out value);

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) HyperNF.Linux.Native.Close(fd);
    }
}

internal static class InterfaceAdmin
{
    /// <summary>
    /// Brings an administratively down interface up (what attaching a NIC to a bridge does in
    /// netmap's and HyperNF's scripts: ifup). True when it changed it; nothing when it is up or
    /// does not exist (the backend then says so). Throws with the fix when it cannot.
    /// </summary>
    public static bool BringUp(string ifName)
    {
        if (InterfaceQuery(ifName, SIOCGIFFLAGS, out int flags) != 0 || (flags & IFF_UP) != 0) return false;
        int err = SetInterfaceFlags(ifName, flags | IFF_UP);
        if (err == 0) return true;
        string text = $"interface '{ifName}' is down and could not be brought up: {ErrnoText(err)}; bring it up with 'ip link set {ifName} up'" +
                      (err is EPERM or EACCES ? " or attach as root (CAP_NET_ADMIN)" : "");
        if (err is EPERM or EACCES) throw new UnauthorizedAccessException(text);
        throw new IOException(text);
    }
}

/// <summary>
/// GRO and LRO switched off while a port is attached, and what to switch back on at detach.
/// A bridge port must see frames as they were on the wire; both AF_PACKET and generic XDP see
/// them after GRO has merged TCP segments far over the MTU. Best effort: a device that cannot
/// change them (or a caller without CAP_NET_ADMIN) keeps them, and merged frames count as oversize.
/// </summary>
internal struct ReceiveOffloads
{
    private bool _gro, _lro;

    public static ReceiveOffloads Disable(string ifName)
    {
        var r = new ReceiveOffloads();
        uint gro = 0;
        if (Ethtool(ifName, ETHTOOL_GGRO, ref gro) == 0 && gro != 0)
        {
            uint off = 0;
            r._gro = Ethtool(ifName, ETHTOOL_SGRO, ref off) == 0;
        }
        uint flags = 0;
        if (Ethtool(ifName, ETHTOOL_GFLAGS, ref flags) == 0 && (flags & ETH_FLAG_LRO) != 0)
        {
            uint cleared = flags & ~ETH_FLAG_LRO;
            r._lro = Ethtool(ifName, ETHTOOL_SFLAGS, ref cleared) == 0;
        }
        return r;
    }

    public readonly string Describe() => (_gro ? ", gro off" : "") + (_lro ? ", lro off" : "");

    /// <summary>Switches back on what <see cref="Disable"/> switched off, if the interface is still the one it changed.</summary>
    public void Restore(string ifName, int ifIndex)
    {
        if (!_gro && !_lro) return;
        if (InterfaceQuery(ifName, SIOCGIFINDEX, out int idx) != 0 || idx != ifIndex) return;
        if (_gro)
        {
            uint on = 1;
            Ethtool(ifName, ETHTOOL_SGRO, ref on);
        }
        uint flags = 0;
        if (_lro && Ethtool(ifName, ETHTOOL_GFLAGS, ref flags) == 0)
        {
            flags |= ETH_FLAG_LRO;
            Ethtool(ifName, ETHTOOL_SFLAGS, ref flags);
        }
        _gro = _lro = false;
    }
}
