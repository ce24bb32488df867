namespace HyperNF.Tools;

/// <summary>
/// Walks the source and destination ranges one frame at a time in pkt-gen's order
/// (update_ip): source port fastest, then source address, then destination port, then
/// destination address, so every combination is sent before any repeats.
/// </summary>
internal struct EndpointCursor(EndpointRange src, EndpointRange dst)
{
    public uint SrcIp = src.FirstAddress;
    public ushort SrcPort = src.FirstPort;
    public uint DstIp = dst.FirstAddress;
    public ushort DstPort = dst.FirstPort;

    public void Advance()
    {
        if (SrcPort < src.LastPort) { SrcPort++; return; }
        SrcPort = src.FirstPort;
        if (SrcIp < src.LastAddress) { SrcIp++; return; }
        SrcIp = src.FirstAddress;
        if (DstPort < dst.LastPort) { DstPort++; return; }
        DstPort = dst.FirstPort;
        if (DstIp < dst.LastAddress) { DstIp++; return; }
        DstIp = dst.FirstAddress;
    }
}
