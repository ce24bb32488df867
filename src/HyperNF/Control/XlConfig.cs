using System.Collections.Immutable;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using HyperNF.Switch;

using HyperNF.Hypervisor;

namespace HyperNF.Control;

/// <summary>
/// Reads Xen xl domain configs (<c>xl create linux.cfg</c>) into a <see cref="DomainConfig"/>.
/// The xl syntax is accepted as is, so a config written for the reference HyperNF works
/// unchanged: settings that only matter to a real Xen guest (kernel, disk, ...) and vifs
/// that are not <c>type=nmif</c> are accepted with a notice each. Anything else that is not
/// understood is an error naming the file, line and setting, never silently dropped.
/// </summary>
public static partial class XlConfig
{
    /// <summary>Settings HyperNF uses.</summary>
    public static readonly ImmutableArray<string> Keys =
        ["name", "vcpus", "cpus", "memory", "vif", "nf", "nf_args", "weight", "cap", "io_model", "kernel", "extra", "cmdline"];

    /// <summary>
    /// xl settings accepted with a notice, and why they do nothing: HyperNF domains are NF
    /// code on host threads, not booted guests, so anything about booting, devices other than
    /// netmap interfaces, or the guest's life cycle has no counterpart.
    /// </summary>
    private static readonly Dictionary<string, string> Ignored = new(StringComparer.Ordinal)
    {
        ["ramdisk"] = "VM guests are single images (kernel=)",
        ["root"] = "VM guests have no root file system", ["bootloader"] = "no guest kernel is booted",
        ["bootloader_args"] = "no guest kernel is booted", ["firmware"] = "no guest kernel is booted",
        ["bios"] = "no guest kernel is booted", ["boot"] = "no guest kernel is booted",
        ["disk"] = "domains have no block devices", ["pci"] = "devices are not passed through",
        ["usb"] = "devices are not passed through", ["usbdevice"] = "devices are not passed through",
        ["usbctrl"] = "devices are not passed through", ["dtdev"] = "devices are not passed through",
        ["irqs"] = "devices are not passed through", ["iomem"] = "devices are not passed through",
        ["ioports"] = "devices are not passed through",
        ["builder"] = "there is only one kind of domain", ["type"] = "there is only one kind of domain",
        ["pvh"] = "there is only one kind of domain", ["hap"] = "there is only one kind of domain",
        ["acpi"] = "there is only one kind of domain", ["apic"] = "there is only one kind of domain",
        ["pae"] = "there is only one kind of domain", ["nestedhvm"] = "there is only one kind of domain",
        ["viridian"] = "there is only one kind of domain", ["device_model_version"] = "there is no device model",
        ["device_model_override"] = "there is no device model", ["uuid"] = "domains are named, not numbered",
        ["on_poweroff"] = "a domain stops when its NF ends or is destroyed", ["on_reboot"] = "a domain stops when its NF ends or is destroyed",
        ["on_crash"] = "a faulting NF ends its own domain", ["on_watchdog"] = "a domain stops when its NF ends or is destroyed",
        ["on_soft_reset"] = "a domain stops when its NF ends or is destroyed",
        ["serial"] = "there is no console", ["console"] = "there is no console", ["vnc"] = "there is no console",
        ["vnclisten"] = "there is no console", ["vncdisplay"] = "there is no console", ["vncunused"] = "there is no console",
        ["vncpasswd"] = "there is no console", ["sdl"] = "there is no console", ["opengl"] = "there is no console",
        ["keymap"] = "there is no console", ["vfb"] = "there is no console", ["vkb"] = "there is no console",
        ["nographic"] = "there is no console", ["stdvga"] = "there is no console", ["videoram"] = "there is no console",
        ["soundhw"] = "there is no console", ["channel"] = "there is no console",
        ["maxmem"] = "memory does not balloon", ["shadow_memory"] = "memory does not balloon",
        ["maxvcpus"] = "vCPUs are not hot-plugged; vcpus= is the count", ["cpus_soft"] = "there is no soft affinity; use cpus=",
        ["pool"] = "there are no CPU pools; use cpus=", ["localtime"] = "guest clocks are the host's",
        ["rtc_timeoffset"] = "guest clocks are the host's", ["tsc_mode"] = "guest clocks are the host's",
        ["seclabel"] = "there is no XSM", ["max_grant_frames"] = "ports use a shared region, not grants",
        ["max_maptrack_frames"] = "ports use a shared region, not grants", ["vtpm"] = "devices are not passed through",
        ["p9"] = "devices are not passed through", ["vdispl"] = "devices are not passed through",
        ["vsnd"] = "devices are not passed through", ["xen_platform_pci"] = "there is no device model",
        ["gfx_passthru"] = "devices are not passed through", ["cpuid"] = "NF code runs on the host CPU as is",
        ["vnuma"] = "there is no NUMA layout per domain",
    };

