using System.Buffers;
using System.Globalization;
using System.Text.RegularExpressions;
using HyperNF.Switch;
using HyperNF.Tools;

namespace HyperNF.Control;

/// <summary>
/// The streaming op <c>capture</c> (hypernf capture): a <see cref="CaptureTap"/> on one port,
/// drained every few milliseconds into pcap records sent as "frames" events.
/// </summary>
public sealed partial class ControlDaemon
{
    /// <summary>Largest pcap payload of one "frames" event (before base64).</summary>
    private const int CaptureChunkBytes = 256 * 1024;

    [GeneratedRegex(@"^vif(\d+)\.(\d+)$")]
    private static partial Regex VifNameRegex();

    /// <summary>
    /// Finds the port a capture names: BRIDGE:PORT (a domain's, an interface's or a host
    /// port), with netmap's monitor suffixes /t (what it sends), /r (what it receives) or /z;
    /// xl's vifDOMID.N (a domain's Nth vif); or an interface name attached with vale-ctl -a.
    /// </summary>
    private (ValePort Port, CaptureDirection? Direction) ResolveCapturePort(string text)
    {
        CaptureDirection? dir = null;
        string name = text;
        int slash = text.LastIndexOf('/');
        if (slash > 0)
        {
            string suffix = text[(slash + 1)..];
            name = text[..slash];
            dir = suffix switch
            {
                "t" => CaptureDirection.Out,
                "r" => CaptureDirection.In,
                "z" => throw ControlException.Unsupported($"capture {ControlRequest.Short(text)}: zero-copy monitors (/z) are not offered: the tap always copies the frames, so the switch never waits for the reader; use /t, /r or no suffix (both directions)"),
                _ => throw ControlException.Invalid($"capture {ControlRequest.Short(text)}: unknown monitor suffix '/{ControlRequest.Short(suffix)}'; use /t (frames the port sends), /r (frames it receives) or none (both)"),
            };
        }
        var m = VifNameRegex().Match(name);
        if (m.Success)
        {
            var d = _host.Domains.FirstOrDefault(x => x.Id.ToString(CultureInfo.InvariantCulture) == m.Groups[1].Value)
                ?? throw ControlException.NotFound($"capture {ControlRequest.Short(name)}: no domain with id {m.Groups[1].Value}");
            if (!int.TryParse(m.Groups[2].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int i) || i >= d.Spec.Vifs.Count)
                throw ControlException.NotFound($"capture {name}: domain '{d.Name}' (id {d.Id}) has vifs 0..{d.Spec.Vifs.Count - 1}");
            name = d.Spec.Vifs[i].Port;
        }
        if (name.IndexOf(':') is int colon and > 0)
        {
            var b = FindBridge(name[..colon]);
            return (FindPort(b, name[(colon + 1)..]), dir);
        }
        var matches = _interfaces.Where(kv => kv.Value == name).Select(kv => kv.Key).ToArray();
        if (matches.Length == 1 && _host.Switch.FindBridge(matches[0].Bridge) is { } ib)
            return (FindPort(ib, matches[0].Port), dir);
        throw ControlException.NotFound(matches.Length > 1
            ? $"capture {ControlRequest.Short(name)}: interface {name} is attached to several bridges ({string.Join(", ", matches.Select(x => x.Bridge))}); write BRIDGE:{name}"
            : $"capture {ControlRequest.Short(name)}: not a port; write BRIDGE:PORT (e.g. valex:lx0, with /t or /r for one direction), vifDOMID.N, or the name of an interface attached with vale-ctl -a");
    }

    private static string DirectionKey(CaptureDirection d) => d switch
    {
        CaptureDirection.In => "in",
        CaptureDirection.Out => "out",
        _ => "both",
    };

