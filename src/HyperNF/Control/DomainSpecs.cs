using HyperNF.Hypervisor;

namespace HyperNF.Control;

/// <summary>Turns a parsed xl config into what the host creates.</summary>
public static class DomainSpecs
{
    public static DomainSpec FromConfig(DomainConfig c, string? configDirectory = null) => new()
    {
        Kernel = c.Kernel is null ? null : ResolveKernel(c.Kernel, configDirectory),
        CommandLine = c.CommandLine,
        Name = c.Name,
        VCpus = c.VCpus,
        Cpus = Enumerable.Range(0, c.VCpus).Select(i => (IReadOnlyList<int>)c.CpusOf(i).ToArray()).ToArray(),
        Vifs = c.Vifs.Select(v => new VifSpec(v.Port, v.Mac)).ToArray(),
        Nf = c.Nf,
        NfArgs = c.NfArgs,
        Weight = c.Weight,
        Cap = c.Cap,
        IoModel = c.IoModel,
        // memory= bounds the region only when the config says so (xl's default is no promise here).
        MemoryMb = c.Lines.ContainsKey("memory") ? c.MemoryMb : null,
    };

    /// <summary>
    /// <see cref="FromConfig"/>, first checked against <paramref name="host"/>: the CPUs exist on
    /// this machine, the host knows the nf, and the nf accepts nf_args. These are config errors
    /// like the parser's, <c>linux.cfg:9: nf_args: ...</c>, not a bare message from deep inside
    /// the host. The guest is built here, once, and handed to <see cref="Host.Create"/>.
    /// </summary>
    /// <exception cref="XlConfigException">A CPU, nf name or nf argument the host cannot use.</exception>
    public static DomainSpec ForHost(DomainConfig c, Host host, string? configDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(host);
        int ncpu = Environment.ProcessorCount;
        for (int v = 0; v < c.VCpus; v++)
            foreach (int cpu in c.CpusOf(v))
                if (cpu >= ncpu)
                    throw c.Error("cpus", $"CPU {cpu} does not exist (this machine has CPUs 0..{ncpu - 1})");
        var plain = FromConfig(c, configDirectory);
        if (Domain.CheckMemory(plain) is { } memory) throw c.Error("memory", memory);
        if (plain.Kernel is { } kernel)
        {
            if (plain.MemoryMb is { } mb && (mb < 2 || mb > Vmm.GuestAbi.MaxMemoryMb || mb % 2 != 0))
                throw c.Error("memory", $"{mb} MB: for a VM domain (kernel=) memory is its guest RAM, an even number of MB in 2..{Vmm.GuestAbi.MaxMemoryMb}");
            VmGuest vm;
            try
            {
                vm = new VmGuest(kernel, plain.CommandLine, plain.MemoryMb);
            }
            catch (ArgumentException e)
            {
                throw c.Error("kernel", e.Message);
            }
            return plain with { Guest = () => vm };
        }
        string nf = c.Nf ?? GuestRegistry.DefaultNf;
        if (!host.Guests.Contains(nf))
            throw c.Error("nf", $"unknown nf '{nf}'; available: {string.Join(", ", host.Guests.Names)}");
        IGuest guest;
        try
        {
            guest = host.Guests.Create(nf, c.NfArgs);
        }
        catch (ArgumentException e)
        {
            string message = e.ParamName is { } p ? e.Message.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal) : e.Message;
            throw c.Error(c.NfArgs is null ? "nf" : "nf_args", message);
        }
        if (Host.PortShortage(guest, c.Vifs.Length) is { } ports) throw c.Error("vif", ports);
        return plain with { Guest = () => guest };
    }

    /// <summary>
    /// A relative kernel= path is relative to the config file's directory (so a config next to
    /// its images works from anywhere); without one, to the current directory.
    /// </summary>
    public static string ResolveKernel(string kernel, string? configDirectory) =>
        Path.IsPathRooted(kernel) || configDirectory is null ? Path.GetFullPath(kernel) : Path.GetFullPath(Path.Combine(configDirectory, kernel));
}
