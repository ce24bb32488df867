namespace HyperNF.Control;

// The results of the control protocol's ops, as JSON objects (snake_case). The daemon
// serializes them, the CLI deserializes them to render tables, scripts read them via --json.

/// <summary>Answer to <c>hello</c>.</summary>
public sealed record HelloResult
{
    public int Protocol { get; init; }
    public string Version { get; init; } = "";
    public int Pid { get; init; }
    public string Socket { get; init; } = "";
    public double UptimeS { get; init; }
}

/// <summary>One domain in <c>list</c>, <c>top</c> and the answers of domain ops.</summary>
public sealed record DomainInfo
{
    public int Id { get; init; }
    public string Name { get; init; } = "";
    /// <summary>running, paused, crashed, destroyed.</summary>
    public string State { get; init; } = "";
    public int Vcpus { get; init; }
    /// <summary>CPU list per vCPU ("all" when not pinned).</summary>
    public IReadOnlyList<string> Cpus { get; init; } = [];
    /// <summary>CPU of the domain's vCPU threads over the last sample interval, in % of one CPU.</summary>
    public double CpuPct { get; init; }
    /// <summary>CPU of the domain's backend thread (split/merge), billed to the host, in % of one CPU.</summary>
    public double BackendPct { get; init; }
    /// <summary>Total vCPU time since the domain started, seconds.</summary>
    public double CpuTimeS { get; init; }
    public int Weight { get; init; }
    public int Cap { get; init; }
    public string IoModel { get; init; } = "";
    public string? Nf { get; init; }
    /// <summary>VALE ports of the domain (BRIDGE:PORT), in vif order.</summary>
    public IReadOnlyList<string> Ports { get; init; } = [];
    public string? CrashReason { get; init; }
    public double UptimeS { get; init; }
    /// <summary>"thread" (NF code on host threads), "vm" (a KVM virtual machine, kernel=) or "process" (a netmap program, docs/process-domains.md).</summary>
    public string Kind { get; init; } = "thread";
    /// <summary>The netmap program's pid (process domains only).</summary>
    public int? Pid { get; init; }
    /// <summary>A VM domain's KVM: "pvm, ring 3" or "hardware, ring 0"; null for thread domains.</summary>
    public string? Kvm { get; init; }
    /// <summary>A VM domain's EXIT status once its state is exited.</summary>
    public int? ExitStatus { get; init; }
    /// <summary>The faulting vCPU's registers when a VM domain crashed on a guest fault.</summary>
    public string? CrashRegisters { get; init; }
}

/// <summary>Answer to <c>console</c>: a VM domain's console output from an offset.</summary>
public sealed record ConsoleResult
{
    public string Domain { get; init; } = "";
    public string Text { get; init; } = "";
    /// <summary>Stream offset to ask from next (to follow the console).</summary>
    public long Next { get; init; }
    /// <summary>Bytes the console no longer holds (it keeps the last 64 KiB).</summary>
    public long Dropped { get; init; }
    public string State { get; init; } = "";
}

public sealed record ListResult
{
    /// <summary>Length of the interval cpu_pct is measured over, ms.</summary>
    public int SampleMs { get; init; }
    public IReadOnlyList<DomainInfo> Domains { get; init; } = [];
}

public sealed record CreateResult
{
    public DomainInfo Domain { get; init; } = new();
    /// <summary>Config settings accepted without effect, "file:line: key: ...".</summary>
    public IReadOnlyList<string> Notices { get; init; } = [];
}

public sealed record VcpuPinResult
{
    public string Domain { get; init; } = "";
    public IReadOnlyList<VcpuInfo> Vcpus { get; init; } = [];
}

public sealed record VcpuInfo
{
    public int Vcpu { get; init; }
    public string Cpus { get; init; } = "";
    public int Tid { get; init; }
}

public sealed record ScheduleInfo
{
    public string Name { get; init; } = "";
    public int Id { get; init; }
    public int Weight { get; init; }
    public int Cap { get; init; }
    /// <summary>True when a kernel CPU policy (cgroups) enforces weight and cap; false: recorded only.</summary>
    public bool Enforced { get; init; }
}

public sealed record ScheduleResult
{
    public IReadOnlyList<ScheduleInfo> Domains { get; init; } = [];
}

