using HyperNF.Tools;
using Xunit;

namespace HyperNF.Tests.Tools;

public class SequenceTrackerTests
{
    private static SequenceTracker Feed(params ulong[] seqs)
    {
        var t = new SequenceTracker();
        foreach (ulong s in seqs) t.Add(s);
        return t;
    }

    [Fact]
    public void In_order_is_clean()
    {
        var t = Feed(0, 1, 2, 3, 4);
        Assert.Equal((0L, 0L, 0L, 5L), (t.Lost, t.Reordered, t.Duplicates, t.Distinct));
    }

    [Fact]
    public void Gap_late_frame_and_duplicate()
    {
        var t = Feed(0, 1, 2, 4, 5, 7);
        Assert.Equal(2, t.Lost); // 3 and 6
        t.Add(3);                 // late: no longer lost, reordered
        Assert.Equal((1L, 1L, 0L), (t.Lost, t.Reordered, t.Duplicates));
        t.Add(3);
        t.Add(7);
        Assert.Equal((1L, 1L, 2L), (t.Lost, t.Reordered, t.Duplicates));
    }

    [Fact]
    public void Starting_mid_stream_counts_from_the_first_frame_seen()
    {
        var t = Feed(1000, 1001, 1003);
        Assert.Equal(1, t.Lost);
        t.Add(999); // earlier than the first: extends the range, counts as reordered
        Assert.Equal((1L, 1L), (t.Lost, t.Reordered));
    }

    [Fact]
    public void Window_is_reused_after_a_long_jump()
    {
        var t = Feed(0, 1);
        t.Add(SequenceTracker.Window * 3 + 1); // same bitmap position as 1, must not look like a duplicate
        Assert.Equal(0, t.Duplicates);
        Assert.Equal((long)(SequenceTracker.Window * 3 + 2) - 3, t.Lost);
        t.Add(SequenceTracker.Window * 3); // late, in the window
        Assert.Equal((0L, 1L), (t.Duplicates, t.Reordered));
        t.Add(5); // far older than the window: counted as late, not as a duplicate
        Assert.Equal(2, t.Reordered);
        for (ulong s = SequenceTracker.Window * 3 + 2; s < SequenceTracker.Window * 3 + 300; s++) t.Add(s);
        Assert.Equal(0, t.Duplicates);
    }
}
