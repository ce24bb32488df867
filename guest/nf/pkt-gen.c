/*
 * pkt-gen: netmap's pkt-gen as a guest, interoperable with the C# pkt-gen
 * (src/HyperNF/Tools): the same flags, the same frames (hnf_net.h), the same loss,
 * reordering and latency accounting. Timestamps are the host's CLOCK_MONOTONIC in ns
 * (the CLOCK hypercall, extrapolated with the TSC between calls: hnf_now_ns), the clock
 * the C# pkt-gen stamps with (Stopwatch on Linux), so either side can send to the other.
 *
 * Flags: -f tx|rx  -l LEN (60..9014; over a buffer the frame is an NS_MOREFRAG chain)
 *        -n COUNT (0: no limit; rx counts every frame, ours or not)  -R PPS (1000, 1.5M ...)
 *        -b BATCH (1..4096)  -s SRC -d DST (A.B.C.D[-A.B.C.D][:PORT[-PORT]])  -S SMAC  -D DMAC
 *        -t SECONDS  -T REPORT_MS (>= 10, default 1000)  -w (busy-poll)  -i PORT (index or name)
 *
 * Console: a line per report interval, then the summary, in a fixed form:
 *   pktgen-tx: sent=N bytes=N syncs=N elapsed_ns=N pps=N
 *   pktgen-rx: received=N lost=N reordered=N bad=N p50_ns=N p99_ns=N duplicates=N foreign=N
 *              bytes=N syncs=N min_ns=N mean_ns=N p90_ns=N p999_ns=N max_ns=N active_ns=N pps=N
 * Exit status: 0 done; rx: 1 when frames were lost, bad or duplicated, or none of ours
 * arrived; 2 bad arguments or an unusable port.
 */
#include "hnf_net.h"

#define MAX_FRAME 9014
#define MAX_BATCH 4096
#define MAX_CHAIN 64
#define MAX_RINGS 16

struct range { uint32_t a0, a1; uint16_t p0, p1; };

static struct {
    int rx, busy;
    uint32_t len, batch, port;
    const char *port_name;
    uint64_t count, rate, duration_ns, report_ns;
    struct range src, dst;
    uint8_t smac[6], dmac[6];
    int have_smac;
} o;

static struct netmap_if *nifp;
static struct hnf_seq seq;
static struct hnf_hist hist;

static int parse_range(const char *s, struct range *r)
{
    const char *colon = strchr(s, ':');
    size_t alen = colon ? (size_t)(colon - s) : strlen(s);
    const char *dash = 0;
    for (size_t i = 0; i < alen; i++) if (s[i] == '-') { dash = s + i; break; }
    if (hnf_parse_ipv4_n(s, dash ? (size_t)(dash - s) : alen, &r->a0) != 0) return -1;
    if (dash ? hnf_parse_ipv4_n(dash + 1, alen - (size_t)(dash + 1 - s), &r->a1) != 0 : (r->a1 = r->a0, 0)) return -1;
    if (r->a1 < r->a0) return -1;
    r->p0 = r->p1 = 1234; /* pkt-gen's default port */
    if (colon) {
        char tmp[16];
        size_t n = strlen(colon + 1);
        if (n == 0 || n >= sizeof tmp) return -1;
        memcpy(tmp, colon + 1, n + 1);
        char *d = strchr(tmp, '-');
        uint64_t p0, p1;
        if (d) *d = 0;
        if (hnf_parse_u64(tmp, &p0) != 0 || p0 > 65535) return -1;
        if (d ? hnf_parse_u64(d + 1, &p1) != 0 || p1 > 65535 : (p1 = p0, 0)) return -1;
        if (p1 < p0) return -1;
        r->p0 = (uint16_t)p0;
        r->p1 = (uint16_t)p1;
    }
    return 0;
}

/* "1", "2.5", "0.010": seconds with up to 9 decimals into ns. */
static int parse_seconds(const char *s, uint64_t *ns)
{
    uint64_t whole = 0, frac = 0, scale = 1000000000;
    const char *p = s;
    if (*p == 0) return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (whole > 1000000000) return -1;
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale == 1) return -1;
            scale /= 10;
            frac += (uint64_t)(*p - '0') * scale;
        }
    }
    if (*p != 0 || p == s) return -1;
    *ns = whole * 1000000000 + frac;
    return 0;
}

static int bad(const char *flag, const char *v, const char *want)
{
    hnf_printf("pkt-gen: %s %s: %s\n", flag, v, want);
    return -1;
}

