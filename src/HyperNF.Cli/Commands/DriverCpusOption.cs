using System.Collections.Immutable;
using System.CommandLine;
using HyperNF.Control;

namespace HyperNF.Cli.Commands;

/// <summary><c>--driver-cpus follow|any|LIST</c>, shared by <c>run</c> and <c>bench ports</c>.</summary>
internal static class DriverCpusOption
{
    public static Option<string> Create(string prefix = "") => new("--driver-cpus")
    {
        Description = prefix + "Where the interfaces' driver threads run: follow (each sleeps pinned to the CPU its last frame arrived on), any (where the scheduler puts them) or a CPU list as taskset takes it (0, 0-3,6)",
        DefaultValueFactory = _ => "follow",
    };

    /// <summary>The CPU list (empty for follow/any) and whether threads follow the traffic; false with <paramref name="error"/> on a bad list.</summary>
    public static bool TryParse(string? text, out ImmutableArray<int> cpus, out bool follow, out string error)
    {
        cpus = [];
        error = "";
        follow = text is null or "follow";
        if (text is null or "follow" or "any") return true;
        return CpuList.TryParse(text, out cpus, out error);
    }
}
