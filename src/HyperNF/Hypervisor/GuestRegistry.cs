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

    /// <summary>The nf a domain runs when its spec names none.</summary>
    public const string DefaultNf = "l2fwd";

    public bool Contains(string nf) => _factories.ContainsKey(nf);

    /// <summary>
    /// Builds the guest for <c>nf=</c> <paramref name="nf"/> with <c>nf_args=</c> <paramref name="args"/>.
    /// An unknown name or arguments the NF refuses are an <see cref="ArgumentException"/> saying why.
    /// </summary>
    public IGuest Create(string nf, string? args)
    {
        ArgumentNullException.ThrowIfNull(nf);
        if (!_factories.TryGetValue(nf, out var f))
            throw new ArgumentException($"unknown nf '{nf}'; available: {string.Join(", ", Names)}");
        return f(args);
    }

    internal IGuest Resolve(DomainSpec spec)
    {
        if (spec.Guest is not null) return spec.Guest();
        if (spec.Kernel is not null) return new VmGuest(spec.Kernel, spec.CommandLine, spec.MemoryMb);
        string nf = spec.Nf ?? DefaultNf;
        if (!_factories.ContainsKey(nf))
            throw new ArgumentException($"domain '{spec.Name}': unknown nf '{nf}'; available: {string.Join(", ", Names)}");
        return Create(nf, spec.NfArgs);
    }
}
