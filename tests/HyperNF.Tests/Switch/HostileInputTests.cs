using CsCheck;
using HyperNF.Memory;
using HyperNF.Netmap;
using HyperNF.Switch;
using HyperNF.Tests.Netmap;
using Xunit;

namespace HyperNF.Tests.Switch;

/// <summary>
/// Everything a domain can write is hostile: head, cur, tail, every slot field and the frame
/// bytes, on the sender's TX ring and on the receiver's RX ring. A random generator drives a
/// sender s and a receiver r (a third port c only receives floods and never syncs, so its
/// ring fills); after every sync the host's behaviour is compared with a model of it: which
/// frames are dropped and why, where each good frame goes, which RX slots it lands in, the
/// host's ring indices and every counter. Canary patterns in memory no sync may write (the
/// unused buffers of s, r and c, and the whole region of a fourth, unattached domain) are
/// checked at the end.
/// </summary>
public class HostileInputTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const uint N = 64;
    private const byte Canary = 0xC5; // odd: as a MAC it is multicast
    private static readonly RegionLayout Layout = new() { MaxPorts = 2, SlotsPerRing = (int)N, ExtraBuffersPerPort = 4 };

    // ---- the random steps

    /// <summary>One TX slot as the hostile sender fills it.</summary>
    public readonly record struct SlotSpec(int BufKind, uint BufR, int LenKind, int LenR, int FlagKind, ushort FlagR, int DstKind, int SrcKind, int Seed);

    /// <summary>A sync step: the sender fills <c>Slots.Length</c> slots and moves head/cur, or the receiver moves head/cur and rewrites some RX slots' buffer indices.</summary>
    public sealed record Step(bool Tx, SlotSpec[] Slots, (int Slot, int Kind, uint R)[] RxBufs, int MoveKind, uint A, uint B, bool ScribbleTail, uint TailValue)
    {
        public override string ToString() =>
            Tx ? $"TX[{Slots.Length} slots; move {MoveKind} {A} {B}{(ScribbleTail ? $"; tail={TailValue}" : "")}: {string.Join(" ", Slots.Select(s => $"({s.BufKind},{s.LenKind}:{s.LenR},{s.FlagKind}:{s.FlagR:x},{s.DstKind},{s.SrcKind})"))}]"
               : $"RX[move {MoveKind} {A} {B}{(ScribbleTail ? $"; tail={TailValue}" : "")}; bufs {string.Join(" ", RxBufs.Select(b => $"{b.Slot}:{b.Kind}"))}]";
    }

    private static readonly Gen<SlotSpec> GenSlot =
        from bufKind in Gen.Frequency((16, Gen.Const(0)), (2, Gen.Const(1)), (2, Gen.Const(2)))
        from bufR in Gen.UInt
        from lenKind in Gen.Frequency((14, Gen.Const(0)), (2, Gen.Const(1)), (2, Gen.Const(2)), (1, Gen.Const(3)), (1, Gen.Const(4)))
        from lenR in Gen.Int[0, 65535]
        from flagKind in Gen.Frequency((12, Gen.Const(0)), (6, Gen.Const(1)), (1, Gen.Const(2)), (1, Gen.Const(3)))
        from flagR in Gen.UShort
        from dst in Gen.Int[0, 7]
        from src in Gen.Frequency((16, Gen.Const(0)), (2, Gen.Const(1)), (2, Gen.Const(2)))
        from seed in Gen.Int
        select new SlotSpec(bufKind, bufR, lenKind, lenR, flagKind, flagR, dst, src, seed);

    private static readonly Gen<Step> GenStep =
        from tx in Gen.Frequency((3, Gen.Const(true)), (2, Gen.Const(false)))
        from slots in GenSlot.Array[0, (int)N - 1]
        from rxBufs in Gen.Select(Gen.Int[0, (int)N - 1], Gen.Int[0, 5], Gen.UInt).Array[0, 4]
        from move in Gen.Frequency((14, Gen.Const(0)), (2, Gen.Const(1)), (1, Gen.Const(2)), (1, Gen.Const(3)))
        from a in Gen.UInt
        from b in Gen.UInt
        from scribble in Gen.Int[0, 5]
        from tv in Gen.OneOf(Gen.UInt[0, N + 1], Gen.UInt)
        select new Step(tx, slots, rxBufs, move, a, b, scribble == 0, tv);

    private static readonly Gen<(int MaxFrame, Step[] Steps)> GenRun =
        from maxFrame in Gen.OneOf(Gen.Const(Bridge.DefaultMaxFrameBytes), Gen.Const(3000), Gen.Int[14, 64 * 2048])
        from steps in GenStep.Array[1, 40]
        select (maxFrame, steps);

    [Fact]
    public void Random_hostile_rings_never_escape_and_every_frame_is_accounted_as_modelled()
    {
        var seen = new long[(int)Coverage.Count];
        GenRun.Sample(run =>
        {
            using var world = new World(run.MaxFrame, seen);
            foreach (var step in run.Steps)
            {
                if (step.Tx) world.TxStep(step);
                else world.RxStep(step);
            }
            world.CheckCanaries();
        }, iter: 250, threads: 1);
        // the generator must actually reach every outcome the model distinguishes
        for (int i = 0; i < seen.Length; i++)
            Assert.True(seen[i] > 0, $"no sample produced {(Coverage)i}: {string.Join(", ", Enum.GetValues<Coverage>().SkipLast(1).Select(c => $"{c}={seen[(int)c]}"))}");
        output.WriteLine(string.Join(", ", Enum.GetValues<Coverage>().SkipLast(1).Select(c => $"{c}={seen[(int)c]}")));
    }

    private enum Coverage { Delivered, Chains, Flooded, RingFull, RxBadBuffer, BadBufferIndex, BadLength, Runt, Hairpin, TxReinit, RxReinit, Count }

    // ---- the world under test and its model

    private sealed unsafe class World : IDisposable
    {
        private readonly ValeSwitch _sw = new();
        private readonly Node _s, _r, _c;
        private readonly DomainMemory _d;
        private readonly byte[] _dSnapshot;
        private readonly int _maxFrame;
        private static readonly byte[] Noise = MakeNoise();
        private int _noiseAt;

        private static byte[] MakeNoise()
        {
            var b = new byte[1 << 16];
            new Random(1).NextBytes(b);
            return b;
        }

        // model of the host: s's TX kring, r's RX kring (hwcur, rtail, hwtail), c's RX kring
        private uint _sHwCur, _sHwTail = N - 1;
        private uint _rHwCur, _rRTail, _rHwTail;
        private uint _cHwTail;
        private readonly ulong[] _table = new ulong[ForwardingTable.DefaultSize]; // mac | (port+1) << 48
        private long _sReinits, _rReinits;

        private readonly long[] _seen;

        public World(int maxFrame, long[] seen)
        {
            _seen = seen;
            _s = new Node(_sw, "valeh:s", Macs.Unicast(1), Layout);
            _r = new Node(_sw, "valeh:r", Macs.Unicast(2), Layout);
            _c = new Node(_sw, "valeh:c", Macs.Unicast(3), Layout);
            _d = new DomainMemory(Layout, "bystander");
            _maxFrame = maxFrame;
            // r announces itself: s and c each get one frame (before the random frame limit,
            // which may be smaller than the announcement)
            _r.Announce();
            _s.Drain();
            _sw.FindBridge("valeh")!.MaxFrameBytes = maxFrame;
            _cHwTail = 1;
            Learn(Macs.ToTable(_r.Mac), _r.Host.BridgeIndex);
            // canaries: every buffer no sync may write
            foreach (var idx in CanaryBuffers(_s, spareTx: true)) _s.Tx.Buffer(idx).Fill(Canary);
            foreach (var idx in CanaryBuffers(_r, spareTx: false)) _r.Tx.Buffer(idx).Fill(Canary);
            foreach (var idx in CanaryBuffers(_c, spareTx: false)) _c.Tx.Buffer(idx).Fill(Canary);
            new Span<byte>(_d.Base + RegionLayout.PageSize, (int)_d.Size - RegionLayout.PageSize).Fill(Canary);
            _dSnapshot = new ReadOnlySpan<byte>(_d.Base, (int)_d.Size).ToArray();
        }

        public void Dispose()
        {
            _s.Dispose(); _r.Dispose(); _c.Dispose(); _d.Dispose();
        }

        private static uint First(Node n) => n.Memory.Layout.FirstBufferOf(n.Port.Area);

        /// <summary>
        /// Buffers of a node's region that no sync may write: all of them but the TX ring's
        /// (<paramref name="spareTx"/>: the sender writes its frames there) or the RX ring's
        /// (a receiver's RX slots may only ever name those).
        /// </summary>
        private static IEnumerable<uint> CanaryBuffers(Node n, bool spareTx)
        {
            uint first = spareTx ? First(n) : First(n) + N;
            for (uint i = RegionLayout.ReservedBuffers; i < n.Memory.BufferCount; i++)
                if (i < first || i >= first + N) yield return i;
        }

        public void CheckCanaries()
        {
            foreach (var (n, spareTx) in new[] { (_s, true), (_r, false), (_c, false) })
                foreach (var idx in CanaryBuffers(n, spareTx))
                {
                    var b = n.Tx.Buffer(idx);
                    int bad = b.IndexOfAnyExcept(Canary);
                    Assert.True(bad < 0, $"{n.Port.Name}: buffer {idx} byte {bad} was overwritten");
                }
            Assert.True(new ReadOnlySpan<byte>(_d.Base, (int)_d.Size).SequenceEqual(_dSnapshot), "the unattached domain's memory changed");
        }

        private static bool IsValid(Node n, uint idx) => idx >= RegionLayout.ReservedBuffers && idx < n.Memory.BufferCount;

        private static uint Invalid(Node n, uint r) => (r % 4) switch
        {
            0 => r % 2,                                        // the reserved buffers 0 and 1
            1 => n.Memory.BufferCount + r % 8,                  // just past the region
            2 => uint.MaxValue - r % 8,
            _ => n.Memory.BufferCount + r % (uint.MaxValue - n.Memory.BufferCount),
        };

        private void Learn(ulong mac, int port) =>
            _table[ForwardingTable.Hash(mac) & (ForwardingTable.DefaultSize - 1)] = mac | ((ulong)(port + 1) << 48);

        private int Lookup(ulong mac)
        {
            ulong w = _table[ForwardingTable.Hash(mac) & (ForwardingTable.DefaultSize - 1)];
            return (w & 0xFFFF_FFFF_FFFF) == mac && (w >> 48) != 0 ? (int)(w >> 48) - 1 : -1;
        }

        private (uint Head, uint Cur) Move(Step st, uint hwcur, uint rtail, uint natural)
        {
            switch (st.MoveKind)
            {
                case 0: return (natural, natural);                           // what a correct user does
                case 1:
                {
                    uint head = (hwcur + st.A % (RingRules.Distance(hwcur, rtail, N) + 1)) % N;
                    return (head, (head + st.B % (RingRules.Distance(head, rtail, N) + 1)) % N);
                }
                case 2: return (st.A % N, st.B % N);
                default: return (st.A % 2 == 0 ? st.A : N + st.A % 3, st.B);
            }
        }

        private ushort LenOf(SlotSpec sp) => sp.LenKind switch
        {
            0 => (ushort)(14 + sp.LenR % (2048 - 14 + 1)),
            1 => (ushort)(sp.LenR % 14),                  // runt (or a short later fragment)
            2 => 2048,
            3 => (ushort)(2049 + sp.LenR % (65535 - 2049 + 1)),
            _ => (ushort)sp.LenR,
        };

        private ushort FlagsOf(SlotSpec sp) => sp.FlagKind switch
        {
            0 => 0,
            1 => SlotFlags.MoreFrag,
            2 => SlotFlags.Indirect,
            _ => sp.FlagR,
        };

        private byte[] MacOf(int kind, int seed) => kind switch
        {
            0 or 1 => _r.Mac,
            2 => _s.Mac,
            3 => _c.Mac,
            4 => Macs.Broadcast,
            5 => Macs.Multicast(seed & 0xff),
            6 => Macs.Unicast(0x9999),
            _ => BitConverter.GetBytes((long)seed * 0x5DEECE66DL)[..6],
        };

        // ------------------------------------------------------------- TX

        private readonly record struct Frame(uint FirstSlot, int Frags, DropReason? Bad, int Bytes);

        public void TxStep(Step st)
        {
            var ring = _s.Tx;
            uint txFirst = First(_s);
            // the sender fills slots from hwcur on (a correct user would, from head)
            uint j = _sHwCur;
            int k = Math.Min(st.Slots.Length, (int)RingRules.Distance(_sHwCur, _sHwTail, N));
            for (int i = 0; i < k; i++, j = (j + 1) % N)
            {
                var sp = st.Slots[i];
                ref var slot = ref ring.Slot(j);
                uint own = txFirst + j;
                slot.BufIdx = sp.BufKind switch
                {
                    0 => own,
                    1 => RegionLayout.ReservedBuffers + sp.BufR % (_s.Memory.BufferCount - RegionLayout.ReservedBuffers), // someone else's buffer of the domain
                    _ => Invalid(_s, sp.BufR),
                };
                slot.Len = LenOf(sp);
                slot.Flags = FlagsOf(sp);
                var buf = ring.Buffer(own);
                _noiseAt = (_noiseAt + 4099) % (Noise.Length - 2048);
                Noise.AsSpan(_noiseAt, 2048).CopyTo(buf);
                MacOf(sp.DstKind, sp.Seed).CopyTo(buf);
                (sp.SrcKind switch { 0 => _s.Mac, 1 => Macs.Multicast(1), _ => Macs.Unicast(0x4000 + (sp.Seed & 0xfff)) }).CopyTo(buf[6..]);
            }
            var (head, cur) = Move(st, _sHwCur, _sHwTail, j);
            ring.Head = head;
            ring.Cur = cur;
            if (st.ScribbleTail) ring.Tail = st.TailValue;
            var slotsBefore = Enumerable.Range(0, (int)N).Select(i => ring.Slot((uint)i)).ToArray();
            bool legal = RingRulesTests.Model(head, cur, _sHwCur, _sHwTail, N);

            // ---- model: parse [hwcur, head) into frames, then forward the good ones
            var sBefore = _s.Stats; var rBefore = _r.Stats; var cBefore = _c.Stats;
            long sent = 0, sentBytes = 0, floods = 0, hairpin = 0;
            var drops = new long[DropReasons.Count];
            var frames = new List<Frame>();
            if (legal)
            {
                uint first = 0; int frags = 0, bytes = 0; DropReason? bad = null;
                for (uint p = _sHwCur; p != head; p = (p + 1) % N)
                {
                    var sl = ring.Slot(p);
                    if (frags == 0) { first = p; bad = null; bytes = 0; }
                    if (bad is null)
                    {
                        if (!IsValid(_s, sl.BufIdx) || (sl.Flags & SlotFlags.Indirect) != 0) bad = DropReason.BadBufferIndex;
                        else if (sl.Len > 2048) bad = DropReason.BadLength;
                        else if (frags == 0 && sl.Len < 14) bad = DropReason.Runt;
                    }
                    frags++;
                    bytes += sl.Len;
                    sentBytes += sl.Len;
                    if ((sl.Flags & SlotFlags.MoreFrag) != 0)
                    {
                        if (frags == TxKring.MaxFragments && bad is null) bad = DropReason.BadLength; // 65 slots or more
                        continue;
                    }
                    if (bad is null && bytes > _maxFrame) bad = DropReason.BadLength;
                    frames.Add(new Frame(first, frags, bad, bytes));
                    frags = 0;
                }
                if (frags > 0) frames.Add(new Frame(first, frags, DropReason.BadLength, bytes)); // cut by head
                sent = frames.Count;
            }

            var toR = new List<Frame>();
            var toC = new List<Frame>();
            int me = _s.Host.BridgeIndex, rIdx = _r.Host.BridgeIndex, cIdx = _c.Host.BridgeIndex;
            foreach (var f in frames)
            {
                if (f.Bad is { } reason) { drops[(int)reason]++; continue; }
                var b = ring.Buffer(ring.Slot(f.FirstSlot).BufIdx);
                ulong dmac = Macs.ToTable(b[..6]), smac = Macs.ToTable(b[6..12]);
                if ((smac & 1) == 0) Learn(smac, me);
                int dst = (dmac & 1) != 0 ? -1 : Lookup(dmac);
                if (dst == me) hairpin++;
                else if (dst == rIdx) toR.Add(f);
                else if (dst == cIdx) toC.Add(f);
                else { toR.Add(f); toC.Add(f); floods++; }
            }
            var rExpect = Deliver(_r, toR, _rHwCur, ref _rHwTail);
            var cExpect = Deliver(_c, toC, 0, ref _cHwTail);

            _s.Port.TxSync();

            // ---- compare
            if (legal)
            {
                if (head != _sHwCur) { _sHwCur = head; _sHwTail = (head + N - 1) % N; }
                Assert.Equal((head, cur, _sHwTail), (ring.Head, ring.Cur, ring.Tail));
            }
            else
            {
                _sReinits++;
                Assert.Equal((_sHwCur, _sHwCur, _sHwTail), (ring.Head, ring.Cur, ring.Tail));
            }
            Assert.Equal((_sHwCur, _sHwTail), (_s.Host.Tx[0].HwCur, _s.Host.Tx[0].HwTail));
            for (int i = 0; i < N; i++)
            {
                var sl = ring.Slot((uint)i);
                Assert.True((sl.BufIdx, sl.Len, sl.Flags) == (slotsBefore[i].BufIdx, slotsBefore[i].Len, slotsBefore[i].Flags), $"TX slot {i} was written by the host");
            }
            var sAfter = _s.Stats;
            Assert.Equal(sent, sAfter.TxPackets - sBefore.TxPackets);
            Assert.Equal(sentBytes, sAfter.TxBytes - sBefore.TxBytes);
            Assert.Equal(floods, sAfter.FloodCopies - sBefore.FloodCopies);
            Assert.Equal(_sReinits, sAfter.CorruptRingIndex);
            drops[(int)DropReason.Hairpin] = hairpin;
            for (int r = 0; r < DropReasons.Count; r++)
                Assert.True(drops[r] == sAfter.Drops[r] - sBefore.Drops[r], $"sender drop counter {DropReasons.All[r].Key()}: model {drops[r]}, host {sAfter.Drops[r] - sBefore.Drops[r]}");
            rExpect.Check(_r, rBefore);
            cExpect.Check(_c, cBefore);
            _seen[(int)Coverage.Delivered] += rExpect.Delivered + cExpect.Delivered;
            _seen[(int)Coverage.Chains] += frames.Count(f => f.Bad is null && f.Frags > 1);
            _seen[(int)Coverage.Flooded] += floods;
            _seen[(int)Coverage.RingFull] += rExpect.RingFull + cExpect.RingFull;
            _seen[(int)Coverage.RxBadBuffer] += rExpect.BadBuffer;
            _seen[(int)Coverage.BadBufferIndex] += drops[(int)DropReason.BadBufferIndex];
            _seen[(int)Coverage.BadLength] += drops[(int)DropReason.BadLength];
            _seen[(int)Coverage.Runt] += drops[(int)DropReason.Runt];
            _seen[(int)Coverage.Hairpin] += hairpin;
            _seen[(int)Coverage.TxReinit] += legal ? 0 : 1;
            Assert.Equal(_rHwTail, Volatile.Read(ref _r.Host.Rx[0].S->HwTail));
            Assert.Equal(_rHwTail, _r.Host.Rx[0].S->HwLease);
            Assert.Equal(_cHwTail, Volatile.Read(ref _c.Host.Rx[0].S->HwTail));
            StatsAssert.Balanced(_sw, "valeh");
        }

        private sealed class Expected
        {
            public long Delivered, Bytes, RingFull, BadBuffer;
            /// <summary>(RX slot, len, flags) of every slot written, and the bytes each written buffer must end up holding.</summary>
            public readonly List<(uint Slot, ushort Len, ushort Flags)> Slots = [];
            public readonly Dictionary<uint, byte[]> Buffers = [];

            public void Check(Node n, PortStatistics before)
            {
                var after = n.Stats;
                Assert.Equal(Delivered, after.RxPackets - before.RxPackets);
                Assert.Equal(Bytes, after.RxBytes - before.RxBytes);
                Assert.Equal(RingFull, after.Drop(DropReason.RingFull) - before.Drop(DropReason.RingFull));
                Assert.Equal(BadBuffer, after.Drop(DropReason.BadBufferIndex) - before.Drop(DropReason.BadBufferIndex));
                var ring = n.Rx;
                foreach (var (slot, len, flags) in Slots)
                {
                    var s = ring.Slot(slot);
                    Assert.True((s.Len, s.Flags) == (len, flags), $"{n.Port.Name} RX slot {slot}: host wrote len {s.Len} flags 0x{s.Flags:x}, model len {len} flags 0x{flags:x}");
                }
                foreach (var (idx, bytes) in Buffers)
                    Assert.True(ring.Buffer(idx)[..bytes.Length].SequenceEqual(bytes), $"{n.Port.Name}: buffer {idx} does not hold the frame copied into it");
            }
        }

        /// <summary>Model of the lease protocol with one sender: frames are copied in order while they fit, then every later one is ring-full.</summary>
        private Expected Deliver(Node dst, List<Frame> frames, uint hwcur, ref uint hwtail)
        {
            var e = new Expected();
            var src = _s.Tx;
            var ring = dst.Rx;
            uint space = N - 1 - RingRules.Distance(hwcur, hwtail, N);
            bool full = false;
            foreach (var f in frames)
            {
                if (full || f.Frags > space) { full = true; e.RingFull++; continue; }
                space -= (uint)f.Frags;
                bool bad = false;
                uint p = f.FirstSlot;
                for (int i = 0; i < f.Frags; i++, p = (p + 1) % N)
                {
                    var from = src.Slot(p);
                    uint to = ring.Slot(hwtail).BufIdx;
                    if (IsValid(dst, to))
                    {
                        e.Slots.Add((hwtail, from.Len, (ushort)((f.Frags << SlotFlags.FragmentCountShift) | (i + 1 < f.Frags ? SlotFlags.MoreFrag : 0))));
                        e.Buffers[to] = src.Buffer(from.BufIdx)[..from.Len].ToArray();
                    }
                    else
                    {
                        bad = true;
                        e.Slots.Add((hwtail, 0, 0)); // published empty
                    }
                    hwtail = (hwtail + 1) % N;
                }
                if (bad) e.BadBuffer++;
                else { e.Delivered++; e.Bytes += f.Bytes; }
            }
            return e;
        }

        // ------------------------------------------------------------- RX

        public void RxStep(Step st)
        {
            var ring = _r.Rx;
            uint rxFirst = First(_r) + N;
            // the receiver points some of its slots (any of them, also host-owned ones) at other
            // buffers and scribbles over their len and flags
            foreach (var (slot, kind, r) in st.RxBufs)
            {
                ref var s = ref ring.Slot((uint)slot);
                s.BufIdx = kind <= 2 ? rxFirst + r % N : Invalid(_r, r);
                s.Len = (ushort)r;
                s.Flags = (ushort)(r >> 16);
            }
            var (head, cur) = Move(st, _rHwCur, _rRTail, _rRTail);
            ring.Head = head;
            ring.Cur = cur;
            if (st.ScribbleTail) ring.Tail = st.TailValue;
            bool legal = RingRulesTests.Model(head, cur, _rHwCur, _rRTail, N);
            var before = _r.Stats;

            _r.Port.RxSync();

            if (legal)
            {
                _rHwCur = head;
                _rRTail = _rHwTail;
                Assert.Equal((head, cur, _rHwTail), (ring.Head, ring.Cur, ring.Tail));
            }
            else
            {
                _rReinits++;
                _seen[(int)Coverage.RxReinit]++;
                Assert.Equal((_rHwCur, _rHwCur, _rRTail), (ring.Head, ring.Cur, ring.Tail));
            }
            var k = _r.Host.Rx[0];
            Assert.Equal((_rHwCur, _rRTail), (k.S->HwCur, k.S->RTail));
            var after = _r.Stats;
            Assert.Equal(_rReinits, after.CorruptRingIndex);
            Assert.Equal(before.RxPackets, after.RxPackets);
            StatsAssert.Balanced(_sw, "valeh");
        }
    }
}

