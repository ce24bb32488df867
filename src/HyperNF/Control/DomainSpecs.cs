using HyperNF.Hypervisor;

namespace HyperNF.Control;

/// <summary>Turns a parsed xl config into what the host creates.</summary>
public static class DomainSpecs
{
    public static DomainSpec FromConfig(DomainConfig c) => new()
    {
        Name = c.Name,
        VCpus = c.VCpus,
        Cpus = Enumerable.Range(0, c.VCpus).Select(i => (IReadOnlyList<int>)c.CpusOf(i).ToArray()).ToArray(),
        Vifs = c.Vifs.Select(v => new VifSpec(v.Port, v.Mac)).ToArray(),
        Nf = c.Nf,
        NfArgs = c.NfArgs,
        Weight = c.Weight,
        Cap = c.Cap,
        IoModel = c.IoModel,
    };
}
