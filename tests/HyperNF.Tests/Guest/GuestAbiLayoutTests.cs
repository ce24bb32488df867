using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using HyperNF.Netmap;
using Xunit;

namespace HyperNF.Tests.Guest;

/// <summary>
/// guest/include/hnf.h against the two other statements of the same contract: the C# ABI
/// constants (<see cref="NetmapAbi"/>, <see cref="NetmapSlot"/>, <see cref="SlotFlags"/>)
/// and docs/guest-abi.md (boot info, hypercall numbers and argument blocks). The offsets
/// come from gcc (offsetof in guest/test/hosttest.c), not from the header's text.
/// </summary>
public sealed partial class GuestAbiLayoutTests
{
    private static readonly Lazy<Dictionary<string, long>> CLayout = new(() =>
        HostTest.Shared.AskLines("offsets").Select(l => l.Split(' ')).ToDictionary(p => p[0], p => long.Parse(p[1], CultureInfo.InvariantCulture)));

    private static long C(string key)
    {
        Assert.True(CLayout.Value.TryGetValue(key, out long v), $"hosttest printed no '{key}'");
        return v;
    }

    [GuestToolchainFact]
    public void Netmap_structures_match_the_csharp_abi()
    {
        (string C, int Cs)[] pairs =
        [
            ("netmap_if.ni_name", NetmapAbi.IfName), ("netmap_if.ni_version", NetmapAbi.IfVersion), ("netmap_if.ni_flags", NetmapAbi.IfFlags),
            ("netmap_if.ni_tx_rings", NetmapAbi.IfTxRings), ("netmap_if.ni_rx_rings", NetmapAbi.IfRxRings),
            ("netmap_if.ni_bufs_head", NetmapAbi.IfBufsHead), ("netmap_if.ni_host_tx_rings", NetmapAbi.IfHostTxRings),
            ("netmap_if.ni_host_rx_rings", NetmapAbi.IfHostRxRings), ("netmap_if.ni_spare1", NetmapAbi.IfSpare),
            ("netmap_if.ring_ofs", NetmapAbi.IfRingOffsets),
            ("netmap_ring.buf_ofs", NetmapAbi.RingBufOffset), ("netmap_ring.num_slots", NetmapAbi.RingNumSlots),
            ("netmap_ring.nr_buf_size", NetmapAbi.RingBufSize), ("netmap_ring.ringid", NetmapAbi.RingId), ("netmap_ring.dir", NetmapAbi.RingDir),
            ("netmap_ring.head", NetmapAbi.RingHead), ("netmap_ring.cur", NetmapAbi.RingCur), ("netmap_ring.tail", NetmapAbi.RingTail),
            ("netmap_ring.flags", NetmapAbi.RingFlags), ("netmap_ring.ts", NetmapAbi.RingTimestamp), ("netmap_ring.sem", NetmapAbi.RingSem),
            ("netmap_ring.slot", NetmapAbi.RingSlots),
            ("netmap_slot.sizeof", NetmapAbi.SlotSize), ("netmap_slot.sizeof", Marshal.SizeOf<NetmapSlot>()),
            ("netmap_slot.buf_idx", (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.BufIdx))),
            ("netmap_slot.len", (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.Len))),
            ("netmap_slot.flags", (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.Flags))),
            ("netmap_slot.ptr", (int)Marshal.OffsetOf<NetmapSlot>(nameof(NetmapSlot.Ptr))),
            ("const.NS_BUF_CHANGED", SlotFlags.BufChanged), ("const.NS_REPORT", SlotFlags.Report),
            ("const.NS_INDIRECT", SlotFlags.Indirect), ("const.NS_MOREFRAG", SlotFlags.MoreFrag),
        ];
        var wrong = pairs.Where(p => C(p.C) != p.Cs).Select(p => $"{p.C}: hnf.h {C(p.C)}, C# {p.Cs}").ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
        Assert.Equal(56, C("netmap_if.ring_ofs")); // netmap API 14 (docs/abi.md)
    }

    [GeneratedRegex(@"^\s*u?int(?:32|64)_t\s+(\w+)(?:\[\d+\])?;\s*/\*\s*(\d+)", RegexOptions.Multiline)]
    private static partial Regex DocStructField();

    [GeneratedRegex(@"^\|\s*(\d+)\s*\|\s*(\w+)\s*\|(.*)\|\s*$", RegexOptions.Multiline)]
    private static partial Regex DocOpRow();

    [GeneratedRegex(@"`[ui](?:8|16|32|64) (\w+)` @(\d+)")]
    private static partial Regex DocBlockField();

    private static string GuestAbiDoc() => File.ReadAllText(Path.Combine(GuestToolchain.RepoRoot, "docs", "guest-abi.md"));

    [GuestToolchainFact]
    public void Boot_info_matches_docs_guest_abi()
    {
        string doc = GuestAbiDoc();
        int start = doc.IndexOf("struct hnf_boot_info {", StringComparison.Ordinal);
        int end = doc.IndexOf("};", start, StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, "docs/guest-abi.md has no struct hnf_boot_info block");
        string block = doc[start..end];
        var fields = DocStructField().Matches(block).Select(m => (m.Groups[1].Value, long.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))).ToList();
        Assert.True(fields.Count >= 17, $"found only {fields.Count} fields in the doc's boot info");
        foreach (var (name, offset) in fields) Assert.True(C($"hnf_boot_info.{name}") == offset, $"boot_info.{name}: hnf.h {C($"hnf_boot_info.{name}")}, doc {offset}");
        var size = Regex.Match(doc[end..], @"/\*\s*(\d+) bytes");
        Assert.True(size.Success, "the doc does not state the boot info's size");
        Assert.Equal(long.Parse(size.Groups[1].Value, CultureInfo.InvariantCulture), C("hnf_boot_info.sizeof"));
        var magic = Regex.Match(block, @"magic;\s*/\*\s*0:\s*0x([0-9A-Fa-f]+)");
        Assert.True(magic.Success, "the doc does not give the magic");
        Assert.Equal(long.Parse(magic.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture), C("const.BOOT_MAGIC"));
    }

    [GuestToolchainFact]
    public void Hypercall_numbers_and_blocks_match_docs_guest_abi()
    {
        var structOf = new Dictionary<string, string>
        {
            ["WALLTIME"] = "hnf_hc_time", ["CLOCK"] = "hnf_hc_time", ["PUTS"] = "hnf_hc_puts", ["POLL"] = "hnf_hc_poll",
            ["EXIT"] = "hnf_hc_exit", ["TXSYNC"] = "hnf_hc_sync", ["RXSYNC"] = "hnf_hc_sync",
        };
        var rows = DocOpRow().Matches(GuestAbiDoc()).ToList();
        Assert.True(rows.Count == structOf.Count, $"expected {structOf.Count} hypercalls in the doc's table, found {rows.Count}");
        foreach (Match row in rows)
        {
            string name = row.Groups[2].Value;
            Assert.True(structOf.ContainsKey(name), $"the doc names hypercall {name}, which hnf.h does not have");
            Assert.True(C($"op.{name}") == long.Parse(row.Groups[1].Value, CultureInfo.InvariantCulture), $"op {name}: hnf.h {C($"op.{name}")}, doc {row.Groups[1].Value}");
            var fields = DocBlockField().Matches(row.Groups[3].Value).ToList();
            Assert.NotEmpty(fields);
            foreach (Match f in fields)
            {
                string key = $"{structOf[name]}.{f.Groups[1].Value}";
                Assert.True(C(key) == long.Parse(f.Groups[2].Value, CultureInfo.InvariantCulture), $"{name} block: {key} is at {C(key)} in hnf.h, @{f.Groups[2].Value} in the doc");
            }
        }
        Assert.Equal(0x500, C("const.PIO_BASE"));
        Assert.Equal(0xFEB00000, C("const.DOORBELL"));
        Assert.Contains("0xFEB00000 + op * 8", GuestAbiDoc());
        Assert.Contains("`outl(gpa, 0x500 + op)`", GuestAbiDoc());
    }
}