/// <summary>One port in <c>vale-ctl -l</c>.</summary>
public sealed record ValePortInfo
{
    public string Name { get; init; } = "";
    public string Port { get; init; } = "";
    public int Index { get; init; }
    /// <summary>domain, interface, or host (opened inside the daemon process by other code).</summary>
    public string Kind { get; init; } = "";
    /// <summary>The domain's name for kind=domain, the interface's for kind=interface.</summary>
    public string? Owner { get; init; }
    public bool Up { get; init; }
    /// <summary>For kind=interface: the Linux side of the port.</summary>
    public InterfacePortInfo? Interface { get; init; }
}

/// <summary>The Linux interface behind an interface port.</summary>
public sealed record InterfacePortInfo
{
    /// <summary>up, down or removed.</summary>
    public string Link { get; init; } = "";
    public int IfIndex { get; init; }
    public int Mtu { get; init; }
    /// <summary>The backend's own description ("af_xdp native copy, 1 queue ...").</summary>
    public string Backend { get; init; } = "";
    /// <summary>Times the interface was deleted and the port bound to a new one of the same name.</summary>
    public long Rebinds { get; init; }
    public string? LastError { get; init; }
    /// <summary>Virtio-net header length of the switch port (10: offload metadata from the kernel crosses the bridge).</summary>
    public int VnetHdr { get; init; }
    /// <summary>Frames not passed on, by direction and reason ("rx:oversize", "tx:link_down"); only reasons with drops.</summary>
    public IReadOnlyDictionary<string, long> Drops { get; init; } = new Dictionary<string, long>();
    /// <summary>The kernel fast path: "on", "off ...", or "unavailable (why)" (docs/ports.md, Kernel fast path).</summary>
    public string KernelPath { get; init; } = "off";
    /// <summary>Frames the kernel forwarded from this interface to another one of the bridge, and to it from another.</summary>
    public long KernelRxPackets { get; init; }
    public long KernelTxPackets { get; init; }
}

public sealed record BridgeInfo
{
    public string Name { get; init; } = "";
    public IReadOnlyList<ValePortInfo> Ports { get; init; } = [];
}

public sealed record ValeListResult
{
    public IReadOnlyList<BridgeInfo> Bridges { get; init; } = [];
    /// <summary>False when no interface attacher is installed (vale-ctl -a/-d are refused).</summary>
    public bool InterfacesAvailable { get; init; }
    /// <summary>netmap's persistent VALE ports (VALE_NEWIF), attached or not.</summary>
    public IReadOnlyList<PersistentPortInfo> Persistent { get; init; } = [];
}

/// <summary>A persistent VALE port (netmap's VALE_NEWIF): where it is attached and who has it registered.</summary>
public sealed record PersistentPortInfo
{
    public string Name { get; init; } = "";
    /// <summary>The bridge it is attached to, or null.</summary>
    public string? Bridge { get; init; }
    /// <summary>The process domain whose program has it registered, or null.</summary>
    public string? User { get; init; }
    public int MemId { get; init; }
    public int VirtioHeaderLength { get; init; }
}

/// <summary>Counters of one port (<c>stats</c>).</summary>
public sealed record PortCounters
{
    public string Name { get; init; } = "";
    public string Kind { get; init; } = "";
    public string? Owner { get; init; }
    public int Index { get; init; }
    public long TxPackets { get; init; }
    public long TxBytes { get; init; }
    public long RxPackets { get; init; }
    public long RxBytes { get; init; }
    public long FloodCopies { get; init; }
    public long Dropped { get; init; }
    /// <summary>Drops by reason (every reason, zero or not): ring_full, bad_buffer_index, ...</summary>
    public IReadOnlyDictionary<string, long> Drops { get; init; } = new Dictionary<string, long>();
    public long CorruptRingIndex { get; init; }
    public long BusySkips { get; init; }
    /// <summary>Seconds since <c>stats --clear</c> last reset this port's counters; null: never (lifetime counters).</summary>
    public double? ClearedSAgo { get; init; }
    /// <summary>For a domain's port: "vm" when the domain is a VM domain (kernel=), else null.</summary>
    public string? DomainKind { get; init; }
}

/// <summary>One learning-table entry.</summary>
public sealed record LearnedMac
{
    public string Mac { get; init; } = "";
    public string Port { get; init; } = "";
    public int AgeS { get; init; }
}

