using System.Text;

namespace HyperNF.Vmm;

/// <summary>
/// A domain's console: what the guest wrote with PUTS. The last <see cref="Capacity"/> bytes
/// are kept; older ones are dropped and counted (<see cref="Dropped"/>), as a Xen console ring
/// overwrites. Readers ask from an offset in the whole stream, so a follower sees each byte once.
/// </summary>
public sealed class GuestConsole
{
    public const int Capacity = 64 << 10;
    private readonly object _gate = new();
    private readonly byte[] _ring = new byte[Capacity];
    private long _written;

    /// <summary>Bytes written since the domain started.</summary>
    public long Written { get { lock (_gate) return _written; } }
    /// <summary>Bytes no longer kept (written more than <see cref="Capacity"/> bytes ago).</summary>
    public long Dropped { get { lock (_gate) return Math.Max(0, _written - Capacity); } }

    public void Append(ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (data.Length > Capacity) { _written += data.Length - Capacity; data = data[^Capacity..]; }
            foreach (byte b in data) _ring[_written++ % Capacity] = b;
        }
    }

    /// <summary>The text written from stream offset <paramref name="from"/> on (or from the oldest byte kept), and the offset to ask from next.</summary>
    public (string Text, long Next) Read(long from = 0)
    {
        lock (_gate)
        {
            long start = Math.Max(from, Math.Max(0, _written - Capacity));
            if (start >= _written) return ("", _written);
            var buf = new byte[_written - start];
            for (long i = start; i < _written; i++) buf[i - start] = _ring[i % Capacity];
            return (Encoding.UTF8.GetString(buf), _written);
        }
    }

    public override string ToString() => Read().Text;
}
