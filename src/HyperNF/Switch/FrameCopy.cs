using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace HyperNF.Switch;

/// <summary>
/// The one copy per packet. Like VALE's pkt_copy it copies whole 64-byte lines (the length
/// rounded up): both buffers are 2048 bytes, so the rounded copy never leaves either buffer,
/// and the bytes past the frame end come from the sender's own buffer.
/// </summary>
internal static unsafe class FrameCopy
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Copy(byte* dst, byte* src, uint len)
    {
        uint rounded = (len + 63) & ~63u;
        if (rounded <= 256)
        {
            for (uint o = 0; o < rounded; o += 64)
            {
                Vector256.Store(Vector256.Load(src + o), dst + o);
                Vector256.Store(Vector256.Load(src + o + 32), dst + o + 32);
            }
        }
        else
        {
            Buffer.MemoryCopy(src, dst, rounded, rounded);
        }
    }
}
