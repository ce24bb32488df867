using System.Runtime.InteropServices;
using HyperNF.Linux;
using HyperNF.Switch;
using static HyperNF.Linux.PacketSocket;

namespace HyperNF.Ports;

/// <summary>
/// The kernel fast path of one bridge's physical ports (docs/ports.md, "Kernel fast path"): a
/// unicast frame from one attached interface to another is forwarded in the kernel's receive
/// path, in the sender's own softirq (HyperNF's "the switch runs in the sender's context", for
/// a sender that is a Linux interface), instead of waking the bridge's driver thread. The switch
/// stays the authority: the kernel only follows a copy of its learning table, and every frame
/// the copy cannot decide (group addresses, unknown or unlearned addresses, a destination that is
/// a domain, a port under capture or down, a frame over the MTU) takes the switch as before.
///
/// <para><b>Two programs per port, one decision.</b> The port's RX packet socket is a tap
/// (ptype_all): the kernel hands it every frame before tc ingress runs. So the decision is made
/// in the socket's filter, which drops the frame from the socket (the filter returns 0: not
/// queued, not counted as a drop) and writes the verdict into a per-CPU slot; the tcx ingress
/// program, which runs next on the same CPU for the same frame (softirq, no preemption in
/// between), takes the verdict from the slot and redirects the frame to the destination
/// interface's egress (bpf_redirect). One lookup, so the socket and the redirect can never
/// disagree, whatever the switch changes in the maps meanwhile: a frame is forwarded by the
/// kernel or by the switch, exactly once.</para>
///
/// <para>Socket filter (per port; <c>keep</c> also records the CPU as <see cref="CpuBeacon"/> does):</para>
/// <code>
///   load the 12 address bytes                 ; bpf_skb_load_bytes
///   if dst is a group address: keep
///   in = ports[ifindex]; if none or not enabled: keep
///   if macs[src] != ifindex: keep              ; the source must be learned here (moves, new hosts)
///   out = macs[dst]; if none or == ifindex: keep
///   o = ports[out]; if none or not enabled: keep
///   if len &gt; o.max_len and not GSO: keep      ; the switch counts the oversize drop
///   verdict[cpu] = { ifindex, out, len, in.slot, o.slot }; return 0
/// </code>
/// <para>tcx ingress (shared by the bridge's ports):</para>
/// <code>
///   v = verdict[cpu]; if !v.in: next; take it (v.in = 0)
///   if v.in != ifindex or v.len != len: count a mismatch, next
///   counters[v.in_slot].rx += 1, len; counters[v.out_slot].tx += 1, len
///   return bpf_redirect(v.out, 0)
/// </code>
/// <para>Maps: <c>ports</c> (hash, ifindex → slot, max frame, enabled), <c>macs</c> (hash, the
/// 6-byte address → ifindex, the switch's learning table restricted to this bridge's physical
/// ports), the per-CPU <c>verdict</c> and <c>counters</c> (per switch port index, folded into
/// <see cref="PhysicalPortStatistics"/>). The table is copied into <c>macs</c> when the switch
/// learns something new (in the learner's context: one scan, syscalls only for what changed)
/// and once a second for aging.</para>
/// </summary>
internal sealed unsafe class KernelFastPath : IDisposable, IForwardingObserver
{
    private const int Slots = 256;          // switch port indices 0..253; 255 counts mismatches
    private const int MismatchSlot = 255;
    private const int CounterBytes = 32;    // rx packets, rx bytes, tx packets, tx bytes
    private const int PortValueBytes = 16;  // slot, max frame, enabled, pad
    private const int TcxNext = -1;
    private static readonly long SyncPeriodMs = 1000;

    private readonly object _gate = new();
    private readonly Bridge _bridge;
    private int _portsMap = -1, _macsMap = -1, _verdictMap = -1, _countersMap = -1, _tcProg = -1;
    private readonly Registration?[] _bySlot = new Registration?[Slots];
    private readonly Dictionary<ulong, int> _shadow = new();  // what macs holds
    private int _syncAgain;
    private long _nextSync;
    private bool _disposed;

