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
        PollReturned, SleepReturned, GateTaken, RoundStart, FrameRead, FrameCopied, BridgeFlushStart, SinkEntered, TxRingSynced,
        FrameQueued, SendStart, SendDone, TransmitDone, BridgeFlushDone, PollReceiveDone, SecondSendDone, Count,
    }

    [ThreadStatic] private static long[]? t_stamps;
    [ThreadStatic] private static bool t_armed;
    private static readonly object s_gate = new();
    private static readonly List<long[]> s_samples = [];

    /// <summary>The driver thread woke from poll(): the next frame's path is stamped.</summary>
    public static void Woke()
    {
        var s = t_stamps ??= new long[(int)Stage.Count];
        Array.Fill(s, 0);
        s[0] = Stopwatch.GetTimestamp();
        t_armed = true;
    }

    /// <summary>Stamps a stage (the first time it is reached after a wake-up).</summary>
    public static void Mark(Stage stage)
    {
        if (!t_armed) return;
        var s = t_stamps!;
        if (s[(int)stage] == 0) s[(int)stage] = Stopwatch.GetTimestamp();
        else if (stage == Stage.SendDone && s[(int)Stage.SecondSendDone] == 0) s[(int)Stage.SecondSendDone] = Stopwatch.GetTimestamp();
    }

    /// <summary>The driver thread goes back to sleep: keep the sample if a frame was sent.</summary>
    public static void Sleeping()
    {
        if (!t_armed) return;
        t_armed = false;
        var s = t_stamps!;
        if (s[(int)Stage.SendDone] == 0) return;
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
        var line = new System.Text.StringBuilder();
        line.Append(DateTime.UtcNow.ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture)).Append(" n=").Append(samples.Count);
        for (int k = 1; k < (int)Stage.Count; k++)
        {
            var v = samples.Where(s => s[k] != 0).Select(s => (s[k] - s[0]) * 1e6 / Stopwatch.Frequency).Order().ToArray();
            if (v.Length == 0) continue;
            line.Append(' ').Append((Stage)k).Append('=').Append(v[v.Length / 2].ToString("F1", System.Globalization.CultureInfo.InvariantCulture));
        }
        try { File.AppendAllText(Path!, line.Append('\n').ToString()); } catch (IOException) { }
    }
}
