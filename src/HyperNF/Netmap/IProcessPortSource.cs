namespace HyperNF.Netmap;

/// <summary>
/// What a process registration binds to instead of a port of its own: a netmap pipe's end
/// (<see cref="NetmapPipe.End"/>) or one ring pair of a port several registrations share
/// (Hypervisor's SharedRingPort.View).
/// </summary>
public interface IProcessPortSource
{
    /// <summary>The registration's port; its wake-ups go to <paramref name="wake"/>; disposing it releases the source.</summary>
    NetmapPort Bind(WakeWord wake);
}
