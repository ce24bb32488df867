using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace HyperNF.Functions;

/// <summary>
/// "cost": burns a configured number of CPU cycles per packet, then forwards it. Stands in for
/// an NF of known per-packet cost in experiments (how does throughput scale with NF work?).
/// </summary>
/// <remarks>
/// <para>Arguments: <c>cycles=N</c> (TSC cycles per packet, default 0, at most 10^9),
/// <c>tsc_hz=HZ</c> (overrides the detected TSC rate, e.g. <c>tsc_hz=2600000000</c>).</para>
/// <para>.NET cannot read the TSC, so cycles are converted to loop iterations once, at
/// construction: a loop of dependent multiply-adds (one iteration cannot start before the previous
/// ends, so out-of-order execution cannot overlap them and the time per iteration is stable) is
/// timed with <see cref="Stopwatch"/> in several short trials after a warm-up, and the median trial
/// gives nanoseconds per iteration; the TSC rate turns that into cycles. The median rather than the
/// mean keeps one preempted trial from skewing the result, and the spread between the fastest and
/// slowest trial is reported so a noisy calibration is visible. The TSC rate is taken, in order,
/// from <c>tsc_hz=</c>, /sys/devices/system/cpu/cpu0/tsc_freq_khz, the "@ x.xxGHz" in the CPU model
/// name, the "cpu MHz" of /proc/cpuinfo (equal to the TSC rate on invariant-TSC machines and VMs),
/// else 2.6 GHz; <see cref="Calibration"/> says which.</para>
/// <para>Counters: <c>packets</c>, <c>cycles_per_packet</c>, <c>iterations_per_packet</c>,
/// <c>tsc_khz</c>, <c>ps_per_iteration</c> (picoseconds, from the calibration) and
/// <c>calibration_spread_ppm</c> ((slowest − fastest) / median trial).</para>
/// </remarks>
public sealed class CostFunction : INetworkFunction
{
    /// <summary>What the calibration measured.</summary>
    public sealed record CalibrationResult(double TscHz, string TscSource, double NanosecondsPerIteration, double CyclesPerIteration, double Spread, int Trials)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"TSC {TscHz / 1e6:F1} MHz ({TscSource}); {NanosecondsPerIteration:F3} ns = {CyclesPerIteration:F2} cycles per iteration; spread {Spread:P1} over {Trials} trials");
    }

    private const double DefaultTscHz = 2.6e9;
    private static readonly Lock CalibrationLock = new();
    private static CalibrationResult? _cached;

    private readonly long _iterationsPerPacket;
    private long _packets;
    private ulong _sink;

    public CostFunction(long cyclesPerPacket, double? tscHz = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cyclesPerPacket);
        CyclesPerPacket = cyclesPerPacket;
        Calibration = Calibrate(tscHz);
        _iterationsPerPacket = (long)Math.Round(cyclesPerPacket / Calibration.CyclesPerIteration);
    }

    public string Name => "cost";
    public long CyclesPerPacket { get; }
    public long IterationsPerPacket => _iterationsPerPacket;
    public CalibrationResult Calibration { get; }

    public void Process(ref FrameBatch batch)
    {
        ulong x = _sink;
        for (int i = 0; i < batch.Count; i++)
        {
            x = Burn(x, _iterationsPerPacket);
            batch.SetVerdict(i, Verdict.Forward);
        }
        // Stored so the JIT cannot prove the loop dead.
        _sink = x;
        _packets += batch.Count;
    }

    /// <summary>
    /// A chain of dependent 64-bit multiply-adds (an LCG step). Fully optimized from the first call
    /// so calibration times the same code the data path runs, not tier-0 code.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static ulong Burn(ulong x, long iterations)
    {
        for (long i = 0; i < iterations; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
        return x;
    }

    /// <summary>
    /// Calibrates once per process per TSC rate: the loop's speed is a property of the machine, and
    /// repeating the ~100 ms measurement for every NF instance would only add noise and start-up time.
    /// </summary>
    public static CalibrationResult Calibrate(double? tscHz = null)
    {
        lock (CalibrationLock)
        {
            var (hz, source) = tscHz is double h ? (h, "tsc_hz argument") : DetectTscHz();
            if (_cached is null)
            {
                _cached = Measure(hz, source);
            }
            else if (_cached.TscHz != hz)
            {
                _cached = _cached with { TscHz = hz, TscSource = source, CyclesPerIteration = _cached.NanosecondsPerIteration * hz / 1e9 };
            }
            return _cached;
        }
    }

    private static CalibrationResult Measure(double hz, string source)
    {
        const int Trials = 9;
        const double TrialSeconds = 0.01;
        ulong x = 1;
        // Warm-up, and a first estimate to size the trials to ~10 ms each: long enough to dwarf
        // timer resolution, short enough that most trials run without a context switch.
        long n = 1 << 16;
        double seconds;
        while (true)
        {
            long t0 = Stopwatch.GetTimestamp();
            x = Burn(x, n);
            seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (seconds >= TrialSeconds / 4 || n >= 1L << 40) break;
            n *= 4;
        }
        long perTrial = Math.Max(1, (long)(n * TrialSeconds / Math.Max(seconds, 1e-9)));
        var ns = new double[Trials];
        for (int t = 0; t < Trials; t++)
        {
            long t0 = Stopwatch.GetTimestamp();
            x = Burn(x, perTrial);
            ns[t] = Stopwatch.GetElapsedTime(t0).TotalNanoseconds / perTrial;
        }
        GC.KeepAlive(x);
        Array.Sort(ns);
        double median = ns[Trials / 2];
        return new CalibrationResult(hz, source, median, median * hz / 1e9, (ns[^1] - ns[0]) / median, Trials);
    }

    internal static (double Hz, string Source) DetectTscHz()
    {
        try
        {
            const string Sys = "/sys/devices/system/cpu/cpu0/tsc_freq_khz";
            if (File.Exists(Sys) && double.TryParse(File.ReadAllText(Sys).Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double khz) && khz > 0)
                return (khz * 1e3, Sys);
            if (File.Exists("/proc/cpuinfo"))
            {
                string? modelName = null, mhz = null;
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (modelName is null && line.StartsWith("model name", StringComparison.Ordinal)) modelName = line;
                    else if (mhz is null && line.StartsWith("cpu MHz", StringComparison.Ordinal)) mhz = line;
                    if (modelName is not null && mhz is not null) break;
                }
                int at = modelName?.LastIndexOf('@') ?? -1;
                if (at >= 0)
                {
                    var s = modelName![(at + 1)..].Trim();
                    if (s.EndsWith("GHz", StringComparison.OrdinalIgnoreCase)
                        && double.TryParse(s[..^3], NumberStyles.Float, CultureInfo.InvariantCulture, out double ghz) && ghz > 0)
                        return (ghz * 1e9, "CPU model name");
                }
                int colon = mhz?.IndexOf(':') ?? -1;
                if (colon >= 0 && double.TryParse(mhz![(colon + 1)..].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double m) && m > 0)
                    return (m * 1e6, "/proc/cpuinfo cpu MHz");
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return (DefaultTscHz, "default 2.6 GHz (no TSC rate found)");
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters =>
    [
        new("packets", _packets), new("cycles_per_packet", CyclesPerPacket), new("iterations_per_packet", _iterationsPerPacket),
        new("tsc_khz", (long)(Calibration.TscHz / 1e3)), new("ps_per_iteration", (long)Math.Round(Calibration.NanosecondsPerIteration * 1e3)),
        new("calibration_spread_ppm", (long)Math.Round(Calibration.Spread * 1e6)),
    ];

    /// <summary>Builds a cost NF from its <c>key=value</c> arguments (see the class remarks).</summary>
    public static CostFunction FromArgs(string? args)
    {
        var a = NfArgs.Parse("cost", args, ["cycles", "tsc_hz"]);
        long cycles = a.GetInt64("cycles", 0, 0, 1_000_000_000);
        double? hz = null;
        var v = a.Get("tsc_hz");
        if (v is not null)
        {
            if (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double h) || h < 1e6 || h > 1e11)
                throw a.Error("tsc_hz", v, "expected the TSC rate in Hz between 1e6 and 1e11, e.g. tsc_hz=2600000000");
            hz = h;
        }
        return new CostFunction(cycles, hz);
    }
}
