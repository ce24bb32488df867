using HyperNF.Linux;

namespace HyperNF.Tests.Cpu;

/// <summary>A dedicated thread with a known kernel thread id: parked (sleeping) or spinning, optionally pinned.</summary>
internal sealed class TestThread : IDisposable
{
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _started = new();
    private volatile bool _stop;

    public int Tid { get; private set; }

    public TestThread(bool spin, int[]? cpus = null)
    {
        _thread = new Thread(() =>
        {
            Tid = Native.GetTid();
            if (cpus != null) Native.SetAffinity(0, cpus);
            _started.Set();
            long x = 0;
            while (!_stop)
            {
                if (spin) x++;
                else Thread.Sleep(5);
            }
            GC.KeepAlive(x);
        }) { IsBackground = true, Name = spin ? "cpu-test-spin" : "cpu-test-park" };
        _thread.Start();
        _started.Wait();
    }

    /// <summary>CPU time so far (ns), from schedstat.</summary>
    public long CpuNs => CpuTime.ThreadNs(Tid);

    public void Dispose()
    {
        _stop = true;
        _thread.Join(TimeSpan.FromSeconds(5));
    }
}
