using CsCheck;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using Xunit;

namespace HyperNF.Tests.Netmap;

/// <summary>
/// Random sequences of user moves and syncs on real rings, checked step by step against a
/// model of the host's view (hwcur, hwtail / rtail). The user sometimes moves head/cur
/// illegally and scribbles over tail; the host must refuse every illegal move (reinitialise
/// the ring, count CorruptRingIndex, forward nothing) and repair tail on every sync.
/// </summary>
public class RingSyncPropertyTests
{
    private const int N = 16;
    private static readonly RegionLayout Small = new() { MaxPorts = 1, SlotsPerRing = N };

    /// <summary>One user step: how to move head/cur, whether to overwrite tail, how much to send.</summary>
    public readonly record struct Op(int Kind, uint A, uint B, bool ScribbleTail, uint TailValue, int Count)
    {
        public override string ToString() => $"Op({Kind},{A},{B},{ScribbleTail},{TailValue},{Count})";
    }

    private static readonly Gen<Op> GenOp =
        from kind in Gen.Int[0, 9]
        from a in Gen.UInt
        from b in Gen.UInt
        from scribble in Gen.Int[0, 4]
        from tv in Gen.OneOf(Gen.UInt[0, N + 2], Gen.UInt)
        from count in Gen.Int[0, N + 4]
        select new Op(kind, a, b, scribble == 0, tv, count);

    /// <summary>
    /// Turns an op into (head, cur): kinds 0..5 a legal move inside [hwcur, rtail], 6..7 any
    /// index below N (legal or not), 8 an index past the ring, 9 no move at all.
    /// </summary>
    private static (uint Head, uint Cur) Move(Op op, uint hwcur, uint rtail)
    {
        const uint n = N;
        switch (op.Kind)
        {
            case <= 5:
            {
                uint head = (hwcur + op.A % (RingRules.Distance(hwcur, rtail, n) + 1)) % n;
                uint cur = (head + op.B % (RingRules.Distance(head, rtail, n) + 1)) % n;
                return (head, cur);
            }
            case <= 7: return (op.A % n, op.B % n);
            case 8: return (op.A % 3 == 0 ? op.A : n + op.A % 4, op.B % (n + 2));
            default: return (hwcur, hwcur);
        }
    }

    [Fact]
    public void TxSync_accepts_exactly_the_legal_moves_and_repairs_tail()
    {
        GenOp.Array[1, 80].Sample(ops =>
        {
            var sw = new ValeSwitch();
            using var s = new Node(sw, "valer:s", Macs.Unicast(1), Small);
            using var r = new Node(sw, "valer:r", Macs.Unicast(2), Small);
            var ring = s.Tx;
            // every slot holds a good frame; the test only moves indices
            var slotsBefore = new NetmapSlot[N];
            for (uint i = 0; i < N; i++)
            {
                ref var slot = ref ring.Slot(i);
                TestFrames.Make(Macs.Broadcast, s.Mac, 60, i).CopyTo(ring.Buffer(slot));
                slot.Len = 60;
                slotsBefore[i] = slot;
            }
            Assert.Equal((0u, 0u, N - 1u), (ring.Head, ring.Cur, ring.Tail));

            uint hwcur = 0, hwtail = N - 1;
            long sent = 0, reinits = 0;
            foreach (var op in ops)
            {
                var (head, cur) = Move(op, hwcur, hwtail);
                ring.Head = head;
                ring.Cur = cur;
                if (op.ScribbleTail) ring.Tail = op.TailValue;
                bool legal = RingRulesTests.Model(head, cur, hwcur, hwtail, N);

                s.Port.TxSync();

                if (legal)
                {
                    sent += RingRules.Distance(hwcur, head, N);
                    if (head != hwcur) { hwcur = head; hwtail = (head + N - 1) % N; }
                    Assert.Equal((head, cur, hwtail), (ring.Head, ring.Cur, ring.Tail));
                }
                else
                {
                    reinits++;
                    Assert.Equal((hwcur, hwcur, hwtail), (ring.Head, ring.Cur, ring.Tail));
                }
                var kring = s.Host.Tx[0];
                Assert.Equal((hwcur, hwtail), (kring.HwCur, kring.HwTail));
                var st = s.Stats;
                Assert.Equal(sent, st.TxPackets);
                Assert.Equal(reinits, st.CorruptRingIndex);
                r.Drain();
                StatsAssert.Balanced(sw, "valer");
            }
            // the host never writes a TX slot
            for (uint i = 0; i < N; i++)
            {
                var slot = ring.Slot(i);
                Assert.Equal((slotsBefore[i].BufIdx, slotsBefore[i].Len, slotsBefore[i].Flags), (slot.BufIdx, slot.Len, slot.Flags));
            }
            var rs = r.Stats;
            Assert.Equal(sent, rs.RxPackets + rs.Drop(DropReason.RingFull));
        }, iter: 300, threads: 1);
    }

