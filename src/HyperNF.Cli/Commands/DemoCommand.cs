using System.CommandLine;

namespace HyperNF.Cli.Commands;

internal static class DemoCommand
{
    public static Command Create()
    {
        var seconds = new Option<double>("--seconds") { Description = "Seconds per I/O model", DefaultValueFactory = _ => 3 };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this path" };
        var cmd = new Command("demo", "The mission in one command.") { seconds, json };
        cmd.SetAction(p => 0);
        return cmd;
    }
}
