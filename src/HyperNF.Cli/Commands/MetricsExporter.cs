using System.Net;
using System.Net.Sockets;
using HyperNF.Control;
using HyperNF.Hypervisor;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace HyperNF.Cli.Commands;

/// <summary>
/// <c>hypernf daemon --metrics ADDR:PORT</c>: the daemon's <see cref="DaemonMetrics"/> exported
/// in Prometheus' text format at http://ADDR:PORT/metrics by OpenTelemetry's Prometheus
/// exporter (its own HttpListener; no hand-written exposition format).
/// </summary>
internal sealed class MetricsExporter : IDisposable
{
    private readonly DaemonMetrics _metrics;
    private readonly MeterProvider _provider;

    public string Url { get; }

    private MetricsExporter(DaemonMetrics metrics, MeterProvider provider, string url)
    {
        _metrics = metrics;
        _provider = provider;
        Url = url;
    }

    /// <summary>Null when <paramref name="endpoint"/> is null, or when it cannot serve (then <paramref name="error"/> says why).</summary>
    public static MetricsExporter? Start(string? endpoint, Host host, out string? error)
    {
        error = null;
        if (endpoint is null) return null;
        if (!IPEndPoint.TryParse(endpoint, out var ep) || ep.Port == 0 || !endpoint.Contains(':'))
        {
            error = $"--metrics {endpoint}: write ADDR:PORT with an IP address and a port, e.g. 127.0.0.1:9464 or [::1]:9464";
            return null;
        }
        // Fail now, with a clear reason, rather than inside the exporter's listener thread.
        try
        {
            using var probe = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(ep);
        }
        catch (SocketException e)
        {
            error = e.SocketErrorCode == SocketError.AddressAlreadyInUse
                ? $"--metrics {endpoint}: port {ep.Port} is already in use; choose another"
                : $"--metrics {endpoint}: cannot listen there: {e.Message}";
            return null;
        }
        string prefix = ep.AddressFamily == AddressFamily.InterNetworkV6 ? $"http://[{ep.Address}]:{ep.Port}/" : $"http://{ep.Address}:{ep.Port}/";
        var metrics = new DaemonMetrics(host);
        try
        {
            var provider = Sdk.CreateMeterProviderBuilder()
                .ConfigureResource(r => r.AddService("hypernf"))
                .AddMeter(DaemonMetrics.MeterName)
                .AddPrometheusHttpListener(o =>
                {
                    o.Host = ep.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ep.Address}]" : ep.Address.ToString();
                    o.Port = ep.Port;
                })
                .Build();
            return new MetricsExporter(metrics, provider, prefix + "metrics");
        }
        catch (Exception e) when (e is HttpListenerException or InvalidOperationException)
        {
            metrics.Dispose();
            error = $"--metrics {endpoint}: cannot serve metrics there: {e.Message}";
            return null;
        }
    }

    public void Dispose()
    {
        _provider.Dispose();
        _metrics.Dispose();
    }
}