    [Fact]
    public void RxSync_accepts_exactly_the_legal_moves_publishes_hwtail_and_repairs_tail()
    {
        GenOp.Array[1, 80].Sample(ops =>
        {
            var sw = new ValeSwitch();
            using var s = new Node(sw, "valer:s", Macs.Unicast(1), Small);
            using var r = new Node(sw, "valer:r", Macs.Unicast(2), Small);
            r.Announce();
            s.Drain();
            var ring = r.Rx;
            Assert.Equal((0u, 0u, 0u), (ring.Head, ring.Cur, ring.Tail));

            // host model of r's RX ring: [hwcur, rtail) published, [rtail, hwtail) filled but unpublished
            uint hwcur = 0, rtail = 0, hwtail = 0;
            var tagAt = new uint[N];
            uint nextTag = 1;
            long delivered = 0, full = 0, reinits = 0;
            foreach (var op in ops)
            {
                // the sender (well behaved) sends op.Count frames, as many as its ring allows
                int k = Math.Min(op.Count, (int)s.Tx.Space);
                var frames = new byte[k][];
                for (int i = 0; i < k; i++) frames[i] = s.FrameTo(r.Mac, 60, nextTag + (uint)i);
                s.Send(frames);
                uint free = N - 1 - RingRules.Distance(hwcur, hwtail, N);
                for (int i = 0; i < k; i++)
                {
                    if (i < free) { tagAt[hwtail] = nextTag; hwtail = (hwtail + 1) % N; delivered++; }
                    else full++;
                    nextTag++;
                }

                var (head, cur) = Move(op, hwcur, rtail);
                ring.Head = head;
                ring.Cur = cur;
                if (op.ScribbleTail) ring.Tail = op.TailValue;
                bool legal = RingRulesTests.Model(head, cur, hwcur, rtail, N);

                r.Port.RxSync();

                if (legal)
                {
                    hwcur = head;
                    rtail = hwtail;
                    Assert.Equal((head, cur, hwtail), (ring.Head, ring.Cur, ring.Tail));
                }
                else
                {
                    reinits++;
                    Assert.Equal((hwcur, hwcur, rtail), (ring.Head, ring.Cur, ring.Tail));
                }
                // what the user may read now is exactly what was delivered, in order
                for (uint i = hwcur; i != rtail; i = (i + 1) % N)
                {
                    var slot = ring.Slot(i);
                    Assert.Equal(60, slot.Len);
                    Assert.True(ring.Frame(slot).SequenceEqual(TestFrames.Make(r.Mac, s.Mac, 60, tagAt[i])), $"slot {i} should hold frame {tagAt[i]}");
                }
                var st = r.Stats;
                Assert.Equal(delivered, st.RxPackets);
                Assert.Equal(full, st.Drop(DropReason.RingFull));
                Assert.Equal(reinits, st.CorruptRingIndex);
                StatsAssert.Balanced(sw, "valer");
            }
        }, iter: 300, threads: 1);
    }
}
