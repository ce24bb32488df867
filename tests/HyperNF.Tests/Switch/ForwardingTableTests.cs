using CsCheck;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>The learning table on its own, with explicit clock values.</summary>
public class ForwardingTableTests
{
    /// <summary>netmap's nm_bridge_rthash, written from the C source, over the address bytes.</summary>
    private static uint NetmapHash(ReadOnlySpan<byte> addr)
    {
        uint a = 0x9e3779b9, b = 0x9e3779b9, c = 0;
        b += (uint)addr[5] << 8;
        b += addr[4];
        a += (uint)addr[3] << 24;
        a += (uint)addr[2] << 16;
        a += (uint)addr[1] << 8;
        a += addr[0];
        a -= b; a -= c; a ^= (c >> 13);
        b -= c; b -= a; b ^= (a << 8);
        c -= a; c -= b; c ^= (b >> 13);
        a -= b; a -= c; a ^= (c >> 12);
        b -= c; b -= a; b ^= (a << 16);
        c -= a; c -= b; c ^= (b >> 5);
        a -= b; a -= c; a ^= (c >> 3);
        b -= c; b -= a; b ^= (a << 10);
        c -= a; c -= b; c ^= (b >> 15);
        return c;
    }

    [Fact]
    public void Hash_is_netmaps_bucket_function()
    {
        Gen.Byte.Array[6].Sample(mac =>
            Assert.Equal(NetmapHash(mac) & 1023, ForwardingTable.Hash(Macs.ToTable(mac)) & 1023), iter: 10_000, threads: 1);
    }

    [Fact]
    public void Lookup_hits_what_was_learned_and_misses_everything_else()
    {
        var t = new ForwardingTable(1024, agingSeconds: 0);
        ulong x = Macs.ToTable(Macs.Unicast(1)), y = Macs.ToTable(Macs.Unicast(2));
        Assert.Equal(ForwardingTable.Broadcast, t.Lookup(x, 0));
        t.Learn(x, 0, 5);
        t.Learn(y, 253, 5);
        Assert.Equal(0, t.Lookup(x, 5));
        Assert.Equal(253, t.Lookup(y, 5));
        Assert.Equal(ForwardingTable.Broadcast, t.Lookup(Macs.ToTable(Macs.Unicast(3)), 5));
        Assert.Equal(2, t.Occupancy);
        t.Learn(x, 7, 6); // moved
        Assert.Equal(7, t.Lookup(x, 6));
        Assert.Equal(2, t.Occupancy);
    }

    [Fact]
    public void Entries_expire_after_the_aging_time_in_clock_units()
    {
        var t = new ForwardingTable(1024, agingSeconds: 10);
        uint units = 10_000 / 1024; // 9 units of 1.024 s
        ulong x = Macs.ToTable(Macs.Unicast(1));
        t.Learn(x, 3, 1000);
        Assert.Equal(3, t.Lookup(x, 1000));
        Assert.Equal(3, t.Lookup(x, 1000 + units));
        Assert.Equal(ForwardingTable.Broadcast, t.Lookup(x, 1000 + units + 1));
        t.Learn(x, 3, 1000 + units + 1); // refreshed
        Assert.Equal(3, t.Lookup(x, 1000 + 2 * units + 1));
        // the coarse clock wraps: ages are computed modulo 2^32
        t.Learn(x, 4, uint.MaxValue - 2);
        Assert.Equal(4, t.Lookup(x, 3));
        Assert.Equal(ForwardingTable.Broadcast, t.Lookup(x, units));
    }

    [Fact]
    public void Aging_zero_means_never()
    {
        var t = new ForwardingTable(1024, agingSeconds: 0);
        ulong x = Macs.ToTable(Macs.Unicast(1));
        t.Learn(x, 9, 0);
        Assert.Equal(9, t.Lookup(x, uint.MaxValue));
        Assert.Equal(9, t.Lookup(x, 1u << 31));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(10)]
    [InlineData(300)]
    public void AgingSeconds_reads_back_what_was_set(int seconds)
    {
        var t = new ForwardingTable(16, seconds);
        Assert.Equal(seconds, t.AgingSeconds);
        t.AgingSeconds = seconds;
        Assert.Equal(seconds, t.AgingSeconds);
        Assert.Equal(seconds, new ValeSwitch { AgingSeconds = seconds }.GetOrCreateBridge("valeaging").Forwarding.AgingSeconds);
    }

    [Fact]
    public void A_collision_overwrites_the_older_address()
    {
        var t = new ForwardingTable(16, 0);
        ulong x = Macs.ToTable(Macs.Unicast(1));
        ulong y = Enumerable.Range(2, 1000).Select(i => Macs.ToTable(Macs.Unicast(i)))
            .First(m => (ForwardingTable.Hash(m) & 15) == (ForwardingTable.Hash(x) & 15));
        t.Learn(x, 1, 0);
        t.Learn(y, 2, 0);
        Assert.Equal(ForwardingTable.Broadcast, t.Lookup(x, 0));
        Assert.Equal(2, t.Lookup(y, 0));
        Assert.Equal(1, t.Occupancy);
    }

    [Fact]
    public void Purge_removes_only_the_ports_entries_and_Clear_removes_all()
    {
        var t = new ForwardingTable(1024, 0);
        var macs = Enumerable.Range(1, 40).Select(i => Macs.ToTable(Macs.Unicast(i))).ToArray();
        for (int i = 0; i < macs.Length; i++) t.Learn(macs[i], i % 3, 0);
        var before = t.Entries();
        Assert.Contains(before, e => e.Port == 1);
        t.Purge(1);
        Assert.Equal(before.Where(e => e.Port != 1).Select(e => (e.Mac, e.Port)).Order(), t.Entries().Select(e => (e.Mac, e.Port)).Order());
        Assert.All(macs.Where((m, i) => i % 3 == 1), m => Assert.Equal(ForwardingTable.Broadcast, t.Lookup(m, 0)));
        t.Clear();
        Assert.Equal(0, t.Occupancy);
    }

    [Fact]
    public void Bad_sizes_and_aging_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ForwardingTable(1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ForwardingTable(8));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ForwardingTable(1024, -1));
    }

    [Fact]
    public void Mac_text_round_trips()
    {
        Gen.Byte.Array[6].Sample(mac =>
        {
            ulong v = Macs.ToTable(mac);
            string s = ForwardingTable.FormatMac(v);
            Assert.Equal(string.Join(":", mac.Select(b => b.ToString("x2"))), s);
            Assert.Equal(v, ForwardingTable.ParseMac(s));
        }, iter: 2000, threads: 1);
        Assert.Throws<FormatException>(() => ForwardingTable.ParseMac("00:11:22:33:44"));
        Assert.Throws<FormatException>(() => ForwardingTable.ParseMac("00:11:22:33:44:zz"));
    }
}