    private async Task<bool> CaptureAsync(ControlRequest r, Connection c)
    {
        r.AllowOnly("port", "direction", "snaplen", "count", "buffer_kib");
        var (port, suffixDir) = ResolveCapturePort(r.String("port"));
        CaptureDirection? asked = r.OptionalString("direction") switch
        {
            null => null,
            "in" => CaptureDirection.In,
            "out" => CaptureDirection.Out,
            "both" or "inout" => CaptureDirection.Both,
            var other => throw ControlException.Invalid($"capture: direction '{ControlRequest.Short(other)}' is not in, out or both"),
        };
        if (asked is not null && suffixDir is not null && asked != suffixDir)
            throw ControlException.Invalid($"capture: the port's monitor suffix asks for '{DirectionKey(suffixDir.Value)}' and --direction for '{DirectionKey(asked.Value)}'; give one of them");
        var dir = asked ?? suffixDir ?? CaptureDirection.Both;
        int snaplen = r.OptionalInt("snaplen") ?? CaptureTap.MaxSnapLength;
        if (snaplen == 0) snaplen = CaptureTap.MaxSnapLength; // tcpdump's -s 0
        if (snaplen is < 1 or > CaptureTap.MaxSnapLength) throw ControlException.Invalid($"capture: snaplen {snaplen} is out of range (1..{CaptureTap.MaxSnapLength}, 0 = {CaptureTap.MaxSnapLength})");
        long count = r.OptionalLong("count") ?? 0;
        if (count < 0) throw ControlException.Invalid($"capture: count {count} is negative (0 = until stopped)");
        int bufferKib = r.OptionalInt("buffer_kib") ?? CaptureTap.DefaultBufferBytes / 1024;
        if (bufferKib is < 64 or > 1 << 20 || (bufferKib & (bufferKib - 1)) != 0)
            throw ControlException.Invalid($"capture: buffer_kib {bufferKib} must be a power of two of 64..1048576");

        var tap = port.OpenCapture(dir, snaplen, bufferKib * 1024);
        var owner = OwnerOf(PortOwners(), port.Name);
        Log($"capture of {port.Name} ({DirectionKey(dir)}) started");
        long sent = 0;
        string reason = "stopped";
        bool stopped = false, keep = true;
        try
        {
            await c.WriteAsync(ControlProtocol.Event(r.Id, "started", new CaptureStarted
            {
                Port = port.Name, Kind = owner.Kind, Owner = owner.Owner, Direction = DirectionKey(dir), Snaplen = snaplen, BufferBytes = tap.BufferBytes,
            })).ConfigureAwait(false);
            var buf = new ArrayBufferWriter<byte>(CaptureChunkBytes + 4096);
            while (true)
            {
                // Drain what the senders published, in chunks, up to the count.
                bool full = false;
                while (true)
                {
                    int frames = 0;
                    long want = count == 0 ? long.MaxValue : count - sent;
                    tap.Drain(f =>
                    {
                        Pcap.AppendRecord(buf, f);
                        frames++;
                        return buf.WrittenCount < CaptureChunkBytes && frames < want;
                    }, (int)Math.Min(want, int.MaxValue));
                    if (frames == 0) break;
                    sent += frames;
                    await c.WriteAsync(ControlProtocol.Event(r.Id, "frames", new CaptureFrames { Frames = frames, Pcap = buf.WrittenSpan.ToArray(), Dropped = tap.Dropped }))
                        .ConfigureAwait(false);
                    buf.ResetWrittenCount();
                    if (count != 0 && sent >= count) { full = true; break; }
                }
                if (full) { reason = "count"; break; }
                if (port.Retired) { reason = "port detached"; break; }
                var signal = await WatchClientAsync(c, "capture", TimeSpan.FromMilliseconds(tap.HasFrames ? 0 : 20)).ConfigureAwait(false);
                if (signal == ClientSignal.Gone) { keep = false; return false; }
                if (signal == ClientSignal.Stop) { stopped = true; break; }
            }
        }
        finally
        {
            port.CloseCapture(tap);
            Log($"capture of {port.Name} ended ({(keep ? reason : "client gone")}): {sent} frame(s) sent, {tap.Dropped} lost by the tap");
        }
        await c.WriteAsync(ControlProtocol.Ok(r.Id, new CaptureResult
        {
            Port = port.Name, Captured = sent, Dropped = tap.Dropped, Stopped = stopped, Reason = reason,
        })).ConfigureAwait(false);
        return true;
    }
}
