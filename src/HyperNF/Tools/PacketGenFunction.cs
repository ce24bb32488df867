namespace HyperNF.Tools;

/// <summary>What a <see cref="PacketGenerator"/> does (pkt-gen's <c>-f</c>).</summary>
public enum PacketGenFunction
{
    /// <summary>Send generated frames (<c>-f tx</c>).</summary>
    Tx,
    /// <summary>Receive and check frames (<c>-f rx</c>).</summary>
    Rx,
    /// <summary>Send one stamped frame, wait for its echo, measure the round trip (<c>-f ping</c>).</summary>
    Ping,
    /// <summary>Echo every frame back to its sender (<c>-f pong</c>).</summary>
    Pong,
}
