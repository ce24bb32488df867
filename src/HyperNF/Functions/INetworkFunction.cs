namespace HyperNF.Functions;

/// <summary>What an NF decides for one frame.</summary>
public enum Verdict : byte
{
    /// <summary>Send the frame out of the other port (bump in the wire).</summary>
    Forward = 0,
    /// <summary>Drop the frame (counted by the framework as an NF drop).</summary>
    Drop = 1,
    /// <summary>Send the frame back out of the port it came in on (e.g. an ICMP reply).</summary>
    Reflect = 2,
}

/// <summary>
/// A bump-in-the-wire network function: it sees batches of frames that arrived on one of its
/// two ports (0 and 1), may rewrite them in place (and change their length within the
/// buffer), and gives each a <see cref="Verdict"/>. The framework (HyperNF.Hypervisor.BumpInTheWire)
/// moves forwarded frames to the other port by swapping buffers (zero copy).
/// Implementations keep no per-packet allocation and are called from one vCPU thread at a time.
/// </summary>
public interface INetworkFunction
{
    /// <summary>Short name, as used in <c>nf=</c>.</summary>
    string Name { get; }

    /// <summary>Processes <paramref name="batch"/>; must set a verdict for every frame (default: Forward).</summary>
    void Process(ref FrameBatch batch);

    /// <summary>NF-specific counters (rule hits, translations, expired TTLs ...), for listings.</summary>
    IReadOnlyList<KeyValuePair<string, long>> Counters { get; }
}

/// <summary>
/// A batch of frames handed to an NF. Frame <c>i</c> lives in a full packet buffer
/// (<see cref="Buffer"/>, 2048 bytes); its current length is <see cref="Length"/>.
/// </summary>
public ref struct FrameBatch
{
    internal FrameBatchStorage Storage;

    /// <summary>Port the frames arrived on: 0 or 1.</summary>
    public int InputPort { get; }
    public int Count { get; }

    internal FrameBatch(FrameBatchStorage storage, int inputPort, int count)
    {
        Storage = storage;
        InputPort = inputPort;
        Count = count;
    }

    /// <summary>The whole buffer of frame <paramref name="i"/>.</summary>
    public readonly Span<byte> Buffer(int i) => Storage.Buffer(i);

    /// <summary>The frame bytes (buffer cut to the current length).</summary>
    public readonly Span<byte> Frame(int i) => Storage.Buffer(i)[..Storage.Lengths[i]];

    public readonly int Length(int i) => Storage.Lengths[i];

    /// <summary>Sets the frame's length (0..buffer size), e.g. after adding a header or a tag.</summary>
    public readonly void SetLength(int i, int length)
    {
        if ((uint)length > (uint)Storage.BufferSize) throw new ArgumentOutOfRangeException(nameof(length), length, $"a frame fits in 0..{Storage.BufferSize} bytes");
        Storage.Lengths[i] = (ushort)length;
    }

    public readonly Verdict GetVerdict(int i) => Storage.Verdicts[i];
    public readonly void SetVerdict(int i, Verdict v) => Storage.Verdicts[i] = v;
}

/// <summary>Preallocated arrays behind a <see cref="FrameBatch"/>; reused for every batch.</summary>
public sealed class FrameBatchStorage
{
    public const int MaxBatch = 1024;
    public const int DefaultBufferSize = Memory.RegionLayout.DefaultBufferSize;
    internal readonly ushort[] Lengths = new ushort[MaxBatch];
    internal readonly Verdict[] Verdicts = new Verdict[MaxBatch];
    internal readonly uint[] BufIdx = new uint[MaxBatch];
    internal readonly uint[] SlotIdx = new uint[MaxBatch];
    internal Netmap.NetmapRing Ring;
    private byte[]? _backing;
    private int _count;

    public int BufferSize => _backing is null ? Ring.BufferSize : DefaultBufferSize;

    internal Span<byte> Buffer(int i) =>
        _backing is null ? Ring.Buffer(BufIdx[i]) : _backing.AsSpan(i * DefaultBufferSize, DefaultBufferSize);

    internal void UseRing(Netmap.NetmapRing ring)
    {
        Ring = ring;
        _backing = null;
    }

    /// <summary>
    /// A batch over plain frames, held in this process's memory instead of a ring: for NF unit
    /// tests and offline tools. Read results back with <see cref="FrameAt"/> and <see cref="VerdictAt"/>.
    /// </summary>
    public static FrameBatchStorage FromFrames(IReadOnlyList<byte[]> frames)
    {
        if (frames.Count > MaxBatch) throw new ArgumentOutOfRangeException(nameof(frames), frames.Count, $"at most {MaxBatch} frames per batch");
        var s = new FrameBatchStorage { _backing = new byte[frames.Count * DefaultBufferSize], _count = frames.Count };
        for (int i = 0; i < frames.Count; i++)
        {
            if (frames[i].Length > DefaultBufferSize) throw new ArgumentException($"frame {i} is {frames[i].Length} bytes; a buffer holds {DefaultBufferSize}");
            frames[i].CopyTo(s._backing, i * DefaultBufferSize);
            s.Lengths[i] = (ushort)frames[i].Length;
            s.Verdicts[i] = Verdict.Forward;
        }
        return s;
    }

    /// <summary>A batch over the frames given to <see cref="FromFrames"/>, as arrived on <paramref name="inputPort"/>.</summary>
    public FrameBatch AsBatch(int inputPort) => new(this, inputPort, _count);

    public byte[] FrameAt(int i) => Buffer(i)[..Lengths[i]].ToArray();
    public Verdict VerdictAt(int i) => Verdicts[i];
}