    private sealed class Registration
    {
        public required PhysicalPort Port;
        public required int IfIndex;
        public required int Slot;
        public int LinkFd = -1, FilterFd = -1;
        public PortEntry Written;      // what ports[ifindex] holds (Enabled 0 before the first write)
        public bool Present;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PortEntry
    {
        public uint Slot, MaxLen, Enabled, Pad;
    }

    private KernelFastPath(Bridge bridge) => _bridge = bridge;

    public string BridgeName => _bridge.Name;

    /// <summary>
    /// The fast path of <paramref name="bridge"/>, or null with <paramref name="error"/> saying
    /// why it is not available (no CAP_BPF / CAP_NET_ADMIN, a kernel without tcx: Linux &lt; 6.6).
    /// </summary>
    public static KernelFastPath? TryCreate(Bridge bridge, out string? error)
    {
        var f = new KernelFastPath(bridge);
        try
        {
            error = f.Open();
        }
        catch
        {
            f.Dispose();
            throw;
        }
        if (error is null)
        {
            bridge.AddForwardingObserver(f);
            return f;
        }
        f.Dispose();
        return null;
    }

    private string? Open()
    {
        _portsMap = Bpf.CreateMap(Bpf.MapHash, 4, PortValueBytes, Slots, "hnf_fp_ports");
        if (_portsMap < 0) return $"BPF map: {ErrnoText(LastErrno)}";
        _macsMap = Bpf.CreateMap(Bpf.MapHash, 6, 4, Math.Max(64, _bridge.Forwarding.Capacity), "hnf_fp_macs");
        if (_macsMap < 0) return $"BPF map: {ErrnoText(LastErrno)}";
        _verdictMap = Bpf.CreateMap(Bpf.MapPerCpuArray, 4, 16, 1, "hnf_fp_verdict");
        if (_verdictMap < 0) return $"BPF map: {ErrnoText(LastErrno)}";
        _countersMap = Bpf.CreateMap(Bpf.MapPerCpuArray, 4, CounterBytes, Slots, "hnf_fp_counts");
        if (_countersMap < 0) return $"BPF map: {ErrnoText(LastErrno)}";
        _tcProg = Bpf.LoadProgram(Bpf.ProgSchedCls, RedirectProgram(_verdictMap, _countersMap), "hnf_fp_redirect", out string? err);
        if (_tcProg < 0) return $"tc program: {err}";
        return null;
    }

    // ------------------------------------------------------------------ programs

    /// <summary>The tcx ingress program (see the class comment).</summary>
    internal static ulong[] RedirectProgram(int verdictMap, int countersMap)
    {
        var a = new BpfAssembler();
        a.Emit(0xbf, 6, 1, 0, 0);                   // r6 = ctx
        a.Emit(0x62, 10, 0, -4, 0);                 // *(u32 *)(fp - 4) = 0: key
        a.MapLookup(verdictMap, -4, "next");
        a.Emit(0xbf, 7, 0, 0, 0);                   // r7 = verdict
        a.Emit(0x61, 1, 7, 0, 0);                   // r1 = v.in
        a.Jump(0x15, 1, 0, 0, "next");              // no verdict: the socket keeps this frame
        a.Emit(0x62, 7, 0, 0, 0);                   // v.in = 0: taken
        a.Emit(0x61, 2, 6, 40, 0);                  // r2 = ctx->ifindex
        a.Jump(0x5d, 1, 2, 0, "mismatch");
        a.Emit(0x61, 9, 6, 0, 0);                   // r9 = ctx->len
        a.Emit(0x61, 3, 7, 8, 0);                   // r3 = v.len
        a.Jump(0x5d, 9, 3, 0, "mismatch");
        a.Emit(0x69, 1, 7, 12, 0);                  // r1 = v.in_slot (u16)
        a.Emit(0x63, 10, 1, -8, 0);                 // *(u32 *)(fp - 8) = r1
        EmitCount(a, countersMap, field: 0, withBytes: true, "tx");   // counters[in].rx += 1, len
        a.Label("tx");
        a.Emit(0x69, 1, 7, 14, 0);                  // r1 = v.out_slot
        a.Emit(0x63, 10, 1, -8, 0);
        EmitCount(a, countersMap, field: 16, withBytes: true, "redirect"); // counters[out].tx += 1, len
        a.Label("redirect");
        a.Emit(0x61, 1, 7, 4, 0);                   // r1 = v.out
        a.Emit(0xb7, 2, 0, 0, 0);                   // r2 = 0: egress
        a.Emit(0x85, 0, 0, 0, Bpf.FnRedirect);      // TC_ACT_REDIRECT
        a.Emit(0x95, 0, 0, 0, 0);
        a.Label("mismatch");                        // never expected: counted, and the frame goes on
        a.Emit(0x62, 10, 0, -8, MismatchSlot);
        EmitCount(a, countersMap, field: 0, withBytes: false, "next");
        a.Label("next");
        a.Emit(0xb7, 0, 0, 0, TcxNext);
        a.Emit(0x95, 0, 0, 0, 0);
        return a.Build();
    }

