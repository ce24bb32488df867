/* The bump-in-the-wire loop (hnf_bump.h). Ring 0 of each port, as the C# one. */
#include "hnf_bump.h"

#define MAX_CHAIN 64
#define MAX_BATCH 1024
#define IDLE_WAIT_NS 50000000ull /* 50 ms: the C# loop's WaitForInput(50) */

struct side {
    struct netmap_ring *rx, *tx;
};

static void move(struct netmap_ring *rx, uint32_t rs, uint32_t frags, struct netmap_ring *tx, uint32_t *tcur)
{
    for (uint32_t f = 0; f < frags; f++) {
        struct netmap_slot *r = &rx->slot[rs], *t = &tx->slot[*tcur];
        uint32_t spare = t->buf_idx;
        t->buf_idx = r->buf_idx;
        t->len = r->len;
        t->flags = (uint16_t)(NS_BUF_CHANGED | (f + 1 < frags ? NS_MOREFRAG : 0));
        r->buf_idx = spare;
        r->flags = NS_BUF_CHANGED;
        rs = nm_ring_next(rx, rs);
        *tcur = nm_ring_next(tx, *tcur);
    }
}

/* One batch from port `in` through fn to port `out` (equal with one port). Returns the
 * frames taken off the RX ring; sets bits in *txmask for TX rings that got frames. */
static uint32_t pump(struct side *s, int in, int out, hnf_nf_fn fn, void *ctx, struct hnf_bump_stats *st, uint32_t *txmask)
{
    struct netmap_ring *rx = s[in].rx, *tx = s[out].tx, *back = s[in].tx;
    uint32_t avail = nm_ring_space(rx);
    if (avail == 0) return 0;
    uint32_t room = nm_ring_space(tx);
    uint32_t back_room = back == tx ? 0 : nm_ring_space(back);
    uint32_t rcur = rx->cur, tcur = tx->cur, bcur = back->cur;
    uint32_t n = 0;
    while (n < MAX_BATCH && avail > 0) {
        uint32_t frags = 1, j = rcur, total = rx->slot[j].len;
        while ((rx->slot[j].flags & NS_MOREFRAG) && frags < avail && frags < MAX_CHAIN) {
            j = nm_ring_next(rx, j);
            frags++;
            total += rx->slot[j].len;
        }
        if ((rx->slot[j].flags & NS_MOREFRAG) && frags == avail) break; /* the rest of the chain is not here yet */
        if (frags > room) break;                                         /* wait for TX room; nothing consumed */
        struct netmap_slot *first = &rx->slot[rcur];
        uint32_t first_len = first->len < rx->nr_buf_size ? first->len : rx->nr_buf_size;
        uint8_t *frame = (uint8_t *)NETMAP_BUF(rx, first->buf_idx);
        enum hnf_verdict v = fn(ctx, frame, first_len, total, in);
        st->frames++;
        if (v == HNF_FORWARD) {
            move(rx, rcur, frags, tx, &tcur);
            room -= frags;
            st->forwarded[in]++;
        } else if (v == HNF_REFLECT) {
            if (back == tx) { /* one port: its TX ring is the output ring */
                move(rx, rcur, frags, tx, &tcur);
                room -= frags;
                st->reflected++;
            } else if (frags <= back_room) {
                move(rx, rcur, frags, back, &bcur);
                back_room -= frags;
                st->reflected++;
            } else {
                st->reflect_no_room++;
            }
        } else {
            st->dropped++;
        }
        for (uint32_t f = 0; f < frags; f++) rcur = nm_ring_next(rx, rcur);
        avail -= frags;
        n++;
    }
    if (n == 0) return 0;
    if (tcur != tx->cur) {
        tx->head = tx->cur = tcur;
        *txmask |= 1u << out;
    }
    if (back != tx && bcur != back->cur) {
        back->head = back->cur = bcur;
        *txmask |= 1u << in;
    }
    rx->head = rx->cur = rcur;
    st->batches++;
    return n;
}

void hnf_bump_print(const char *name, const struct hnf_bump_stats *st)
{
    hnf_printf("%s: frames=%lu forwarded_0_to_1=%lu forwarded_1_to_0=%lu dropped=%lu reflected=%lu reflect_no_room=%lu batches=%lu\n",
               name, st->frames, st->forwarded[0], st->forwarded[1], st->dropped, st->reflected, st->reflect_no_room, st->batches);
}

int hnf_bump_run(hnf_nf_fn fn, void *ctx, const struct hnf_bump_opts *o, struct hnf_bump_stats *st)
{
    const struct hnf_boot_info *bi = hnf_boot;
    uint32_t nports = bi->nports < 2 ? bi->nports : 2;
    struct side s[2];
    if (nports == 0) {
        hnf_printf("%s: the domain has no vif; give it one (frames go back out) or two\n", o->name);
        return 2;
    }
    for (uint32_t p = 0; p < nports; p++) {
        struct netmap_if *nifp = hnf_port(p);
        if (nifp == 0 || nifp->ni_tx_rings < 1 || nifp->ni_rx_rings < 1) {
            hnf_printf("%s: port %u has no netmap_if or no rings\n", o->name, p);
            return 2;
        }
        s[p].tx = NETMAP_TXRING(nifp, 0);
        s[p].rx = NETMAP_RXRING(nifp, 0);
    }
    if (nports == 1) s[1] = s[0];
    uint32_t rxmask = nports == 1 ? 1u : 3u;
    memset(st, 0, sizeof *st);
    uint64_t next_report = o->report_ns ? hnf_clock_ns() + o->report_ns : UINT64_MAX;
    for (;;) {
        uint32_t txmask = 0;
        uint32_t a = pump(s, 0, nports == 1 ? 0 : 1, fn, ctx, st, &txmask);
        uint32_t b = nports == 1 ? 0 : pump(s, 1, 0, fn, ctx, st, &txmask);
        /* One exit flushes what we queued and syncs both RX rings; block only when idle. */
        hnf_poll(a + b == 0 ? IDLE_WAIT_NS : 0, rxmask, txmask, 0);
        if (o->count != 0 && st->frames >= o->count) break;
        if (hnf_shutdown_requested()) break;
        if (o->report_ns && (a + b == 0 || (st->batches & 63) == 0)) {
            uint64_t now = hnf_now_ns();
            if (now >= next_report) {
                hnf_bump_print(o->name, st);
                if (o->report) o->report(ctx);
                next_report = now + o->report_ns;
            }
        }
    }
    return 0;
}
