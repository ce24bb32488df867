using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using HyperNF.Hypervisor;
using HyperNF.Linux;

namespace HyperNF.Control;

/// <summary>xl's read ops that describe domains and the host: vcpu-list, info, network-list.</summary>
public sealed partial class ControlDaemon
{
    /// <summary>The thread's state letter and last CPU from /proc/self/task/TID/stat (fields 3 and 39).</summary>
    private static (char State, int Cpu) ThreadStat(int tid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
            int close = stat.LastIndexOf(')'); // the name may hold spaces and parentheses
            var f = stat[(close + 2)..].Split(' ');
            // f[0] is field 3 (state); field 39 (processor) is f[36].
            return (f[0][0], f.Length > 36 && int.TryParse(f[36], NumberStyles.Integer, CultureInfo.InvariantCulture, out int cpu) ? cpu : -1);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ('-', -1);
        }
    }

    private VcpuListResult VcpuList(ControlRequest r)
    {
        r.AllowOnly("domain");
        var domains = r.OptionalString("domain") is { } name ? [FindDomain(name)] : _host.Domains;
        var list = new List<VcpuListEntry>();
        foreach (var d in domains)
        {
            foreach (var v in d.VCpus)
            {
                var (st, cpu) = v.Tid != 0 && !v.Exited ? ThreadStat(v.Tid) : ('-', -1);
                string state = v.Exited || st == '-' ? "-" : d.State == DomainState.Paused ? "p" : st == 'R' ? "r" : "b";
                list.Add(new VcpuListEntry
                {
                    Domain = d.Name, Id = d.Id, Vcpu = v.Index, Cpu = state == "-" ? -1 : cpu, State = state,
                    TimeS = Math.Round(v.Tid != 0 ? Math.Max(0, CpuTime.ThreadNs(v.Tid)) / 1e9 : 0, 3),
                    Affinity = FormatCpus(v.Cpus), Tid = v.Tid,
                });
            }
        }
        return new VcpuListResult { Vcpus = list };
    }

    private HostInfoResult HostInfo(ControlRequest r)
    {
        r.AllowOnly();
        long total = 0, free = 0;
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal)) total = Kb(line) / 1024;
                else if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)) free = Kb(line) / 1024;
            }
        }
        catch (IOException)
        {
        }
        string release = "";
        try { release = File.ReadAllText("/proc/sys/kernel/osrelease").Trim(); } catch (IOException) { }
        return new HostInfoResult
        {
            Host = Environment.MachineName, Release = release, Machine = RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant(),
            NrCpus = Environment.ProcessorCount, TotalMemoryMb = total, FreeMemoryMb = free,
            HypernfVersion = typeof(ControlDaemon).Assembly.GetName().Version?.ToString() ?? "0", Protocol = ControlProtocol.Version,
            Runtime = RuntimeInformation.FrameworkDescription, IoModel = _host.DefaultIoModel.Key(), BridgeBatch = _host.Switch.BridgeBatch,
            CpuControl = _host.CpuPolicy switch
            {
                null => "accounting only (weights and caps recorded, not enforced)",
                HostCpuControl h => h.Controller.Describe(),
                _ => "a custom CPU policy",
            },
            Domains = _host.Domains.Count, Bridges = _host.Switch.Bridges.Count,
            UptimeS = Math.Round(Stopwatch.GetElapsedTime(_startedAt).TotalSeconds, 1),
        };

        static long Kb(string line) =>
            long.TryParse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v : 0;
    }

    private NetworkListResult NetworkList(ControlRequest r)
    {
        r.AllowOnly("domain");
        var d = FindDomain(r.String("domain"));
        var vifs = d.Spec.Vifs.Select((v, i) =>
        {
            int colon = v.Port.IndexOf(':');
            var port = _host.Switch.FindBridge(v.Port[..colon])?.FindPort(v.Port[(colon + 1)..]);
            bool ours = port is not null && d.State is DomainState.Running or DomainState.Paused;
            var s = ours ? port!.GetStatistics() : null;
            return new VifInfo
            {
                Idx = i, Port = v.Port, Mac = v.Mac ?? "-", State = ours ? "attached" : "detached",
                TxPackets = s?.TxPackets ?? 0, RxPackets = s?.RxPackets ?? 0,
            };
        }).ToArray();
        return new NetworkListResult { Domain = d.Name, Id = d.Id, Vifs = vifs };
    }
}
