using System.IO.MemoryMappedFiles;
using CsCheck;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Memory;

/// <summary>The per-domain region: its layout, its formatting, and the memfd behind it.</summary>
public unsafe class DomainMemoryTests
{
    private static readonly Gen<RegionLayout> GenLayout =
        from ports in Gen.Int[1, 254]
        from rings in Gen.Int[1, 16]
        from slotsLog in Gen.Int[3, 12]
        from extra in Gen.Int[0, 65536]
        select new RegionLayout { MaxPorts = ports, RingsPerPort = rings, SlotsPerRing = 1 << slotsLog, ExtraBuffersPerPort = extra };

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "getrusage")]
    private static extern int GetRusage(int who, byte* usage);

    /// <summary>Minor page faults of the calling thread so far (getrusage RUSAGE_THREAD: ru_minflt; no allocation).</summary>
    private static long ThreadMinorFaults()
    {
        byte* usage = stackalloc byte[256]; // struct rusage is 144 bytes on x86_64
        Assert.Equal(0, GetRusage(1, usage)); // RUSAGE_THREAD
        return *(long*)(usage + 64); // after ru_utime, ru_stime (16 bytes each), maxrss, ixrss, idrss, isrss
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static long FaultsWritingEveryBuffer(DomainMemory m)
    {
        long before = ThreadMinorFaults();
        for (uint b = RegionLayout.ReservedBuffers; b < m.BufferCount; b++) *m.BufferAddress(b) = 1;
        return ThreadMinorFaults() - before;
    }

    [Fact]
    public void Populate_allocates_every_page_so_the_first_frame_in_a_buffer_takes_no_page_fault()
    {
        // A fresh region faults at the first write of each page: 4 KiB pages (one fault per two
        // buffers) or, where the kernel grants 2 MiB pages (HugePages.Advise), a few large faults
        // that each allocate and zero 2 MiB. After Populate, none.
        var layout = new RegionLayout { MaxPorts = 1 };
        long lazyFaults, populatedFaults;
        using (var lazy = new DomainMemory(layout, "test-lazy"))
            lazyFaults = FaultsWritingEveryBuffer(lazy);
        using (var populated = new DomainMemory(layout, "test-populated"))
        {
            populated.Populate();
            populatedFaults = FaultsWritingEveryBuffer(populated);
        }
        Assert.True(lazyFaults >= 2, $"a fresh memfd region should fault on first writes: {lazyFaults} faults");
        Assert.True(populatedFaults <= 1, $"after Populate the buffers' pages must be there: {populatedFaults} faults (a fresh region: {lazyFaults})");
    }

    [Fact]
    public void Layout_parts_never_overlap_and_stay_inside_the_region()
    {
        GenLayout.Sample(L =>
        {
            L.Validate();
            Assert.True(L.HeaderBytes >= NetmapAbi.RegPortOffsets + 8 * L.MaxPorts);
            Assert.Equal(0, L.HeaderBytes % RegionLayout.PageSize);
            Assert.Equal(0, L.PortAreaBytes % RegionLayout.PageSize);
            Assert.True(L.InterfaceBytes >= NetmapAbi.IfRingOffsets + 8 * 2 * L.RingsPerPort);
            Assert.True(L.InterfaceBytes + 2 * L.RingsPerPort * L.RingBytes <= L.PortAreaBytes);
            Assert.Equal(L.HeaderBytes, L.PortAreaOffset(0));
            Assert.Equal(L.PortAreaOffset(L.MaxPorts - 1) + L.PortAreaBytes, L.BufferOffset);
            Assert.True(L.BufferOffset + (long)L.BufferCount * L.BufferSize <= L.TotalBytes);
            Assert.Equal(0, L.TotalBytes % RegionLayout.PageSize);
            // each port owns a disjoint range of buffer indices, never 0 or 1
            Assert.Equal(RegionLayout.ReservedBuffers, L.FirstBufferOf(0));
            Assert.Equal(L.BufferCount, L.FirstBufferOf(L.MaxPorts - 1) + L.BuffersPerPort);
            Assert.Equal((uint)(2 * L.RingsPerPort * L.SlotsPerRing + L.ExtraBuffersPerPort), L.BuffersPerPort);
        }, iter: 5000, threads: 1);
    }

    public static TheoryData<RegionLayout> BadLayouts() =>
    [
        new RegionLayout { MaxPorts = 0 }, new RegionLayout { MaxPorts = 255 },
        new RegionLayout { RingsPerPort = 0 }, new RegionLayout { RingsPerPort = 17 },
        new RegionLayout { SlotsPerRing = 4 }, new RegionLayout { SlotsPerRing = 100 }, new RegionLayout { SlotsPerRing = 8192 },
        new RegionLayout { ExtraBuffersPerPort = -1 }, new RegionLayout { ExtraBuffersPerPort = 65537 },
    ];

    [Theory]
    [MemberData(nameof(BadLayouts))]
    public void Bad_layouts_are_refused(RegionLayout layout)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DomainMemory(layout));
        Assert.Throws<ArgumentNullException>(() => new DomainMemory(null!));
    }

    [Fact]
    public void The_region_header_describes_the_region()
    {
        var L = new RegionLayout { MaxPorts = 3, RingsPerPort = 2, SlotsPerRing = 32, ExtraBuffersPerPort = 5 };
        using var mem = new DomainMemory(L, "hdr");
        byte* h = mem.Base;
        Assert.Equal(NetmapAbi.RegionMagic, *(uint*)(h + NetmapAbi.RegMagic));
        Assert.Equal(NetmapAbi.Version, *(uint*)(h + NetmapAbi.RegVersion));
        Assert.Equal(L.TotalBytes, *(long*)(h + NetmapAbi.RegTotalBytes));
        Assert.Equal(2048u, *(uint*)(h + NetmapAbi.RegBufferSize));
        Assert.Equal(L.BufferCount, *(uint*)(h + NetmapAbi.RegBufferCount));
        Assert.Equal(L.BufferOffset, *(long*)(h + NetmapAbi.RegBufferOffset));
        Assert.Equal(3u, *(uint*)(h + NetmapAbi.RegMaxPorts));
        Assert.Equal(2u, *(uint*)(h + NetmapAbi.RegRingsPerPort));
        Assert.Equal(32u, *(uint*)(h + NetmapAbi.RegSlotsPerRing));
        Assert.Equal(L.TotalBytes, mem.Size);
        for (int p = 0; p < 3; p++) Assert.Equal(0, *(long*)(h + NetmapAbi.RegPortOffsets + 8 * p)); // no port open yet
    }

    [Fact]
    public void An_opened_port_area_is_formatted_as_netmap_expects()
    {
        var L = new RegionLayout { MaxPorts = 2, RingsPerPort = 2, SlotsPerRing = 16, ExtraBuffersPerPort = 6 };
        var sw = new ValeSwitch();
        using var mem = new DomainMemory(L, "fmt");
        using var first = sw.OpenPort("valefmt:first", mem);
        using var port = sw.OpenPort("valefmt:second", mem);
        Assert.Equal(1, port.Area);
        Assert.Equal(L.PortAreaOffset(1), *(long*)(mem.Base + NetmapAbi.RegPortOffsets + 8));
        byte* nif = mem.Base + L.PortAreaOffset(1);
        Assert.Equal("valefmt:second", System.Text.Encoding.UTF8.GetString(new ReadOnlySpan<byte>(nif, NetmapAbi.IfNameLength)).TrimEnd('\0'));
        Assert.Equal(2u, *(uint*)(nif + NetmapAbi.IfTxRings));
        Assert.Equal(2u, *(uint*)(nif + NetmapAbi.IfRxRings));

        uint firstBuf = L.FirstBufferOf(1), endBuf = firstBuf + L.BuffersPerPort;
        var seen = new HashSet<uint>();
        for (int r = 0; r < 4; r++)
        {
            bool tx = r < 2;
            var ring = tx ? port.TxRing(r) : port.RxRing(r - 2);
            byte* raw = nif + *(long*)(nif + NetmapAbi.IfRingOffsets + 8 * r);
            Assert.Equal(tx, ring.IsTx);
            Assert.Equal((ushort)(r % 2), ring.RingId);
            Assert.Equal(16u, ring.NumSlots);
            Assert.Equal(16u, *(uint*)(raw + NetmapAbi.RingNumSlots));
            Assert.True(mem.Base + L.BufferOffset == raw + *(long*)(raw + NetmapAbi.RingBufOffset)); // netmap NETMAP_BUF arithmetic
            Assert.Equal((0u, 0u, tx ? 15u : 0u), (ring.Head, ring.Cur, ring.Tail));
            for (uint s = 0; s < 16; s++)
            {
                var slot = ring.Slot(s);
                Assert.InRange(slot.BufIdx, firstBuf, endBuf - 1);
                Assert.True(seen.Add(slot.BufIdx));
                Assert.Equal((0, 0), (slot.Len, slot.Flags));
            }
        }
        // the spare buffers are chained from bufs_head through their first four bytes, ending with 0
        uint next = port.ExtraBuffersHead;
        int count = 0;
        while (next != 0)
        {
            Assert.InRange(next, firstBuf, endBuf - 1);
            Assert.True(seen.Add(next));
            count++;
            next = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(port.TxRing(0).Buffer(next));
        }
        Assert.Equal(6, count);
        Assert.Equal((int)L.BuffersPerPort, seen.Count);
    }

    [Fact]
    public void Closing_a_port_clears_its_area_and_its_entry_in_the_header()
    {
        var sw = new ValeSwitch();
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 1, SlotsPerRing = 8 });
        var port = sw.OpenPort("valecl:p", mem);
        port.TxRing(0).Head = 3;
        port.Dispose();
        Assert.True(port.IsClosed);
        Assert.Equal(0, *(long*)(mem.Base + NetmapAbi.RegPortOffsets));
        var area = new ReadOnlySpan<byte>(mem.Base + mem.Layout.PortAreaOffset(0), (int)mem.Layout.PortAreaBytes);
        Assert.True(area.IndexOfAnyExcept((byte)0) < 0);
        Assert.Empty(sw.FindBridge("valecl")!.Ports);
    }

    [Fact]
    public void The_memfd_maps_the_same_pages_for_another_mapping()
    {
        using var mem = new DomainMemory(new RegionLayout { MaxPorts = 1, SlotsPerRing = 8 }, "shared");
        Assert.True(mem.FileDescriptor >= 0);
        using var mmf = MemoryMappedFile.CreateFromFile($"/proc/self/fd/{mem.FileDescriptor}", FileMode.Open, null, 0, MemoryMappedFileAccess.ReadWrite);
        using var view = mmf.CreateViewAccessor(0, mem.Size, MemoryMappedFileAccess.ReadWrite);
        Assert.Equal(NetmapAbi.RegionMagic, view.ReadUInt32(NetmapAbi.RegMagic));
        // a write through either mapping is seen through the other
        long buf5 = mem.Layout.BufferOffset + 5 * 2048;
        mem.Base[buf5] = 0x5A;
        Assert.Equal(0x5A, view.ReadByte(buf5));
        view.Write(buf5 + 1, (byte)0xA5);
        Assert.Equal(0xA5, mem.Base[buf5 + 1]);
    }

    [Fact]
    public void Dispose_is_refused_while_a_port_is_open_then_idempotent()
    {
        var sw = new ValeSwitch();
        var mem = new DomainMemory(new RegionLayout { MaxPorts = 1, SlotsPerRing = 8 });
        var port = sw.OpenPort("valedm:p", mem);
        var e = Assert.Throws<InvalidOperationException>(() => mem.Dispose());
        Assert.Contains("valedm:p", e.Message);
        Assert.NotEqual(-1, mem.FileDescriptor); // still mapped: senders may still deliver into it
        port.Dispose();
        Assert.Empty(sw.FindBridge("valedm")!.Ports);
        mem.Dispose();
        mem.Dispose();
        Assert.Equal(-1, mem.FileDescriptor);
        Assert.Throws<ObjectDisposedException>(() => sw.OpenPort("valedm:q", mem));
    }

    [HugePagesFact]
    public void A_region_is_mapped_with_2_MiB_pages_where_the_kernel_grants_them()
    {
        var layout = new RegionLayout { MaxPorts = 4, RingsPerPort = 1, SlotsPerRing = 1024 };
        Assert.True(layout.TotalBytes >= 4 * HyperNF.Linux.HugePages.Size, $"the test needs a region of several MiB, not {layout.TotalBytes}");
        using var m = new DomainMemory(layout, "hugetest");
        // Touch every page: shared memory is allocated at the first touch, 2 MiB at a time when granted.
        for (long off = 0; off < layout.TotalBytes; off += 4096) m.Base[off] = 1;
        long pmd = HyperNF.Linux.HugePages.PmdMappedBytes((nint)m.Base);
        Assert.True(pmd >= 2 * HyperNF.Linux.HugePages.Size, $"only {pmd} bytes of the {layout.TotalBytes}-byte region are on 2 MiB pages");
    }
}

/// <summary>Skips where shared memory cannot get transparent huge pages (no THP, or shmem_enabled=never and not root).</summary>
public sealed class HugePagesFactAttribute : FactAttribute
{
    public HugePagesFactAttribute()
    {
        string how = HyperNF.Linux.HugePages.Prepare();
        if (!HyperNF.Linux.HugePages.RegionsGetThem) Skip = $"no 2 MiB pages for shared memory here ({how}); as root hypernf enables them";
    }
}