    /// <summary>counters[*(u32 *)(fp - 8)]: the u64 at <paramref name="field"/> += 1 and, <paramref name="withBytes"/>, the next one += r9 (the length).</summary>
    private static void EmitCount(BpfAssembler a, int countersMap, short field, bool withBytes, string skip)
    {
        a.MapLookup(countersMap, -8, skip);
        a.Emit(0x79, 1, 0, field, 0).Emit(0x07, 1, 0, 0, 1).Emit(0x7b, 0, 1, field, 0);
        if (withBytes) a.Emit(0x79, 1, 0, (short)(field + 8), 0).Emit(0x0f, 1, 9, 0, 0).Emit(0x7b, 0, 1, (short)(field + 8), 0);
    }

    /// <summary>
    /// The socket filter of one port's RX socket (see the class comment); <paramref name="beaconMap"/> &lt; 0: no CPU record.
    /// Stack: fp-40 the verdict slot's address, fp-28 key 0, fp-24 out ifindex, fp-20 in ifindex,
    /// fp-16..fp-5 the destination and source addresses.
    /// </summary>
    internal static ulong[] DecisionFilter(int portsMap, int macsMap, int verdictMap, int beaconMap)
    {
        var a = new BpfAssembler();
        a.Emit(0xbf, 6, 1, 0, 0);                   // r6 = ctx
        // This CPU's verdict slot, cleared on every frame (a verdict of a frame the kernel lost
        // between here and tc must never be taken for another), its address spilled.
        a.Emit(0x62, 10, 0, -28, 0);
        a.MapLookup(verdictMap, -28, "keep");
        a.Emit(0x62, 0, 0, 0, 0);                   // v.in = 0
        a.Emit(0x7b, 10, 0, -40, 0);
        a.Emit(0xbf, 1, 6, 0, 0);
        a.Emit(0xb7, 2, 0, 0, 0);                   // offset 0
        a.Emit(0xbf, 3, 10, 0, 0).Emit(0x07, 3, 0, 0, -16);
        a.Emit(0xb7, 4, 0, 0, 12);                  // dst + src
        a.Emit(0x85, 0, 0, 0, Bpf.FnSkbLoadBytes);
        a.Jump(0x55, 0, 0, 0, "keep");              // shorter than 12 bytes
        a.Emit(0x61, 1, 6, 40, 0);                  // r1 = ctx->ifindex
        a.Emit(0x63, 10, 1, -20, 0);
        a.Emit(0x71, 1, 10, -16, 0);                // r1 = dst[0]
        a.Emit(0x57, 1, 0, 0, 1);
        a.Jump(0x55, 1, 0, 0, "keep");              // group address: flooded by the switch
        a.MapLookup(portsMap, -20, "keep");
        a.Emit(0xbf, 7, 0, 0, 0);                   // r7 = ports[in]
        a.Emit(0x61, 1, 7, 8, 0);
        a.Jump(0x15, 1, 0, 0, "keep");              // not enabled (capture, link down)
        a.MapLookup(macsMap, -10, "keep");          // source not learned: the switch learns it
        a.Emit(0x61, 1, 0, 0, 0);
        a.Emit(0x61, 2, 10, -20, 0);
        a.Jump(0x5d, 1, 2, 0, "keep");              // learned elsewhere: it moved, the switch learns it
        a.MapLookup(macsMap, -16, "keep");          // unknown destination (or a domain's): the switch
        a.Emit(0x61, 8, 0, 0, 0);                   // r8 = out ifindex
        a.Emit(0x61, 2, 10, -20, 0);
        a.Jump(0x1d, 8, 2, 0, "keep");              // same port: the switch counts the hairpin drop
        a.Emit(0x63, 10, 8, -24, 0);
        a.MapLookup(portsMap, -24, "keep");
        a.Emit(0xbf, 9, 0, 0, 0);                   // r9 = ports[out]
        a.Emit(0x61, 1, 9, 8, 0);
        a.Jump(0x15, 1, 0, 0, "keep");
        a.Emit(0x61, 3, 6, 0, 0);                   // r3 = ctx->len
        a.Emit(0x61, 2, 9, 4, 0);                   // r2 = out max frame
        a.Jump(0xbd, 3, 2, 0, "fits");              // if len <= max goto fits
        a.Emit(0x61, 1, 6, 176, 0);                 // ctx->gso_size: a super-frame is segmented on the way
        a.Jump(0x15, 1, 0, 0, "keep");              // oversize: the switch counts the drop
        a.Label("fits");
        a.Emit(0x79, 0, 10, -40, 0);                // r0 = the slot
        a.Emit(0x63, 0, 3, 8, 0);                   // v.len
        a.Emit(0x63, 0, 8, 4, 0);                   // v.out
        a.Emit(0x61, 1, 7, 0, 0).Emit(0x6b, 0, 1, 12, 0); // v.in_slot
        a.Emit(0x61, 1, 9, 0, 0).Emit(0x6b, 0, 1, 14, 0); // v.out_slot
        a.Emit(0x61, 1, 10, -20, 0).Emit(0x63, 0, 1, 0, 0); // v.in, last: the slot is complete
        a.Emit(0xb7, 0, 0, 0, 0);                   // not for the socket
        a.Emit(0x95, 0, 0, 0, 0);
        a.Label("keep");
        EmitRecordCpu(a, beaconMap);
        a.Emit(0xb4, 0, 0, 0, -1);                  // the whole frame
        a.Emit(0x95, 0, 0, 0, 0);
        return a.Build();
    }

