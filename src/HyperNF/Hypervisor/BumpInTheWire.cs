using HyperNF.Functions;
using HyperNF.Netmap;

namespace HyperNF.Hypervisor;

/// <summary>
/// Runs an <see cref="INetworkFunction"/> between a domain's first two ports: frames that
/// arrive on one port are handed to the NF in batches and forwarded out of the other by
/// swapping buffers between the RX and TX slots (NS_BUF_CHANGED), so the NF itself never
/// copies. The only copy is the switch's, done in TxSync. A MOREFRAG chain is one frame to
/// the NF (it sees the first fragment; the verdict applies to the whole chain).
/// With one ring pair per port the first vCPU does the work; others idle.
/// </summary>
public sealed class BumpInTheWire : IGuest
{
    private readonly INetworkFunction _nf;
    private readonly FrameBatchStorage _storage = new();
    private readonly byte[] _frags = new byte[FrameBatchStorage.MaxBatch];
    private long _forwarded0, _forwarded1, _nfDrops, _reflected, _reflectDrops, _batches;

    public BumpInTheWire(INetworkFunction nf) => _nf = nf;

    public string Name => _nf.Name;
    public int MinimumPorts => 2;
    public INetworkFunction Function => _nf;

    public IReadOnlyList<KeyValuePair<string, long>> Counters
    {
        get
        {
            var list = new List<KeyValuePair<string, long>>
            {
                new("forwarded_0_to_1", Interlocked.Read(ref _forwarded0)),
                new("forwarded_1_to_0", Interlocked.Read(ref _forwarded1)),
                new("nf_dropped", Interlocked.Read(ref _nfDrops)),
                new("reflected", Interlocked.Read(ref _reflected)),
                new("reflect_no_room", Interlocked.Read(ref _reflectDrops)),
                new("batches", Interlocked.Read(ref _batches)),
            };
            list.AddRange(_nf.Counters);
            return list;
        }
    }

    public void Run(GuestContext ctx)
    {
        if (ctx.Ports.Count < 2)
            throw new InvalidOperationException($"nf '{_nf.Name}' sits between two ports; domain '{ctx.DomainName}' has {ctx.Ports.Count} vif(s): give it two");
        if (ctx.VCpu != 0)
        {
            while (!ctx.Stopping) { ctx.Checkpoint(); ctx.Cancellation.WaitHandle.WaitOne(100); }
            return;
        }
        var p0 = ctx.Ports[0];
        var p1 = ctx.Ports[1];
        while (!ctx.Stopping)
        {
            ctx.Checkpoint();
            int a = Pump(p0, p1, 0), b = Pump(p1, p0, 1);
            // Sleep for input only when both directions are idle; a direction that is blocked
            // on TX space (-1: split/merge, the backend has not drained it) already waited in
            // Poll(Out) and has frames waiting, which WaitForInput would not count as input.
            if (a == 0 && b == 0) ctx.WaitForInput(50);
        }
    }

