using System.Buffers.Binary;

namespace HyperNF.Vmm;

/// <summary>
/// A guest image: an ELF64 <c>ET_EXEC</c> for <c>EM_X86_64</c>, little-endian, whose
/// <c>PT_LOAD</c> segments are copied to their physical addresses (at or above
/// <see cref="GuestAbi.ImageBase"/>) and zero-filled up to their memory size, as Solo5's
/// loader does. Everything is checked against the file and against guest RAM before a byte is
/// copied: a malformed image is an <see cref="InvalidDataException"/> naming what is wrong.
/// </summary>
public sealed class ElfImage
{
    public sealed record Segment(ulong Address, ulong FileOffset, ulong FileSize, ulong MemorySize, bool Executable);

    private readonly byte[] _file;

    public string Path { get; }
    public ulong Entry { get; }
    public IReadOnlyList<Segment> Segments { get; }
    /// <summary>First byte after the last segment, rounded up to a page: where the heap starts.</summary>
    public ulong End { get; }

    private ElfImage(string path, byte[] file, ulong entry, List<Segment> segments)
    {
        Path = path;
        _file = file;
        Entry = entry;
        Segments = segments;
        ulong end = segments.Max(s => s.Address + s.MemorySize);
        End = (end + GuestAbi.PageSize - 1) & ~(GuestAbi.PageSize - 1);
    }

    public static ElfImage Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InvalidDataException($"kernel '{path}': {e.Message}", e); }
        return Parse(bytes, path);
    }

    public static ElfImage Parse(byte[] f, string path)
    {
        string Bad(string why) => $"kernel '{path}' is not a usable guest image: {why}";
        if (f.Length < 64 || f[0] != 0x7F || f[1] != (byte)'E' || f[2] != (byte)'L' || f[3] != (byte)'F') throw new InvalidDataException(Bad("no ELF header"));
        if (f[4] != 2) throw new InvalidDataException(Bad("not ELF64"));
        if (f[5] != 1) throw new InvalidDataException(Bad("not little-endian"));
        var h = f.AsSpan();
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(h[16..]);
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(h[18..]);
        if (type != 2) throw new InvalidDataException(Bad($"ELF type {type}, need ET_EXEC (2): link with -static -no-pie"));
        if (machine != 62) throw new InvalidDataException(Bad($"machine {machine}, need EM_X86_64 (62)"));
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(h[24..]);
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(h[32..]);
        ushort phentsize = BinaryPrimitives.ReadUInt16LittleEndian(h[54..]);
        ushort phnum = BinaryPrimitives.ReadUInt16LittleEndian(h[56..]);
        if (phentsize != 56) throw new InvalidDataException(Bad($"program header size {phentsize}, need 56"));
        if (phnum is 0 or > 64) throw new InvalidDataException(Bad($"{phnum} program headers (1..64)"));
        if (phoff > (ulong)f.Length || (ulong)phnum * 56 > (ulong)f.Length - phoff) throw new InvalidDataException(Bad("program headers outside the file"));
        var segs = new List<Segment>();
        for (int i = 0; i < phnum; i++)
        {
            var p = h[(int)(phoff + (ulong)i * 56)..];
            uint ptype = BinaryPrimitives.ReadUInt32LittleEndian(p);
            if (ptype != 1) continue; // PT_LOAD only
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
            ulong off = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(p[40..]);
            if (memsz == 0) continue;
            if (filesz > memsz) throw new InvalidDataException(Bad($"segment {i}: file size {filesz} > memory size {memsz}"));
            if (off > (ulong)f.Length || filesz > (ulong)f.Length - off) throw new InvalidDataException(Bad($"segment {i}: bytes outside the file"));
            if (paddr < GuestAbi.ImageBase) throw new InvalidDataException(Bad($"segment {i} at 0x{paddr:x}, below 0x{GuestAbi.ImageBase:x} (use the SDK's linker script)"));
            if (paddr > (ulong)GuestAbi.MaxMemoryMb << 20 || memsz > (ulong)GuestAbi.MaxMemoryMb << 20) throw new InvalidDataException(Bad($"segment {i} at 0x{paddr:x} + {memsz} is beyond the largest guest RAM"));
            segs.Add(new Segment(paddr, off, filesz, memsz, (flags & 1) != 0));
        }
        if (segs.Count == 0) throw new InvalidDataException(Bad("no PT_LOAD segment"));
        if (!segs.Any(s => s.Executable && entry >= s.Address && entry < s.Address + s.MemorySize))
            throw new InvalidDataException(Bad($"entry point 0x{entry:x} is not inside an executable segment"));
        return new ElfImage(path, f, entry, segs);
    }

    /// <summary>Copies the segments into guest RAM (<paramref name="ram"/> is RAM from GPA 0); checks that they fit below <paramref name="limit"/>.</summary>
    public void CopyTo(Span<byte> ram, ulong limit)
    {
        foreach (var s in Segments)
        {
            if (s.Address + s.MemorySize > limit)
                throw new InvalidDataException($"kernel '{Path}': segment at 0x{s.Address:x} + {s.MemorySize} bytes does not fit in {limit >> 20} MB of guest RAM (with its stack); raise memory=");
            _file.AsSpan((int)s.FileOffset, (int)s.FileSize).CopyTo(ram[(int)s.Address..]);
            ram.Slice((int)(s.Address + s.FileSize), (int)(s.MemorySize - s.FileSize)).Clear();
        }
    }
}