    private static void EmitRecordCpu(BpfAssembler a, int beaconMap)
    {
        if (beaconMap < 0) return;
        ulong* rec = stackalloc ulong[8];
        int n = CpuBeacon.EmitRecordCpu(rec, beaconMap);
        for (int i = 0; i < n; i++) a.Raw(rec[i]);
    }

    // ------------------------------------------------------------------ ports

    /// <summary>
    /// Puts <paramref name="port"/> on the fast path: the tcx program on its interface first,
    /// then the filter on its RX socket, then its entry (enabled when its link is up and no
    /// capture is open). Null, or why the port stays on the switch path only.
    /// </summary>
    public string? Register(PhysicalPort port)
    {
        if (port.CurrentBackend is not AfPacketBackend backend) return "only af_packet ports take the kernel fast path";
        Monitor.Enter(_gate);
        try
        {
            if (_disposed) return "the bridge's fast path is closed";
            int slot = port.SwitchPort.Index;
            if (slot is < 0 or >= MismatchSlot) return "the port has no switch index";
            var reg = new Registration { Port = port, IfIndex = backend.InterfaceIndex, Slot = slot };
            ZeroCounters(slot);
            reg.LinkFd = Bpf.LinkCreate(_tcProg, reg.IfIndex, Bpf.AttachTcxIngress);
            if (reg.LinkFd < 0)
            {
                int err = -reg.LinkFd;
                return err == 22 // EINVAL: a kernel without tcx (before 6.6)
                    ? $"tcx ingress hook: {ErrnoText(err)} (Linux 6.6 or later is needed)"
                    : $"tcx ingress hook: {ErrnoText(err)}";
            }
            reg.FilterFd = Bpf.LoadProgram(Bpf.ProgSocketFilter,
                DecisionFilter(_portsMap, _macsMap, _verdictMap, backend.BeaconMapFd), "hnf_fp_decide", out string? error);
            if (reg.FilterFd < 0)
            {
                Native.Close(reg.LinkFd);
                return $"socket filter: {error}";
            }
            int e = backend.AttachRxFilter(reg.FilterFd);
            if (e != 0)
            {
                Native.Close(reg.FilterFd);
                Native.Close(reg.LinkFd);
                return $"SO_ATTACH_BPF: {ErrnoText(e)}";
            }
            _bySlot[slot] = reg;
            WritePort(reg);
            SyncLocked();
            return null;
        }
        finally
        {
            ExitGate();
        }
    }