    /// <summary>Settings of a vif entry that xl knows and that have no meaning for a netmap port.</summary>
    private static readonly HashSet<string> IgnoredVifKeys = new(StringComparer.Ordinal)
    {
        "ip", "vifname", "backend", "model", "rate", "devid", "gatewaydev", "trusted", "mtu", "accel", "forwarddev", "bridge_vlan",
    };

    public const int MaxMemoryMb = 1 << 20;

    /// <summary>Longest config accepted, in characters (a daemon request line is at most 1 MiB anyway).</summary>
    public const int MaxConfigChars = 1 << 20;
    /// <summary>Longest line of a config, in characters: one setting, or one line of a list.</summary>
    public const int MaxLineChars = 64 * 1024;
    /// <summary>Longest setting name; xl's are under 30 characters.</summary>
    public const int MaxKeyChars = 64;

    /// <summary>Reads and parses the config at <paramref name="path"/>; messages name the path as given.</summary>
    public static DomainConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        long size = new FileInfo(path).Length;
        if (size > 4L * MaxConfigChars) // UTF-8 may take 4 bytes a character: checked exactly by Parse
            throw new XlConfigException(path, 1, null, $"the config is {size} bytes long; a domain config is at most {MaxConfigChars} characters");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config <paramref name="text"/>; <paramref name="fileName"/> is only used in messages.</summary>
    /// <exception cref="XlConfigException">The config is malformed or a value is out of range.</exception>
    public static DomainConfig Parse(string text, string fileName)
    {
        ArgumentNullException.ThrowIfNull(text);
        fileName ??= "(config)";
        if (text.Length > MaxConfigChars)
            throw new XlConfigException(fileName, 1, null, $"the config is {text.Length} characters long; a domain config is at most {MaxConfigChars}");
        var settings = XlConfigReader.Read(text, fileName);
        var seen = new Dictionary<string, XlSetting>(StringComparer.Ordinal);
        foreach (var s in settings)
        {
            if (seen.TryGetValue(s.Key, out var first))
                throw new XlConfigException(fileName, s.Line, s.Key, $"set twice (first on line {first.Line}); keep one");
            seen.Add(s.Key, s);
        }
        return new Interpreter(fileName, seen).Build(settings);
    }

