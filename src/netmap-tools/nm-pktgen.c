/*
 * nm-pktgen: a traffic generator and sink written against netmap's user API only (the calls
 * netmap's pkt-gen makes, in its order), for `hypernf bench process` (ProcessBenchmark.cs):
 * run with libhypernf-netmap.so preloaded it is a process domain of the daemon.
 *
 *   open("/dev/netmap"); ioctl(NIOCCTRL, NETMAP_REQ_REGISTER); mmap(nr_memsize);
 *   tx: poll(POLLOUT) then fill up to -b frames per ring (pkt-gen's sender loop: the poll is
 *       the txsync of the previous batch); a final NIOCTXSYNC until the ring drained.
 *   rx: poll(POLLIN) then consume every ring (pkt-gen's receiver loop).
 *   nop: NIOCTXSYNC with nothing queued, in a loop: the cost of one sync hand-off.
 *
 * Frames are HyperNF pkt-gen's (src/HyperNF/Tools/PacketFormat.cs): Ethernet, IPv4, UDP and
 * an 18-byte header (magic 0x4847, a 64-bit sequence number and a 64-bit CLOCK_MONOTONIC ns
 * timestamp, big-endian) at offset 42, so C# pkt-gen domains and this program interoperate.
 * One timestamp per batch, as pkt-gen.
 *
 *   nm-pktgen -i PORT -f tx|rx|nop [-l LEN] [-b BATCH] [-n COUNT] [-T SECONDS] [-a CPU]
 *             [-R REPORT_MS] [-W WARMUP_MS] [-I IDLE_MS] [--busy]
 * SIGINT/SIGTERM end a run as -T or -n would (the harness stops the sender when its window closes).
 * Output: "ready=1" once registered, "report t_ns=T frames=N syncs=S" every REPORT_MS (the
 * harness derives rates over its own window from these), then key=value totals; latency
 * percentiles (rx) over frames sent after the first WARMUP_MS of traffic. Exit 0 on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "netmap_abi.h"

#define MAGIC 0x4847
#define OFS_MAGIC 42
#define OFS_SEQ 44
#define OFS_TS 52
#define MIN_LEN 60

static const char *port_name, *function = "rx";
static int frame_len = MIN_LEN, batch = 512, cpu = -1, report_ms = 100, warmup_ms = 0, idle_ms = 1000, busy;
static long long count, seconds_ns;
static volatile sig_atomic_t stop; /* SIGINT/SIGTERM: finish (push what is queued, print the totals) */

static void on_signal(int sig) { (void)sig; stop = 1; }

struct port {
    int fd;
    char *mem;
    uint64_t memsize;
    struct netmap_if *nifp;
};

