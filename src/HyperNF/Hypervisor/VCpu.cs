using HyperNF.Linux;

namespace HyperNF.Hypervisor;

/// <summary>
/// A virtual CPU: a dedicated thread (never the thread pool), pinned with sched_setaffinity
/// to its CPUs, running the domain's guest. Its kernel thread id is recorded for CPU
/// accounting (schedstat) and for cgroup placement.
/// </summary>
public sealed class VCpu
{
    private readonly Domain _domain;
    private readonly Thread _thread;
    private readonly Action<VCpu>? _body;
    private readonly ManualResetEventSlim _started = new();
    private long _beats;
    private volatile bool _inPause;

    public int Index { get; }
    /// <summary>CPUs this vCPU may run on (empty: any).</summary>
    public IReadOnlyList<int> Cpus { get; private set; }
    /// <summary>Kernel thread id, 0 until the thread has started.</summary>
    public int Tid { get; private set; }
    /// <summary>The CPU the thread reported from inside itself right after pinning.</summary>
    public int ObservedCpu { get; private set; } = -1;
    public bool Exited { get; private set; }
    public long Heartbeats => Interlocked.Read(ref _beats);
    internal bool InPause => _inPause;

    /// <param name="body">What the thread runs instead of the domain's guest (a process port's sync server).</param>
    internal VCpu(Domain domain, int index, IReadOnlyList<int> cpus, Action<VCpu>? body = null)
    {
        _domain = domain;
        _body = body;
        Index = index;
        Cpus = cpus;
        _thread = new Thread(Main) { IsBackground = true, Name = $"{domain.Name}-vcpu{index}" };
    }

    internal void Start()
    {
        _thread.Start();
        _started.Wait();
    }

    internal bool Join(TimeSpan timeout) => _thread.Join(timeout);

    internal void Beat() => Interlocked.Increment(ref _beats);

    internal void SetPaused(bool paused) => _inPause = paused;

    /// <summary>Re-pins the running vCPU (xl vcpu-pin).</summary>
    public void Pin(IReadOnlyList<int> cpus)
    {
        // An empty list unpins: every CPU of the machine.
        int[] set = cpus.Count > 0 ? cpus.ToArray() : Enumerable.Range(0, Environment.ProcessorCount).ToArray();
        if (Tid != 0 && !Exited) Native.SetAffinity(Tid, set);
        Cpus = cpus;
    }

    private void Main()
    {
        try
        {
            Tid = Native.GetTid();
            if (Cpus.Count > 0) Native.SetAffinity(0, Cpus.ToArray());
            ObservedCpu = Native.SchedGetCpu();
        }
        catch (Exception e)
        {
            _started.Set();
            _domain.OnVCpuFault(this, $"vCPU {Index} could not be pinned to CPUs {string.Join(',', Cpus)}: {e.Message}");
            Exited = true;
            return;
        }
        _started.Set();
        try
        {
            if (_body is not null) _body(this);
            else _domain.RunGuest(this);
        }
        catch (OperationCanceledException) when (_domain.Cancellation.IsCancellationRequested)
        {
        }
        catch (HyperNF.Vmm.VmFaultException e)
        {
            _domain.OnVmFault(this, e.Message, e.Registers);
        }
        catch (Exception e)
        {
            _domain.OnVCpuFault(this, $"{e.GetType().Name} on vCPU {Index}: {e.Message}");
        }
        finally
        {
            Exited = true;
            _domain.OnVCpuExit(this);
        }
    }
}
