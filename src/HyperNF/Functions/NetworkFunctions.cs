namespace HyperNF.Functions;

/// <summary>
/// Creates the built-in NFs by name, as used in <c>nf=NAME</c> with an argument string.
/// </summary>
/// <remarks>
/// <para>Arguments are <c>key=value</c> pairs separated by commas, e.g.
/// <c>public=192.0.2.1,ports=20000-29999,timeout=30s</c>. Keys are case-insensitive; whitespace
/// around keys and values is ignored; a value runs to the next comma, so values cannot contain
/// commas (inline rules and routes are separated by ';' instead). Unknown keys, keys given twice
/// (except the repeatable <c>rule</c>/<c>route</c>/<c>rules</c>/<c>routes</c>) and bad values are
/// <see cref="ArgumentException"/>s naming the NF, the key and what is accepted. File arguments
/// (<c>rules=</c>, <c>routes=</c>) are read once, at creation; a relative path is taken from the
/// current directory.</para>
/// <list type="table">
/// <item><term>l2fwd</term><description>no arguments (<see cref="L2Forward"/>)</description></item>
/// <item><term>firewall</term><description><c>rules=PATH</c>, <c>rule=TEXT</c>, <c>default=allow|deny</c>, <c>nonip=pass|drop</c> (<see cref="Firewall"/>)</description></item>
/// <item><term>router</term><description><c>mac0=MAC</c>, <c>mac1=MAC</c>, <c>routes=PATH</c>, <c>route=TEXT</c>, <c>nonip=drop|pass</c> (<see cref="Router"/>)</description></item>
/// <item><term>nat</term><description><c>public=IP</c>, <c>ports=LO-HI</c>, <c>timeout=DURATION</c>, <c>nonip=pass|drop</c> (<see cref="Nat"/>)</description></item>
/// <item><term>cost</term><description><c>cycles=N</c>, <c>tsc_hz=HZ</c> (<see cref="CostFunction"/>)</description></item>
/// <item><term>encrypt</term><description><c>key=HEX</c> or <c>passphrase=TEXT</c> (<see cref="EncryptFunction"/>)</description></item>
/// </list>
/// </remarks>
public static class NetworkFunctions
{
    /// <summary>The names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["l2fwd", "firewall", "router", "nat", "cost", "encrypt"];

    public static INetworkFunction Create(string name, string? args)
    {
        ArgumentNullException.ThrowIfNull(name);
        switch (name.Trim().ToLowerInvariant())
        {
            case "l2fwd":
                NfArgs.Parse("l2fwd", args, []);
                return new L2Forward();
            case "firewall": return Firewall.FromArgs(args);
            case "router": return Router.FromArgs(args);
            case "nat": return Nat.FromArgs(args);
            case "cost": return CostFunction.FromArgs(args);
            case "encrypt": return EncryptFunction.FromArgs(args);
            default:
                throw new ArgumentException($"unknown nf '{name}'; built-in NFs are: {string.Join(", ", Names)}", nameof(name));
        }
    }

    /// <summary>Reads a file named by an argument (rules=, routes=), with an error that names the NF, key and path.</summary>
    internal static string ReadArgFile(NfArgs a, string key, string path)
    {
        if (path.Length == 0) throw a.Error(key, path, "expected the path of a file");
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ArgumentException($"nf '{a.Nf}': {key}={path}: cannot read the file ({e.Message}); give the path of a readable file", e);
        }
    }
}
