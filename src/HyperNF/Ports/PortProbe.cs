using System.Diagnostics;

namespace HyperNF.Ports;

/// <summary>
/// Timestamps along one frame's path through a physical port, for finding where a round trip's
/// microseconds go (issue 14). Off unless the environment variable <c>HYPERNF_PORT_PROBES</c>
/// names a file: then the driver threads stamp each stage of the first frame after every wake-up
/// from poll(), and every 100 such frames one line of per-stage medians (microseconds since the
/// wake-up) is appended to that file. Off, each probe is one predictable branch on a static
/// readonly field, which the JIT folds away.
/// </summary>
internal static class PortProbe
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("HYPERNF_PORT_PROBES") is { Length: > 0 };
    private static readonly string? Path = Environment.GetEnvironmentVariable("HYPERNF_PORT_PROBES");

    /// <summary>The stages, in path order.</summary>
    public enum Stage
    {
        PollReturned, SleepReturned, GateTaken, RoundStart, FrameRead, FrameChecked, FrameCopied, BridgeFlushStart, SinkEntered, TxRingSynced,
        FrameQueued, SendStart, SendDone, TransmitDone, BridgeFlushDone, PollReceiveDone, Count,
    }

    private const int MaxOccurrences = 3;
    [ThreadStatic] private static long[]? t_stamps; // [stage * MaxOccurrences + occurrence]
    [ThreadStatic] private static bool t_armed;
    private static readonly object s_gate = new();
    private static readonly List<long[]> s_samples = [];

    /// <summary>The driver thread woke from poll(): the next frames' path is stamped.</summary>
    public static void Woke()
    {
        var s = t_stamps ??= new long[(int)Stage.Count * MaxOccurrences];
        Array.Fill(s, 0);
        s[0] = Stopwatch.GetTimestamp();
        t_armed = true;
    }

    /// <summary>Stamps a stage (its first three times after a wake-up).</summary>
    public static void Mark(Stage stage)
    {
        if (!t_armed) return;
        long now = Stopwatch.GetTimestamp();
        var s = t_stamps!;
        int b = (int)stage * MaxOccurrences;
        for (int k = 0; k < MaxOccurrences; k++)
            if (s[b + k] == 0) { s[b + k] = now; return; }
    }

    /// <summary>The driver thread goes back to sleep: keep the sample if a frame was sent.</summary>
    public static void Sleeping()
    {
        if (!t_armed) return;
        t_armed = false;
        var s = t_stamps!;
        if (s[(int)Stage.SendDone * MaxOccurrences] == 0) return;
        var copy = (long[])s.Clone();
        lock (s_gate)
        {
            s_samples.Add(copy);
            if (s_samples.Count < 100) return;
            Write(s_samples);
            s_samples.Clear();
        }
    }

    private static void Write(List<long[]> samples)
    {
        // One line per batch: each (stage, occurrence) that most samples reached, ordered by its
        // median time since the wake-up.
        var cells = new List<(double Median, string Name)>();
        for (int i = MaxOccurrences; i < (int)Stage.Count * MaxOccurrences; i++)
        {
            var v = samples.Where(s => s[i] != 0).Select(s => (s[i] - s[0]) * 1e6 / Stopwatch.Frequency).Order().ToArray();
            if (v.Length < samples.Count / 2) continue;
            cells.Add((v[v.Length / 2], $"{(Stage)(i / MaxOccurrences)}{(i % MaxOccurrences == 0 ? "" : "#" + (i % MaxOccurrences + 1))}"));
        }
        var line = new System.Text.StringBuilder();
        line.Append(DateTime.UtcNow.ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture)).Append(" n=").Append(samples.Count);
        foreach (var (m, name) in cells.OrderBy(c => c.Median))
            line.Append(' ').Append(name).Append('=').Append(m.ToString("F1", System.Globalization.CultureInfo.InvariantCulture));
        try { File.AppendAllText(Path!, line.Append('\n').ToString()); } catch (IOException) { }
    }
}
