using HyperNF.Switch;

namespace HyperNF.Control;

/// <summary>
/// One netmap interface of a domain (<c>type=nmif</c> in xl's <c>vif=</c> list).
/// </summary>
/// <param name="Index">Position in the config's <c>vif</c> list (xl's devid), counting ignored vifs too.</param>
/// <param name="Port">The xl <c>bridge=</c> value: the VALE port to open, <c>BRIDGE:PORT</c> (e.g. <c>valex:lx0</c>).</param>
/// <param name="Mac">Lower-case <c>aa:bb:cc:dd:ee:ff</c>; generated from the domain name and <paramref name="Index"/> when the config has none.</param>
/// <param name="MacGenerated">True when <paramref name="Mac"/> was generated rather than written in the config.</param>
/// <param name="Script">The xl <c>script=</c> value, if any (HyperNF attaches ports itself and runs no script).</param>
public sealed record VifConfig(int Index, string Port, string Mac, bool MacGenerated = false, string? Script = null)
{
    /// <summary>Bridge part of <see cref="Port"/> (<c>valex</c>).</summary>
    public string BridgeName => Port[..Port.IndexOf(':')];

    /// <summary>Port part of <see cref="Port"/> (<c>lx0</c>).</summary>
    public string PortName => Port[(Port.IndexOf(':') + 1)..];

    /// <summary><see cref="Mac"/> as the forwarding table holds it (first octet in the low byte).</summary>
    public ulong MacValue => ForwardingTable.ParseMac(Mac);
}
