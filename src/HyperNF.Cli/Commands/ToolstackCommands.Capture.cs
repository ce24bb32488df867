using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using System.Text;
using HyperNF.Control;
using HyperNF.Tools;

namespace HyperNF.Cli.Commands;

/// <summary><c>hypernf capture</c>: tcpdump on a port of the running daemon (netmap's monitor ports).</summary>
public static partial class ToolstackCommands
{
    private static Command Capture()
    {
        var socket = SocketOption();
        var port = new Argument<string>("port")
        {
            Description = "BRIDGE:PORT (a domain's port, an interface port or a host port; /t only what it sends, /r only what it receives), vifDOMID.N, or an attached interface's name",
        };
        var write = new Option<string?>("-w") { Description = "Write pcap to FILE ('-' for standard output, e.g. | tshark -r -) instead of printing one line per frame", HelpName = "FILE" };
        var count = new Option<long>("-c") { Description = "Stop after N frames (0: until Ctrl-C)", HelpName = "N", DefaultValueFactory = _ => 0 };
        var snap = new Option<int>("-s") { Description = "Snap length: bytes kept of each frame (0 = 262144, the default)", HelpName = "SNAPLEN", DefaultValueFactory = _ => 0 };
        var direction = new Option<string?>("--direction", "-Q") { Description = "in (frames the port receives), out (frames it sends) or both (default)", HelpName = "in|out|both" };
        direction.AcceptOnlyFromAmong("in", "out", "both", "inout");
        var buffer = new Option<int?>("-B") { Description = "Capture buffer in KiB (a power of two; default 8192): what absorbs bursts before copies are lost", HelpName = "KIB" };
        var cmd = new Command("capture", "Capture a port's frames from the running daemon, as tcpdump does: pcap with -w (read by tcpdump, tshark, Wireshark), else one line per frame. A reader that falls behind loses captured copies (counted), never traffic.")
        {
            port, write, count, snap, direction, buffer, socket,
        };
        cmd.SetAction(p =>
        {
            long n = p.GetValue(count);
            if (n < 0) return Fail("capture: -c must be 0 or more");
            int s = p.GetValue(snap);
            if (s is < 0 or > HyperNF.Switch.CaptureTap.MaxSnapLength) return Fail($"capture: -s must be 0..{HyperNF.Switch.CaptureTap.MaxSnapLength}");
            string? file = p.GetValue(write);
            Stream? output = null;
            if (file is not null)
            {
                try
                {
                    // Not Console.OpenStandardOutput(): it ignores a closed pipe (EPIPE), and then we would
                    // capture on forever after "| tshark -c 3" or "| head" ended.
                    output = file == "-" ? new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(1, ownsHandle: false), FileAccess.Write, 1)
                        : new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.Read);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return Fail($"capture: cannot write {file}: {(Directory.Exists(file) ? "it is a directory" : e.Message)}");
                }
            }
            try
            {
                return WithDaemon(p, socket, c => RunCapture(c, p.GetValue(port)!, p.GetValue(direction), s, n, p.GetValue(buffer), output));
            }
            finally
            {
                output?.Dispose();
            }
        });
        return cmd;
    }

    private static int RunCapture(ControlClient c, string port, string? direction, int snaplen, long count, int? bufferKib, Stream? output)
    {
        using var stop = new CancellationTokenSource();
        long frames = 0;
        bool outputGone = false;
        using (StopOnSignals(stop))
        {
            var result = c.Stream("capture", new { port, direction, snaplen, count, buffer_kib = bufferKib }, (kind, data) =>
            {
                if (kind == "started")
                {
                    var st = As<CaptureStarted>(data);
                    string who = st.Owner is null ? st.Kind : $"{st.Kind} {st.Owner}";
                    Console.Error.WriteLine($"capture: listening on {st.Port} ({who}), direction {st.Direction}, link-type EN10MB (Ethernet), snapshot length {st.Snaplen} bytes");
                    if (output is not null)
                    {
                        output.Write(Pcap.FileHeader(st.Snaplen));
                        output.Flush();
                    }
                }
                else if (kind == "frames" && !outputGone)
                {
                    var f = As<CaptureFrames>(data);
                    frames += f.Frames;
                    try
                    {
                        if (output is not null)
                        {
                            output.Write(f.Pcap);
                            output.Flush();
                        }
                        else
                        {
                            foreach (var rec in Pcap.ReadRecords(f.Pcap)) Console.WriteLine(Describe(rec));
                        }
                    }
                    catch (IOException)
                    {
                        // The reader of our output went away (tshark ended, head closed the pipe): stop cleanly.
                        outputGone = true;
                        stop.Cancel();
                    }
                }
            }, stop.Token, null);
            var r = As<CaptureResult>(result);
            Console.Error.WriteLine($"{r.Captured} packets captured");
            Console.Error.WriteLine($"{r.Dropped} packets dropped by the tap (the reader was behind; the traffic itself was not affected)");
            if (r.Reason == "port detached") Console.Error.WriteLine($"capture: {r.Port} was detached; the capture ended");
        }
        return 0;
    }

    /// <summary>One line per frame, after tcpdump -e -n: time, MACs, ethertype, and the IPv4/ARP/IPv6 addresses.</summary>
    internal static string Describe(Pcap.Record rec)
    {
        var t = DateTimeOffset.FromUnixTimeMilliseconds(rec.TimeUnixUs / 1000).ToLocalTime();
        var sb = new StringBuilder();
        sb.Append(t.ToString("HH:mm:ss", CultureInfo.InvariantCulture)).Append('.').Append((rec.TimeUnixUs % 1_000_000).ToString("D6", CultureInfo.InvariantCulture)).Append(' ');
        var b = rec.Bytes.AsSpan();
        if (b.Length < 14)
        {
            sb.Append($"[|ether] length {rec.OriginalLength}");
            return sb.ToString();
        }
        sb.Append(Mac(b[6..12])).Append(" > ").Append(Mac(b[..6]));
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(b[12..]);
        string name = type switch { 0x0800 => "IPv4", 0x0806 => "ARP", 0x86DD => "IPv6", 0x8100 => "802.1Q", _ => "" };
        sb.Append($", ethertype {(name.Length > 0 ? name + " " : "")}(0x{type:x4}), length {rec.OriginalLength}");
        var l3 = b[14..];
        if (type == 0x0800 && l3.Length >= 20)
        {
            int ihl = (l3[0] & 0xF) * 4;
            string src = $"{l3[12]}.{l3[13]}.{l3[14]}.{l3[15]}", dst = $"{l3[16]}.{l3[17]}.{l3[18]}.{l3[19]}";
            byte proto = l3[9];
            if ((proto == 17 || proto == 6) && l3.Length >= ihl + 4)
            {
                int sp = BinaryPrimitives.ReadUInt16BigEndian(l3[ihl..]), dp = BinaryPrimitives.ReadUInt16BigEndian(l3[(ihl + 2)..]);
                sb.Append($": {src}.{sp} > {dst}.{dp}: {(proto == 17 ? "UDP" : "TCP")}");
            }
            else sb.Append($": {src} > {dst}: {(proto == 1 ? "ICMP" : $"ip-proto-{proto}")}");
        }
        else if (type == 0x0806 && l3.Length >= 28)
        {
            ushort op = BinaryPrimitives.ReadUInt16BigEndian(l3[6..]);
            string spa = $"{l3[14]}.{l3[15]}.{l3[16]}.{l3[17]}", tpa = $"{l3[24]}.{l3[25]}.{l3[26]}.{l3[27]}";
            sb.Append(op == 1 ? $": Request who-has {tpa} tell {spa}" : op == 2 ? $": Reply {spa} is-at {Mac(l3[8..14])}" : $": op {op}");
        }
        return sb.ToString();
    }

    private static string Mac(ReadOnlySpan<byte> m) => $"{m[0]:x2}:{m[1]:x2}:{m[2]:x2}:{m[3]:x2}:{m[4]:x2}:{m[5]:x2}";
}
