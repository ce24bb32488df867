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
}