static void die(const char *what)
{
    fprintf(stderr, "nm-pktgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void put_be16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static void put_be64(unsigned char *p, uint64_t v) { for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)v; v >>= 8; } }
static uint64_t get_be64(const unsigned char *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = v << 8 | p[i]; return v; }

static void open_port(struct port *p)
{
    memset(p, 0, sizeof *p);
    p->fd = open("/dev/netmap", O_RDWR);
    if (p->fd < 0) die("open /dev/netmap");
    struct nmreq_header h;
    struct nmreq_register r;
    memset(&h, 0, sizeof h);
    memset(&r, 0, sizeof r);
    h.nr_version = NETMAP_API;
    h.nr_reqtype = NETMAP_REQ_REGISTER;
    strncpy(h.nr_name, port_name, sizeof h.nr_name - 1);
    h.nr_body = (uintptr_t)&r;
    r.nr_mode = NR_REG_ALL_NIC;
    if (ioctl(p->fd, NIOCCTRL, &h) < 0) die("NIOCCTRL REGISTER");
    p->memsize = r.nr_memsize;
    p->mem = mmap(NULL, p->memsize, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (p->mem == MAP_FAILED) die("mmap");
    p->nifp = NETMAP_IF(p->mem, r.nr_offset);
}

/* The frame template (HyperNF pkt-gen's format): broadcast, UDP 10.0.0.1:1234 -> 10.1.0.1:4321. */
static void write_template(unsigned char *b)
{
    memset(b, 0, (size_t)frame_len);
    memset(b, 0xff, 6);
    const unsigned char src[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, (unsigned char)(getpid() & 0xff) };
    memcpy(b + 6, src, 6);
    put_be16(b + 12, 0x0800);
    unsigned char *ip = b + 14;
    ip[0] = 0x45;
    put_be16(ip + 2, (uint16_t)(frame_len - 14));
    put_be16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 17;
    ip[12] = 10; ip[13] = 0; ip[14] = 0; ip[15] = 1;
    ip[16] = 10; ip[17] = 1; ip[18] = 0; ip[19] = 1;
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    put_be16(ip + 10, (uint16_t)~sum);
    put_be16(b + 34, 1234);
    put_be16(b + 36, 4321);
    put_be16(b + 38, (uint16_t)(frame_len - 34));
    put_be16(b + OFS_MAGIC, MAGIC);
}

static int wait_io(struct port *p, short ev, int ms)
{
    if (busy) {
        if (ioctl(p->fd, ev == POLLIN ? NIOCRXSYNC : NIOCTXSYNC) < 0) die("sync ioctl");
        return 1;
    }
    struct pollfd f = { p->fd, ev, 0 };
    int r = poll(&f, 1, ms);
    if (r < 0) { if (errno == EINTR) return 0; die("poll"); }
    if (r > 0 && (f.revents & POLLERR)) { errno = EIO; die("poll: POLLERR"); }
    return r;
}

static void report(long long t, long long frames, long long syncs)
{
    printf("report t_ns=%lld frames=%lld syncs=%lld\n", t, frames, syncs);
}

static int run_tx(struct port *p)
{
    struct netmap_if *nifp = p->nifp;
    for (uint32_t i = 0; i < nifp->ni_tx_rings; i++) {
        struct netmap_ring *t = NETMAP_TXRING(nifp, i);
        for (uint32_t s = 0; s < t->num_slots; s++) write_template((unsigned char *)NETMAP_BUF(t, t->slot[s].buf_idx));
    }
    printf("ready=1\n");
    long long sent = 0, syncs = 0, seq = 0, t0 = now_ns(), next = t0 + (long long)report_ms * 1000000LL;
    long long end = seconds_ns ? t0 + seconds_ns : 0;
    while ((!count || sent < count) && !stop) {
        long long now = now_ns();
        if (end && now >= end) break;
        if (report_ms && now >= next) { report(now, sent, syncs); next += (long long)report_ms * 1000000LL; }
        if (wait_io(p, POLLOUT, 1000) <= 0) continue;
        syncs++;
        now = now_ns();
        for (uint32_t i = 0; i < nifp->ni_tx_rings; i++) {
            struct netmap_ring *t = NETMAP_TXRING(nifp, i);
            uint32_t cur = t->cur, n = nm_ring_space(t);
            if (n > (uint32_t)batch) n = (uint32_t)batch;
            if (count && (long long)n > count - sent) n = (uint32_t)(count - sent);
            for (uint32_t k = 0; k < n; k++) {
                struct netmap_slot *s = &t->slot[cur];
                unsigned char *b = (unsigned char *)NETMAP_BUF(t, s->buf_idx);
                put_be64(b + OFS_SEQ, (uint64_t)seq++);
                put_be64(b + OFS_TS, (uint64_t)now);
                s->len = (uint16_t)frame_len;
                s->flags = 0;
                cur = nm_ring_next(t, cur);
            }
            t->head = t->cur = cur;
            sent += n;
        }
    }
    /* Push what is queued and wait until the switch took it (pkt-gen's final loop). */
    for (int i = 0; i < 1000; i++) {
        if (ioctl(p->fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
        int pending = 0;
        for (uint32_t r = 0; r < nifp->ni_tx_rings; r++) pending |= nm_tx_pending(NETMAP_TXRING(nifp, r));
        if (!pending) break;
        usleep(1000);
    }
    long long t1 = now_ns();
    report(t1, sent, syncs);
    double dt = (t1 - t0) / 1e9;
    printf("sent=%lld\nsyncs=%lld\nseconds=%.3f\nmpps=%.3f\n", sent, syncs, dt, dt > 0 ? sent / dt / 1e6 : 0);
    return 0;
}

/* A log-linear histogram of ns values (HyperNF's LatencyHistogram: exact below 256, 128 buckets per power of two). */
#define SUB_BITS 7
#define BUCKETS (((62 - SUB_BITS + 1) << SUB_BITS) + (1 << SUB_BITS))
static long long hist[BUCKETS], hist_count, hist_max;

static int bucket_of(long long v)
{
    if (v < (2 << SUB_BITS)) return (int)v;
    int e = 63 - __builtin_clzll((unsigned long long)v);
    int shift = e - SUB_BITS;
    return ((e - SUB_BITS + 1) << SUB_BITS) + (int)((v >> shift) - (1LL << SUB_BITS));
}

static long long bucket_top(int i)
{
    if (i < (2 << SUB_BITS)) return i;
    int e = (i >> SUB_BITS) + SUB_BITS - 1;
    unsigned long long sub = (unsigned long long)(i & ((1 << SUB_BITS) - 1)) + (1ULL << SUB_BITS);
    return (long long)(((sub + 1) << (e - SUB_BITS)) - 1);
}

static long long percentile(double pct)
{
    if (!hist_count) return 0;
    long long target = (long long)(pct / 100.0 * (double)hist_count + 0.999999), seen = 0;
    if (target < 1) target = 1;
    for (int i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen >= target) { long long v = bucket_top(i); return v > hist_max ? hist_max : v; }
    }
    return hist_max;
}

static int run_rx(struct port *p)
{
    struct netmap_if *nifp = p->nifp;
    printf("ready=1\n");
    long long got = 0, bad = 0, lost = 0, reordered = 0, syncs = 0, expect = 0;
    long long t0 = now_ns(), first = 0, last_frame = 0, next = t0 + (long long)report_ms * 1000000LL;
    long long end = seconds_ns ? t0 + seconds_ns : 0, lat_from = 0;
    while ((!count || got < count) && !stop) {
        long long now = now_ns();
        if (end && now >= end) break;
        if (first && idle_ms && now - last_frame > (long long)idle_ms * 1000000LL) break;
        if (report_ms && now >= next) { report(now, got, syncs); next += (long long)report_ms * 1000000LL; }
        int r = wait_io(p, POLLIN, 100);
        if (r <= 0) continue;
        syncs++;
        now = now_ns();
        for (uint32_t i = 0; i < nifp->ni_rx_rings; i++) {
            struct netmap_ring *rr = NETMAP_RXRING(nifp, i);
            uint32_t cur = rr->cur, tail = rr->tail;
            if (cur == tail) continue;
            if (!first) { first = now; lat_from = now + (long long)warmup_ms * 1000000LL; }
            last_frame = now;
            for (; cur != tail; cur = nm_ring_next(rr, cur)) {
                struct netmap_slot *s = &rr->slot[cur];
                const unsigned char *b = (const unsigned char *)NETMAP_BUF(rr, s->buf_idx);
                got++;
                if (s->len < MIN_LEN || b[OFS_MAGIC] != (MAGIC >> 8) || b[OFS_MAGIC + 1] != (MAGIC & 0xff)) { bad++; continue; }
                long long seq = (long long)get_be64(b + OFS_SEQ), ts = (long long)get_be64(b + OFS_TS);
                if (seq > expect) lost += seq - expect;
                if (seq < expect) reordered++; else expect = seq + 1;
                if (ts >= lat_from) {
                    long long lat = now - ts;
                    if (lat < 0) lat = 0;
                    hist[bucket_of(lat)]++;
                    hist_count++;
                    if (lat > hist_max) hist_max = lat;
                }
            }
            rr->head = rr->cur = cur;
        }
    }
    long long t1 = now_ns();
    report(t1, got, syncs);
    double dt = first && last_frame > first ? (last_frame - first) / 1e9 : 0;
    printf("received=%lld\nbad=%lld\nlost=%lld\nreordered=%lld\nsyncs=%lld\nmpps=%.3f\n", got, bad, lost, reordered, syncs,
           dt > 0 ? got / dt / 1e6 : 0);
    printf("lat_count=%lld\nlat_p50_ns=%lld\nlat_p90_ns=%lld\nlat_p99_ns=%lld\nlat_p999_ns=%lld\nlat_max_ns=%lld\n", hist_count,
           percentile(50), percentile(90), percentile(99), percentile(99.9), hist_max);
    return bad ? 1 : 0;
}

/* The bare hand-off: NIOCTXSYNC with nothing queued. */
static int run_nop(struct port *p)
{
    printf("ready=1\n");
    long long n = 0, t0 = now_ns(), end = t0 + (seconds_ns ? seconds_ns : 1000000000LL);
    long long next = t0 + (long long)report_ms * 1000000LL;
    for (;;) {
        for (int i = 0; i < 64; i++, n++) if (ioctl(p->fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
        long long now = now_ns();
        if (report_ms && now >= next) { report(now, 0, n); next += (long long)report_ms * 1000000LL; }
        if ((count && n >= count) || now >= end) break;
    }
    long long t1 = now_ns();
    report(t1, 0, n);
    printf("syncs=%lld\nns_per_sync=%.1f\n", n, n ? (double)(t1 - t0) / (double)n : 0);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: nm-pktgen -i PORT -f tx|rx|nop [-l LEN] [-b BATCH] [-n COUNT] [-T SECONDS] [-a CPU] [-R REPORT_MS] [-W WARMUP_MS] [-I IDLE_MS] [--busy]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--busy")) { busy = 1; continue; }
        if (a[0] != '-' || a[1] == 0 || a[2] != 0 || !v) usage();
        i++;
        switch (a[1]) {
        case 'i': port_name = v; break;
        case 'f': function = v; break;
        case 'l': frame_len = atoi(v); break;
        case 'b': batch = atoi(v); break;
        case 'n': count = atoll(v); break;
        case 'T': seconds_ns = (long long)(atof(v) * 1e9); break;
        case 'a': cpu = atoi(v); break;
        case 'R': report_ms = atoi(v); break;
        case 'W': warmup_ms = atoi(v); break;
        case 'I': idle_ms = atoi(v); break;
        default: usage();
        }
    }
    if (!port_name || frame_len < MIN_LEN || frame_len > 2048 || batch < 1 || batch > 4096 || report_ms < 0) usage();
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct port p;
    open_port(&p);
    int rc;
    if (!strcmp(function, "tx")) rc = run_tx(&p);
    else if (!strcmp(function, "rx")) rc = run_rx(&p);
    else if (!strcmp(function, "nop")) rc = run_nop(&p);
    else usage(), rc = 2;
    close(p.fd);
    return rc;
}