static int parse_args(char *cmdline)
{
    char *argv[64];
    int argc = hnf_split(cmdline, " \t,", argv, 64);
    if (argc < 0) { hnf_print("pkt-gen: too many arguments\n"); return -1; }
    struct hnf_getopt g = { .argc = argc, .argv = argv };
    o.len = 60;
    o.batch = 512;
    o.report_ns = 1000000000;
    o.src = (struct range){ 0x0A000001, 0x0A000001, 1234, 1234 };
    o.dst = (struct range){ 0x0A010001, 0x0A010001, 1234, 1234 };
    memset(o.dmac, 0xFF, 6);
    int c;
    uint64_t v;
    while ((c = hnf_getopt(&g, "pkt-gen", "f:l:n:R:b:s:d:S:D:t:T:wi:")) != 0) {
        const char *a = g.arg;
        char flag[3] = { '-', (char)c, 0 };
        switch (c) {
        case 'f':
            if (strcmp(a, "tx") == 0) o.rx = 0;
            else if (strcmp(a, "rx") == 0) o.rx = 1;
            else return bad(flag, a, "use tx or rx");
            break;
        case 'l':
            if (hnf_parse_u64(a, &v) != 0 || v < PKT_MIN_LEN || v > MAX_FRAME) return bad(flag, a, "frame length out of range: use 60..9014 bytes");
            o.len = (uint32_t)v;
            break;
        case 'n':
            if (hnf_parse_u64(a, &o.count) != 0) return bad(flag, a, "not a non-negative integer (0: no limit)");
            break;
        case 'R':
            if (hnf_parse_rate(a, &o.rate) != 0 || o.rate > 1000000000)
                return bad(flag, a, "not a rate: frames per second up to 1G, e.g. 1000, 500K, 1M (0: as fast as possible)");
            break;
        case 'b':
            if (hnf_parse_u64(a, &v) != 0 || v < 1 || v > MAX_BATCH) return bad(flag, a, "batch out of range: use 1..4096 frames");
            o.batch = (uint32_t)v;
            break;
        case 's':
        case 'd':
            if (parse_range(a, c == 's' ? &o.src : &o.dst) != 0)
                return bad(flag, a, "want A.B.C.D[-A.B.C.D][:PORT[-PORT]], e.g. 10.0.0.1-10.0.0.100:1234");
            break;
        case 'S':
            if (hnf_parse_mac(a, o.smac) != 0) return bad(flag, a, "not a MAC like 02:00:00:00:00:01");
            if (o.smac[0] & 1) return bad(flag, a, "a sender needs a unicast MAC, e.g. 02:00:00:00:00:01");
            o.have_smac = 1;
            break;
        case 'D':
            if (hnf_parse_mac(a, o.dmac) != 0) return bad(flag, a, "not a MAC like ff:ff:ff:ff:ff:ff");
            break;
        case 't':
            if (parse_seconds(a, &o.duration_ns) != 0 || o.duration_ns == 0) return bad(flag, a, "not a positive number of seconds");
            break;
        case 'T':
            if (hnf_parse_u64(a, &v) != 0 || v < 10 || v > 3600000) return bad(flag, a, "report interval: use 10..3600000 ms");
            o.report_ns = v * 1000000;
            break;
        case 'w':
            o.busy = 1;
            break;
        case 'i':
            if (hnf_parse_u64(a, &v) == 0) o.port = (uint32_t)(v > 0xFFFF ? 0xFFFF : v);
            else o.port_name = a;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

static int open_port(void)
{
    const struct hnf_boot_info *bi = hnf_boot;
    if (o.port_name) {
        uint32_t k;
        for (k = 0; k < bi->nports && k < HNF_MAX_PORTS; k++) {
            struct netmap_if *n = hnf_port(k);
            if (n && strncmp(n->ni_name, o.port_name, sizeof n->ni_name) == 0) break;
        }
        if (k == bi->nports || k == HNF_MAX_PORTS) {
            hnf_printf("pkt-gen: -i %s: no port of that name (ports: %u)\n", o.port_name, bi->nports);
            return -1;
        }
        o.port = k;
    }
    nifp = hnf_port(o.port);
    if (nifp == 0) {
        hnf_printf("pkt-gen: -i %u: the domain has %u port(s)\n", o.port, bi->nports);
        return -1;
    }
    if (nifp->ni_tx_rings < 1 || nifp->ni_rx_rings < 1 || nifp->ni_tx_rings > MAX_RINGS || nifp->ni_rx_rings > MAX_RINGS) {
        hnf_printf("pkt-gen: port %u has %u TX and %u RX rings (1..%d supported)\n", o.port, nifp->ni_tx_rings, nifp->ni_rx_rings, MAX_RINGS);
        return -1;
    }
    return 0;
}

/* The C# pkt-gen's order (update_ip): source port fastest, then source address, then
 * destination port, then destination address. */
struct cursor { uint32_t sip, dip; uint16_t sport, dport; };

static void advance(struct cursor *c)
{
    if (c->sport < o.src.p1) { c->sport++; return; }
    c->sport = o.src.p0;
    if (c->sip < o.src.a1) { c->sip++; return; }
    c->sip = o.src.a0;
    if (c->dport < o.dst.p1) { c->dport++; return; }
    c->dport = o.dst.p0;
    if (c->dip < o.dst.a1) { c->dip++; return; }
    c->dip = o.dst.a0;
}

static void interval(const char *dir, uint64_t start, uint64_t now, uint64_t *last, uint64_t frames, uint64_t *last_frames, int64_t lost)
{
    uint64_t dt = now - *last, df = frames - *last_frames;
    hnf_printf("pktgen-%s: t_ms=%lu frames=%lu pps=%lu total=%lu lost=%ld\n", dir, (now - start) / 1000000, df,
               dt ? df * 1000000000 / dt : 0, frames, lost);
    *last = now;
    *last_frames = frames;
}

static int run_tx(void)
{
    struct netmap_ring *ring0 = NETMAP_TXRING(nifp, 0);
    uint32_t bufsz = ring0->nr_buf_size;
    if (bufsz < PKT_MIN_LEN) { hnf_printf("pkt-gen: buffer size %u is below %d\n", bufsz, PKT_MIN_LEN); return 2; }
    uint32_t frags = (o.len + bufsz - 1) / bufsz;
    if (frags > MAX_CHAIN) { hnf_printf("pkt-gen: -l %u needs more than %d buffers\n", o.len, MAX_CHAIN); return 2; }
    uint32_t first_len = o.len < bufsz ? o.len : bufsz, last_len = o.len - (frags - 1) * bufsz;
    uint32_t rings = nifp->ni_tx_rings;
    uint32_t slots = ring0->num_slots < NETMAP_RXRING(nifp, 0)->num_slots ? ring0->num_slots : NETMAP_RXRING(nifp, 0)->num_slots;
    uint32_t batch = (slots - 1) / frags < o.batch ? (slots - 1) / frags : o.batch;
    if (batch == 0) batch = 1;
    if (!o.have_smac) hnf_pkt_default_mac(nifp->ni_name, sizeof nifp->ni_name, o.smac);

    uint8_t *tmpl = hnf_alloc(first_len);
    uint32_t *prefilled[MAX_RINGS];
    if (tmpl == 0) { hnf_print("pkt-gen: out of heap\n"); return 2; }
    for (uint32_t r = 0; r < rings; r++) {
        prefilled[r] = hnf_alloc(NETMAP_TXRING(nifp, r)->num_slots * sizeof(uint32_t));
        if (prefilled[r] == 0) { hnf_print("pkt-gen: out of heap\n"); return 2; }
        memset(prefilled[r], 0, NETMAP_TXRING(nifp, r)->num_slots * sizeof(uint32_t));
    }
    hnf_pkt_write(tmpl, first_len, o.len, o.dmac, o.smac, o.src.a0, o.src.p0, o.dst.a0, o.dst.p0);
    int vary = o.src.a0 != o.src.a1 || o.src.p0 != o.src.p1 || o.dst.a0 != o.dst.a1 || o.dst.p0 != o.dst.p1;
    struct cursor ep = { o.src.a0, o.dst.a0, o.src.p0, o.dst.p0 };

    hnf_printf("pktgen-tx: port=%u name=%.16s len=%u frags=%u batch=%u rate=%lu count=%lu smac=%02x:%02x:%02x:%02x:%02x:%02x\n", o.port,
               nifp->ni_name, o.len, frags, batch, o.rate, o.count, o.smac[0], o.smac[1], o.smac[2], o.smac[3], o.smac[4], o.smac[5]);
    uint64_t limit = o.count ? o.count : UINT64_MAX, sent = 0, syncs = 0, sq = 0;
    uint64_t start = hnf_now_ns(), deadline = o.duration_ns ? start + o.duration_ns : UINT64_MAX;
    uint64_t next_report = start + o.report_ns, last_report = start, last_frames = 0;
    /* token bucket: credit in frame x 1e9 units; a frame costs 1e9; credit grows by rate per ns */
    uint64_t credit = 0, last = start;
    uint64_t cap_frames = o.rate * 4 / 1000 > batch ? o.rate * 4 / 1000 : batch;
    uint64_t min_burst = o.rate / 1000 < 1 ? 1 : o.rate / 1000 > batch ? batch : o.rate / 1000;
    credit = min_burst * 1000000000ull;
    uint32_t cur_ring = 0;

    while (sent < limit) {
        uint64_t now = hnf_now_ns();
        if (now >= deadline || hnf_shutdown_requested()) break;
        if (now >= next_report) {
            interval("tx", start, now, &last_report, sent, &last_frames, 0);
            next_report = now + o.report_ns;
        }
        uint64_t want = limit - sent < batch ? limit - sent : batch;
        if (o.rate) {
            uint64_t dt = now - last;
            if (dt > 1000000000) dt = 1000000000;
            last = now;
            credit += dt * o.rate;
            if (credit > cap_frames * 1000000000ull) credit = cap_frames * 1000000000ull;
            uint64_t have = credit / 1000000000ull, need = min_burst < want ? min_burst : want;
            if (have < need) {
                uint64_t wait = (need * 1000000000ull - credit) / o.rate + 1;
                uint64_t until = (next_report < deadline ? next_report : deadline) - now;
                hnf_sleep_ns(wait < until ? wait : until);
                continue;
            }
            if (have < want) want = have;
        }
        uint64_t done = 0;
        for (uint32_t k = 0; k < rings && done < want; k++) {
            uint32_t r = cur_ring;
            struct netmap_ring *ring = NETMAP_TXRING(nifp, r);
            uint32_t cur = ring->cur, space = nm_ring_space(ring);
            while (done < want && space >= frags) {
                struct netmap_slot *s = &ring->slot[cur];
                uint32_t idx = s->buf_idx;
                uint8_t *buf = (uint8_t *)hnf_buf_checked(ring, idx);
                if (buf == 0) { hnf_printf("pkt-gen: TX slot %u names buffer %u outside the region\n", cur, idx); return 2; }
                if (prefilled[r][cur] != idx) {
                    memcpy(buf, tmpl, first_len);
                    prefilled[r][cur] = idx;
                }
                if (vary) {
                    hnf_pkt_set_endpoints(buf, ep.sip, ep.sport, ep.dip, ep.dport);
                    advance(&ep);
                }
                hnf_pkt_stamp(buf, sq++, now);
                s->len = (uint16_t)first_len;
                s->flags = frags > 1 ? NS_MOREFRAG : 0;
                cur = nm_ring_next(ring, cur);
                for (uint32_t f = 1; f < frags; f++) {
                    struct netmap_slot *m = &ring->slot[cur];
                    m->len = (uint16_t)(f == frags - 1 ? last_len : bufsz);
                    m->flags = f == frags - 1 ? 0 : NS_MOREFRAG;
                    cur = nm_ring_next(ring, cur);
                }
                space -= frags;
                done++;
            }
            ring->head = ring->cur = cur;
            if (done < want) cur_ring = r + 1 == rings ? 0 : r + 1;
        }
        if (done > 0) {
            hnf_txsync(o.port, HNF_ALL_RINGS);
            syncs++;
            sent += done;
            if (o.rate) credit -= done * 1000000000ull;
        } else {
            /* every TX ring is full: the host has not taken the frames yet (split/merge) */
            if (o.busy) hnf_txsync(o.port, HNF_ALL_RINGS);
            else hnf_poll(1000000, 0, 1u << o.port, 0);
        }
    }
    uint64_t elapsed = hnf_now_ns() - start;
    hnf_printf("pktgen-tx: sent=%lu bytes=%lu syncs=%lu elapsed_ns=%lu pps=%lu\n", sent, sent * o.len, syncs, elapsed,
               elapsed ? sent * 1000000000 / elapsed : 0);
    return 0;
}

static int any_rx(void)
{
    for (uint32_t r = 0; r < nifp->ni_rx_rings; r++)
        if (!nm_ring_empty(NETMAP_RXRING(nifp, r))) return 1;
    return 0;
}

static int run_rx(void)
{
    uint64_t limit = o.count ? o.count : UINT64_MAX, received = 0, bytes = 0, foreign = 0, badf = 0, syncs = 0;
    uint64_t start = hnf_now_ns(), deadline = o.duration_ns ? start + o.duration_ns : UINT64_MAX;
    uint64_t next_report = start + o.report_ns, last_report = start, last_frames = 0, first = 0, lastb = 0;
    hnf_seq_reset(&seq);
    hnf_hist_reset(&hist);
    hnf_printf("pktgen-rx: port=%u name=%.16s count=%lu\n", o.port, nifp->ni_name, o.count);
    while (received < limit) {
        uint64_t now = hnf_now_ns();
        if (now >= deadline || hnf_shutdown_requested()) break;
        if (now >= next_report) {
            interval("rx", start, now, &last_report, received, &last_frames, hnf_seq_lost(&seq));
            next_report = now + o.report_ns;
        }
        if (!any_rx()) {
            if (o.busy) {
                hnf_rxsync(o.port, HNF_ALL_RINGS);
                if (!any_rx()) continue;
            } else {
                uint64_t until = (next_report < deadline ? next_report : deadline) - now;
                if (until > 100000000) until = 100000000;
                if (until < 1000000) until = 1000000;
                if ((hnf_poll(until, 1u << o.port, 0, 0) & (1u << o.port)) == 0) continue;
            }
            now = hnf_now_ns(); /* one receive time per batch, as the sender's one send time */
        }
        uint64_t n = 0;
        for (uint32_t r = 0; r < nifp->ni_rx_rings && n < o.batch && received + n < limit; r++) {
            struct netmap_ring *ring = NETMAP_RXRING(nifp, r);
            uint32_t cur = ring->cur, tail = ring->tail;
            while (cur != tail && n < o.batch && received + n < limit) {
                struct netmap_slot *s = &ring->slot[cur];
                uint32_t last = cur, len = s->len, k = 1, complete = 1;
                uint16_t flags = s->flags;
                while ((flags & NS_MOREFRAG) && k < MAX_CHAIN) {
                    last = nm_ring_next(ring, last);
                    if (last == tail) { complete = 0; break; }
                    len += ring->slot[last].len;
                    flags = ring->slot[last].flags;
                    k++;
                }
                if (!complete) break;
                uint8_t *buf = (uint8_t *)hnf_buf_checked(ring, s->buf_idx);
                uint32_t first_len = s->len < ring->nr_buf_size ? s->len : ring->nr_buf_size;
                uint64_t sq;
                int64_t ts;
                enum hnf_pkt_status st = buf ? hnf_pkt_check(buf, first_len, len, &sq, &ts) : PKT_BAD;
                if (st == PKT_OK) {
                    hnf_seq_add(&seq, sq);
                    hnf_hist_record(&hist, (int64_t)(now - (uint64_t)ts));
                } else if (st == PKT_FOREIGN) {
                    foreign++;
                } else {
                    badf++;
                }
                bytes += len;
                n++;
                cur = nm_ring_next(ring, last);
            }
            ring->head = ring->cur = cur;
        }
        if (n == 0) {
            hnf_rxsync(o.port, HNF_ALL_RINGS); /* only part of a chain is published: let the host finish it */
            continue;
        }
        if (received == 0) first = now;
        lastb = now;
        received += n;
        syncs++;
    }
    hnf_rxsync(o.port, HNF_ALL_RINGS); /* hand the consumed slots back */
    uint64_t end = hnf_now_ns(), active = lastb > first ? lastb - first : end - start;
    int64_t lost = hnf_seq_lost(&seq);
    hnf_printf("pktgen-rx: received=%lu lost=%ld reordered=%ld bad=%lu p50_ns=%lu p99_ns=%lu duplicates=%ld foreign=%lu "
               "bytes=%lu syncs=%lu min_ns=%lu mean_ns=%lu p90_ns=%lu p999_ns=%lu max_ns=%lu active_ns=%lu pps=%lu\n",
               received, lost, seq.reordered, badf, hnf_hist_percentile(&hist, 500), hnf_hist_percentile(&hist, 990),
               seq.duplicates, foreign, bytes, syncs, hist.count ? hist.min : 0, hist.count ? hist.sum / hist.count : 0,
               hnf_hist_percentile(&hist, 900), hnf_hist_percentile(&hist, 999), hist.max, active,
               active ? received * 1000000000 / active : 0);
    return lost != 0 || badf != 0 || seq.duplicates != 0 || hist.count == 0 ? 1 : 0;
}

int main(const struct hnf_boot_info *bi)
{
    (void)bi;
    if (parse_args(hnf_cmdline()) != 0 || open_port() != 0) return 2;
    return o.rx ? run_rx() : run_tx();
}