    /// <summary>One batch from <paramref name="src"/> through the NF to <paramref name="dst"/>; returns frames handled, or -1 when frames wait for TX space.</summary>
    private int Pump(NetmapPort src, NetmapPort dst, int inputPort)
    {
        src.RxSync();
        var rx = src.RxRing(0);
        uint avail = rx.Space;
        if (avail == 0) return 0;
        var tx = dst.TxRing(0);
        uint room = tx.Space;
        if (room == 0)
        {
            dst.TxSync();
            room = tx.Space;
            if (room == 0)
            {
                // split/merge: the backend has not drained our TX ring yet; wait as a netmap app would
                dst.Poll(PollEvents.Out, 10);
                return -1;
            }
        }

        var st = _storage;
        st.UseRing(rx);
        int n = 0;
        bool blocked = false;
        uint rcur = rx.Cur;
        while (n < FrameBatchStorage.MaxBatch && avail > 0)
        {
            // measure the chain starting at rcur
            uint frags = 1, j = rcur;
            while ((rx.Slot(j).Flags & SlotFlags.MoreFrag) != 0 && frags < avail && frags < 64)
            {
                j = rx.Next(j);
                frags++;
            }
            if ((rx.Slot(j).Flags & SlotFlags.MoreFrag) != 0 && frags == avail) break; // rest of the chain not here yet
            if (frags > room) { blocked = true; break; }
            ref var first = ref rx.Slot(rcur);
            st.BufIdx[n] = first.BufIdx;
            st.SlotIdx[n] = rcur;
            st.Lengths[n] = (ushort)Math.Min((int)first.Len, rx.BufferSize);
            st.Verdicts[n] = Verdict.Forward;
            _frags[n] = (byte)frags;
            n++;
            avail -= frags;
            room -= frags;
            for (uint f = 0; f < frags; f++) rcur = rx.Next(rcur);
        }
        if (n == 0)
        {
            if (!blocked) return 0;
            dst.TxSync();
            dst.Poll(PollEvents.Out, 10);
            return -1;
        }

        var batch = new FrameBatch(st, inputPort, n);
        _nf.Process(ref batch);

        uint tcur = tx.Cur;
        long fwd = 0, dropped = 0, reflect = 0;
        for (int i = 0; i < n; i++)
        {
            var v = st.Verdicts[i];
            if (v == Verdict.Drop) { dropped++; continue; }
            if (v == Verdict.Reflect) { reflect++; continue; }
            tcur = Move(rx, st.SlotIdx[i], _frags[i], st.Lengths[i], tx, tcur);
            fwd++;
        }
        tx.Head = tx.Cur = tcur;
        if (reflect != 0) ReflectAll(src, rx, n);
        rx.Head = rx.Cur = rcur;
        dst.TxSync();
        src.RxSync(); // give the RX slots back now, so senders can refill while we go on
        Interlocked.Add(ref inputPort == 0 ? ref _forwarded0 : ref _forwarded1, fwd);
        if (dropped != 0) Interlocked.Add(ref _nfDrops, dropped);
        Interlocked.Increment(ref _batches);
        return n;
    }

    private void ReflectAll(NetmapPort src, NetmapRing rx, int n)
    {
        var st = _storage;
        var back = src.TxRing(0);
        uint room = back.Space;
        uint tcur = back.Cur;
        long done = 0, noRoom = 0;
        for (int i = 0; i < n; i++)
        {
            if (st.Verdicts[i] != Verdict.Reflect) continue;
            if (_frags[i] > room) { noRoom++; continue; }
            tcur = Move(rx, st.SlotIdx[i], _frags[i], st.Lengths[i], back, tcur);
            room -= _frags[i];
            done++;
        }
        back.Head = back.Cur = tcur;
        src.TxSync();
        Interlocked.Add(ref _reflected, done);
        if (noRoom != 0) Interlocked.Add(ref _reflectDrops, noRoom);
    }

    /// <summary>Moves one frame (a chain of slots) from an RX ring to a TX ring by swapping buffer indices.</summary>
    private static uint Move(NetmapRing rx, uint rslot, byte frags, ushort firstLen, NetmapRing tx, uint tcur)
    {
        for (int f = 0; f < frags; f++)
        {
            ref var rs = ref rx.Slot(rslot);
            ref var ts = ref tx.Slot(tcur);
            uint spare = ts.BufIdx;
            ts.BufIdx = rs.BufIdx;
            ts.Len = frags == 1 ? firstLen : rs.Len;
            ts.Flags = (ushort)(SlotFlags.BufChanged | (f + 1 < frags ? SlotFlags.MoreFrag : 0));
            rs.BufIdx = spare;
            rs.Flags = SlotFlags.BufChanged;
            rslot = rx.Next(rslot);
            tcur = tx.Next(tcur);
        }
        return tcur;
    }
}