/// <summary>
/// The same hostility, but concurrent: while one thread of a domain syncs, another thread of
/// the same domain rewrites the ring indices and slots under it (the time-of-check /
/// time-of-use attack). Nothing can be predicted frame by frame; what must hold is that no
/// exception escapes, no memory outside the rings and buffers the domains may name is
/// written, and the bridge's counters balance once everything stops.
/// </summary>
[Collection("Threads")]
public class HostileConcurrencyTests
{
    private const byte Canary = 0xC5;

    [Fact]
    public unsafe void Domains_rewriting_their_rings_during_syncs_cannot_break_the_host()
    {
        var layout = new RegionLayout { MaxPorts = 2, SlotsPerRing = 64, ExtraBuffersPerPort = 4 };
        var sw = new ValeSwitch { BridgeBatch = 16 };
        var s = new Node(sw, "valehc:s", Macs.Unicast(1), layout);
        var r = new Node(sw, "valehc:r", Macs.Unicast(2), layout);
        var bystander = new DomainMemory(layout, "bystander");
        r.Announce();
        s.Drain();
        uint sFirst = layout.FirstBufferOf(0), rRxFirst = layout.FirstBufferOf(0) + 64;
        // canaries: s's RX buffers, extras and unused area; everything of r but its RX ring buffers; all of the bystander
        for (uint i = sFirst + 64; i < s.Memory.BufferCount; i++) s.Tx.Buffer(i).Fill(Canary);
        for (uint i = RegionLayout.ReservedBuffers; i < r.Memory.BufferCount; i++)
            if (i < rRxFirst || i >= rRxFirst + 64) r.Tx.Buffer(i).Fill(Canary);
        new Span<byte>(bystander.Base, (int)bystander.Size).Fill(Canary);

        string? failure = null;
        int stop = 0;
        void Run(string name, Action<Random> body, int seed) 
        {
            var rng = new Random(seed);
            try { while (Volatile.Read(ref stop) == 0) body(rng); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, $"{name}: {e}", null); }
        }
        var threads = new[]
        {
            // s's well-meaning NF thread: fills slots from cur and syncs
            new Thread(() => Run("s sync", rng =>
            {
                var ring = s.Tx;
                uint cur = ring.Cur % 64;
                for (int i = 0; i < rng.Next(1, 40); i++)
                {
                    ref var slot = ref ring.Slot(cur);
                    uint idx = slot.BufIdx;
                    if (idx >= sFirst && idx < sFirst + 64)
                    {
                        var b = ring.Buffer(idx);
                        (rng.Next(4) == 0 ? Macs.Broadcast : r.Mac).CopyTo(b);
                        s.Mac.CopyTo(b[6..]);
                    }
                    cur = ring.Next(cur);
                }
                ring.Head = ring.Cur = cur;
                s.Port.TxSync();
            }, 1)),
            // s's hostile thread: rewrites slots and indices at random, at any moment
            new Thread(() => Run("s scribbler", rng =>
            {
                var ring = s.Tx;
                ref var slot = ref ring.Slot((uint)rng.Next(64));
                switch (rng.Next(8))
                {
                    case 0: slot.BufIdx = (uint)rng.Next(); break;
                    case 1: slot.BufIdx = sFirst + (uint)rng.Next(64); break;
                    case 2: slot.Len = (ushort)rng.Next(65536); break;
                    case 3: slot.Len = (ushort)rng.Next(2049); break;
                    case 4: slot.Flags = (ushort)rng.Next(65536); break;
                    case 5: ring.Head = (uint)rng.Next(70); break;
                    case 6: ring.Cur = (uint)rng.Next(70); break;
                    default: ring.Tail = (uint)rng.Next(); break;
                }
                if (rng.Next(64) == 0) Thread.Yield();
            }, 2)),
            // r's NF thread: syncs and releases what it got
            new Thread(() => Run("r sync", rng =>
            {
                r.Port.RxSync();
                var ring = r.Rx;
                ring.Head = ring.Cur = ring.Tail % 64;
                r.Port.RxSync();
                if (rng.Next(16) == 0) Thread.Yield();
            }, 3)),
            // r's hostile thread: points RX slots at other buffers of its RX ring, or at none
            new Thread(() => Run("r scribbler", rng =>
            {
                var ring = r.Rx;
                ref var slot = ref ring.Slot((uint)rng.Next(64));
                switch (rng.Next(6))
                {
                    case 0: slot.BufIdx = rRxFirst + (uint)rng.Next(64); break;
                    case 1: slot.BufIdx = r.Memory.BufferCount + (uint)rng.Next(1000); break;
                    case 2: slot.BufIdx = (uint)rng.Next(2); break;
                    case 3: ring.Head = (uint)rng.Next(70); break;
                    case 4: ring.Cur = (uint)rng.Next(70); break;
                    default: ring.Tail = (uint)rng.Next(); break;
                }
                if (rng.Next(64) == 0) Thread.Yield();
            }, 4)),
        };
        foreach (var t in threads) { t.IsBackground = true; t.Start(); }
        // 2 s of hostility, and on (at most 30 s) until there was enough traffic and enough
        // refused index writes to mean anything: a busy machine may give the threads little CPU.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Thread.Sleep(2000);
        while (clock.Elapsed < TimeSpan.FromSeconds(30) && Volatile.Read(ref failure) is null)
        {
            var now = sw.FindBridge("valehc")!.GetStatistics();
            if (now.Sent > 1000 && now.Delivered > 100 && now.CorruptRingIndex > 0) break;
            Thread.Sleep(100);
        }
        Volatile.Write(ref stop, 1);
        bool joined = threads.All(t => t.Join(10_000));
        Assert.True(joined, "a thread did not stop");
        Assert.True(failure is null, failure);

        var st = StatsAssert.Balanced(sw, "valehc");
        Assert.True(st.Sent > 1000 && st.Delivered > 100, $"too little traffic to mean anything: sent {st.Sent}, delivered {st.Delivered}");
        Assert.True(st.CorruptRingIndex > 0);
        for (uint i = sFirst + 64; i < s.Memory.BufferCount; i++)
            Assert.True(s.Tx.Buffer(i).IndexOfAnyExcept(Canary) < 0, $"s buffer {i} was written");
        for (uint i = RegionLayout.ReservedBuffers; i < r.Memory.BufferCount; i++)
            if (i < rRxFirst || i >= rRxFirst + 64)
                Assert.True(r.Tx.Buffer(i).IndexOfAnyExcept(Canary) < 0, $"r buffer {i} was written");
        Assert.True(new ReadOnlySpan<byte>(bystander.Base, (int)bystander.Size).IndexOfAnyExcept(Canary) < 0, "the bystander's memory was written");
        s.Dispose(); r.Dispose(); bystander.Dispose();
    }
}
