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

    /// <summary>pkt-gen's -z/-Z: pick the source and/or destination at random within its range.</summary>
    public bool RandomSource, RandomDestination;

    public void Advance()
    {
        if (RandomSource || RandomDestination)
        {
            var rnd = Random.Shared;
            if (RandomSource)
            {
                SrcIp = (uint)rnd.NextInt64(src.FirstAddress, (long)src.LastAddress + 1);
                SrcPort = (ushort)rnd.Next(src.FirstPort, src.LastPort + 1);
            }
            if (RandomDestination)
            {
                DstIp = (uint)rnd.NextInt64(dst.FirstAddress, (long)dst.LastAddress + 1);
                DstPort = (ushort)rnd.Next(dst.FirstPort, dst.LastPort + 1);
            }
            if (!RandomSource) AdvanceSource();
            else if (!RandomDestination) AdvanceDestination();
            return;
        }
        if (SrcPort < src.LastPort) { SrcPort++; return; }
        SrcPort = src.FirstPort;
        if (SrcIp < src.LastAddress) { SrcIp++; return; }
        SrcIp = src.FirstAddress;
        if (DstPort < dst.LastPort) { DstPort++; return; }
        DstPort = dst.FirstPort;
        if (DstIp < dst.LastAddress) { DstIp++; return; }
        DstIp = dst.FirstAddress;
    }

    private void AdvanceSource()
    {
        if (SrcPort < src.LastPort) { SrcPort++; return; }
        SrcPort = src.FirstPort;
        if (SrcIp < src.LastAddress) SrcIp++;
        else SrcIp = src.FirstAddress;
    }

    private void AdvanceDestination()
    {
        if (DstPort < dst.LastPort) { DstPort++; return; }
        DstPort = dst.FirstPort;
        if (DstIp < dst.LastAddress) DstIp++;
        else DstIp = dst.FirstAddress;
    }
}