    /// <summary>
    /// Takes the port off the fast path (its entry first, so no new verdict names it; then the
    /// tcx link). Returns the port's fast-path counters until now, to be kept by the port.
    /// </summary>
    public FastPathCounters Unregister(PhysicalPort port)
    {
        Monitor.Enter(_gate);
        try
        {
            int slot = Array.FindIndex(_bySlot, r => r is not null && ReferenceEquals(r.Port, port));
            if (slot < 0) return default;
            var reg = _bySlot[slot]!;
            _bySlot[slot] = null;
            if (!_disposed)
            {
                int key = reg.IfIndex;
                Bpf.Delete(_portsMap, &key);
                SyncLocked();
            }
            // A frame whose verdict the filter just wrote still finds the tcx program: the link
            // goes after the entry. The filter stays on the socket, which the port closes.
            if (reg.LinkFd >= 0) Native.Close(reg.LinkFd);
            if (reg.FilterFd >= 0) Native.Close(reg.FilterFd);
            return _disposed ? default : ReadCounters(slot);
        }
        finally
        {
            ExitGate();
        }
    }

    /// <summary>Re-reads the port's state (link, MTU, captures) and updates its entry when it changed.</summary>
    public void Refresh(PhysicalPort port)
    {
        Monitor.Enter(_gate);
        try
        {
            if (_disposed) return;
            foreach (var reg in _bySlot)
                if (reg is not null && ReferenceEquals(reg.Port, port)) WritePort(reg);
        }
        finally
        {
            ExitGate();
        }
    }

    /// <summary>The port's fast-path counters (frames the kernel forwarded from and to it).</summary>
    public FastPathCounters Counters(PhysicalPort port)
    {
        Monitor.Enter(_gate);
        try
        {
            if (_disposed) return default;
            int slot = Array.FindIndex(_bySlot, r => r is not null && ReferenceEquals(r.Port, port));
            return slot < 0 ? default : ReadCounters(slot);
        }
        finally
        {
            ExitGate();
        }
    }

    /// <summary>Whether the port's entry is enabled now (frames to and from it may take the kernel path).</summary>
    public bool IsEnabled(PhysicalPort port)
    {
        Monitor.Enter(_gate);
        try
        {
            return _bySlot.Any(r => r is not null && ReferenceEquals(r.Port, port) && r.Written.Enabled != 0);
        }
        finally
        {
            ExitGate();
        }
    }

    /// <summary>Verdicts the tcx program found for another frame than its own (expected 0).</summary>
    public long Mismatches
    {
        get
        {
            Monitor.Enter(_gate);
            try
            {
                return _disposed ? 0 : ReadCounters(MismatchSlot).RxPackets;
            }
            finally
            {
                ExitGate();
            }
        }
    }

    private void WritePort(Registration reg)
    {
        var port = reg.Port;
        var backend = port.CurrentBackend;
        bool enabled = port.Link == LinkState.Up && port.SwitchPort.Up && port.SwitchPort.CaptureCount == 0
                       && backend.InterfaceIndex == reg.IfIndex && !port.IsDetached;
        var entry = new PortEntry { Slot = (uint)reg.Slot, MaxLen = (uint)(backend.Mtu + 14), Enabled = enabled ? 1u : 0u };
        if (reg.Present && entry.Equals(reg.Written)) return;
        int key = reg.IfIndex;
        if (Bpf.Update(_portsMap, &key, &entry) == 0)
        {
            reg.Written = entry;
            reg.Present = true;
        }
    }

    // ------------------------------------------------------------------ counters

    private void ZeroCounters(int slot)
    {
        int cpus = Bpf.PossibleCpus;
        var zero = new byte[cpus * CounterBytes];
        fixed (byte* v = zero) Bpf.Update(_countersMap, &slot, v);
    }

    private FastPathCounters ReadCounters(int slot)
    {
        int cpus = Bpf.PossibleCpus;
        var values = new ulong[cpus * CounterBytes / 8];
        fixed (ulong* v = values)
            if (Bpf.Lookup(_countersMap, &slot, v) != 0) return default;
        long rp = 0, rb = 0, tp = 0, tb = 0;
        for (int c = 0; c < cpus; c++)
        {
            rp += (long)values[4 * c];
            rb += (long)values[4 * c + 1];
            tp += (long)values[4 * c + 2];
            tb += (long)values[4 * c + 3];
        }
        return new FastPathCounters(rp, rb, tp, tb);
    }

