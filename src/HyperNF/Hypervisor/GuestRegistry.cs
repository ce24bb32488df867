using System.Collections.Concurrent;

namespace HyperNF.Hypervisor;

/// <summary>Maps <c>nf=</c> names to the code a domain runs.</summary>
public sealed class GuestRegistry
{
    private readonly ConcurrentDictionary<string, Func<string?, IGuest>> _factories = new(StringComparer.Ordinal);

    public GuestRegistry()
    {
        BuiltinGuests.Register(this);
    }

    public void Register(string name, Func<string?, IGuest> factory) => _factories[name] = factory;

    public IReadOnlyCollection<string> Names => _factories.Keys.OrderBy(n => n).ToArray();

    internal IGuest Resolve(DomainSpec spec)
    {
        if (spec.Guest is not null) return spec.Guest();
        string nf = spec.Nf ?? "l2fwd";
        if (!_factories.TryGetValue(nf, out var f))
            throw new ArgumentException($"domain '{spec.Name}': unknown nf '{nf}'; available: {string.Join(", ", Names)}");
        return f(spec.NfArgs);
    }
}
