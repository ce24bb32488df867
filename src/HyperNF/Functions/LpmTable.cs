namespace HyperNF.Functions;

/// <summary>
/// IPv4 longest-prefix match: a multibit trie with 8-bit strides (at most four levels) and
/// controlled prefix expansion, so a lookup is at most four dependent array reads whatever the
/// table size, and allocates nothing.
/// </summary>
/// <remarks>
/// Each node is 256 consecutive entries of <see cref="_entries"/>. An entry is 0 (no route),
/// a positive value (route value + 1: a leaf), or a negative value (−child node index). A prefix
/// whose length falls inside a stride is expanded over all the entries it covers; each leaf
/// remembers the length of the prefix that wrote it (<see cref="_lengths"/>) so that a shorter
/// prefix added later never overwrites a longer one, which makes the result independent of
/// insertion order. When a longer prefix needs a child node under an existing leaf, the child is
/// filled with that leaf first (leaf pushing), so lookups never need to backtrack.
/// Building allocates (nodes grow on demand); the table is meant to be built once, then read.
/// </remarks>
public sealed class LpmTable
{
    private const int Stride = 8;
    private const int Fanout = 1 << Stride;
    private int[] _entries = new int[Fanout];
    private byte[] _lengths = new byte[Fanout];
    private int _nodes = 1;

    /// <summary>Number of trie nodes (256 entries each), for sizing diagnostics.</summary>
    public int Nodes => _nodes;

    /// <summary>
    /// Adds <paramref name="prefix"/>/<paramref name="length"/> → <paramref name="value"/> (≥ 0).
    /// Adding the same prefix twice replaces its value.
    /// </summary>
    public void Add(uint prefix, int length, int value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, 32);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        prefix &= Addresses.Mask(length);
        int node = 0;
        for (int level = 0; ; level++)
        {
            int shift = 24 - level * Stride;
            int index = (int)((prefix >> shift) & 0xff);
            int levelEnd = (level + 1) * Stride;
            if (length <= levelEnd)
            {
                int span = 1 << (levelEnd - length);
                int start = index & ~(span - 1);
                for (int e = start; e < start + span; e++) Cover(node * Fanout + e, length, value + 1);
                return;
            }
            int slot = node * Fanout + index;
            if (_entries[slot] >= 0)
            {
                // Not folded into one assignment: NewNode may replace _entries.
                int child = NewNode(_entries[slot], _lengths[slot]);
                _entries[slot] = -child;
            }
            node = -_entries[slot];
        }
    }

    private void Cover(int slot, int length, int leaf)
    {
        int v = _entries[slot];
        if (v < 0)
        {
            int child = -v * Fanout;
            for (int e = 0; e < Fanout; e++) Cover(child + e, length, leaf);
        }
        else if (v == 0 || _lengths[slot] <= length)
        {
            _entries[slot] = leaf;
            _lengths[slot] = (byte)length;
        }
    }

    private int NewNode(int inheritedLeaf, byte inheritedLength)
    {
        if ((_nodes + 1) * Fanout > _entries.Length)
        {
            Array.Resize(ref _entries, _entries.Length * 2);
            Array.Resize(ref _lengths, _lengths.Length * 2);
        }
        int n = _nodes++;
        _entries.AsSpan(n * Fanout, Fanout).Fill(inheritedLeaf);
        _lengths.AsSpan(n * Fanout, Fanout).Fill(inheritedLength);
        return n;
    }

    /// <summary>The value of the longest prefix containing <paramref name="address"/>, if any.</summary>
    public bool TryLookup(uint address, out int value)
    {
        var entries = _entries;
        int v = entries[(int)(address >> 24)];
        for (int shift = 16; v < 0; shift -= Stride)
            v = entries[-v * Fanout + (int)((address >> shift) & 0xff)];
        value = v - 1;
        return v > 0;
    }
}
