using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using HyperNF.Control;
using HyperNF.Hypervisor;
using Xunit;
using static HyperNF.Tests.Control.Answers;

namespace HyperNF.Tests.Control;

/// <summary>
/// The daemon's edges, each through the real Unix socket: strings that do not decode, clients
/// that half-close, requests that would hold the change thread, many connections.
/// </summary>
public sealed class DaemonEdgeTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly Host _host = new();
    private readonly ConcurrentQueue<string> _log = new();
    private readonly ControlDaemon _daemon;

    public DaemonEdgeTests()
    {
        _daemon = new ControlDaemon(_host, new ControlDaemonOptions { SocketPath = _tmp.File("d.sock"), Log = _log.Enqueue });
        _daemon.Start();
    }

    public void Dispose()
    {
        _daemon.Dispose();
        _host.Dispose();
        _tmp.Dispose();
    }

    private string Sock => _daemon.SocketPath;

    private static string Create(string file, string text) => JsonSerializer.Serialize(new { op = "create", args = new { file, text } });

    [Fact]
    public void Every_line_with_an_undecodable_string_gets_an_answer_and_the_connection_stays()
    {
        using var c = new RawClient(Sock);
        string[] lines =
        [
            "{\"op\":\"list\",\"id\":\"\\ud800\"}",                          // the id (was: no answer, connection dropped)
            "{\"id\":\"x\\udc00y\",\"op\":\"hello\"}",
            "{\"op\":\"list\",\"\\ud800\":1}",                               // a field name
            "{\"op\":\"list\",\"args\":{\"\\udbff\":1}}",                    // an argument name (was: "conflict")
            "{\"op\":\"destroy\",\"args\":{\"domain\":\"a\\ud800\"}}",       // an argument
            "{\"op\":\"pkt-gen\",\"args\":{\"port\":\"valex:p\",\"args\":[\"-f\",\"\\udfff\"]}}", // in a list, a streaming op
            "{\"op\":\"create\",\"args\":{\"file\":\"f.cfg\",\"text\":\"name=\\\"\\ud800\\\"\\n\"}}", // inside a config
            "{\"op\":\"\\ud800\"}",
            "{\"op\":\"list\",\"args\":{\"deep\":[[{\"a\":[\"\\ud800\"]}]]}}",
        ];
        foreach (string line in lines)
        {
            var a = c.Ask(line);
            Assert.Equal(ControlErrorCodes.BadRequest, Code(a));
            Assert.False(a.TryGetProperty("id", out _), a.GetRawText());
            Assert.Contains("has an escape that is not text", Error(a));
        }
        // Surrogate pairs are text: such an id is echoed exactly.
        var ok = c.Ask("{\"id\":\"\\ud83d\\ude00 ok\",\"op\":\"hello\"}");
        Assert.Equal("\U0001F600 ok", ok.GetProperty("id").GetString());
        Assert.True(Ok(ok));
        Assert.Empty(_host.Domains);
        Assert.DoesNotContain(_log, l => l.Contains("connection failed", StringComparison.Ordinal) || l.Contains("internal", StringComparison.Ordinal));
    }

    [Fact]
    public void Top_and_pktgen_answer_a_client_that_half_closes_its_sending_side()
    {
        // What `echo '{"op":"top"}' | socat - UNIX-CONNECT:PATH` does: send, shut down writing, read.
        using (var c = new RawClient(Sock))
        {
            c.Send(Encoding.UTF8.GetBytes("{\"id\":1,\"op\":\"list\"}\n{\"id\":2,\"op\":\"top\",\"args\":{\"interval_ms\":50,\"iterations\":3}}\n"));
            c.ShutdownSend();
            Assert.Equal(1, c.Read()!.Value.GetProperty("id").GetInt32());
            for (int i = 1; i <= 3; i++)
            {
                var e = c.Read() ?? throw new IOException($"closed before top frame {i}");
                Assert.Equal("top", e.GetProperty("event").GetString());
                Assert.Equal(i, e.GetProperty("data").GetProperty("iteration").GetInt32());
            }
            var answer = c.Read()!.Value;
            Assert.Equal(2, answer.GetProperty("id").GetInt32());
            Assert.Equal(3, Result(answer).GetProperty("iterations").GetInt32());
            Assert.Null(c.Read()); // then the daemon closes: the client can send nothing more
        }
        using (var c = new RawClient(Sock))
        {
            c.SendLine("{\"id\":3,\"op\":\"pkt-gen\",\"args\":{\"port\":\"valex:hc0\",\"args\":[\"-f\",\"tx\",\"-n\",\"5000\"]}}");
            c.ShutdownSend();
            JsonElement a;
            do a = c.Read() ?? throw new IOException("closed before the pkt-gen answer");
            while (a.TryGetProperty("event", out _));
            Assert.Equal(3, a.GetProperty("id").GetInt32());
            Assert.Equal(5000, Result(a).GetProperty("frames").GetInt64());
            Assert.False(Result(a).GetProperty("stopped").GetBoolean());
        }
        Assert.Empty(_host.Domains);
    }

    [Fact]
    public void An_endless_stream_ends_when_a_half_closed_client_closes_the_connection()
    {
        var c = new RawClient(Sock);
        c.SendLine("{\"op\":\"top\",\"args\":{\"interval_ms\":60000}}");
        c.ShutdownSend();
        WaitFor(() => _daemon.ClientCount == 1, "the top connection is served");
        Thread.Sleep(300); // the daemon has seen the end of the client's sending side and goes on
        Assert.Equal(1, _daemon.ClientCount);
        c.Dispose();
        // The next top frame is a minute away: only the hang-up can end the stream this soon.
        WaitFor(() => _daemon.ClientCount == 0, "the stream of a client that closed ends", seconds: 20);
    }

    /// <summary>A guest that ignores being stopped until the test lets it go: its destroy holds the change thread.</summary>
    private sealed class StuckGuest(ManualResetEventSlim stopSeen, ManualResetEventSlim release) : IGuest
    {
        public string Name => "edge-stuck";
        public IReadOnlyList<KeyValuePair<string, long>> Counters => [];

        public void Run(GuestContext context)
        {
            var giveUp = DateTime.UtcNow.AddSeconds(90); // never outlive a broken test
            while (!release.Wait(10) && DateTime.UtcNow < giveUp)
            {
                context.Checkpoint(); // alive for the watchdog: only the destroy waits
                if (context.Stopping) stopSeen.Set();
            }
        }
    }

    [Fact]
    public void Parsing_a_change_never_waits_for_the_change_thread_and_never_holds_it()
    {
        using var stopSeen = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        _host.Guests.Register("edge-stuck", _ => new StuckGuest(stopSeen, release));
        using var admin = new RawClient(Sock);
        Assert.True(Ok(admin.Ask("{\"op\":\"set\",\"args\":{\"key\":\"destroy_timeout_ms\",\"value\":60000}}")));
        Assert.True(Ok(admin.Ask(Create("stuck.cfg", "name = \"stuck\"\nnf = \"edge-stuck\"\n"))));
        try
        {
            // Connection A: a destroy that holds the change thread until `release`.
            using var a = new RawClient(Sock);
            a.SendLine("{\"id\":\"A\",\"op\":\"destroy\",\"args\":{\"domain\":\"stuck\"}}");
            Assert.True(stopSeen.Wait(TimeSpan.FromSeconds(30)), "the destroy reached the guest");
            // Connection C: a change queued behind it.
            using var queued = new RawClient(Sock);
            queued.SendLine("{\"id\":\"C\",\"op\":\"set\",\"args\":{\"key\":\"bridge_batch\",\"value\":7}}");

            // Connection B: changes whose request is wrong are refused while the change thread is
            // busy, whatever their size: parsing happens before a change is queued.
            using var b = new RawClient(Sock);
            string hugeKey = "name = \"x\"\n" + new string('k', 1_000_000) + " = 1\n";
            string longKey = "name = \"x\"\n" + new string('k', 64) + " = 1\n";
            string manyRanges = "name = \"x\"\ncpus = \"" + string.Join(',', Enumerable.Repeat("0-4095", 9000)) + "\"\n";
            (string Request, string Expect)[] refused =
            [
                (Create("huge.cfg", hugeKey), "huge.cfg:2: the line is 1000004 characters long; a config line is at most 65536"),
                (Create("key.cfg", longKey), "key.cfg:2: " + new string('k', 64) + ": unknown setting"),
                (Create("cpus.cfg", manyRanges), "cpus.cfg:2: cpus: '0-4095,"),
                (Create("noname.cfg", "vcpus = 1\n"), "noname.cfg:1: name: missing"),
                (Create(new string('f', 5000), "name = \"x\"\n"), "args.file is 5000 characters long"),
                (JsonSerializer.Serialize(new { op = "vcpu-pin", args = new { domain = "stuck", vcpu = 0, cpus = string.Join(',', Enumerable.Repeat("0-4095", 100_000)) } }),
                    "more than 4096 elements"),
            ];
            foreach (var (request, expect) in refused)
            {
                var answer = b.Ask(request);
                Assert.Contains(expect, Error(answer));
                Assert.True(Error(answer).Length < 1000, $"a refusal quotes little of the request: {Error(answer).Length} characters");
                Assert.False(release.IsSet);
            }
            Assert.Single(_host.Domains);
            Assert.NotEqual(7, _host.Switch.BridgeBatch); // C still waits behind A

            release.Set();
            var destroyed = a.Read()!.Value;
            Assert.Equal("A", destroyed.GetProperty("id").GetString());
            Assert.True(Ok(destroyed), destroyed.GetRawText());
            Assert.True(Ok(queued.Read()!.Value));
            Assert.Equal(7, _host.Switch.BridgeBatch);
            Assert.Empty(_host.Domains);
        }
        finally
        {
            release.Set();
        }
    }

    [Fact]
    public void Connections_over_the_limit_are_told_busy_and_a_freed_slot_is_served()
    {
        using var tmp = new TempDir();
        using var host = new Host();
        using var small = new ControlDaemon(host, new ControlDaemonOptions { SocketPath = tmp.File("s.sock"), MaxClients = 40 });
        small.Start();
        var idle = Enumerable.Range(0, 40).Select(_ => new RawClient(small.SocketPath)).ToList();
        try
        {
            WaitFor(() => small.ClientCount == 40, "40 idle connections are served");
            for (int i = 0; i < 20; i++)
            {
                using var extra = new RawClient(small.SocketPath);
                var a = extra.Read() ?? throw new IOException("closed without an answer");
                Assert.Equal(ControlErrorCodes.Busy, Code(a));
                Assert.Contains("too many clients", Error(a));
                Assert.Null(extra.Read());
            }
            // Every idle connection still works, and a closed one frees its slot.
            Assert.True(Ok(idle[0].Ask("{\"op\":\"hello\"}")));
            idle[^1].Dispose();
            idle.RemoveAt(idle.Count - 1);
            WaitFor(() => small.ClientCount == 39, "the closed connection is let go");
            using var next = new RawClient(small.SocketPath);
            Assert.True(Ok(next.Ask("{\"op\":\"list\"}")));
        }
        finally
        {
            foreach (var c in idle) c.Dispose();
        }
    }

    [Fact]
    public void Under_a_low_open_file_limit_every_connection_is_answered_and_domains_can_still_be_created()
    {
        if (!File.Exists("/usr/bin/prlimit")) { Assert.Fail("needs /usr/bin/prlimit (util-linux)"); }
        using var tmp = new TempDir();
        string sock = tmp.File("p.sock");
        // The real CLI daemon with at most 400 descriptors: (400 - 256) / 2 = 72 connections.
        var psi = Cli.Start(sock, "daemon", "--socket", sock);
        psi.ArgumentList.Insert(0, psi.FileName);
        psi.ArgumentList.Insert(0, "--");
        psi.ArgumentList.Insert(0, "--nofile=400:400");
        psi.FileName = "/usr/bin/prlimit";
        using var daemon = new DaemonProcess(sock, psi);
        Assert.Contains("serving at most 72 connections at once", daemon.Log);
        var clients = new List<RawClient>();
        try
        {
            int ok = 0, busy = 0;
            // More connections than the process has descriptors: without the cap the daemon runs
            // out (accept fails, clients hang unanswered, creating a domain fails on memfd).
            for (int i = 0; i < 450; i++)
            {
                var c = new RawClient(sock);
                try
                {
                    c.SendLine("{\"op\":\"hello\"}");
                }
                catch (IOException)
                {
                    // Over the limit: the daemon may have written "busy" and closed before the request went out.
                }
                var a = c.Read() ?? throw new IOException($"connection {i}: closed without an answer");
                if (Ok(a))
                {
                    ok++;
                    clients.Add(c);
                    continue;
                }
                Assert.Equal(ControlErrorCodes.Busy, Code(a));
                busy++;
                c.Dispose();
            }
            Assert.InRange(ok, 60, 72);
            Assert.Equal(450 - ok, busy);
            // Every held connection still works, and a domain (memfd, ports) can be created on one.
            var created = clients[0].Ask(Create("fd.cfg", "name = \"fd\"\nvif = [ \"type=nmif,bridge=valex:fd0\", \"type=nmif,bridge=valey:fd1\" ]\n"));
            Assert.True(Ok(created), created.GetRawText());
            Assert.True(Ok(clients[^1].Ask("{\"op\":\"destroy\",\"args\":{\"domain\":\"fd\"}}")));
        }
        finally
        {
            foreach (var c in clients) c.Dispose();
        }
        Assert.DoesNotContain("accept failed", daemon.Log);
        Cli.Signal(daemon.Process, Cli.SIGTERM);
        Assert.Equal(0, daemon.WaitExit());
    }

    [Fact]
    public void Unfinished_long_lines_of_all_connections_share_one_budget()
    {
        using var tmp = new TempDir();
        using var host = new Host();
        using var d = new ControlDaemon(host, new ControlDaemonOptions { SocketPath = tmp.File("b.sock"), MaxBufferedRequestBytes = 2 << 20 });
        d.Start();
        byte[] head = Encoding.ASCII.GetBytes("{\"op\":\"list\",\"args\":{\"pad\":\"" + new string('x', 900_000));
        long each = head.Length - 64 * 1024; // the first 64 KiB of a line are free
        using var c1 = new RawClient(d.SocketPath);
        using var c2 = new RawClient(d.SocketPath);
        c1.Send(head);
        WaitFor(() => d.BufferedRequestBytes == each, "the first unfinished line is counted");
        c2.Send(head);
        WaitFor(() => d.BufferedRequestBytes == 2 * each, "the second unfinished line is counted");
        using (var c3 = new RawClient(d.SocketPath))
        {
            try
            {
                c3.Send(head);
            }
            catch (IOException)
            {
                // The daemon may answer and close before the whole line is written.
            }
            var a = c3.Read() ?? throw new IOException("closed without an answer");
            Assert.Equal(ControlErrorCodes.Busy, Code(a));
            Assert.Contains("unfinished request lines", Error(a));
            Assert.Null(c3.Read());
        }
        Assert.Equal(2 * each, d.BufferedRequestBytes);
        // A line that completes gives its share back, and so does a connection that ends.
        c1.Send("\"}}\n"u8.ToArray());
        Assert.Contains("list takes no arguments, got args.pad", Error(c1.Read()!.Value));
        c2.Dispose();
        WaitFor(() => d.BufferedRequestBytes == 0, "every share is given back");
        using var c4 = new RawClient(d.SocketPath);
        c4.Send([.. head, .. "\"}}\n"u8]);
        Assert.Equal(ControlErrorCodes.BadRequest, Code(c4.Read()!.Value));
        Assert.True(Ok(c1.Ask("{\"op\":\"hello\"}")));
    }

    [Fact]
    public void A_connection_the_daemon_ends_is_closed_cleanly_after_its_answer()
    {
        using var tmp = new TempDir();
        using var host = new Host();
        // No budget at all: any line past 64 KiB is refused and its connection ended.
        using var d = new ControlDaemon(host, new ControlDaemonOptions { SocketPath = tmp.File("l.sock"), MaxBufferedRequestBytes = 0 });
        d.Start();
        for (int i = 0; i < 5; i++)
        {
            using var c = new RawClient(d.SocketPath);
            // 100 KB fit in the socket buffers: the send completes, and the daemon stops reading
            // at 64 KiB, leaving the rest unread. Closing on unread input would reset the client
            // (ECONNRESET on its next read); the daemon drains it first, so the client reads the
            // answer and then a clean end of stream.
            c.Send(Encoding.ASCII.GetBytes("{\"op\":\"list\",\"args\":{\"pad\":\"" + new string('x', 100_000) + "\"}}\n"));
            var a = c.Read() ?? throw new IOException("closed without an answer");
            Assert.Equal(ControlErrorCodes.Busy, Code(a));
            Assert.Null(c.Read());
        }
    }

    [Fact]
    public async Task A_long_line_does_not_leave_its_buffer_behind()
    {
        using var pair = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        string path = _tmp.File("lr.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        await pair.ConnectAsync(new UnixDomainSocketEndPoint(path));
        using var server = await listener.AcceptAsync();
        await using var stream = new NetworkStream(server, ownsSocket: false);
        var reader = new LineReader(stream, ControlProtocol.MaxRequestBytes);
        var send = Task.Run(() =>
        {
            pair.Send(Encoding.ASCII.GetBytes(new string('x', 900_000) + "\nshort\n"));
        });
        var first = await reader.ReadLineAsync(CancellationToken.None);
        Assert.Equal(900_000, first!.Value.Length);
        Assert.True(reader.BufferCapacity <= 64 * 1024, $"kept {reader.BufferCapacity} bytes after a long line");
        Assert.Equal("short", Encoding.ASCII.GetString((await reader.ReadLineAsync(CancellationToken.None))!.Value.Span));
        await send;
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
