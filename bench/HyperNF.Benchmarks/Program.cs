using BenchmarkDotNet.Running;

namespace HyperNF.Benchmarks;

public static class Program
{
    /// <summary>dotnet run -c Release --project bench/HyperNF.Benchmarks -- --filter '*'</summary>
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
