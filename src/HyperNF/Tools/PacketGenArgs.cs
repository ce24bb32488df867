using System.Globalization;

namespace HyperNF.Tools;

/// <summary>
/// pkt-gen's flags, for <c>nf_args</c> of a pkt-gen domain and for <c>hypernf pkt-gen</c>:
/// <c>-f tx|rx|ping|pong -l LEN -n COUNT -R PPS -b BATCH -s SRC -d DST -S SMAC -D DMAC -t SECONDS -T MS -w SECONDS -z -Z -v</c>
/// (<c>--busy-poll</c>: spin instead of sleeping in poll; the default function is rx, as in netmap). <c>-i PORT</c> is accepted and returned
/// separately. Unknown flags and bad values are errors that name the flag.
/// </summary>
public static class PacketGenArgs
{
    public static PacketGeneratorOptions Parse(string? text) => Parse(Split(text), out _);

    /// <summary>netmap pkt-gen flags that are not offered, and how HyperNF differs (each refused with this).</summary>
    public static readonly IReadOnlyDictionary<string, string> Differences = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["-p"] = "pkt-gen -p (threads): one generator thread per run here (each run is a domain with one vCPU); start several pkt-gen runs, each with its own port, for more",
        ["-c"] = "pkt-gen -c (cores): a run has one vCPU; pin it with -a CPU, and start several runs for more cores",
        ["-P"] = "pkt-gen -P (replay a pcap file) is not offered: frames are built from -l/-s/-d/-S/-D; use hypernf capture to record traffic instead",
        ["-l"] = "a second -l (a range of frame sizes) is not offered: every frame of a run has the length of the first -l",
    };

    public static PacketGeneratorOptions Parse(IReadOnlyList<string> args, out string? port)
    {
        // netmap pkt-gen's default function is rx.
        var o = new PacketGeneratorOptions { Function = PacketGenFunction.Rx };
        port = null;
        bool sawLength = false;
        for (int i = 0; i < args.Count; i++)
        {
            string flag = args[i];
            switch (flag)
            {
                case "--busy-poll": o = o with { BusyPoll = true }; continue;
                case "-z": o = o with { RandomSource = true }; continue;
                case "-Z": o = o with { RandomDestination = true }; continue;
                case "-v": continue; // verbose: the CLI prints the run's details; nothing changes in the generator
                case "-p" or "-c" or "-P": throw new ArgumentException(Differences[flag]);
            }
            if (i + 1 >= args.Count) throw new ArgumentException($"pkt-gen: {flag} needs a value");
            string v = args[++i];
            if (flag == "-l")
            {
                if (sawLength) throw new ArgumentException(Differences["-l"]);
                sawLength = true;
            }
            o = flag switch
            {
                "-i" => SetPort(o, v, out port),
                "-f" => o with
                {
                    Function = v switch
                    {
                        "tx" => PacketGenFunction.Tx,
                        "rx" => PacketGenFunction.Rx,
                        "ping" => PacketGenFunction.Ping,
                        "pong" => PacketGenFunction.Pong,
                        _ => throw new ArgumentException($"pkt-gen: -f {v}: use tx, rx, ping or pong"),
                    },
                },
                "-l" => o with { FrameLength = Int(flag, v) },
                "-n" => o with { Count = Long(flag, v) },
                "-R" => o with { RatePps = (long)Rate(flag, v) },
                "-b" => o with { Batch = Int(flag, v) },
                "-s" => o with { Source = Range(flag, v) },
                "-d" => o with { Destination = Range(flag, v) },
                "-S" => o with { SourceMac = v },
                "-D" => o with { DestinationMac = v },
                "-t" => o with { Duration = TimeSpan.FromSeconds(Double(flag, v)) },
                "-T" => o with { ReportInterval = TimeSpan.FromMilliseconds(Double(flag, v)) },
                "-w" => o with { WaitLink = TimeSpan.FromSeconds(Int(flag, v)) },
                _ => throw new ArgumentException($"pkt-gen: unknown flag '{flag}' (known: -i -f -l -n -R -b -s -d -S -D -t -T -w -z -Z -v --busy-poll)"),
            };
        }
        o.Validate();
        return o;

        static PacketGeneratorOptions SetPort(PacketGeneratorOptions o, string v, out string? p)
        {
            p = v;
            return o;
        }
    }

    /// <summary>Splits "-f tx -l 60" (also accepting commas, as nf_args are often written) into tokens.</summary>
    public static string[] Split(string? text) =>
        string.IsNullOrWhiteSpace(text) ? [] : text.Split([' ', '\t', ','], StringSplitOptions.RemoveEmptyEntries);

    private static int Int(string flag, string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int r) ? r : throw new ArgumentException($"pkt-gen: {flag} {v}: not an integer");

    private static long Long(string flag, string v) =>
        long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long r) ? r : throw new ArgumentException($"pkt-gen: {flag} {v}: not an integer");

    private static double Double(string flag, string v) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double r) ? r : throw new ArgumentException($"pkt-gen: {flag} {v}: not a number");

    /// <summary>Accepts 1000000, 1M, 2.5M, 500K as netmap's pkt-gen does.</summary>
    private static double Rate(string flag, string v)
    {
        double mult = 1;
        string s = v;
        if (s.EndsWith('K') || s.EndsWith('k')) { mult = 1e3; s = s[..^1]; }
        else if (s.EndsWith('M') || s.EndsWith('m')) { mult = 1e6; s = s[..^1]; }
        else if (s.EndsWith('G') || s.EndsWith('g')) { mult = 1e9; s = s[..^1]; }
        return Double(flag, s) * mult;
    }

    private static EndpointRange Range(string flag, string v) =>
        EndpointRange.TryParse(v, out var r, out string error) ? r : throw new ArgumentException($"pkt-gen: {flag} {v}: {error}");
}
