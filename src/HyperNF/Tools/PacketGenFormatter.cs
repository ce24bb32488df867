using System.Globalization;
using System.Text;

namespace HyperNF.Tools;

/// <summary>Text in pkt-gen's style for reports and summaries, so outputs can be compared with netmap's.</summary>
public static class PacketGenFormatter
{
    /// <summary>Ethernet's per-frame overhead on the wire beyond the frame: preamble 8, CRC 4, gap 12 (pkt-gen's "raw").</summary>
    public const int WireOverhead = 24;

    /// <summary>netmap's norm(): three decimals and a 1000-based unit, e.g. "14.881 M".</summary>
    public static string Norm(double value)
    {
        string[] units = ["", "K", "M", "G", "T"];
        int u = 0;
        while (Math.Abs(value) >= 1000 && u < units.Length - 1)
        {
            value /= 1000;
            u++;
        }
        return string.Create(CultureInfo.InvariantCulture, $"{value:F3} {units[u]}");
    }

    /// <summary>
    /// One report line, e.g.
    /// <c>    1.000 tx 14.881 Mpps (14.896 Mpkts 7.143 Gbps in 1001000 usec) 512.00 avg_batch</c>;
    /// RX lines add the running loss count.
    /// </summary>
    public static string FormatInterval(PacketGenInterval r)
    {
        ArgumentNullException.ThrowIfNull(r);
        long usec = (long)r.Length.TotalMicroseconds;
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{r.Elapsed.TotalSeconds,9:F3} {Name(r.Function)} {Norm(r.Pps)}pps ({Norm(r.Frames)}pkts {Norm(r.Bps)}bps in {usec} usec) {r.AverageBatch:F2} avg_batch");
        return r.Function is PacketGenFunction.Rx or PacketGenFunction.Ping ? line + string.Create(CultureInfo.InvariantCulture, $" {r.Lost} lost") : line;
    }

    /// <summary>The closing lines, as pkt-gen prints them, plus loss and latency for RX.</summary>
    public static string FormatSummary(PacketGenSummary s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        long frames = s.Frames;
        double seconds = s.ActiveTime.TotalSeconds;
        long each = frames > 0 ? s.Bytes / frames : 0;
        if (s.Function == PacketGenFunction.Ping)
        {
            sb.Append(ci, $"Sent {s.Sent} pings, {s.Received} replies, {s.Lost} lost (no reply within 1 s), {s.Foreign} other frames, in {seconds:F2} seconds.");
            if (s.Latency is { } rtt)
                sb.Append(ci, $"\nRound trip (usec): min {rtt.MinUs:F1} avg {rtt.MeanUs:F1} p50 {rtt.P50Us:F1} p90 {rtt.P90Us:F1} p99 {rtt.P99Us:F1} max {rtt.MaxUs:F1}");
            return sb.ToString();
        }
        if (s.Function == PacketGenFunction.Pong)
        {
            sb.Append(ci, $"Received {s.Received} packets, replied to {s.Sent}, {s.Received - s.Sent} not echoed (no TX room or longer than one buffer), in {seconds:F2} seconds.");
            return sb.ToString();
        }
        sb.Append(ci, $"{(s.Function == PacketGenFunction.Tx ? "Sent" : "Received")} {frames} packets {s.Bytes} bytes {s.Syncs} events {each} bytes each in {seconds:F2} seconds.\n");
        double pps = seconds > 0 ? frames / seconds : 0;
        double bps = seconds > 0 ? s.Bytes * 8 / seconds : 0;
        double raw = seconds > 0 ? (s.Bytes + (double)frames * WireOverhead) * 8 / seconds : 0;
        double batch = s.Syncs > 0 ? (double)frames / s.Syncs : 0;
        sb.Append(ci, $"Speed: {Norm(pps)}pps Bandwidth: {Norm(bps)}bps (raw {Norm(raw)}bps). Average batch: {batch:F2} pkts");
        if (s.Function == PacketGenFunction.Rx)
        {
            sb.Append(ci, $"\nSequence: {s.Lost} lost {s.Reordered} reordered {s.Duplicates} duplicates {s.Foreign} foreign");
            if (s.Latency is { } l)
                sb.Append(ci, $"\nLatency (usec): min {l.MinUs:F1} avg {l.MeanUs:F1} p50 {l.P50Us:F1} p90 {l.P90Us:F1} p99 {l.P99Us:F1} p99.9 {l.P999Us:F1} max {l.MaxUs:F1}");
        }
        return sb.ToString();
    }

    private static string Name(PacketGenFunction f) => f.ToString().ToLowerInvariant();
}
