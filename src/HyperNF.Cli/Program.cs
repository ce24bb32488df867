using System.CommandLine;
using System.CommandLine.Help;
using System.Text.RegularExpressions;
using HyperNF.Cli.Commands;

namespace HyperNF.Cli;

public static partial class Program
{
    public static int Main(string[] args)
    {
        // A plain Command named "hypernf" rather than RootCommand, which names itself after the
        // executable (HyperNF.Cli) in every usage line.
        var root = new Command("hypernf", "HyperNF for .NET: network functions with a VALE switch that runs in the sender's own context.");
        root.Options.Add(new HelpOption("--help", "-?"));
        root.Options.Add(new VersionOption());
        root.Subcommands.Add(BenchCommands.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        foreach (var command in ToolstackCommands.Create()) root.Subcommands.Add(command);
        root.Subcommands.Add(ExecCommand.Create());
        // -h is help everywhere except where the imitated tool gives it a meaning (vale-ctl -h IF).
        AddShortHelp(root);
        if (Console.IsOutputRedirected) Spectre.Console.AnsiConsole.Profile.Width = 200;
        try
        {
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                foreach (var e in parse.Errors) Console.Error.WriteLine($"hypernf: {Friendly(e.Message)}");
                string cmd = parse.CommandResult.Command == root ? "hypernf" : $"hypernf {CommandPath(parse.CommandResult.Command, root)}";
                Console.Error.WriteLine($"run '{cmd} --help' for the usage");
                return 1;
            }
            // Our own handler below turns expected failures into one line and exit 1; the
            // library's default handler would print "Unhandled exception" and a stack trace.
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or FormatException or HyperNF.Control.XlConfigException)
        {
            Console.Error.WriteLine($"hypernf: {e.Message}");
            return 1;
        }
    }

    private static void AddShortHelp(Command c)
    {
        if (!c.Options.Any(o => o.Name == "-h" || o.Aliases.Contains("-h")))
            c.Options.Add(new HelpOption("-h") { Description = "Show help and usage information" });
        foreach (var sub in c.Subcommands) AddShortHelp(sub);
    }

    private static string CommandPath(Command c, Command root)
    {
        var names = new List<string>();
        for (var s = c; s is not null && s != root; s = s.Parents.OfType<Command>().FirstOrDefault()) names.Insert(0, s.Name);
        return string.Join(' ', names);
    }

    [GeneratedRegex(@"as expected type '([^']+)'")]
    private static partial Regex ExpectedType();

    /// <summary>Parse errors in our words: no .NET type names.</summary>
    internal static string Friendly(string message) => ExpectedType().Replace(message, m => m.Groups[1].Value switch
    {
        var t when t.Contains("Int32") || t.Contains("Int64") || t.Contains("UInt") => "as an integer",
        var t when t.Contains("Double") || t.Contains("Single") || t.Contains("Decimal") => "as a number",
        var t when t.Contains("Boolean") => "as true or false",
        _ => "as a valid value",
    }).Replace("Cannot parse argument", "cannot read").Replace("for option", "given to");
}
