namespace HyperNF.Netmap;

/// <summary>
/// What stands behind a port: the switch (VALE port), a physical interface, or an I/O model
/// that defers the work to a backend thread. <see cref="NetmapPort"/> calls it; it never
/// calls back up.
/// </summary>
public interface IPortBackend
{
    /// <summary>Validates and forwards what the domain queued on its TX rings (netmap txsync).</summary>
    void TxSync();
    /// <summary>Releases consumed RX slots and publishes newly received ones (netmap rxsync).</summary>
    void RxSync();
    /// <summary>
    /// Blocks until one of <paramref name="events"/> is ready or <paramref name="timeoutMs"/>
    /// passes (negative: forever). Never spins for long: it sleeps on the port's wake-up word.
    /// </summary>
    PollEvents Poll(PollEvents events, int timeoutMs);

    /// <summary>
    /// Length of the virtio-net header in front of each frame (0, 10 or 12; netmap's
    /// PORT_HDR_SET). Only switch ports have one; others report 0 and refuse a change.
    /// </summary>
    int VirtioHeaderLength
    {
        get => 0;
        set => throw new NotSupportedException("this port has no virtio-net header setting");
    }
}
