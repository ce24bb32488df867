namespace HyperNF.Functions;

/// <summary>
/// "l2fwd": forwards every frame unchanged. The baseline NF: what the platform costs with an
/// NF that does no work. Takes no arguments.
/// </summary>
public sealed class L2Forward : INetworkFunction
{
    private long _packets;
    private long _bytes;

    public string Name => "l2fwd";

    public void Process(ref FrameBatch batch)
    {
        long bytes = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            // Set explicitly: the verdict array is reused across batches, so "default" is only a convention.
            batch.SetVerdict(i, Verdict.Forward);
            bytes += batch.Length(i);
        }
        _packets += batch.Count;
        _bytes += bytes;
    }

    public IReadOnlyList<KeyValuePair<string, long>> Counters =>
        [new("packets", _packets), new("bytes", _bytes)];
}
