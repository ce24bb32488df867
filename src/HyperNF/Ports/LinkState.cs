namespace HyperNF.Ports;

/// <summary>What the kernel says about an attached interface.</summary>
public enum LinkState
{
    /// <summary>Administratively up with carrier (IFF_UP and IFF_RUNNING).</summary>
    Up,
    /// <summary>Down or without carrier: frames towards it are counted as link-down drops.</summary>
    Down,
    /// <summary>The interface no longer exists (deleted, or moved to another namespace): the switch port is down until an interface of the same name exists again (the port re-binds to it) or the port is detached.</summary>
    Removed,
}