/// <summary>A bridge's totals, ports and learning table (<c>stats</c>).</summary>
public sealed record BridgeCounters
{
    public string Name { get; init; } = "";
    public long Sent { get; init; }
    public long SentBytes { get; init; }
    public long Delivered { get; init; }
    public long DeliveredBytes { get; init; }
    public long FloodCopies { get; init; }
    public long Dropped { get; init; }
    public IReadOnlyDictionary<string, long> Drops { get; init; } = new Dictionary<string, long>();
    /// <summary>sent + flood_copies - delivered - dropped; 0 at any quiescent point.</summary>
    public long Unaccounted { get; init; }
    public long CorruptRingIndex { get; init; }
    public int TableEntries { get; init; }
    public int TableCapacity { get; init; }
    /// <summary>Seconds since <c>stats --clear</c> last reset the bridge's totals; null: never. Unaccounted is always over the bridge's lifetime.</summary>
    public double? ClearedSAgo { get; init; }
    public IReadOnlyList<PortCounters> Ports { get; init; } = [];
    public IReadOnlyList<LearnedMac> Learning { get; init; } = [];
}

public sealed record StatsResult
{
    public int BridgeBatch { get; init; }
    public IReadOnlyList<BridgeCounters> Bridges { get; init; } = [];
    /// <summary>With clear: the ports whose counters were reset (the counters shown are those from before).</summary>
    public IReadOnlyList<string>? Cleared { get; init; }
    /// <summary>The machine's KVM (hardware or PVM, the ring guests run at) when a VM domain owns a port; null otherwise.</summary>
    public string? Kvm { get; init; }
}

/// <summary>One setting (<c>get</c>, <c>set</c>, <c>ctl</c>, <c>io-model</c>).</summary>
public sealed record SettingInfo
{
    public string Key { get; init; } = "";
    /// <summary>The value as text (what <c>set</c> accepts back).</summary>
    public string Value { get; init; } = "";
    public string Description { get; init; } = "";
}

public sealed record SettingsResult
{
    public IReadOnlyList<SettingInfo> Settings { get; init; } = [];
}

/// <summary>A port's rates over the last <c>top</c> interval.</summary>
public sealed record PortRate
{
    public string Name { get; init; } = "";
    public string Kind { get; init; } = "";
    public string? Owner { get; init; }
    public double TxPps { get; init; }
    public double RxPps { get; init; }
    public double TxMbps { get; init; }
    public double RxMbps { get; init; }
    public double DropsPs { get; init; }
    public long TxPackets { get; init; }
    public long RxPackets { get; init; }
    public long Dropped { get; init; }
}

/// <summary>One <c>top</c> frame (event "top").</summary>
public sealed record TopSnapshot
{
    public int Iteration { get; init; }
    public double IntervalS { get; init; }
    public int BridgeBatch { get; init; }
    public string IoModel { get; init; } = "";
    public IReadOnlyList<DomainInfo> Domains { get; init; } = [];
    public IReadOnlyList<PortRate> Ports { get; init; } = [];
    /// <summary>Host notices since the last frame (domain crashes, watchdog).</summary>
    public IReadOnlyList<string> Events { get; init; } = [];
}

/// <summary>One pkt-gen report (event "interval").</summary>
public sealed record PacketGenLine
{
    public string Line { get; init; } = "";
    public double ElapsedS { get; init; }
    public double Pps { get; init; }
    public double Bps { get; init; }
    public long Frames { get; init; }
    public long TotalFrames { get; init; }
    public long Lost { get; init; }
}

/// <summary>The end of a pkt-gen run (the answer of <c>pkt-gen</c>).</summary>
public sealed record PacketGenResult
{
    public string Domain { get; init; } = "";
    public string Port { get; init; } = "";
    public string Function { get; init; } = "";
    /// <summary>pkt-gen's closing lines.</summary>
    public string Summary { get; init; } = "";
    public long Frames { get; init; }
    public long Bytes { get; init; }
    public double Seconds { get; init; }
    public double Mpps { get; init; }
    public double Gbps { get; init; }
    public long Lost { get; init; }
    public long Reordered { get; init; }
    public long Duplicates { get; init; }
    /// <summary>True when the client asked to stop before the run ended by itself.</summary>
    public bool Stopped { get; init; }
}

/// <summary>The answer of <c>ctl</c>.</summary>
public sealed record CtlResult
{
    public int Op { get; init; }
    public string Name { get; init; } = "";
    public string Key { get; init; } = "";
    public string Value { get; init; } = "";
}

