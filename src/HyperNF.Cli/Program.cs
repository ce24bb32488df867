using System.CommandLine;
using HyperNF.Cli.Commands;

namespace HyperNF.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("HyperNF for .NET: network functions with a VALE switch that runs in the sender's own context.");
        root.Subcommands.Add(BenchCommands.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        foreach (var command in ToolstackCommands.Create()) root.Subcommands.Add(command);
        root.Subcommands.Add(ExecCommand.Create());
        if (Console.IsOutputRedirected) Spectre.Console.AnsiConsole.Profile.Width = 200;
        try
        {
            // Our own handler below turns expected failures into one line and exit 1; the
            // library's default handler would print "Unhandled exception" and a stack trace.
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or FormatException or HyperNF.Control.XlConfigException)
        {
            Console.Error.WriteLine($"hypernf: {e.Message}");
            return 1;
        }
    }
}
