namespace HyperNF.Functions;

/// <summary>
/// "firewall": a stateless IPv4 5-tuple filter. Rules are tried in order and the first match
/// decides; a frame no rule matches gets the default policy.
/// </summary>
/// <remarks>
/// <para>Rule text, one rule per line; <c>#</c> starts a comment, blank lines are ignored:</para>
/// <code>
/// # ACTION PROTO SRC [SPORT] -> DST [DPORT]
/// allow tcp 10.0.0.0/24 any -> 10.0.1.5/32 80
/// allow udp any 1024-65535 -> 10.0.1.0/24 5000-5999
/// deny  udp any any -> any 53
/// allow icmp any -> any
/// default deny
/// </code>
/// <list type="bullet">
/// <item>ACTION: <c>allow</c> (forward) or <c>deny</c> (drop).</item>
/// <item>PROTO: <c>any</c>, <c>tcp</c>, <c>udp</c> or <c>icmp</c>.</item>
/// <item>SRC/DST: <c>any</c>, <c>A.B.C.D</c> (a host) or <c>A.B.C.D/N</c>; host bits below /N must be zero.</item>
/// <item>SPORT/DPORT: <c>any</c>, <c>N</c> or <c>N-M</c> (inclusive); may be left out (= any). A rule with a
/// port condition only matches packets that carry ports (TCP/UDP, not non-first fragments),
/// so <c>any</c> protocol with a port means "TCP or UDP on that port". ICMP rules take no ports.</item>
/// <item><c>default allow|deny</c>: the policy when no rule matches (at most once; the <c>default=</c>
/// argument may set it instead). Without either the default is deny.</item>
/// </list>
/// <para>Arguments (see <see cref="NetworkFunctions"/>): <c>rules=PATH</c> (a rule file),
/// <c>rule=TEXT</c> (inline rules, repeatable, several separated by ';'), <c>default=allow|deny</c>,
/// <c>nonip=pass|drop</c> (frames that are not IPv4, such as ARP; default pass so that hosts
/// behind the firewall can still resolve each other). Files and inline rules are taken in the order given.</para>
/// <para>Malformed IPv4 (lengths that do not add up) is always dropped. The firewall keeps no
/// connection state: return traffic needs its own allow rule.</para>
/// <para>Counters: hits per rule (named by rule number and text), <c>default</c>, <c>nonip</c>,
/// <c>malformed</c>, and the totals <c>allowed</c> and <c>denied</c>.</para>
/// </remarks>
public sealed class Firewall : INetworkFunction
{
    private readonly FirewallRule[] _rules;
    private readonly long[] _hits;
    private readonly bool _defaultAllow;
    private readonly bool _passNonIp;
    private long _defaultHits, _nonIp, _malformed, _allowed, _denied;

    public Firewall(IReadOnlyList<FirewallRule> rules, bool defaultAllow = false, bool passNonIp = true)
    {
        _rules = [.. rules];
        _hits = new long[_rules.Length];
        _defaultAllow = defaultAllow;
        _passNonIp = passNonIp;
    }

    public string Name => "firewall";
    public IReadOnlyList<FirewallRule> Rules => _rules;
    public bool DefaultAllow => _defaultAllow;

    /// <summary>Hits of rule <paramref name="index"/> (0-based, in rule order).</summary>
    public long Hits(int index) => _hits[index];

    public void Process(ref FrameBatch batch)
    {
        var rules = _rules;
        for (int i = 0; i < batch.Count; i++)
        {
            bool allow;
            switch (PacketInfo.Parse(batch.Frame(i), out var p))
            {
                case ParseStatus.NotIpv4:
                    _nonIp++;
                    allow = _passNonIp;
                    break;
                case ParseStatus.Malformed:
                    _malformed++;
                    allow = false;
                    break;
                default:
                    int r = 0;
                    while (r < rules.Length && !rules[r].Matches(p)) r++;
                    if (r < rules.Length)
                    {
                        _hits[r]++;
                        allow = rules[r].Allow;
                    }
                    else
                    {
                        _defaultHits++;
                        allow = _defaultAllow;
                    }
                    break;
            }
            if (allow) _allowed++; else _denied++;
            batch.SetVerdict(i, allow ? Verdict.Forward : Verdict.Drop);
        }
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters
    {
        get
        {
            var list = new List<KeyValuePair<string, long>>(_rules.Length + 5);
            for (int r = 0; r < _rules.Length; r++) list.Add(new($"rule {r + 1}: {_rules[r].Text}", _hits[r]));
            list.Add(new($"default ({(_defaultAllow ? "allow" : "deny")})", _defaultHits));
            list.Add(new($"nonip ({(_passNonIp ? "pass" : "drop")})", _nonIp));
            list.Add(new("malformed", _malformed));
            list.Add(new("allowed", _allowed));
            list.Add(new("denied", _denied));
            return list;
        }
    }

    /// <summary>
    /// Parses rule text (syntax in the class remarks), appending to <paramref name="rules"/>.
    /// <paramref name="source"/> names the text in errors ("/etc/fw.rules", "inline rules").
    /// Returns the policy of a <c>default</c> line, or null if there is none.
    /// </summary>
    public static bool? ParseRules(string text, string source, List<FirewallRule> rules, int firstLine = 1)
    {
        bool? policy = null;
        foreach (var (lineNo, tokens) in NfArgs.TokenizedLines(text, firstLine))
        {
            string where = $"{source} line {lineNo}";
            if (tokens[0].Equals("default", StringComparison.OrdinalIgnoreCase))
            {
                if (tokens.Length != 2)
                    throw new ArgumentException($"{where}: expected 'default allow' or 'default deny'");
                if (policy is not null)
                    throw new ArgumentException($"{where}: second 'default' line; keep one");
                policy = tokens[1].ToLowerInvariant() switch
                {
                    "allow" => true,
                    "deny" => false,
                    _ => throw new ArgumentException($"{where}: bad token '{tokens[1]}': default policy must be allow or deny"),
                };
                continue;
            }
            rules.Add(FirewallRule.Parse(tokens, where));
        }
        return policy;
    }

    /// <summary>Builds a firewall from its <c>key=value</c> arguments (see the class remarks).</summary>
    public static Firewall FromArgs(string? args)
    {
        var a = NfArgs.Parse("firewall", args, ["rules", "rule", "default", "nonip"], repeatable: ["rules", "rule"]);
        var rules = new List<FirewallRule>();
        bool? policy = null;
        int inlineLine = 1;
        foreach (var (key, value) in a.Items)
        {
            bool? p;
            if (key == "rules")
            {
                p = ParseRules(NetworkFunctions.ReadArgFile(a, key, value), value, rules);
            }
            else if (key == "rule")
            {
                string text = value.Replace(';', '\n');
                p = ParseRules(text, "firewall rule=", rules, inlineLine);
                inlineLine += text.Count(c => c == '\n') + 1;
            }
            else continue;
            if (p is not null && policy is not null)
                throw new ArgumentException($"nf 'firewall': the default policy is set twice (in {value}); keep one 'default' line");
            policy ??= p;
        }
        if (a.Get("default") is not null)
        {
            if (policy is not null)
                throw new ArgumentException("nf 'firewall': default= is given but the rules already have a 'default' line; keep one");
            policy = a.GetChoice("default", "deny", "allow", "deny") == "allow";
        }
        bool passNonIp = a.GetChoice("nonip", "pass", "pass", "drop") == "pass";
        return new Firewall(rules, policy ?? false, passNonIp);
    }
}
