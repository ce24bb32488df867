using System.Diagnostics;
using System.Threading.Channels;
using HyperNF.Hypervisor;
using HyperNF.Switch;
using HyperNF.Tools;

namespace HyperNF.Control;

/// <summary>The streaming ops: top, pkt-gen and capture (ControlCapture.cs). Each sends events, then one answer.</summary>
public sealed partial class ControlDaemon
{
    private enum ClientSignal { None, Stop, Gone }

    /// <summary>Runs a streaming op on connection <paramref name="c"/>; false when the connection must close.</summary>
    private async Task<bool> StreamAsync(ControlRequest req, Connection c)
    {
        try
        {
            if (_stopping) throw new ControlException(ControlErrorCodes.ShuttingDown, "the daemon is shutting down");
            return req.Op switch
            {
                "top" => await TopAsync(req, c).ConfigureAwait(false),
                "capture" => await CaptureAsync(req, c).ConfigureAwait(false),
                _ => await PacketGenAsync(req, c).ConfigureAwait(false),
            };
        }
        catch (Exception e) when (e is ControlException or ArgumentException or FormatException or InvalidOperationException)
        {
            // Refused before anything streamed (bad arguments, port taken ...).
            await c.WriteAsync(ErrorFor(req.Id, e)).ConfigureAwait(false);
            return true;
        }
    }

    /// <summary>
    /// Waits up to <paramref name="wait"/> (or until <paramref name="other"/> completes) for the
    /// client: a stop request, or the connection closing. Any other request during a stream is
    /// answered with an error and the stream goes on. A client that only shut down its sending
    /// side (end of stream on read) still reads: the stream goes on until it ends, the client
    /// closes the connection (<see cref="Connection.HungUp"/>), or a write to it fails.
    /// </summary>
    private async Task<ClientSignal> WatchClientAsync(Connection c, string op, TimeSpan wait, Task? other = null)
    {
        if (c.ReadClosed) return await WatchHalfClosedAsync(c, wait, other).ConfigureAwait(false);
        var read = c.NextRead();
        if (!read.IsCompleted && wait > TimeSpan.Zero)
        {
            var delay = Task.Delay(wait, _cts.Token);
            if (other is null) await Task.WhenAny(read, delay).ConfigureAwait(false);
            else await Task.WhenAny(read, delay, other).ConfigureAwait(false);
            _cts.Token.ThrowIfCancellationRequested();
        }
        if (!read.IsCompleted) return ClientSignal.None;
        c.Pending = null;
        if (!read.IsCompletedSuccessfully) return ClientSignal.Gone; // reset, or a line over the limit
        if (read.Result is not { } line)
        {
            c.ReadClosed = true;
            return c.HungUp ? ClientSignal.Gone : ClientSignal.None;
        }
        ControlRequest next;
        try
        {
            next = ControlRequest.Parse(line);
        }
        catch (ControlException e)
        {
            await c.WriteAsync(ControlProtocol.Error(null, e.Code, e.Message)).ConfigureAwait(false);
            return ClientSignal.None;
        }
        if (next.Op == "stop") return ClientSignal.Stop;
        await c.WriteAsync(ControlProtocol.Error(next.Id, ControlErrorCodes.Conflict,
            $"a {op} stream runs on this connection; send {{\"op\":\"stop\"}} or wait for its answer before '{ControlRequest.Short(next.Op)}'")).ConfigureAwait(false);
        return ClientSignal.None;
    }

    /// <summary>How often a half-closed client is checked for having closed the connection entirely.</summary>
    private static readonly TimeSpan HangUpCheck = TimeSpan.FromMilliseconds(100);

