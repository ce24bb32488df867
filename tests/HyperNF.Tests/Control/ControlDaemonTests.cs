using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HyperNF.Control;
using HyperNF.Hypervisor;
using HyperNF.Switch;
using Xunit;
using static HyperNF.Tests.Control.Answers;

namespace HyperNF.Tests.Control;

/// <summary>The daemon in-process: the protocol handler against bad input, concurrency, lifecycle.</summary>
public sealed class ControlDaemonTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly Host _host = new();
    private readonly ControlDaemon _daemon;

    public ControlDaemonTests()
    {
        _daemon = new ControlDaemon(_host, new ControlDaemonOptions { SocketPath = _tmp.File("d.sock"), LineTimeout = TimeSpan.FromSeconds(2) });
        _daemon.Start();
    }

    public void Dispose()
    {
        _daemon.Dispose();
        _host.Dispose();
        _tmp.Dispose();
    }

    private string Sock => _daemon.SocketPath;

    private static string CreateRequest(string name, string bridge = "valex") =>
        JsonSerializer.Serialize(new
        {
            op = "create",
            args = new { file = $"{name}.cfg", text = $"name = \"{name}\"\nvif = [ \"type=nmif,bridge={bridge}:{name}0\", \"type=nmif,bridge={bridge}y:{name}1\" ]\nnf = \"l2fwd\"\n" },
        });

    private JsonElement Handle(string line) => JsonDocument.Parse(_daemon.Handle(line)).RootElement.Clone();

    [Fact]
    public void Bad_requests_on_one_connection_are_each_answered_and_the_connection_stays_usable()
    {
        using var c = new RawClient(Sock);
        (string Line, string Code)[] cases =
        [
            ("this is not json", ControlErrorCodes.BadRequest),
            ("", ControlErrorCodes.BadRequest),
            ("[1,2,3]", ControlErrorCodes.BadRequest),
            ("\"list\"", ControlErrorCodes.BadRequest),
            ("{\"op\":42}", ControlErrorCodes.BadRequest),
            ("{\"args\":{}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"list\",\"args\":[1]}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"list\",\"extra\":1}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"list\",\"args\":{\"x\":1}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"frobnicate\"}", ControlErrorCodes.UnknownOp),
            ("{\"op\":\"destroy\",\"args\":{\"domain\":7}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"destroy\"}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"sched-credit2\",\"args\":{\"domain\":\"x\",\"weight\":\"heavy\"}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"ctl\",\"args\":{\"op\":1.5,\"value\":1}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"ctl\",\"args\":{\"op\":1,\"value\":1e40}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"pkt-gen\",\"args\":{\"port\":\"valex:p\",\"args\":[\"-f\",3]}}", ControlErrorCodes.BadRequest),
            ("{\"op\":\"stop\"}", ControlErrorCodes.Conflict),
            (new string('[', 5000) + new string(']', 5000), ControlErrorCodes.BadRequest),
            ("{\"op\":\"list\"", ControlErrorCodes.BadRequest),
        ];
        foreach (var (line, code) in cases)
        {
            var a = c.Ask(line);
            Assert.False(Ok(a), line);
            Assert.Equal(code, Code(a));
            Assert.DoesNotContain('\n', Error(a));
        }
        // Invalid UTF-8.
        c.Send([0x7b, 0x22, 0x6f, 0x70, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a]);
        Assert.Equal(ControlErrorCodes.BadRequest, Code(c.Read()!.Value));
        // An id is echoed; the connection still answers valid requests.
        var ok = c.Ask("{\"id\":\"abc\",\"op\":\"list\"}");
        Assert.Equal("abc", ok.GetProperty("id").GetString());
        Assert.Empty(Result(ok).GetProperty("domains").EnumerateArray());
    }

    [Fact]
    public void Unknown_domain_bridge_port_op_and_key_are_refused_clearly()
    {
        Assert.Equal("no domain 'ghost': no domains exist", Error(Handle("{\"op\":\"destroy\",\"args\":{\"domain\":\"ghost\"}}")));
        Assert.True(Ok(Handle(CreateRequest("a1"))));
        Assert.Equal("no domain 'ghost' (domains: a1)", Error(Handle("{\"op\":\"pause\",\"args\":{\"domain\":\"ghost\"}}")));
        Assert.Equal(ControlErrorCodes.NotFound, Code(Handle("{\"op\":\"vcpu-pin\",\"args\":{\"domain\":\"a1\",\"vcpu\":5,\"cpus\":\"0\"}}")));
        Assert.Contains("not a CPU list", Error(Handle("{\"op\":\"vcpu-pin\",\"args\":{\"domain\":\"a1\",\"vcpu\":0,\"cpus\":\"x\"}}")));
        Assert.Equal("no bridge 'valeq' (bridges: valex, valexy)", Error(Handle("{\"op\":\"stats\",\"args\":{\"port\":\"valeq\"}}")));
        Assert.Equal("bridge valex has no port 'zz' (ports: a10)", Error(Handle("{\"op\":\"vale-detach\",\"args\":{\"bridge\":\"valex\",\"port\":\"zz\"}}")));
        Assert.Contains("belongs to domain 'a1'", Error(Handle("{\"op\":\"vale-detach\",\"args\":{\"bridge\":\"valex\",\"port\":\"a10\"}}")));
        Assert.Contains("still has 1 port", Error(Handle("{\"op\":\"vale-remove\",\"args\":{\"bridge\":\"valex\"}}")));
        Assert.StartsWith("unknown op 'nope'; ops: capture, console, create, ctl, destroy", Error(Handle("{\"op\":\"nope\"}")));
        Assert.StartsWith("unknown setting 'colour'; settings: bridge_batch", Error(Handle("{\"op\":\"get\",\"args\":{\"key\":\"colour\"}}")));
        Assert.Contains("unknown ctl op 0", Error(Handle("{\"op\":\"ctl\",\"args\":{\"op\":0,\"value\":1}}")));
        foreach (int op in new[] { 2, 3, 4 })
        {
            var a = Handle($"{{\"op\":\"ctl\",\"args\":{{\"op\":{op},\"value\":1}}}}");
            Assert.Equal(ControlErrorCodes.Unsupported, Code(a));
            Assert.Contains("cannot be honoured", Error(a));
        }
        var attach = Handle("{\"op\":\"vale-attach\",\"args\":{\"bridge\":\"valex\",\"interface\":\"eth1\"}}");
        Assert.Equal(ControlErrorCodes.Unsupported, Code(attach));
        Assert.Equal("attaching physical interfaces is not available in this build", Error(attach));
        Assert.Contains("already exists", Error(Handle(CreateRequest("a1"))));
        var unpause = Handle("{\"op\":\"unpause\",\"args\":{\"domain\":\"a1\"}}");
        Assert.Equal(ControlErrorCodes.Conflict, Code(unpause));
        Assert.Equal("domain 'a1' is running, not paused", Error(unpause));
        Assert.Single(_host.Domains);
    }

    [Fact]
    public void Malformed_config_errors_carry_file_line_and_key()
    {
        string req = JsonSerializer.Serialize(new { op = "create", args = new { file = "linux.cfg", text = "name = \"x\"\nvcpus = 2\ncpus = \"0-1,zz\"\n" } });
        var a = Handle(req);
        Assert.Equal(ControlErrorCodes.Invalid, Code(a));
        Assert.StartsWith("linux.cfg:3: cpus:", Error(a));
        req = JsonSerializer.Serialize(new { op = "create", args = new { file = "linux.cfg", text = "name = \"x\"\nvif = [ \"type=nmif,bridge=valex\" ]\n" } });
        Assert.StartsWith("linux.cfg:2: vif:", Error(Handle(req)));
        Assert.Empty(_host.Domains);
    }

    /// <summary>
    /// Values only the host can judge (an nf it does not know, nf_args the NF refuses, a CPU this
    /// machine lacks) are config errors too: file, line and key, and nothing is created.
    /// </summary>
    [Fact]
    public void Config_values_the_host_refuses_name_file_line_and_key()
    {
        string Create(string text) => Error(Handle(JsonSerializer.Serialize(new { op = "create", args = new { file = "nf.cfg", text } })));
        const string Head = "name = \"x\"\nvif = [ \"type=nmif,bridge=valex:x0\", \"type=nmif,bridge=valey:x1\" ]\n";
        Assert.StartsWith("nf.cfg:3: nf: unknown nf 'nosuchnf'; available: ", Create(Head + "nf = \"nosuchnf\"\n"));
        Assert.Contains("pkt-gen", Create(Head + "nf = \"nosuchnf\"\n"));
        Assert.StartsWith("nf.cfg:5: nf_args: firewall rule= line 1: ", Create(Head + "nf = \"firewall\"\n# rules\nnf_args = \"rule=allow tcp any -> any 99999\"\n"));
        Assert.StartsWith("nf.cfg:4: nf_args: pkt-gen: -l abc: not an integer", Create(Head + "nf = \"pkt-gen\"\nnf_args = \"-f tx -l abc\"\n"));
        Assert.StartsWith("nf.cfg:4: nf: nf 'router': ", Create(Head + "\nnf = \"router\"\n")); // router needs arguments
        int n = Environment.ProcessorCount;
        Assert.Equal($"nf.cfg:3: cpus: CPU {n} does not exist (this machine has CPUs 0..{n - 1})", Create(Head + $"cpus = \"{n}\"\n"));
        // memory= bounds the domain's region (two vifs: two port areas, 4096 buffers of 2 KiB)
        Assert.Matches(@"^nf\.cfg:3: memory: 1 MB is less than the \d+ MB the domain's region needs \(2 vif\(s\): rings and 2048-byte buffers\); raise memory to at least \d+$",
            Create(Head + "memory = 1\n"));
        Assert.Equal("nf.cfg:2: vif: nf 'l2fwd' sits between two ports; give the domain two vifs (it has 1)",
            Create("name = \"x\"\nvif = [ \"type=nmif,bridge=valex:x0\" ]\nnf = \"l2fwd\"\n"));
        Assert.Equal("nf.cfg:1: vif: nf 'l2fwd' sits between two ports; give the domain two vifs (it has 0)", Create("name = \"x\"\n"));
        Assert.Empty(_host.Domains);
        Assert.Empty(_host.Switch.Bridges.SelectMany(b => b.Ports));
        // the same config with values the host accepts is created
        Assert.True(Ok(Handle(JsonSerializer.Serialize(new { op = "create", args = new { file = "nf.cfg", text = Head + "nf = \"firewall\"\nnf_args = \"rule=allow tcp any -> any 80\"\nmemory = 64\n" } }))));
        Assert.Equal("firewall", Assert.Single(_host.Domains).Guest!.Name);
    }

    [Fact]
    public void Settings_and_ctl_map_to_the_host()
    {
        Assert.True(Ok(Handle("{\"op\":\"ctl\",\"args\":{\"op\":1,\"value\":64}}")));
        Assert.Equal(64, _host.Switch.BridgeBatch);
        Assert.True(Ok(Handle("{\"op\":\"ctl\",\"args\":{\"op\":5,\"value\":1}}")));
        Assert.True(_host.Settings.DriverDomainTxSync);
        Assert.True(Ok(Handle("{\"op\":\"set\",\"args\":{\"key\":\"drvdom_txsync\",\"value\":0}}")));
        Assert.False(_host.Settings.DriverDomainTxSync);
        Assert.True(Ok(Handle("{\"op\":\"set\",\"args\":{\"key\":\"io_model\",\"value\":\"merge\"}}")));
        Assert.Equal(IoModel.Merge, _host.DefaultIoModel);
        Assert.True(Ok(Handle("{\"op\":\"io-model\",\"args\":{\"model\":\"split\"}}")));
        Assert.Equal(IoModel.Split, _host.DefaultIoModel);
        Assert.True(Ok(Handle("{\"op\":\"set\",\"args\":{\"key\":\"watchdog_ms\",\"value\":\"2500\"}}")));
        Assert.Equal(TimeSpan.FromMilliseconds(2500), _host.WatchdogTimeout);
        Assert.True(Ok(Handle("{\"op\":\"set\",\"args\":{\"key\":\"backend_cpus\",\"value\":\"0\"}}")));
        Assert.Equal([0], _host.BackendCpus!);
        Assert.True(Ok(Handle("{\"op\":\"set\",\"args\":{\"key\":\"backend_cpus\",\"value\":\"auto\"}}")));
        Assert.Null(_host.BackendCpus);
        Assert.Equal(ControlErrorCodes.Invalid, Code(Handle("{\"op\":\"set\",\"args\":{\"key\":\"bridge_batch\",\"value\":\"-1\"}}")));
        Assert.Equal(ControlErrorCodes.Invalid, Code(Handle("{\"op\":\"set\",\"args\":{\"key\":\"drvdom_txsync\",\"value\":\"maybe\"}}")));
        Assert.Equal(64, _host.Switch.BridgeBatch);
    }

    [Fact]
    public void A_line_over_one_MiB_is_refused_and_the_daemon_keeps_serving()
    {
        using (var c = new RawClient(Sock))
        {
            var big = Encoding.ASCII.GetBytes("{\"op\":\"list\",\"args\":{\"pad\":\"" + new string('x', ControlProtocol.MaxRequestBytes + 10) + "\"}}\n");
            try
            {
                c.Send(big);
            }
            catch (IOException)
            {
                // The daemon may close before we finish writing.
            }
            var a = c.Read();
            Assert.NotNull(a);
            Assert.Equal(ControlErrorCodes.BadRequest, Code(a.Value));
            Assert.Contains("longer than", Error(a.Value));
            Assert.Null(c.Read()); // then closed
        }
        using var d = new RawClient(Sock);
        Assert.True(Ok(d.Ask("{\"op\":\"list\"}")));
    }

    [Fact]
    public async Task A_client_that_does_not_read_its_answers_does_not_block_others()
    {
        using var slow = new RawClient(Sock);
        // ~2000 answers of ~1 KB each: far more than the socket buffers hold, never read.
        var burst = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("{\"op\":\"get\"}\n", 2000)));
        var writer = Task.Run(() =>
        {
            try { slow.Send(burst); } catch (Exception e) when (e is IOException or ObjectDisposedException) { }
        });
        await Task.Delay(300);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using (var other = new RawClient(Sock))
            for (int i = 0; i < 20; i++) Assert.True(Ok(other.Ask("{\"op\":\"list\"}")));
        Assert.True(Ok(Handle(CreateRequest("while1"))));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"other clients took {sw.Elapsed}");
        slow.Dispose();
        await writer.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_client_that_disconnects_mid_request_changes_nothing()
    {
        using (var c = new RawClient(Sock))
            c.Send(Encoding.UTF8.GetBytes(CreateRequest("half")[..40]));
        // A complete request without its newline is not a request either.
        using (var c = new RawClient(Sock))
        {
            c.Send(Encoding.UTF8.GetBytes(CreateRequest("nonl")));
            c.ShutdownSend();
            Assert.Null(c.Read());
        }
        // A partial line that never completes is cut off after the line timeout.
        using (var c = new RawClient(Sock))
        {
            c.Send("{\"op\":"u8.ToArray());
            var a = c.Read(10_000);
            Assert.NotNull(a);
            Assert.Contains("no newline within", Error(a.Value));
        }
        using var ok = new RawClient(Sock);
        Assert.Empty(Result(ok.Ask("{\"op\":\"list\"}")).GetProperty("domains").EnumerateArray());
        Assert.Empty(_host.Domains);
    }

    [Fact]
    public async Task A_thousand_concurrent_clients_each_get_an_answer()
    {
        Assert.True(Ok(Handle(CreateRequest("busy1"))));
        const int N = 1000;
        var tasks = Enumerable.Range(0, N).Select(i => Task.Run(async () =>
        {
            using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await s.ConnectAsync(new UnixDomainSocketEndPoint(Sock));
            await using var stream = new NetworkStream(s, ownsSocket: false);
            string req = (i % 4) switch
            {
                0 => "{\"op\":\"list\"}",
                1 => "{\"op\":\"get\",\"args\":{\"key\":\"bridge_batch\"}}",
                2 => "not json at all",
                _ => "{\"op\":\"destroy\",\"args\":{\"domain\":\"nobody\"}}",
            };
            await stream.WriteAsync(Encoding.UTF8.GetBytes(req + "\n"));
            var reader = new LineReader(stream, 1 << 20);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var line = await reader.ReadLineAsync(cts.Token) ?? throw new IOException($"client {i}: closed without an answer");
            var a = JsonDocument.Parse(line).RootElement;
            bool ok = a.GetProperty("ok").GetBoolean();
            if (i % 4 < 2 && !ok && a.GetProperty("code").GetString() != ControlErrorCodes.Busy)
                throw new InvalidOperationException($"client {i}: {a.GetRawText()}");
            if (i % 4 >= 2 && ok) throw new InvalidOperationException($"client {i} should have been refused: {a.GetRawText()}");
            return ok;
        })).ToArray();
        await Task.WhenAll(tasks);
        Assert.True(tasks.Count(t => t.Result) >= N / 4, "most valid requests are answered");
        var list = Handle("{\"op\":\"list\"}");
        Assert.Equal("busy1", Assert.Single(Result(list).GetProperty("domains").EnumerateArray()).GetProperty("name").GetString());
    }

    /// <summary>What the randomised test compares: domains, bridges and ports, settings.</summary>
    private string StateSnapshot()
    {
        var list = Result(Handle("{\"op\":\"list\"}")).GetProperty("domains").EnumerateArray()
            .Select(d => string.Join('|', d.GetProperty("id").GetInt32(), d.GetProperty("name").GetString(), d.GetProperty("state").GetString(),
                d.GetProperty("weight").GetInt32(), d.GetProperty("cap").GetInt32(), d.GetProperty("cpus").GetRawText(), d.GetProperty("ports").GetRawText()));
        var vale = Result(Handle("{\"op\":\"vale-list\"}")).GetRawText();
        var settings = Result(Handle("{\"op\":\"get\"}")).GetRawText();
        return string.Join('\n', list) + "\n" + vale + "\n" + settings + $"\nbridges={_host.Switch.Bridges.Count}";
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Random_malformed_requests_leave_the_daemon_answering_and_its_state_unchanged(int seed)
    {
        Assert.True(Ok(Handle(CreateRequest("fuzzdomain", "valefz"))));
        Assert.True(Ok(Handle("{\"op\":\"ctl\",\"args\":{\"op\":1,\"value\":77}}")));
        Assert.True(Ok(Handle("{\"op\":\"sched-credit2\",\"args\":{\"domain\":\"fuzzdomain\",\"weight\":300}}")));
        string before = StateSnapshot();

        // Templates whose every small mutation is either refused or harmless: targets that do
        // not exist, values that are missing, read-only ops.
        string[] templates =
        [
            "{\"op\":\"list\"}",
            "{\"op\":\"get\",\"args\":{\"key\":\"bridge_batch\"}}",
            "{\"op\":\"destroy\",\"args\":{\"domain\":\"nosuch\"}}",
            "{\"op\":\"pause\",\"args\":{\"domain\":\"nosuch\"}}",
            "{\"op\":\"sched-credit2\",\"args\":{\"domain\":\"nosuch\",\"weight\":300,\"cap\":10}}",
            "{\"op\":\"vcpu-pin\",\"args\":{\"domain\":\"nosuch\",\"vcpu\":0,\"cpus\":\"0\"}}",
            "{\"op\":\"vale-remove\",\"args\":{\"bridge\":\"valenone\"}}",
            "{\"op\":\"vale-detach\",\"args\":{\"bridge\":\"valenone\",\"port\":\"p0\"}}",
            "{\"op\":\"ctl\",\"args\":{\"op\":3}}",
            "{\"op\":\"set\",\"args\":{\"key\":\"bridge_batch\"}}",
            "{\"op\":\"stats\",\"args\":{\"port\":\"valefz:fuzzdomain0\"}}",
            "{\"op\":\"create\",\"args\":{\"file\":\"f.cfg\",\"text\":\"name=\\\"fz2\\\"\\nbogus_key_here=1\\n\"}}",
            "{\"id\":12,\"op\":\"hello\"}",
        ];
        string[] junk = ["{}", "[]", "null", "true", "-1", "1e999", "\"\"", "{\"op\":{}}", "\"\\u0000\"", "\"\\ud800\"", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"];
        var rng = new Random(seed);
        using var c = new RawClient(Sock);
        int answered = 0;
        for (int i = 0; i < 300; i++)
        {
            byte[] line;
            int kind = rng.Next(4);
            if (kind == 0)
            {
                line = new byte[rng.Next(1, 200)];
                rng.NextBytes(line);
            }
            else
            {
                var t = Encoding.UTF8.GetBytes(templates[rng.Next(templates.Length)]).ToList();
                int edits = 1 + rng.Next(3);
                for (int e = 0; e < edits && t.Count > 0; e++)
                {
                    int pos = rng.Next(t.Count);
                    switch (rng.Next(6))
                    {
                        case 0: t.RemoveAt(pos); break;
                        case 1: t.Insert(pos, (byte)rng.Next(256)); break;
                        case 2: t[pos] = (byte)rng.Next(256); break;
                        case 3: t.RemoveRange(pos, t.Count - pos); break;
                        case 4: t.InsertRange(pos, Encoding.UTF8.GetBytes(junk[rng.Next(junk.Length)])); break;
                        default: t.InsertRange(pos, t.GetRange(0, Math.Min(pos, 20))); break;
                    }
                }
                line = t.ToArray();
            }
            for (int b = 0; b < line.Length; b++)
                if (line[b] == (byte)'\n') line[b] = (byte)' ';
            c.Send([.. line, (byte)'\n']);
            var a = c.Read() ?? throw new IOException($"seed {seed}, request {i}: the daemon closed the connection after {Convert.ToHexString(line)}");
            Assert.True(a.TryGetProperty("ok", out _), $"seed {seed}, request {i}: {a.GetRawText()}");
            if (!Ok(a)) Assert.False(string.IsNullOrWhiteSpace(Error(a)));
            answered++;
        }
        Assert.Equal(300, answered);
        Assert.True(Ok(c.Ask("{\"op\":\"list\"}")));
        Assert.Equal(before, StateSnapshot());
    }

    [Fact]
    public void Pktgen_client_that_disconnects_has_its_domain_destroyed_and_stop_returns_a_summary()
    {
        using (var c = new RawClient(Sock))
        {
            c.SendLine("{\"id\":1,\"op\":\"pkt-gen\",\"args\":{\"port\":\"valex:rx0\",\"args\":[\"-f\",\"rx\"]}}");
            var started = c.Read()!.Value;
            Assert.Equal("started", started.GetProperty("event").GetString());
            Assert.Equal(1, started.GetProperty("id").GetInt32());
            Assert.Single(_host.Domains);
        }
        WaitFor(() => _host.Domains.Count == 0, "the pkt-gen domain of a gone client is destroyed");
        // The bridge goes with its last port, as in VALE: pruned in the same change right after the
        // domain left the list, so wait for it rather than sample the instant between.
        WaitFor(() => _host.Switch.FindBridge("valex") is null, "valex goes with its last port");

        using var d = new RawClient(Sock);
        d.SendLine("{\"id\":2,\"op\":\"pkt-gen\",\"args\":{\"port\":\"valex:tx0\",\"args\":[\"-f\",\"tx\",\"-R\",\"1000\",\"-T\",\"100\"]}}");
        Assert.Equal("started", d.Read()!.Value.GetProperty("event").GetString());
        var interval = d.Read()!.Value;
        Assert.Equal("interval", interval.GetProperty("event").GetString());
        Assert.Contains(" tx ", interval.GetProperty("data").GetProperty("line").GetString());
        // Another request during the stream is refused; the stream goes on.
        d.SendLine("{\"id\":3,\"op\":\"list\"}");
        JsonElement a;
        do a = d.Read()!.Value; while (a.TryGetProperty("event", out _));
        Assert.Equal(3, a.GetProperty("id").GetInt32());
        Assert.Equal(ControlErrorCodes.Conflict, Code(a));
        d.SendLine("{\"op\":\"stop\"}");
        do a = d.Read()!.Value; while (a.TryGetProperty("event", out _));
        Assert.Equal(2, a.GetProperty("id").GetInt32());
        var r = Result(a);
        Assert.True(r.GetProperty("stopped").GetBoolean());
        Assert.StartsWith("Sent ", r.GetProperty("summary").GetString());
        Assert.Empty(_host.Domains);
        Assert.True(Ok(d.Ask("{\"op\":\"list\"}")));
    }

    [Fact]
    public void Top_streams_frames_then_answers()
    {
        Assert.True(Ok(Handle(CreateRequest("t1"))));
        using var c = new RawClient(Sock);
        c.SendLine("{\"op\":\"top\",\"args\":{\"interval_ms\":50,\"iterations\":3}}");
        for (int i = 1; i <= 3; i++)
        {
            var e = c.Read()!.Value;
            Assert.Equal("top", e.GetProperty("event").GetString());
            Assert.Equal(i, e.GetProperty("data").GetProperty("iteration").GetInt32());
            Assert.Equal("t1", e.GetProperty("data").GetProperty("domains")[0].GetProperty("name").GetString());
        }
        Assert.Equal(3, Result(c.Read()!.Value).GetProperty("iterations").GetInt32());
        Assert.Equal(ControlErrorCodes.Invalid, Code(c.Ask("{\"op\":\"top\",\"args\":{\"interval_ms\":1}}")));
    }

    private sealed class FakeAttacher : IInterfaceAttacher
    {
        public readonly List<string> Calls = [];
        public void Attach(Bridge bridge, string interfaceName)
        {
            if (interfaceName == "bad0") throw new IOException("no such device");
            Calls.Add($"attach {bridge.Name}:{interfaceName}");
        }

        public void Detach(Bridge bridge, string portName) => Calls.Add($"detach {bridge.Name}:{portName}");
    }

    [Fact]
    public void An_installed_attacher_is_called_and_its_interfaces_detached_at_shutdown()
    {
        var fake = new FakeAttacher();
        _daemon.Attacher = fake;
        Assert.True(Ok(Handle("{\"op\":\"vale-attach\",\"args\":{\"bridge\":\"valex\",\"interface\":\"eth1\"}}")));
        Assert.True(Ok(Handle("{\"op\":\"vale-attach\",\"args\":{\"bridge\":\"valey\",\"interface\":\"eth2\"}}")));
        Assert.Equal("cannot attach bad0 to valex: no such device", Error(Handle("{\"op\":\"vale-attach\",\"args\":{\"bridge\":\"valex\",\"interface\":\"bad0\"}}")));
        Assert.Contains("not a VALE bridge name", Error(Handle("{\"op\":\"vale-attach\",\"args\":{\"bridge\":\"br0\",\"interface\":\"eth1\"}}")));
        // The fake attaches nothing to the bridge, so detach finds no port: not_found.
        Assert.Equal(ControlErrorCodes.NotFound, Code(Handle("{\"op\":\"vale-detach\",\"args\":{\"bridge\":\"valex\",\"port\":\"eth1\"}}")));
        _daemon.Stop();
        Assert.Equal(["attach valex:eth1", "attach valey:eth2"], fake.Calls.Take(2));
        Assert.Equal(["detach valex:eth1", "detach valey:eth2"], fake.Calls.Skip(2).Order(StringComparer.Ordinal));
    }

    /// <summary>Threads of this process whose name (comm, at most 15 bytes) starts with one of <paramref name="prefixes"/>.</summary>
    private static string[] ThreadsNamed(params string[] prefixes) => Directory.GetDirectories("/proc/self/task").Select(t =>
    {
        try { return File.ReadAllText(Path.Combine(t, "comm")).Trim(); }
        catch (IOException) { return ""; } // ended while listed
    }).Where(n => prefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal))).ToArray();

    [Fact]
    public void Stop_destroys_domains_removes_the_socket_and_empty_bridges()
    {
        Assert.True(Ok(Handle(CreateRequest("s1"))));
        Assert.True(Ok(Handle(JsonSerializer.Serialize(new { op = "create", args = new { file = "s2.cfg", text = "name = \"stopsplit\"\nvif = [ \"type=nmif,bridge=valex:ss0\", \"type=nmif,bridge=valey:ss1\" ]\nio_model = \"split\"\n" } }))));
        Assert.True(File.Exists(Sock));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Sock));
        // The daemon's own threads, the domains' vCPUs and the split domain's backend are alive ...
        string[] prefixes = ["hypernf-ctl-", "s1-", "stopsplit-"];
        var alive = ThreadsNamed(prefixes);
        Assert.Contains(alive, n => n.StartsWith("hypernf-ctl-", StringComparison.Ordinal));
        Assert.Contains(alive, n => n.StartsWith("s1-vcpu", StringComparison.Ordinal));
        Assert.Contains(alive, n => n.StartsWith("stopsplit-", StringComparison.Ordinal) && n.Contains("back", StringComparison.Ordinal));
        _daemon.Stop();
        Assert.False(File.Exists(Sock));
        Assert.Empty(_host.Domains);
        Assert.Empty(_host.Switch.Bridges);
        Assert.Throws<ControlUnavailableException>(() => ControlClient.Connect(Sock));
        // ... and none of them outlives the shutdown.
        WaitFor(() => ThreadsNamed(prefixes).Length == 0, $"threads left after Stop: {string.Join(", ", ThreadsNamed(prefixes))}");
    }

    [Fact]
    public void A_second_daemon_refuses_a_stale_socket_is_replaced_and_a_non_socket_is_left_alone()
    {
        using var host2 = new Host();
        var second = new ControlDaemon(host2, new ControlDaemonOptions { SocketPath = Sock });
        var e = Assert.Throws<DaemonStartException>(second.Start);
        Assert.Contains($"another hypernf daemon (pid {Environment.ProcessId}) is already running on {Sock}", e.Message);
        Assert.True(Ok(Handle("{\"op\":\"list\"}")));

        // A socket file nobody listens on (what a killed daemon leaves).
        string stale = _tmp.File("stale.sock");
        Cli.MakeStaleSocket(stale);
        Assert.True(File.Exists(stale));
        Assert.Throws<ControlUnavailableException>(() => ControlClient.Connect(stale));
        var logs = new List<string>();
        using (var third = new ControlDaemon(host2, new ControlDaemonOptions { SocketPath = stale, Log = logs.Add }))
        {
            third.Start();
            Assert.Contains(logs, l => l.Contains("removed stale socket"));
            using var c = ControlClient.Connect(stale);
            Assert.Equal(Environment.ProcessId, c.Call<HelloResult>("hello").Pid);
        }
        Assert.False(File.Exists(stale));

        string regular = _tmp.File("regular.sock");
        File.WriteAllText(regular, "not a socket");
        var fourth = new ControlDaemon(host2, new ControlDaemonOptions { SocketPath = regular });
        Assert.Contains("exists and is not a socket", Assert.Throws<DaemonStartException>(fourth.Start).Message);
        Assert.Equal("not a socket", File.ReadAllText(regular));
    }

    private static void WaitFor(Func<bool> cond, string what, int seconds = 15)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!cond())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out: {what}");
            Thread.Sleep(20);
        }
    }
}
