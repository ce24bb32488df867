using System.Text.Json;
using System.Text.Json.Serialization;

namespace HyperNF.Cli.Commands;

internal static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static void Write(string? path, object value)
    {
        if (string.IsNullOrEmpty(path)) return;
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllText(path, JsonSerializer.Serialize(value, value.GetType(), Options) + "\n");
        Console.Error.WriteLine($"wrote {path}");
    }
}
