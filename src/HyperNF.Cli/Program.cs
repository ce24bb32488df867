using HyperNF.Bench;
var r = SwitchBenchmark.Run(new SwitchBenchmarkOptions { FrameSize = int.Parse(args[0]), Batch = int.Parse(args[1]), Seconds = 3 });
Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(r));
