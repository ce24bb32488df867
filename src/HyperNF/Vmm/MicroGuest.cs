using System.Buffers.Binary;
using System.Text;

namespace HyperNF.Vmm;

/// <summary>
/// Guest images written directly as x86-64 machine code, for what needs no C: the hypercall
/// round-trip benchmark (a loop of CLOCK hypercalls) and VMM bring-up checks. Each image is a
/// minimal ELF64 ET_EXEC with one RWX PT_LOAD at 0x100000: code at the start, data (argument
/// blocks, strings) at +0x1000. The code follows the guest ABI: the hypercall transport is
/// fixed when the image is built (PIO for ring 0, the MMIO doorbell for ring 3). Real NFs are
/// built with the C guest SDK (guest/).
/// </summary>
public sealed class MicroGuest
{
    public const ulong Code = GuestAbi.ImageBase, Data = GuestAbi.ImageBase + 0x1000;
    private readonly List<byte> _code = [];
    private readonly byte[] _data = new byte[0x1000];
    private readonly int _ring;

    public MicroGuest(int ring)
    {
        if (ring is not (0 or 3)) throw new ArgumentOutOfRangeException(nameof(ring), ring, "0 or 3");
        _ring = ring;
    }

    /// <summary>The image for the machine's ring.</summary>
    public static MicroGuest ForPlatform() => new(KvmPlatform.Current.Ring);

    public int CodeSize => _code.Count;

    private MicroGuest Emit(params byte[] b) { _code.AddRange(b); return this; }

    private static byte[] U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }
    private static byte[] U64(ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); return b; }

    /// <summary>Puts <paramref name="bytes"/> at data offset <paramref name="offset"/>; returns its GPA.</summary>
    public ulong Put(int offset, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(_data.AsSpan(offset));
        return Data + (ulong)offset;
    }

    public ulong PutU64(int offset, ulong v) => Put(offset, U64(v));
    public ulong PutU32(int offset, uint v) => Put(offset, U32(v));

    /// <summary>mov rbx, imm64.</summary>
    public MicroGuest MovRbx(ulong v) => Emit(0x48, 0xBB).Emit(U64(v));
    /// <summary>mov eax, imm32.</summary>
    public MicroGuest MovEax(uint v) => Emit(0xB8).Emit(U32(v));
    /// <summary>mov ecx, imm32.</summary>
    public MicroGuest MovEcx(uint v) => Emit(0xB9).Emit(U32(v));
    /// <summary>mov [rbx], eax.</summary>
    public MicroGuest StoreEaxAtRbx() => Emit(0x89, 0x03);
    /// <summary>mov eax, [rbx].</summary>
    public MicroGuest LoadEaxFromRbx() => Emit(0x8B, 0x03);
    /// <summary>jmp $ (spins forever).</summary>
    public MicroGuest SpinForever() => Emit(0xEB, 0xFE);
    /// <summary>ud2 (an invalid-opcode exception; with no IDT, a triple fault).</summary>
    public MicroGuest Ud2() => Emit(0x0F, 0x0B);
    /// <summary>hlt.</summary>
    public MicroGuest Hlt() => Emit(0xF4);

    /// <summary>The hypercall <paramref name="op"/> with the argument block at <paramref name="block"/> (any 32-bit value: the VMM checks it).</summary>
    public MicroGuest Hypercall(int op, uint block)
    {
        if (_ring == 0) return Emit(0xBA).Emit(U32(GuestAbi.PioBase + (uint)op)).MovEax(block).Emit(0xEF); // mov edx, port; mov eax, gpa; out dx, eax
        return MovRbx(GuestAbi.DoorbellGpa + 8UL * (uint)op).MovEax(block).StoreEaxAtRbx();
    }

    /// <summary>Appends <paramref name="text"/> to the console with PUTS (block and text in the data page at <paramref name="offset"/>).</summary>
    public MicroGuest Puts(string text, int offset)
    {
        byte[] t = Encoding.UTF8.GetBytes(text);
        ulong s = Put(offset + 16, t);
        PutU64(offset, s);
        PutU64(offset + 8, (ulong)t.Length);
        return Hypercall(GuestAbi.OpPuts, (uint)(Data + (ulong)offset));
    }

    /// <summary>EXIT with <paramref name="status"/> (its block at data <paramref name="offset"/>).</summary>
    public MicroGuest Exit(int status, int offset)
    {
        PutU32(offset, (uint)status);
        return Hypercall(GuestAbi.OpExit, (uint)(Data + (ulong)offset));
    }

    /// <summary>Repeats what <paramref name="body"/> emits <paramref name="count"/> times (ecx counts; the body must keep ecx).</summary>
    public MicroGuest Loop(uint count, Action<MicroGuest> body)
    {
        MovEcx(count);
        int top = _code.Count;
        body(this);
        Emit(0xFF, 0xC9); // dec ecx
        int rel = top - (_code.Count + 6);
        return Emit(0x0F, 0x85).Emit(U32((uint)rel)); // jnz top (rel32)
    }

    /// <summary>The ELF image bytes.</summary>
    public byte[] Build()
    {
        if (_code.Count > 0x1000) throw new InvalidOperationException("micro guest code is limited to 4 KiB");
        const int ehdr = 64, phdr = 56, fileOff = 0x1000;
        var f = new byte[fileOff + 0x2000];
        var s = f.AsSpan();
        s[0] = 0x7F; s[1] = (byte)'E'; s[2] = (byte)'L'; s[3] = (byte)'F';
        s[4] = 2; s[5] = 1; s[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(s[16..], 2);   // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(s[18..], 62);  // EM_X86_64
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], Code);
        BinaryPrimitives.WriteUInt64LittleEndian(s[32..], ehdr);
        BinaryPrimitives.WriteUInt16LittleEndian(s[52..], ehdr);
        BinaryPrimitives.WriteUInt16LittleEndian(s[54..], phdr);
        BinaryPrimitives.WriteUInt16LittleEndian(s[56..], 1);
        var p = s[ehdr..];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 1);         // PT_LOAD
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 7);    // RWX
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], fileOff);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], Code);
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], Code);
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], 0x2000);
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], 0x2000);
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], 0x1000);
        _code.ToArray().CopyTo(s[fileOff..]);
        _data.CopyTo(s[(fileOff + 0x1000)..]);
        return f;
    }

    /// <summary>Writes the image to <paramref name="path"/> and returns the path.</summary>
    public string WriteTo(string path)
    {
        File.WriteAllBytes(path, Build());
        return path;
    }
}