    /// <summary><see cref="WatchClientAsync"/> once the client can send nothing more: only a hang-up can end the wait early.</summary>
    private async Task<ClientSignal> WatchHalfClosedAsync(Connection c, TimeSpan wait, Task? other)
    {
        long until = Stopwatch.GetTimestamp() + (long)(Math.Max(0, wait.TotalSeconds) * Stopwatch.Frequency);
        while (true)
        {
            if (c.HungUp) return ClientSignal.Gone;
            var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), until);
            if (left <= TimeSpan.Zero || other is { IsCompleted: true }) return ClientSignal.None;
            var delay = Task.Delay(left < HangUpCheck ? left : HangUpCheck, _cts.Token);
            if (other is null) await delay.ConfigureAwait(false);
            else await Task.WhenAny(delay, other).ConfigureAwait(false);
            _cts.Token.ThrowIfCancellationRequested();
        }
    }

    // ---------------------------------------------------------------- top

    private async Task<bool> TopAsync(ControlRequest r, Connection c)
    {
        r.AllowOnly("interval_ms", "iterations");
        int intervalMs = r.OptionalInt("interval_ms") ?? 1000;
        if (intervalMs is < 50 or > 60_000) throw ControlException.Invalid($"top: interval_ms {intervalMs} is out of range (want 50..60000)");
        int iterations = r.OptionalInt("iterations") ?? 0;
        if (iterations < 0) throw ControlException.Invalid($"top: iterations {iterations} is negative (0 = until stopped)");

        long seenEvents = Interlocked.Read(ref _eventSeq);
        var prevCpu = CpuNow();
        var prevPorts = PortsNow();
        long prevT = Stopwatch.GetTimestamp();
        int done = 0;
        while (iterations == 0 || done < iterations)
        {
            long deadline = prevT + (long)(intervalMs / 1000.0 * Stopwatch.Frequency);
            while (true)
            {
                long left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0) break;
                switch (await WatchClientAsync(c, "top", TimeSpan.FromSeconds((double)left / Stopwatch.Frequency)).ConfigureAwait(false))
                {
                    case ClientSignal.Gone:
                        return false;
                    case ClientSignal.Stop:
                        await c.WriteAsync(ControlProtocol.Ok(r.Id, new TopResult { Iterations = done, Stopped = true })).ConfigureAwait(false);
                        return true;
                }
            }
            long now = Stopwatch.GetTimestamp();
            double seconds = Math.Max(1e-6, Stopwatch.GetElapsedTime(prevT, now).TotalSeconds);
            var cpu = CpuNow();
            var ports = PortsNow();
            var owners = PortOwners();
            var domains = _host.Domains.Select(d =>
            {
                var info = Info(d);
                if (cpu.TryGetValue(d.Id, out var a) && prevCpu.TryGetValue(d.Id, out var b))
                    info = info with
                    {
                        CpuPct = Math.Round(Math.Max(0, a.VCpu - b.VCpu) / 1e9 / seconds * 100, 1),
                        BackendPct = Math.Round(Math.Max(0, a.Backend - b.Backend) / 1e9 / seconds * 100, 1),
                    };
                return info;
            }).ToArray();
            var rates = ports.Select(kv =>
            {
                var s = kv.Value;
                prevPorts.TryGetValue(kv.Key, out var p);
                var (kind, owner) = OwnerOf(owners, kv.Key);
                return new PortRate
                {
                    Name = kv.Key, Kind = kind, Owner = owner,
                    TxPps = Math.Round(Math.Max(0, s.TxPackets - (p?.TxPackets ?? 0)) / seconds, 1),
                    RxPps = Math.Round(Math.Max(0, s.RxPackets - (p?.RxPackets ?? 0)) / seconds, 1),
                    TxMbps = Math.Round(Math.Max(0, s.TxBytes - (p?.TxBytes ?? 0)) * 8 / seconds / 1e6, 3),
                    RxMbps = Math.Round(Math.Max(0, s.RxBytes - (p?.RxBytes ?? 0)) * 8 / seconds / 1e6, 3),
                    DropsPs = Math.Round(Math.Max(0, s.TotalDrops - (p?.TotalDrops ?? 0)) / seconds, 1),
                    TxPackets = s.TxPackets, RxPackets = s.RxPackets, Dropped = s.TotalDrops,
                };
            }).ToArray();
            var events = _events.Where(e => e.Seq > seenEvents).Select(e => e.Text).ToArray();
            seenEvents = Math.Max(seenEvents, _events.Select(e => e.Seq).DefaultIfEmpty(seenEvents).Max());
            done++;
            await c.WriteAsync(ControlProtocol.Event(r.Id, "top", new TopSnapshot
            {
                Iteration = done, IntervalS = Math.Round(seconds, 3), BridgeBatch = _host.Switch.BridgeBatch,
                IoModel = _host.DefaultIoModel.Key(), Domains = domains, Ports = rates, Events = events,
            })).ConfigureAwait(false);
            prevCpu = cpu;
            prevPorts = ports;
            prevT = now;
        }
        await c.WriteAsync(ControlProtocol.Ok(r.Id, new TopResult { Iterations = done, Stopped = false })).ConfigureAwait(false);
        return true;
    }

    private Dictionary<int, (long VCpu, long Backend)> CpuNow() =>
        _host.Domains.ToDictionary(d => d.Id, d => (d.VCpuTimeNs(), d.BackendTimeNs()));

    private Dictionary<string, PortStatistics> PortsNow()
    {
        var map = new Dictionary<string, PortStatistics>(StringComparer.Ordinal);
        foreach (var b in _host.Switch.Bridges)
            foreach (var p in b.Ports)
                map[p.Name] = p.GetStatistics();
        return map;
    }

    // ---------------------------------------------------------------- pkt-gen

    private int _pktgenSeq;

    /// <summary>Folds the guest's 100 ms reports into the client's report interval (pkt-gen's -T).</summary>
    private sealed class IntervalFolder(TimeSpan every, ChannelWriter<PacketGenLine> output)
    {
        private TimeSpan _length;
        private long _frames, _bytes, _syncs;

        public void Add(PacketGenInterval r)
        {
            _length += r.Length;
            _frames += r.Frames;
            _bytes += r.Bytes;
            _syncs += r.Syncs;
            if (_length < every) return;
            var all = new PacketGenInterval(r.Function, r.Elapsed, _length, _frames, _bytes, _syncs, r.TotalFrames, r.Lost);
            output.TryWrite(new PacketGenLine
            {
                Line = PacketGenFormatter.FormatInterval(all), ElapsedS = Math.Round(all.Elapsed.TotalSeconds, 3),
                Pps = Math.Round(all.Pps, 1), Bps = Math.Round(all.Bps, 1), Frames = all.Frames, TotalFrames = all.TotalFrames, Lost = all.Lost,
            });
            _length = TimeSpan.Zero;
            _frames = _bytes = _syncs = 0;
        }
    }

    private async Task<bool> PacketGenAsync(ControlRequest r, Connection c)
    {
        r.AllowOnly("port", "args", "cpus");
        var tokens = r.StringList("args").ToList();
        string? cpusText = r.OptionalString("cpus");
        // pkt-gen's -a CPU (affinity) pins the generator's domain.
        int a = tokens.IndexOf("-a");
        if (a >= 0)
        {
            if (a + 1 >= tokens.Count) throw ControlException.Invalid("pkt-gen: -a needs a CPU");
            cpusText ??= tokens[a + 1];
            tokens.RemoveRange(a, 2);
        }
        var options = PacketGenArgs.Parse(tokens, out string? portArg);
        string port = r.OptionalString("port") ?? portArg
            ?? throw ControlException.Invalid("pkt-gen needs a port: -i BRIDGE:PORT, e.g. -i valex:vtx (a new port on that bridge)");
        Bridge.ParsePortName(port);
        var cpus = cpusText is null ? [] : ParseCpus(cpusText, "pkt-gen -a");

        var lines = Channel.CreateUnbounded<PacketGenLine>(new UnboundedChannelOptions { SingleReader = true });
        var guest = new PacketGenGuest(options);
        var folder = new IntervalFolder(options.ReportInterval, lines.Writer);
        guest.Interval += folder.Add;

        bool newBridge = false;
        int otherPorts = 0;
        string[] bridgesBefore = [];
        var domain = await RunChangeAsync(() =>
        {
            var (bridgeName, _) = Bridge.ParsePortName(port);
            bridgesBefore = _host.Switch.Bridges.Select(b => b.Name).ToArray();
            var existing = _host.Switch.FindBridge(bridgeName);
            newBridge = existing is null;
            otherPorts = existing?.Ports.Count ?? 0;
            string name;
            do name = $"pktgen-{Interlocked.Increment(ref _pktgenSeq)}";
            while (_host.Find(name) is not null);
            var spec = new DomainSpec
            {
                Name = name, Vifs = [new VifSpec(port)], Guest = () => guest,
                Cpus = cpus.IsEmpty ? [] : [cpus.ToArray()],
            };
            NoteBridgeOf(port);
            return _host.Create(spec);
        }).ConfigureAwait(false);
        string fn = options.Function.ToString().ToLowerInvariant();
        Log($"pkt-gen {fn} on {port}: domain '{domain.Name}' (id {domain.Id})");

        bool destroyed = false;
        try
        {
            await c.WriteAsync(ControlProtocol.Event(r.Id, "started", new PacketGenStarted { Domain = domain.Name, Id = domain.Id, Port = port, Function = fn, NewBridge = newBridge, OtherPorts = otherPorts, Bridges = bridgesBefore }))
                .ConfigureAwait(false);
            bool stopped = false;
            while (true)
            {
                while (lines.Reader.TryRead(out var line))
                    await c.WriteAsync(ControlProtocol.Event(r.Id, "interval", line)).ConfigureAwait(false);
                if (guest.Summary is not null) break;
                if (domain.State is DomainState.Crashed or DomainState.Destroyed)
                {
                    string why = domain.CrashReason ?? "it was destroyed";
                    await DestroyAsync(domain).ConfigureAwait(false);
                    destroyed = true;
                    await c.WriteAsync(ControlProtocol.Error(r.Id, ControlErrorCodes.Conflict, $"pkt-gen domain '{domain.Name}' ended before its run did: {why}")).ConfigureAwait(false);
                    return true;
                }
                var signal = await WatchClientAsync(c, "pkt-gen", TimeSpan.FromMilliseconds(100), lines.Reader.WaitToReadAsync().AsTask()).ConfigureAwait(false);
                if (signal == ClientSignal.Gone)
                {
                    Log($"pkt-gen client of '{domain.Name}' disconnected; destroying it");
                    return false;
                }
                if (signal == ClientSignal.Stop)
                {
                    stopped = true;
                    break;
                }
            }
            // Destroying cancels the generator, which returns its summary before the vCPU exits.
            await DestroyAsync(domain).ConfigureAwait(false);
            destroyed = true;
            while (lines.Reader.TryRead(out var line))
                await c.WriteAsync(ControlProtocol.Event(r.Id, "interval", line)).ConfigureAwait(false);
            var s = guest.Summary;
            if (s is null)
            {
                await c.WriteAsync(ControlProtocol.Error(r.Id, ControlErrorCodes.Conflict,
                    $"pkt-gen domain '{domain.Name}' ended without a summary{(domain.CrashReason is { } cr ? ": " + cr : "")}")).ConfigureAwait(false);
                return true;
            }
            await c.WriteAsync(ControlProtocol.Ok(r.Id, new PacketGenResult
            {
                Domain = domain.Name, Port = port, Function = fn, Summary = PacketGenFormatter.FormatSummary(s),
                Frames = s.Frames, Bytes = s.Bytes, Seconds = Math.Round(s.ActiveTime.TotalSeconds, 6),
                Mpps = Math.Round(s.AverageMpps, 6), Gbps = Math.Round(s.AverageGbps, 6),
                Lost = s.Lost, Reordered = s.Reordered, Duplicates = s.Duplicates, Stopped = stopped,
            })).ConfigureAwait(false);
            return true;
        }
        finally
        {
            guest.Interval -= folder.Add;
            if (!destroyed) _ = DestroyQuietlyAsync(domain);
        }
    }

    private async Task DestroyAsync(Domain d)
    {
        bool clean = await RunChangeAsync(() =>
        {
            bool ok = _host.Destroy(d);
            PruneBridges(); // e.g. pkt-gen -i valez:p0 by mistake: valez goes with its port
            return ok;
        }).ConfigureAwait(false);
        if (!clean) Log($"pkt-gen domain '{d.Name}' did not stop in time; its memory is held until its vCPU exits");
    }

    /// <summary>Best effort when the client is gone; at shutdown <see cref="Stop"/> destroys every domain anyway.</summary>
    private async Task DestroyQuietlyAsync(Domain d)
    {
        try
        {
            await DestroyAsync(d).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ControlException or ObjectDisposedException)
        {
        }
    }
}
