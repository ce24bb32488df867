using HyperNF.Functions;

namespace HyperNF.Hypervisor;

/// <summary>The nf= names a host knows out of the box: every built-in NF, run bump-in-the-wire.</summary>
internal static class BuiltinGuests
{
    public static void Register(GuestRegistry registry)
    {
        foreach (string name in NetworkFunctions.Names)
        {
            string n = name;
            registry.Register(n, args => new BumpInTheWire(NetworkFunctions.Create(n, args)));
        }
        registry.Register("pkt-gen", PacketGenGuest.FromArgs);
    }
}
