namespace HyperNF.Hypervisor;

/// <summary>The nf= names a host knows out of the box.</summary>
internal static class BuiltinGuests
{
    public static void Register(GuestRegistry registry)
    {
        registry.Register("l2fwd", _ => new BumpInTheWire(new PassThrough()));
    }

    private sealed class PassThrough : Functions.INetworkFunction
    {
        public string Name => "l2fwd";
        public void Process(ref Functions.FrameBatch batch) { }
        public IReadOnlyList<KeyValuePair<string, long>> Counters => [];
    }
}
