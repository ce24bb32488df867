using HyperNF.Linux;
using HyperNF.Netmap;
using HyperNF.Switch;
using HyperNF.Vmm;

namespace HyperNF.Hypervisor;

/// <summary>
/// One /dev/netmap registration of a process domain's program: the port in the domain's
/// region, the control page the program hands its syncs through, the split/merge backend
/// (if any) and the host thread that serves the syncs. That thread is a vCPU of the domain:
/// it sits in the domain's CPU group and runs the flush on the caller's CPU while the caller
/// waits, so the switching work is the domain's, as in a thread domain's hypercall.
/// </summary>
public sealed class ProcessPort
{
    private readonly Domain _domain;
    private volatile bool _stop;
    private int _closed;

    public NetmapPort Port { get; }
    public SyncChannel Channel { get; }
    public BackendThread? Backend { get; }
    public VCpu? VCpu { get; internal set; }
    /// <summary>The CPU the host thread last moved to (the caller's), -1 before the first sync.</summary>
    public int LastCpu { get; private set; } = -1;

    /// <summary>
    /// The program syncs its RX rings itself (RxKring's self-served rings; the REGISTER reply's
    /// HNF_FEAT_RX_SELF): true for switch ports, false for a pipe's end.
    /// </summary>
    public bool RxSelfServed { get; init; }

    /// <summary>
    /// split/merge: the backend's kick eventfd and needs-kick word, which the program uses itself
    /// (the REGISTER reply's HNF_FEAT_TX_KICK and third descriptor); null in the hypercall model.
    /// </summary>
    public KickChannel? Kick { get; init; }

    /// <summary>The daemon's persistent port this registration uses (not owns), or null.</summary>
    public PersistentPort? Persistent { get; }

    internal ProcessPort(Domain domain, NetmapPort port, SyncChannel channel, BackendThread? backend, PersistentPort? persistent = null)
    {
        _domain = domain;
        Persistent = persistent;
        Port = port;
        Channel = channel;
        Backend = backend;
    }

    /// <summary>The host thread: wait for a request, follow the caller's CPU, sync, complete. Runs on the port's vCPU.</summary>
    internal void Serve(VCpu vcpu)
    {
        bool pinned = vcpu.Cpus.Count > 0; // the domain's --cpus win over following the caller
        int ncpu = Environment.ProcessorCount;
        try
        {
            while (!_stop && !_domain.Cancellation.IsCancellationRequested)
            {
                vcpu.Beat();
                if (_domain.PauseRequested) _domain.WaitWhilePaused(vcpu);
                if (!Channel.WaitRequest(200, out uint op, out int cpu)) continue;
                if (_stop || _domain.Cancellation.IsCancellationRequested)
                {
                    Channel.Complete(-ProcessProtocol.EIO);
                    break;
                }
                if (!pinned && cpu != LastCpu && (uint)cpu < (uint)ncpu)
                {
                    try
                    {
                        Native.SetAffinity(0, [cpu]);
                        LastCpu = cpu;
                    }
                    catch (IOException) { /* a CPU outside our cpuset: stay where we are */ }
                }
                if (!Channel.Validate(op))
                {
                    Channel.Complete(-ProcessProtocol.EINVAL);
                    continue;
                }
                if ((op & ProcessProtocol.OpTxSync) != 0) Port.TxSync();
                if ((op & ProcessProtocol.OpRxSync) != 0) Port.RxSync();
                Channel.Complete(0);
            }
        }
        finally
        {
            _domain.RetireVCpuTime(CpuTime.ThreadNs(Native.GetTid()));
        }
    }

    /// <summary>
    /// Stops the host thread (waits for it), then detaches the port, stops the backend and
    /// frees the control page, in that order: no sender can signal a freed page.
    /// </summary>
    internal void Close()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _stop = true;
        Channel.WakeHost();
        bool ended = VCpu is null || VCpu.Join(TimeSpan.FromSeconds(5));
        if (Backend is not null)
        {
            // split/merge: what the program queued before it closed is still flushed, as a
            // synchronous netmap txsync would have done before close returned.
            Backend.Dispose();
            Kick?.Dispose();
            if (Port.Origin is ValePort vp && !vp.Retired) vp.TxSync();
        }
        if (Persistent is not null)
        {
            // Not ours: it stays on its bridge. No sender signals this page after Release.
            Port.Backend = Port.Origin;
            Persistent.Release();
        }
        else Port.Dispose();
        if (ended) Channel.Dispose(); // else the stuck thread may still touch the page: keep it mapped
    }
}
