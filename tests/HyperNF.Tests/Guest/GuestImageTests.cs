using System.Buffers.Binary;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace HyperNF.Tests.Guest;

/// <summary>
/// The guest images (artifacts/guest/*.elf, built by the .NET build through guest/Makefile):
/// they build from a clean tree, are what the VMM's loader accepts (ELF64, ET_EXEC,
/// EM_X86_64, PT_LOAD at or above 1 MiB, no relocations, nothing dynamic) and contain no
/// SSE/MMX/x87 instruction (ring 0 on PVM emulates guest code and fails on them).
/// </summary>
public sealed partial class GuestImageTests(ITestOutputHelper output)
{
    [GuestToolchainFact]
    public void Images_build_from_a_clean_tree_with_the_makefile()
    {
        string outDir = GuestToolchain.TempDir("build");
        try
        {
            var r = GuestToolchain.Run("make", ["-s", "-j2", "-C", GuestToolchain.GuestDir, "OUT=" + outDir]);
            Assert.True(r.ExitCode == 0, $"make -C guest failed:\n{r.All}");
            foreach (string name in GuestToolchain.Images)
            {
                string path = Path.Combine(outDir, name + ".elf");
                Assert.True(File.Exists(path), $"{name}.elf was not built");
                CheckElf(path);
            }
            // Incremental: a second make has nothing to do.
            var again = GuestToolchain.Run("make", ["-C", GuestToolchain.GuestDir, "OUT=" + outDir]);
            Assert.Equal(0, again.ExitCode);
            Assert.DoesNotContain("CC ", again.Stdout);
            Assert.DoesNotContain("LD ", again.Stdout);
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    [GuestToolchainFact]
    public void A_missing_compiler_is_a_clear_error()
    {
        string outDir = GuestToolchain.TempDir("nogcc");
        try
        {
            var r = GuestToolchain.Run("make", ["-C", GuestToolchain.GuestDir, "OUT=" + outDir, "GUEST_CC=guest-sdk-no-such-gcc"]);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("'guest-sdk-no-such-gcc' not found", r.All);
            Assert.Contains("build-essential", r.All);
            Assert.Empty(Directory.GetFiles(outDir, "*.elf"));
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    [GuestToolchainFact]
    public void Built_images_are_static_x86_64_executables_at_one_mebibyte()
    {
        foreach (string name in GuestToolchain.Images) CheckElf(GuestToolchain.Image(name));
    }

    private void CheckElf(string path)
    {
        byte[] f = File.ReadAllBytes(path);
        string n = Path.GetFileName(path);
        Assert.True(f.Length > 64 && f[0] == 0x7f && f[1] == (byte)'E' && f[2] == (byte)'L' && f[3] == (byte)'F', $"{n}: not an ELF file");
        Assert.True(f[4] == 2, $"{n}: not ELF64 (class {f[4]})");
        Assert.True(f[5] == 1, $"{n}: not little-endian");
        ushort type = U16(f, 16), machine = U16(f, 18);
        Assert.True(type == 2, $"{n}: e_type {type}, want ET_EXEC (2)");
        Assert.True(machine == 62, $"{n}: e_machine {machine}, want EM_X86_64 (62)");
        ulong entry = U64(f, 24), phoff = U64(f, 32), shoff = U64(f, 40);
        ushort phentsize = U16(f, 54), phnum = U16(f, 56), shentsize = U16(f, 58), shnum = U16(f, 60);
        int loads = 0;
        bool entryInText = false;
        ulong end = 0;
        for (int i = 0; i < phnum; i++)
        {
            int o = (int)phoff + i * phentsize;
            uint ptype = U32(f, o), flags = U32(f, o + 4);
            ulong vaddr = U64(f, o + 16), paddr = U64(f, o + 24), filesz = U64(f, o + 32), memsz = U64(f, o + 40);
            Assert.True(ptype is not (2 or 3), $"{n}: has a {(ptype == 2 ? "PT_DYNAMIC" : "PT_INTERP")} segment");
            if (ptype != 1) continue;
            loads++;
            Assert.True(paddr >= 0x100000 && vaddr == paddr, $"{n}: PT_LOAD {i} at vaddr 0x{vaddr:x} paddr 0x{paddr:x}; want identity-mapped at >= 0x100000");
            Assert.True(filesz <= memsz, $"{n}: PT_LOAD {i} filesz > memsz");
            Assert.False((flags & 2) != 0 && (flags & 1) != 0, $"{n}: PT_LOAD {i} is writable and executable");
            if ((flags & 1) != 0 && entry >= vaddr && entry < vaddr + memsz) entryInText = true;
            end = Math.Max(end, paddr + memsz);
        }
        Assert.True(loads >= 1, $"{n}: no PT_LOAD segment");
        Assert.True(entryInText, $"{n}: entry 0x{entry:x} is not inside an executable PT_LOAD");
        Assert.True(entry == 0x100000, $"{n}: entry 0x{entry:x}; the start stub must come first (0x100000)");
        // The default domain RAM is 16 MiB; an image must leave room for heap and stack.
        Assert.True(end < 0x100000 + (4 << 20), $"{n}: image ends at 0x{end:x}, more than 4 MiB above its base");
        for (int i = 0; i < shnum; i++)
        {
            uint stype = U32(f, (int)shoff + i * shentsize + 4);
            Assert.True(stype is not (4 or 9 or 6 or 11), $"{n}: section {i} is of type {stype} (RELA/REL/DYNAMIC/DYNSYM): a guest image is fully linked");
        }
        output.WriteLine($"{n}: entry 0x{entry:x}, {loads} PT_LOAD, ends at 0x{end:x}");
    }

    private static ushort U16(byte[] b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(o));
    private static uint U32(byte[] b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(o));
    private static ulong U64(byte[] b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(o));

    [GuestToolchainFact]
    public void Images_have_no_relocations_by_readelf()
    {
        foreach (string name in GuestToolchain.Images)
        {
            var r = GuestToolchain.Run("readelf", ["-r", GuestToolchain.Image(name)]);
            Assert.Equal(0, r.ExitCode);
            Assert.Contains("There are no relocations in this file", r.Stdout);
        }
    }

    // Registers of SSE/AVX/AVX-512, MMX and x87, and the instructions that touch that state without naming a register.
    [GeneratedRegex(@"%(?:[xyz]mm\d+|mm[0-7]|st\b|st\(\d\)|k[0-7]\b)|\b(?:fxsave|fxrstor|xsave\w*|xrstor\w*|ldmxcsr|stmxcsr|emms|fninit|finit|fld\w*|fst\w*|fist\w*|fnst\w*|fwait)\b")]
    private static partial Regex FpuOrVector();

    /// <summary>Instructions (objdump lines) that use SSE/MMX/x87 state.</summary>
    private static List<string> VectorInstructions(string objdump) =>
        objdump.Split('\n').Where(l => l.Contains(":\t") && FpuOrVector().IsMatch(l.Split('\t').Last())).ToList();

    [GuestToolchainFact]
    public void Images_contain_no_sse_mmx_or_x87_instruction()
    {
        foreach (string name in GuestToolchain.Images)
        {
            var r = GuestToolchain.Run("objdump", ["-d", "--no-show-raw-insn", GuestToolchain.Image(name)]);
            Assert.Equal(0, r.ExitCode);
            int instructions = r.Stdout.Split('\n').Count(l => l.Contains(":\t"));
            Assert.True(instructions > 1000, $"{name}: objdump showed only {instructions} instructions; the check would be empty");
            var bad = VectorInstructions(r.Stdout);
            Assert.True(bad.Count == 0, $"{name}: {bad.Count} SSE/MMX/x87 instruction(s), e.g.\n{string.Join('\n', bad.Take(5))}");
            output.WriteLine($"{name}: {instructions} instructions, none SSE/MMX/x87");
        }
    }

    [GuestToolchainFact]
    public void The_vector_check_finds_sse_when_it_is_there()
    {
        // The negative control: code gcc vectorises when allowed to must be caught by the same check.
        string dir = GuestToolchain.TempDir("sse");
        try
        {
            string c = Path.Combine(dir, "v.c"), o = Path.Combine(dir, "v.o");
            File.WriteAllText(c, "double dot(const double *a, const double *b, int n) { double s = 0; for (int i = 0; i < n; i++) s += a[i] * b[i]; return s; }\n" +
                                 "void add(int *a, const int *b) { for (int i = 0; i < 64; i++) a[i] += b[i]; }\n");
            var cc = GuestToolchain.Run("gcc", ["-O3", "-m64", "-msse2", "-c", c, "-o", o]);
            Assert.True(cc.ExitCode == 0, cc.All);
            var d = GuestToolchain.Run("objdump", ["-d", "--no-show-raw-insn", o]);
            Assert.NotEmpty(VectorInstructions(d.Stdout));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