    /// <summary>
    /// Parses config <paramref name="text"/> with xl's command-line overrides applied
    /// (<c>xl create vm.cfg vcpus=2 'name="b"'</c>): each KEY=VALUE replaces the file's setting of
    /// that key or adds it. A bare word value is taken as a string (name=b).
    /// </summary>
    public static DomainConfig Parse(string text, string fileName, IReadOnlyList<string> overrides)
    {
        if (overrides is null || overrides.Count == 0) return Parse(text, fileName);
        fileName ??= "(config)";
        const string Where = "(command line)";
        var settings = XlConfigReader.Read(text, fileName).ToList();
        var overridden = new Dictionary<string, int>(StringComparer.Ordinal); // key -> its position on the command line
        for (int n = 0; n < overrides.Count; n++)
        {
            string o = overrides[n];
            int eq = o.IndexOf('=');
            if (eq <= 0) throw new XlConfigException(Where, 1, o, "an override is KEY=VALUE, e.g. vcpus=2 or name=\"nf2\"");
            IReadOnlyList<XlSetting> parsed;
            try
            {
                parsed = XlConfigReader.Read(o, Where);
            }
            catch (XlConfigException)
            {
                string value = o[(eq + 1)..].Trim();
                if (value.Length == 0 || value.IndexOfAny(['"', '\'', '[', ']', '\n']) >= 0) throw;
                parsed = XlConfigReader.Read($"{o[..eq]}=\"{value}\"", Where);
            }
            foreach (var p in parsed)
            {
                overridden[p.Key] = n + 1;
                int i = settings.FindIndex(x => x.Key == p.Key);
                if (i >= 0) settings[i] = p with { Line = settings[i].Line };
                else settings.Add(p);
            }
        }
        var seen = new Dictionary<string, XlSetting>(StringComparer.Ordinal);
        foreach (var st in settings)
        {
            if (seen.TryGetValue(st.Key, out var first))
                throw new XlConfigException(fileName, st.Line, st.Key, $"set twice (first on line {first.Line}); keep one");
            seen.Add(st.Key, st);
        }
        try
        {
            return new Interpreter(fileName, seen).Build(settings);
        }
        catch (XlConfigException e) when (e.Key is { } k && overridden.TryGetValue(k, out int position))
        {
            // The value came from the command line: say so, with its position there.
            throw new XlConfigException(Where, position, k, e.Reason);
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    private static partial Regex DomainNameRegex();

    /// <summary>
    /// The MAC a vif gets when the config has none: Xen's 00:16:3e prefix and three bytes of
    /// a hash of the domain name and vif index, so a domain keeps its MACs across restarts
    /// (learning tables and NF rules written for them stay valid). The top bit of the fourth
    /// byte is clear, as in libxl's random MACs.
    /// </summary>
    public static string DefaultMac(string domainName, int vifIndex)
    {
        ArgumentNullException.ThrowIfNull(domainName);
        byte[] h = SHA256.HashData(Encoding.UTF8.GetBytes($"{domainName}\n{vifIndex.ToString(CultureInfo.InvariantCulture)}"));
        return $"00:16:3e:{h[0] & 0x7f:x2}:{h[1]:x2}:{h[2]:x2}";
    }

    private static string Q(string text) => XlConfigReader.Quote(text);

    /// <summary>Turns the settings into a <see cref="DomainConfig"/>, one key at a time.</summary>
    private sealed class Interpreter(string file, Dictionary<string, XlSetting> byKey)
    {
        private readonly List<(int Line, string Text)> _notices = [];

        private XlConfigException Error(XlSetting s, string reason) => new(file, s.Line, s.Key, reason);
        private XlConfigException Error(int line, string key, string reason) => new(file, line, key, reason);
        private void Notice(int line, string key, string text) => _notices.Add((line, XlConfigException.Format(file, line, key, text)));

        public DomainConfig Build(List<XlSetting> inOrder)
        {
            foreach (var s in inOrder)
            {
                if (Keys.Contains(s.Key)) continue;
                if (Ignored.TryGetValue(s.Key, out string? why)) { Notice(s.Line, s.Key, $"ignored ({why})"); continue; }
                throw Error(s, $"unknown setting{Suggest(s.Key)}; HyperNF reads {string.Join(", ", Keys)} and accepts xl's kernel, disk, extra, ... with a notice");
            }

            if (!byKey.TryGetValue("name", out var nameSetting))
                throw new XlConfigException(file, 1, "name", "missing; every domain needs one, e.g. name = \"linux\"");
            string name = String(nameSetting);
            if (!DomainNameRegex().IsMatch(name))
                throw Error(nameSetting, $"'{Q(name)}' is not a domain name: use 1..64 letters, digits, '_', '.' or '-', starting with a letter or digit");

            int vcpus = Int("vcpus", 1, DomainConfig.MaxVCpus, 1);
            int memory = Int("memory", 1, MaxMemoryMb, DomainConfig.DefaultMemoryMb);
            int weight = Int("weight", 1, 65535, DomainConfig.DefaultWeight);
            int cap = Int("cap", 0, 100 * vcpus, 0, vcpus > 1 ? $" for {vcpus} vCPUs; 0 means no cap" : "; 0 means no cap");
            var cpus = Cpus(vcpus);
            string? nf = OptionalString("nf");
            if (nf is not null && nf.Trim().Length == 0) throw Error(byKey["nf"], "is empty; name a network function, or leave nf out");
            string? nfArgs = OptionalString("nf_args");
            if (nfArgs is not null && nf is null) throw Error(byKey["nf_args"], "is set but nf is not; add nf = \"NAME\" or drop nf_args");
            IoModel? io = null;
            if (byKey.TryGetValue("io_model", out var ioSetting))
            {
                string v = String(ioSetting);
                io = v.ToLowerInvariant() switch
                {
                    "hypercall" => IoModel.Hypercall,
                    "split" => IoModel.Split,
                    "merge" => IoModel.Merge,
                    _ => throw Error(ioSetting, $"'{Q(v)}' is not an I/O model (want hypercall, split or merge)"),
                };
            }
            var vifs = Vifs(name);
            // kernel= without nf= boots a VM domain. With nf= (the reference's configs name a Linux
            // kernel and the NF that replaces it) the domain stays a thread domain and kernel=,
            // extra= and cmdline= are accepted with a notice, as before.
            string? kernel = nf is null ? OptionalString("kernel") : null;
            string? cmdline = null;
            if (kernel is not null)
            {
                if (kernel.Trim().Length == 0) throw Error(byKey["kernel"], "is empty; give the path of a guest image (e.g. artifacts/guest/l2fwd.elf), or leave kernel out for a thread domain");
                if (byKey.TryGetValue("extra", out var ex) && byKey.ContainsKey("cmdline")) throw Error(ex, "is set together with cmdline; both are the guest's command line: keep one");
                cmdline = OptionalString("extra") ?? OptionalString("cmdline");
                if (cmdline is not null && System.Text.Encoding.UTF8.GetByteCount(cmdline) > Vmm.GuestAbi.CmdlineMax)
                    throw Error(byKey.ContainsKey("extra") ? byKey["extra"] : byKey["cmdline"], $"is longer than {Vmm.GuestAbi.CmdlineMax} bytes");
            }
            else
            {
                if (byKey.TryGetValue("kernel", out var kg)) Notice(kg.Line, "kernel", "ignored (nf= makes this a thread domain: the NF runs on host threads; leave nf out to boot kernel= in a VM domain)");
                foreach (string k in new[] { "extra", "cmdline" })
                    if (byKey.TryGetValue(k, out var ig)) Notice(ig.Line, k, "ignored (the guest command line of a VM domain; this domain has no kernel= to boot)");
            }

            return new DomainConfig
            {
                FileName = file, Name = name, VCpus = vcpus, Cpus = cpus, MemoryMb = memory, Vifs = vifs,
                Nf = nf, NfArgs = nfArgs, Kernel = kernel, CommandLine = cmdline, Weight = weight, Cap = cap, IoModel = io,
                Lines = byKey.ToImmutableDictionary(kv => kv.Key, kv => kv.Value.Line, StringComparer.Ordinal),
                // Settings are checked in dependency order, not file order; the user reads notices top to bottom.
                Notices = [.. _notices.OrderBy(n => n.Line).Select(n => n.Text)],
            };
        }

        /// <summary>
        /// " (did you mean 'x'?)" for a known key within edit distance 2 of <paramref name="key"/>.
        /// Bounded work: keys are at most <see cref="MaxKeyChars"/> long (the reader refuses
        /// longer ones) and a known key whose length differs by more than the best distance so far
        /// is skipped without computing anything.
        /// </summary>
        private static string Suggest(string key)
        {
            string? best = null;
            int bestD = 3;
            foreach (string k in Keys.Concat(Ignored.Keys))
            {
                if (Math.Abs(k.Length - key.Length) >= bestD) continue;
                int d = Distance(key, k, bestD);
                if (d < bestD) { bestD = d; best = k; }
            }
            return best is null ? "" : $" (did you mean '{best}'?)";
        }

        /// <summary>Levenshtein distance of two short strings, or <paramref name="limit"/> as soon as it cannot be less.</summary>
        private static int Distance(string a, string b, int limit)
        {
            Span<int> prev = stackalloc int[b.Length + 1], cur = stackalloc int[b.Length + 1];
            for (int j = 0; j <= b.Length; j++) prev[j] = j;
            for (int i = 1; i <= a.Length; i++)
            {
                cur[0] = i;
                int rowMin = i;
                for (int j = 1; j <= b.Length; j++)
                {
                    cur[j] = Math.Min(Math.Min(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
                    rowMin = Math.Min(rowMin, cur[j]);
                }
                if (rowMin >= limit) return limit; // every later row is at least this
                var t = prev;
                prev = cur;
                cur = t;
            }
            return Math.Min(prev[b.Length], limit);
        }

        private XlAtom Scalar(XlSetting s, string example)
        {
            if (s.Scalar is { } a) return a;
            throw Error(s, $"expected a single value, not a list (write {s.Key} = {example})");
        }

        private string String(XlSetting s) => Scalar(s, "\"...\"").Text;

        private string? OptionalString(string key) => byKey.TryGetValue(key, out var s) ? String(s) : null;

        /// <summary>
        /// xl stores numbers and strings alike and converts on use, so <c>vcpus = "2"</c> is
        /// as good as <c>vcpus = 2</c>; we accept both for the same reason.
        /// </summary>
        private int Int(string key, int min, int max, int dflt, string rangeNote = "")
        {
            if (!byKey.TryGetValue(key, out var s)) return dflt;
            var a = Scalar(s, min.ToString(CultureInfo.InvariantCulture));
            string t = a.Text.Trim();
            bool ok = t.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? long.TryParse(t.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long v)
                : long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v);
            if (!ok) throw Error(s, $"'{Q(a.Text)}' is not an integer (want {min}..{max}{rangeNote})");
            if (v < min || v > max) throw Error(s, $"{Q(t)} is out of range (want {min}..{max}{rangeNote})");
            return (int)v;
        }

        private ImmutableArray<ImmutableArray<int>> Cpus(int vcpus)
        {
            if (!byKey.TryGetValue("cpus", out var s))
                return [.. Enumerable.Repeat(ImmutableArray<int>.Empty, vcpus)];
            const string Want = "want e.g. \"3\", \"0-1\", \"0,2-3\" or \"all\"";
            if (s.Scalar is { } one)
            {
                // One list for the whole domain: every vCPU may run on any of those CPUs (xl's meaning).
                if (!CpuList.TryParse(one.Text, out var set, out string err))
                    throw Error(s, $"'{Q(one.Text)}' is not a CPU list: {err} ({Want})");
                return [.. Enumerable.Repeat(set, vcpus)];
            }
            var list = s.List!;
            if (list.Count == 0) throw Error(s, $"is an empty list; give one CPU list per vCPU, or a single string ({Want})");
            if (list.Count > vcpus)
                throw Error(s, $"has {list.Count} entries for {vcpus} vCPU(s); give at most one per vCPU, or raise vcpus");
            var result = ImmutableArray.CreateBuilder<ImmutableArray<int>>(vcpus);
            foreach (var a in list)
            {
                if (!CpuList.TryParse(a.Text, out var set, out string err))
                    throw Error(a.Line, s.Key, $"vCPU {result.Count}: '{Q(a.Text)}' is not a CPU list: {err} ({Want})");
                result.Add(set);
            }
            // As in xl, vCPUs past the end of the list are not pinned.
            while (result.Count < vcpus) result.Add([]);
            return result.MoveToImmutable();
        }

        private ImmutableArray<VifConfig> Vifs(string domainName)
        {
            if (!byKey.TryGetValue("vif", out var s)) return [];
            if (s.List is not { } list)
                throw Error(s, "expected a list (write vif = [ \"type=nmif,bridge=valex:lx0\" ])");
            if (list.Count > Bridge.MaxPorts)
                throw Error(s, $"has {list.Count} entries; a domain has at most {Bridge.MaxPorts} vifs (the ports of one bridge)");
            var vifs = ImmutableArray.CreateBuilder<VifConfig>();
            var ports = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < list.Count; i++)
            {
                var a = list[i];
                if (!a.Quoted) throw Error(a.Line, "vif", $"vif {i}: expected a string like \"type=nmif,bridge=valex:lx0\", found {Q(a.Text)}");
                var vif = Vif(domainName, i, a);
                if (vif is null) continue;
                if (ports.TryGetValue(vif.Port, out int other))
                    throw Error(a.Line, "vif", $"vif {i}: port {vif.Port} is already used by vif {other}; give each vif its own port");
                ports.Add(vif.Port, i);
                vifs.Add(vif);
            }
            return vifs.ToImmutable();
        }

        /// <summary>One vif spec, "k=v,k=v"; null for a vif that is not ours (with a notice).</summary>
        private VifConfig? Vif(string domainName, int index, XlAtom a)
        {
            int line = a.Line;
            var kv = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string raw in a.Text.Split(','))
            {
                string part = raw.Trim();
                if (part.Length == 0) continue; // xl tolerates empty items ("a=1,,b=2" and a trailing comma)
                int eq = part.IndexOf('=');
                if (eq <= 0) throw Error(line, "vif", $"vif {index}: '{Q(part)}' is not KEY=VALUE (e.g. bridge=valex:lx0)");
                string k = part[..eq].Trim(), v = part[(eq + 1)..].Trim();
                if (!kv.TryAdd(k, v)) throw Error(line, "vif", $"vif {index}: '{Q(k)}' is given twice; keep one");
            }

            kv.TryGetValue("type", out string? type);
            if (type != "nmif")
            {
                string hint = kv.TryGetValue("bridge", out string? b) && b.StartsWith("vale", StringComparison.Ordinal)
                    ? $"; add type=nmif to attach it to {b}"
                    : "";
                Notice(line, "vif", $"vif {index} ({Q(a.Text)}) is not a netmap interface (type=nmif); ignored{hint}");
                return null;
            }

            foreach (string k in kv.Keys)
            {
                if (k is "type" or "bridge" or "mac" or "script" || IgnoredVifKeys.Contains(k)) continue;
                throw Error(line, "vif", $"vif {index}: unknown setting '{Q(k)}'; nmif vifs take bridge, mac and script (xl's {string.Join(", ", IgnoredVifKeys.Order(StringComparer.Ordinal))} are ignored)");
            }
            var ignored = kv.Keys.Where(IgnoredVifKeys.Contains).ToArray();
            if (ignored.Length > 0)
                Notice(line, "vif", $"vif {index}: {string.Join(", ", ignored)} ignored (no meaning for a netmap port)");

            if (!kv.TryGetValue("bridge", out string? port) || port.Length == 0)
                throw Error(line, "vif", $"vif {index}: no bridge; add bridge=BRIDGE:PORT, e.g. bridge=valex:lx0");
            try
            {
                Bridge.ParsePortName(port);
            }
            catch (ArgumentException e)
            {
                throw Error(line, "vif", $"vif {index}: bridge={Q(port)}: {e.Message}");
            }

            string mac;
            bool generated = false;
            if (kv.TryGetValue("mac", out string? m))
            {
                ulong value;
                try
                {
                    value = ForwardingTable.ParseMac(m);
                }
                catch (FormatException)
                {
                    throw Error(line, "vif", $"vif {index}: mac '{Q(m)}' is not a MAC address (want six hex octets like 00:16:3e:af:12:00)");
                }
                if ((value & 1) != 0)
                    throw Error(line, "vif", $"vif {index}: mac '{m}' is a multicast address (odd first octet); a port needs a unicast MAC like 00:16:3e:af:12:00");
                if (value == 0)
                    throw Error(line, "vif", $"vif {index}: mac '{m}' is all zeros; give a real MAC or leave mac out to get one generated");
                mac = ForwardingTable.FormatMac(value);
            }
            else
            {
                mac = DefaultMac(domainName, index);
                generated = true;
            }

            kv.TryGetValue("script", out string? script);
            if (script is not null && script != "nmif-vale")
                Notice(line, "vif", $"vif {index}: script '{Q(script)}' is not run; HyperNF attaches the port to {port} itself");
            return new VifConfig(index, port, mac, generated, script);
        }
    }
}
