namespace HyperNF.Ports;

/// <summary>
/// Outcome of <see cref="IInterfaceBackend.Flush"/>: 0 or the errno of the kick, and how many
/// queued frames (and bytes) were taken back unsent because of that error. Frames not taken
/// back were handed to the kernel.
/// </summary>
public readonly record struct TransmitResult(int Errno, int Unsent, long UnsentBytes)
{
    public static TransmitResult Ok => default;
    public bool Failed => Errno != 0;
}
