namespace HyperNF.Vmm;

/// <summary>
/// Finds the guest SDK's images (artifacts/guest/NAME.elf, built from guest/ by the build):
/// under $HYPERNF_GUEST_DIR when set, else in the repository that holds the running program.
/// </summary>
public static class GuestImages
{
    public const string EnvironmentVariable = "HYPERNF_GUEST_DIR";

    /// <summary>The directory that holds the images, or null when none is found.</summary>
    public static string? Directory
    {
        get
        {
            if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } env) return env;
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                string candidate = System.IO.Path.Combine(d.FullName, "artifacts", "guest");
                if (System.IO.Directory.Exists(candidate) && File.Exists(System.IO.Path.Combine(d.FullName, "guest", "Makefile"))) return candidate;
                if (File.Exists(System.IO.Path.Combine(d.FullName, "guest", "Makefile"))) return candidate;
            }
            return null;
        }
    }

    /// <summary>The path of image <paramref name="name"/> (hello, pkt-gen, l2fwd, ...); a clear error when it is not built.</summary>
    public static string Path(string name)
    {
        string? dir = Directory;
        string path = System.IO.Path.Combine(dir ?? "artifacts/guest", name + ".elf");
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"guest image {path} is not built; build it with `make -C guest` (needs gcc) or set {EnvironmentVariable} to the directory that holds it", path);
        return path;
    }

    /// <summary>Null when image <paramref name="name"/> exists, else why not.</summary>
    public static string? Missing(string name)
    {
        try { Path(name); return null; }
        catch (FileNotFoundException e) { return e.Message; }
    }
}