    // ------------------------------------------------------------------ the learning table's copy

    /// <summary>The switch learned or forgot an address (called in the learner's context).</summary>
    public void ForwardingChanged() => Sync();

    /// <summary>Driver threads, on their link checks: the copy follows aging once a second.</summary>
    public void Tick()
    {
        long now = Environment.TickCount64;
        if (now < Volatile.Read(ref _nextSync)) return;
        Volatile.Write(ref _nextSync, now + SyncPeriodMs);
        Sync();
    }

    /// <summary>
    /// Copies the table into <c>macs</c>. Never waits: a learner that finds another one copying
    /// leaves a note, and the copier goes round once more before it lets go.
    /// </summary>
    public void Sync()
    {
        Volatile.Write(ref _syncAgain, 1);
        if (Monitor.TryEnter(_gate)) ExitGate(); // else the holder sees the note as it leaves
    }

    /// <summary>
    /// Leaves the gate, first copying the table for every note left meanwhile; a note left after
    /// the copy and before the exit is taken by whoever gets the gate next, or by us again.
    /// </summary>
    private void ExitGate()
    {
        while (true)
        {
            while (Interlocked.Exchange(ref _syncAgain, 0) != 0)
                if (!_disposed) SyncLocked();
            Monitor.Exit(_gate);
            if (Volatile.Read(ref _syncAgain) == 0 || !Monitor.TryEnter(_gate)) return;
        }
    }

    private readonly List<(ulong Mac, int Port)> _live = new();
    private readonly HashSet<ulong> _seen = new();

    private void SyncLocked()
    {
        _live.Clear();
        _seen.Clear();
        if (_bridge.Learning) _bridge.Forwarding.CollectLive(_live);
        foreach (var (mac, p) in _live)
        {
            if ((uint)p >= Slots || _bySlot[p] is not { } reg) continue; // a domain's address, or no fast path on that port
            _seen.Add(mac);
            if (_shadow.TryGetValue(mac, out int cur) && cur == reg.IfIndex) continue;
            ulong key = mac;
            int value = reg.IfIndex;
            if (Bpf.Update(_macsMap, &key, &value) == 0)
            {
                _shadow[mac] = value;
            }
        }
        if (_shadow.Count > _seen.Count)
        {
            foreach (var mac in _shadow.Keys.Where(m => !_seen.Contains(m)).ToArray())
            {
                ulong key = mac;
                Bpf.Delete(_macsMap, &key);
                _shadow.Remove(mac);
            }
        }
    }

    /// <summary>The addresses the kernel map holds now (the switch's view of it), for tests and listings.</summary>
    public IReadOnlyDictionary<ulong, int> KernelMacs()
    {
        Monitor.Enter(_gate);
        try
        {
            return new Dictionary<ulong, int>(_shadow);
        }
        finally
        {
            ExitGate();
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _bridge.RemoveForwardingObserver(this);
            foreach (var reg in _bySlot)
            {
                if (reg is null) continue;
                if (reg.LinkFd >= 0) Native.Close(reg.LinkFd);
                if (reg.FilterFd >= 0) Native.Close(reg.FilterFd);
            }
            Array.Clear(_bySlot);
            foreach (int fd in new[] { _tcProg, _portsMap, _macsMap, _verdictMap, _countersMap })
                if (fd >= 0) Native.Close(fd);
            _tcProg = _portsMap = _macsMap = _verdictMap = _countersMap = -1;
        }
    }
}

/// <summary>Frames the kernel fast path forwarded from (RX: wire in) and to (TX: wire out) one port.</summary>
public readonly record struct FastPathCounters(long RxPackets, long RxBytes, long TxPackets, long TxBytes)
{
    public static FastPathCounters operator +(FastPathCounters a, FastPathCounters b) =>
        new(a.RxPackets + b.RxPackets, a.RxBytes + b.RxBytes, a.TxPackets + b.TxPackets, a.TxBytes + b.TxBytes);
}