/// <summary>Answers that only name what was changed.</summary>
public sealed record DoneResult
{
    public string Message { get; init; } = "";
}

/// <summary>The answer of <c>top</c> once its frames are sent.</summary>
public sealed record TopResult
{
    public int Iterations { get; init; }
    public bool Stopped { get; init; }
}

/// <summary>The first event of <c>pkt-gen</c> (event "started").</summary>
public sealed record PacketGenStarted
{
    public string Domain { get; init; } = "";
    public int Id { get; init; }
    public string Port { get; init; } = "";
    public string Function { get; init; } = "";
    /// <summary>The bridge did not exist before this run (a typo?): it was created for the run and goes with its last port.</summary>
    public bool NewBridge { get; init; }
    /// <summary>Other ports on the bridge when the run started.</summary>
    public int OtherPorts { get; init; }
    /// <summary>The bridges that existed before the run.</summary>
    public IReadOnlyList<string> Bridges { get; init; } = [];
}

/// <summary>The first event of <c>capture</c> (event "started").</summary>
public sealed record CaptureStarted
{
    public string Port { get; init; } = "";
    public string Kind { get; init; } = "";
    public string? Owner { get; init; }
    public string Direction { get; init; } = "";
    public int Snaplen { get; init; }
    public int BufferBytes { get; init; }
}

/// <summary>Captured frames (event "frames"): pcap records without the file header, base64 in JSON.</summary>
public sealed record CaptureFrames
{
    public int Frames { get; init; }
    public byte[] Pcap { get; init; } = [];
    /// <summary>Frames the tap could not keep so far (its reader was behind).</summary>
    public long Dropped { get; init; }
}

/// <summary>The answer of <c>capture</c>.</summary>
public sealed record CaptureResult
{
    public string Port { get; init; } = "";
    /// <summary>Frames sent to the client.</summary>
    public long Captured { get; init; }
    /// <summary>Frames the tap could not keep because the reader was behind: copies lost, never traffic.</summary>
    public long Dropped { get; init; }
    public bool Stopped { get; init; }
    /// <summary>Why the capture ended: "count", "stopped", or "port detached".</summary>
    public string Reason { get; init; } = "";
}

/// <summary>One vCPU in <c>vcpu-list</c> (xl vcpu-list).</summary>
public sealed record VcpuListEntry
{
    public string Domain { get; init; } = "";
    public int Id { get; init; }
    public int Vcpu { get; init; }
    /// <summary>The CPU the thread last ran on (-1: not running).</summary>
    public int Cpu { get; init; }
    /// <summary>r (running), b (blocked: waiting in poll or sleeping), p (paused), - (exited).</summary>
    public string State { get; init; } = "";
    public double TimeS { get; init; }
    /// <summary>CPUs the vCPU may run on ("all" when not pinned).</summary>
    public string Affinity { get; init; } = "";
    public int Tid { get; init; }
}

public sealed record VcpuListResult
{
    public IReadOnlyList<VcpuListEntry> Vcpus { get; init; } = [];
}

/// <summary>The host, as xl info describes Xen's.</summary>
public sealed record HostInfoResult
{
    public string Host { get; init; } = "";
    public string Release { get; init; } = "";
    public string Machine { get; init; } = "";
    public int NrCpus { get; init; }
    public long TotalMemoryMb { get; init; }
    public long FreeMemoryMb { get; init; }
    public string HypernfVersion { get; init; } = "";
    public int Protocol { get; init; }
    public string Runtime { get; init; } = "";
    public string IoModel { get; init; } = "";
    public int BridgeBatch { get; init; }
    public string CpuControl { get; init; } = "";
    public int Domains { get; init; }
    public int Bridges { get; init; }
    public double UptimeS { get; init; }
}

/// <summary>One vif of a domain in <c>network-list</c>.</summary>
public sealed record VifInfo
{
    public int Idx { get; init; }
    public string Port { get; init; } = "";
    public string Mac { get; init; } = "";
    /// <summary>attached, or detached (the domain crashed or is being destroyed).</summary>
    public string State { get; init; } = "";
    public long TxPackets { get; init; }
    public long RxPackets { get; init; }
}

public sealed record NetworkListResult
{
    public string Domain { get; init; } = "";
    public int Id { get; init; }
    public IReadOnlyList<VifInfo> Vifs { get; init; } = [];
}
