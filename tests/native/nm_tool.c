/*
 * nm_tool: a netmap program of our own for the process-domain tests (ProcessDomainTests). It
 * is written against netmap's user API only (netmap_abi.h stands in for net/netmap_user.h)
 * and makes the calls netmap's own programs make, in their order:
 *   open("/dev/netmap"); ioctl(NIOCCTRL, NETMAP_REQ_REGISTER with nr_body) or, with --legacy,
 *   ioctl(NIOCREGIF, struct nmreq) as nm_open does; mmap(fd, nr_memsize); NETMAP_IF/
 *   NETMAP_TXRING/NETMAP_RXRING/NETMAP_BUF; a poll() loop (pkt-gen, bridge, lb) or
 *   ioctl(NIOCTXSYNC/NIOCRXSYNC) busy loops; NS_BUF_CHANGED swaps (bridge's zero-copy).
 *
 *   nm_tool offsets                      field offsets of every netmap structure (name=offset)
 *   nm_tool info PORT [--legacy]         register, check the region through netmap's macros
 *   nm_tool tx PORT COUNT [SIZE] [--legacy] [--busy] [--batch N]
 *   nm_tool rx PORT COUNT [--timeout MS] [--legacy] [--busy] [--select] [--only-test]
 *                                        (--only-test: skip frames not in nm_tool's format, count them as others=)
 *   nm_tool fwd PORTA PORTB COUNT [--timeout MS]   zero-copy A->B forwarder (one process, two ports)
 *   nm_tool wait PORT [--timeout MS]     blocks in poll for one frame; prints the wait's CPU time
 *   nm_tool epoll PORT COUNT [--timeout MS]  the program's own epoll loop (with a pipe in the
 *                                        same set): waits for the first frame, then receives COUNT
 *   nm_tool epollhup PORT [--timeout MS]  waits in epoll_wait for the port's daemon connection
 *                                        to hang up (EPOLLERR|EPOLLHUP); prints the wait's CPU time
 *   nm_tool epollet PORT [--timeout MS]  EPOLLET: first edge, no second report for the same frames,
 *                                        prints waiting2=1, then the edge of the next frames
 *   nm_tool eintr PORT                   poll and epoll_wait on the port interrupted by SIGALRM
 *                                        (no SA_RESTART): both must fail with EINTR
 *   nm_tool hold PORT [--close-after MS] registers and sleeps (kill -9 tests); with --close-after it
 *                                        closes /dev/netmap after MS, prints closed=1 and lives on
 *   nm_tool hostile PORT [SECONDS] [--rx-only]  garbage ring indices, slot fields, ioctls, mmaps
 *                                        (--rx-only: only the RX ring's indices and sem words)
 *   nm_tool errors                       netmap's errno answers (unregistered sync, bad mmap ...)
 *   nm_tool vnet PORTA PORTB             PORT_HDR_SET/GET (both APIs): A with a virtio-net header,
 *                                        B without; frames both ways, checksum completion
 *   nm_tool ctl newif|delif|attach|detach NAME [--legacy]   vale-ctl's requests; prints errno=
 *   nm_tool many PREFIX N                VALE_NEWIF PREFIX0..PREFIX(N-1), then DELIF them all
 *   nm_tool onenic PORT COUNT --rings 2   rings 0 and 1 registered on two descriptors (pkt-gen -p 2),
 *                                        COUNT frames on ring 1 before and after ring 0's is closed
 *   nm_tool regerr NAME [--legacy] [--mode M] [--ringid K]   one REGISTER; prints errno= (0: it
 *                                        registered) and mem_id=, then closes
 * --rings N asks for N ring pairs (nr_tx_rings/nr_rx_rings) at every registration.
 * --mode M / --ringid K set nr_mode (nr_flags in the legacy API) and nr_ringid of every
 * registration, e.g. a netmap pipe the legacy way: --mode 5 (NR_REG_PIPE_MASTER) --ringid 3.
 * Output: "key=value" lines on stdout; exit 0 on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "netmap_abi.h"

#define ETH_TYPE 0x88b5
#define OFF(t, f) printf(#t "." #f "=%zu\n", offsetof(struct t, f))

static int legacy, busy, use_select, only_test, batch = 256, timeout_ms = 5000, close_after_ms = -1;
static uint32_t reg_mode = NR_REG_ALL_NIC, reg_ringid; /* --mode, --ringid: e.g. NR_REG_PIPE_MASTER (5) and a pipe id */
static uint16_t reg_rings;                               /* --rings N: nr_tx_rings = nr_rx_rings = N (0: default) */

struct port {
    int fd;
    char *mem;
    uint64_t memsize;
    struct netmap_if *nifp;
    uint16_t mem_id;
    uint32_t extra;
};

static void die(const char *what)
{
    fprintf(stderr, "nm_tool: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

/* The registration requests every command makes, from --mode/--ringid/--rings: the legacy
 * struct nmreq, or the API-14 header with its REGISTER body (h->nr_body points at r). */
static void legacy_register_req(struct nmreq *q, const char *name, uint32_t extra)
{
    memset(q, 0, sizeof *q);
    strncpy(q->nr_name, name, sizeof q->nr_name - 1);
    q->nr_version = NETMAP_API;
    q->nr_flags = reg_mode;
    q->nr_ringid = (uint16_t)reg_ringid;
    q->nr_tx_rings = q->nr_rx_rings = reg_rings;
    q->nr_arg3 = extra;
}

static void register_req_as(struct nmreq_header *h, struct nmreq_register *r, const char *name, uint32_t mode, uint32_t ringid,
                            uint32_t extra)
{
    memset(h, 0, sizeof *h);
    memset(r, 0, sizeof *r);
    h->nr_version = NETMAP_API;
    h->nr_reqtype = NETMAP_REQ_REGISTER;
    strncpy(h->nr_name, name, sizeof h->nr_name - 1);
    h->nr_body = (uintptr_t)r;
    r->nr_mode = mode;
    r->nr_ringid = (uint16_t)ringid;
    r->nr_tx_rings = r->nr_rx_rings = reg_rings;
    r->nr_extra_bufs = extra;
}

static void register_req(struct nmreq_header *h, struct nmreq_register *r, const char *name, uint32_t extra)
{
    register_req_as(h, r, name, reg_mode, reg_ringid, extra);
}

static void open_port(struct port *p, const char *name, uint32_t extra)
{
    memset(p, 0, sizeof *p);
    p->fd = open("/dev/netmap", O_RDWR);
    if (p->fd < 0) die("open /dev/netmap");
    if (legacy) {
        struct nmreq q;
        legacy_register_req(&q, name, extra);
        if (ioctl(p->fd, NIOCREGIF, &q) < 0) die("NIOCREGIF");
        p->memsize = q.nr_memsize;
        p->mem = mmap(NULL, p->memsize, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (p->mem == MAP_FAILED) die("mmap");
        p->nifp = NETMAP_IF(p->mem, q.nr_offset);
        p->mem_id = q.nr_arg2;
        p->extra = q.nr_arg3;
    } else {
        struct nmreq_header h;
        struct nmreq_register r;
        register_req(&h, &r, name, extra);
        if (ioctl(p->fd, NIOCCTRL, &h) < 0) die("NIOCCTRL REGISTER");
        p->memsize = r.nr_memsize;
        p->mem = mmap(NULL, p->memsize, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (p->mem == MAP_FAILED) die("mmap");
        p->nifp = NETMAP_IF(p->mem, r.nr_offset);
        p->mem_id = r.nr_mem_id;
        p->extra = r.nr_extra_bufs;
    }
}

static int wait_io(struct port *p, short ev, int ms)
{
    if (busy) {
        if (ioctl(p->fd, ev == POLLIN ? NIOCRXSYNC : NIOCTXSYNC) < 0) die("sync ioctl");
        return 1;
    }
    if (use_select) {
        fd_set s;
        FD_ZERO(&s);
        FD_SET(p->fd, &s);
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        int r = select(p->fd + 1, ev == POLLIN ? &s : NULL, ev == POLLOUT ? &s : NULL, NULL, &tv);
        if (r < 0) die("select");
        return r;
    }
    struct pollfd f = { p->fd, ev, 0 };
    int r = poll(&f, 1, ms);
    if (r < 0) die("poll");
    if (r > 0 && (f.revents & POLLERR)) { errno = EIO; die("poll: POLLERR"); }
    return r;
}

static void fill(char *buf, uint32_t seq, int size)
{
    memset(buf, 0xff, 6);                                  /* broadcast */
    buf[6] = 0x02; buf[7] = 0; buf[8] = 0; buf[9] = 0;      /* 02:00:00:00:PID */
    uint16_t pid = (uint16_t)getpid();
    memcpy(buf + 10, &pid, 2);
    buf[12] = ETH_TYPE >> 8; buf[13] = ETH_TYPE & 0xff;
    memcpy(buf + 14, &seq, 4);
    for (int i = 18; i < size; i++) buf[i] = (char)(seq + i);
}

static int check(const char *buf, int len, uint32_t *seq)
{
    if (len < 18 || (unsigned char)buf[12] != (ETH_TYPE >> 8) || (unsigned char)buf[13] != (ETH_TYPE & 0xff)) return 0;
    memcpy(seq, buf + 14, 4);
    for (int i = 18; i < len; i++) if (buf[i] != (char)(*seq + i)) return 0;
    return 1;
}

static int cmd_offsets(void)
{
    OFF(netmap_slot, buf_idx); OFF(netmap_slot, len); OFF(netmap_slot, flags); OFF(netmap_slot, ptr);
    printf("netmap_slot.size=%zu\n", sizeof(struct netmap_slot));
    OFF(netmap_ring, buf_ofs); OFF(netmap_ring, num_slots); OFF(netmap_ring, nr_buf_size); OFF(netmap_ring, ringid);
    OFF(netmap_ring, dir); OFF(netmap_ring, head); OFF(netmap_ring, cur); OFF(netmap_ring, tail); OFF(netmap_ring, flags);
    OFF(netmap_ring, ts); OFF(netmap_ring, offset_mask); OFF(netmap_ring, buf_align); OFF(netmap_ring, sem); OFF(netmap_ring, slot);
    OFF(netmap_if, ni_name); OFF(netmap_if, ni_version); OFF(netmap_if, ni_flags); OFF(netmap_if, ni_tx_rings);
    OFF(netmap_if, ni_rx_rings); OFF(netmap_if, ni_bufs_head); OFF(netmap_if, ni_host_tx_rings); OFF(netmap_if, ni_host_rx_rings);
    OFF(netmap_if, ni_spare1); OFF(netmap_if, ring_ofs);
    OFF(nmreq_header, nr_version); OFF(nmreq_header, nr_reqtype); OFF(nmreq_header, nr_reserved); OFF(nmreq_header, nr_name);
    OFF(nmreq_header, nr_options); OFF(nmreq_header, nr_body);
    printf("nmreq_header.size=%zu\n", sizeof(struct nmreq_header));
    OFF(nmreq_register, nr_offset); OFF(nmreq_register, nr_memsize); OFF(nmreq_register, nr_tx_slots); OFF(nmreq_register, nr_rx_slots);
    OFF(nmreq_register, nr_tx_rings); OFF(nmreq_register, nr_rx_rings); OFF(nmreq_register, nr_host_tx_rings);
    OFF(nmreq_register, nr_host_rx_rings); OFF(nmreq_register, nr_mem_id); OFF(nmreq_register, nr_ringid); OFF(nmreq_register, nr_mode);
    OFF(nmreq_register, nr_extra_bufs); OFF(nmreq_register, nr_flags);
    printf("nmreq_register.size=%zu\n", sizeof(struct nmreq_register));
    printf("nmreq.size=%zu\n", sizeof(struct nmreq));
    OFF(nmreq, nr_version); OFF(nmreq, nr_offset); OFF(nmreq, nr_memsize); OFF(nmreq, nr_ringid); OFF(nmreq, nr_cmd);
    OFF(nmreq, nr_arg2); OFF(nmreq, nr_arg3); OFF(nmreq, nr_flags);
    printf("ioctl.NIOCCTRL=%lu\nioctl.NIOCREGIF=%lu\nioctl.NIOCGINFO=%lu\nioctl.NIOCTXSYNC=%lu\nioctl.NIOCRXSYNC=%lu\n",
           (unsigned long)NIOCCTRL, (unsigned long)NIOCREGIF, (unsigned long)NIOCGINFO,
           (unsigned long)NIOCTXSYNC, (unsigned long)NIOCRXSYNC);
    return 0;
}

static int cmd_info(const char *name, uint32_t extra)
{
    struct port p;
    open_port(&p, name, extra);
    struct netmap_if *nifp = p.nifp;
    int bad = 0;
    for (uint32_t i = 0; i < nifp->ni_tx_rings; i++) {
        struct netmap_ring *t = NETMAP_TXRING(nifp, i);
        if (t->dir != 0 || t->num_slots == 0 || t->nr_buf_size != 2048) bad++;
        for (uint32_t s = 0; s < t->num_slots; s++) {
            char *b = NETMAP_BUF(t, t->slot[s].buf_idx);
            if (b < p.mem || b + t->nr_buf_size > p.mem + p.memsize) bad++;
        }
        if (nm_ring_space(t) != t->num_slots - 1) bad++;
    }
    for (uint32_t i = 0; i < nifp->ni_rx_rings; i++) {
        struct netmap_ring *r = NETMAP_RXRING(nifp, i);
        if (r->dir != 1 || !nm_ring_empty(r)) bad++;
    }
    uint32_t chained = 0;
    for (uint32_t b = nifp->ni_bufs_head; b != 0 && chained <= p.extra; chained++) {
        struct netmap_ring *t = NETMAP_TXRING(nifp, 0);
        b = *(uint32_t *)NETMAP_BUF(t, b);
    }
    printf("name=%s\nversion=%u\ntx_rings=%u\nrx_rings=%u\nhost_tx_rings=%u\nslots=%u\nmemsize=%llu\nmem_id=%u\nextra=%u\nchained=%u\nbad=%d\n",
           nifp->ni_name, nifp->ni_version, nifp->ni_tx_rings, nifp->ni_rx_rings, nifp->ni_host_tx_rings,
           NETMAP_TXRING(nifp, 0)->num_slots, (unsigned long long)p.memsize, p.mem_id, p.extra, chained, bad);
    return bad ? 1 : 0;
}

static int cmd_tx(const char *name, long count, int size)
{
    struct port p;
    open_port(&p, name, 0);
    long sent = 0;
    int idle = 0;
    double t0 = now_s();
    while (sent < count) {
        int r = wait_io(&p, POLLOUT, 1000);
        if (r == 0) { if (++idle > timeout_ms / 1000) break; continue; }
        for (uint32_t i = 0; i < p.nifp->ni_tx_rings && sent < count; i++) {
            struct netmap_ring *t = NETMAP_TXRING(p.nifp, i);
            uint32_t cur = t->cur, n = nm_ring_space(t);
            if (n > (uint32_t)batch) n = batch;
            for (; n > 0 && sent < count; n--, sent++) {
                struct netmap_slot *s = &t->slot[cur];
                fill(NETMAP_BUF(t, s->buf_idx), (uint32_t)sent, size);
                s->len = (uint16_t)size;
                s->flags = 0;
                cur = nm_ring_next(t, cur);
            }
            t->head = t->cur = cur;
        }
    }
    if (ioctl(p.fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
    /* As pkt-gen: wait until the TX rings are drained before closing (a switch port always is;
     * a pipe end is not while its peer's RX ring is full). */
    double drain_until = now_s() + timeout_ms / 1e3;
    for (uint32_t i = 0; i < p.nifp->ni_tx_rings; i++) {
        struct netmap_ring *t = NETMAP_TXRING(p.nifp, i);
        while (nm_tx_pending(t) && now_s() < drain_until) {
            usleep(200); /* the peer frees room at its own pace (pkt-gen: ioctl, usleep(1)) */
            if (ioctl(p.fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
        }
    }
    double dt = now_s() - t0;
    printf("sent=%ld\nseconds=%.3f\nmpps=%.3f\n", sent, dt, dt > 0 ? sent / dt / 1e6 : 0);
    close(p.fd);
    return sent == count ? 0 : 1;
}

static int cmd_rx(const char *name, long count)
{
    struct port p;
    open_port(&p, name, 0);
    printf("ready=1\n");
    fflush(stdout);
    long got = 0, bad = 0, order = 0, others = 0, per_ring[64] = { 0 };
    uint32_t last = 0;
    int first = 1;
    double t0 = 0, t1 = 0;
    while (got < count) {
        int r = wait_io(&p, POLLIN, timeout_ms);
        if (r == 0 && !busy) break;
        for (uint32_t i = 0; i < p.nifp->ni_rx_rings; i++) {
            struct netmap_ring *rr = NETMAP_RXRING(p.nifp, i);
            while (!nm_ring_empty(rr)) {
                uint32_t cur = rr->cur, seq;
                struct netmap_slot *s = &rr->slot[cur];
                if (only_test && !check(NETMAP_BUF(rr, s->buf_idx), s->len, &seq)) {
                    /* a frame of the wire's own (an interface's neighbour discovery ...): not ours */
                    others++;
                    rr->head = rr->cur = nm_ring_next(rr, cur);
                    continue;
                }
                if (!check(NETMAP_BUF(rr, s->buf_idx), s->len, &seq)) bad++;
                else {
                    if (!first && seq <= last) order++;
                    last = seq;
                    if (first) t0 = now_s();
                    first = 0;
                }
                got++;
                if (i < 64) per_ring[i]++;
                t1 = now_s();
                rr->head = rr->cur = nm_ring_next(rr, cur);
            }
        }
    }
    double dt = t0 ? t1 - t0 : 0;
    printf("received=%ld\nbad=%ld\nout_of_order=%ld\nlast_seq=%u\nmpps=%.3f\nothers=%ld\n", got, bad, order, last, dt > 0 ? got / dt / 1e6 : 0, others);
    int used = 0;
    for (int i = 0; i < 64; i++) used += per_ring[i] > 0;
    printf("rx_rings=%u\nrx_rings_used=%d\n", p.nifp->ni_rx_rings, used);
    close(p.fd);
    return bad || order ? 1 : 0;
}

/* bridge's zero-copy loop: RX slot of A and TX slot of B swap buffers (NS_BUF_CHANGED). */
static int cmd_fwd(const char *a, const char *b, long count)
{
    struct port pa, pb;
    open_port(&pa, a, 0);
    open_port(&pb, b, 0);
    int zerocopy = pa.mem_id == pb.mem_id && pa.mem == pb.mem ? 1 : 0;
    if (pa.mem_id == pb.mem_id && pa.mem != pb.mem) {
        /* Same region mapped twice (each fd mmaps it): libnetmap maps it once; do the same. */
        size_t ofs = (size_t)((char *)pb.nifp - pb.mem);
        munmap(pb.mem, pb.memsize);
        pb.mem = pa.mem;
        pb.nifp = NETMAP_IF(pa.mem, ofs);
        zerocopy = 1;
    }
    printf("zerocopy=%d\nready=1\n", zerocopy); /* ready last: a reader that saw it has read the rest */
    fflush(stdout);
    long moved = 0, swaps = 0;
    struct pollfd f[2] = { { pa.fd, POLLIN, 0 }, { pb.fd, POLLOUT, 0 } };
    while (moved < count) {
        int r = poll(f, 2, timeout_ms);
        if (r < 0) die("poll");
        if (r == 0) break;
        struct netmap_ring *rx = NETMAP_RXRING(pa.nifp, 0), *tx = NETMAP_TXRING(pb.nifp, 0);
        uint32_t n = nm_ring_space(rx), m = nm_ring_space(tx);
        if (n > m) n = m;
        uint32_t j = rx->cur, k = tx->cur;
        for (; n > 0; n--, moved++) {
            struct netmap_slot *rs = &rx->slot[j], *ts = &tx->slot[k];
            if (zerocopy) {
                uint32_t idx = ts->buf_idx;
                ts->buf_idx = rs->buf_idx;
                rs->buf_idx = idx;
                ts->flags |= NS_BUF_CHANGED;
                rs->flags |= NS_BUF_CHANGED;
                swaps++;
            } else {
                memcpy(NETMAP_BUF(tx, ts->buf_idx), NETMAP_BUF(rx, rs->buf_idx), rs->len);
            }
            ts->len = rs->len;
            j = nm_ring_next(rx, j);
            k = nm_ring_next(tx, k);
        }
        rx->head = rx->cur = j;
        tx->head = tx->cur = k;
        if (ioctl(pb.fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
    }
    printf("forwarded=%ld\nswaps=%ld\n", moved, swaps);
    return 0;
}

static int cmd_wait(const char *name)
{
    struct port p;
    open_port(&p, name, 0);
    printf("ready=1\n");
    fflush(stdout);
    double c0 = cpu_s(), t0 = now_s();
    struct pollfd f = { p.fd, POLLIN, 0 };
    int r = poll(&f, 1, timeout_ms);
    double waited = now_s() - t0, cpu = cpu_s() - c0;
    struct netmap_ring *rr = NETMAP_RXRING(p.nifp, 0);
    printf("woke=%d\nrevents=%d\nframes=%u\nwaited_ms=%.3f\ncpu_ms=%.3f\n", r, f.revents,
           (rr->tail - rr->head + rr->num_slots) % rr->num_slots, waited * 1e3, cpu * 1e3);
    /* A second poll right away: the eventfd was drained, the frames are still there (level). */
    r = poll(&f, 1, 0);
    printf("again=%d\n", r);
    return 0;
}

/* An application's own epoll loop: epoll_ctl(ADD) of the netmap descriptor next to a pipe. */
static int cmd_epoll(const char *name, long count)
{
    struct port p;
    open_port(&p, name, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC), pipefd[2];
    if (ep < 0 || pipe(pipefd) < 0) die("epoll_create1/pipe");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0xabcdef };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev) < 0) die("epoll_ctl ADD netmap");
    int dup_add = epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev) < 0 ? errno : 0;
    int mod_other = epoll_ctl(ep + 1000, EPOLL_CTL_ADD, p.fd, &ev) < 0 ? errno : 0;
    struct epoll_event pev = { .events = EPOLLIN, .data.u64 = 0x1234 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &pev) < 0) die("epoll_ctl ADD pipe");
    printf("dup_add=%d\nbad_epfd=%d\nready=1\n", dup_add, mod_other);
    fflush(stdout);
    double c0 = cpu_s(), t0 = now_s();
    struct epoll_event out[8];
    int r = epoll_wait(ep, out, 8, timeout_ms);
    double waited = now_s() - t0, cpu = cpu_s() - c0;
    printf("woke=%d\nfirst_data=%llx\nfirst_events=%u\nwaited_ms=%.3f\ncpu_ms=%.3f\n", r, r > 0 ? (unsigned long long)out[0].data.u64 : 0ULL,
           r > 0 ? out[0].events : 0, waited * 1e3, cpu * 1e3);
    long got = 0, bad = 0, foreign = 0;
    while (r > 0) {
        for (int i = 0; i < r; i++) {
            if (out[i].data.u64 != 0xabcdef) { foreign++; continue; }
            struct netmap_ring *rr = NETMAP_RXRING(p.nifp, 0);
            while (!nm_ring_empty(rr)) {
                uint32_t cur = rr->cur, seq;
                struct netmap_slot *s = &rr->slot[cur];
                if (!check(NETMAP_BUF(rr, s->buf_idx), s->len, &seq)) bad++;
                got++;
                rr->head = rr->cur = nm_ring_next(rr, cur);
            }
        }
        if (got >= count) break;
        r = epoll_wait(ep, out, 8, timeout_ms);
        if (r < 0) die("epoll_wait");
    }
    /* Nothing left: a zero-timeout wait reports nothing (the frames were consumed, level-triggered). */
    int after = epoll_wait(ep, out, 8, 0);
    printf("received=%ld\nbad=%ld\nforeign=%ld\nafter=%d\n", got, bad, foreign, after);
    close(p.fd);
    close(ep);
    return bad || foreign ? 1 : 0;
}

/* epoll_wait until the descriptor reports its connection hung up (the daemon, or the region of
 * the port, went away): EPOLLERR|EPOLLHUP, as poll reports POLLERR. */
static int cmd_epollhup(const char *name)
{
    struct port p;
    open_port(&p, name, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x5a5a };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev) < 0) die("epoll_ctl ADD netmap");
    printf("ready=1\n");
    fflush(stdout);
    double c0 = cpu_s(), t0 = now_s();
    struct epoll_event out[4];
    int r = epoll_wait(ep, out, 4, timeout_ms);
    double waited = now_s() - t0, cpu = cpu_s() - c0;
    printf("woke=%d\nevents=%u\ndata=%llx\nwaited_ms=%.3f\ncpu_ms=%.3f\n", r, r > 0 ? out[0].events : 0,
           r > 0 ? (unsigned long long)out[0].data.u64 : 0ULL, waited * 1e3, cpu * 1e3);
    /* The error stays (level-triggered): a second wait reports it at once. */
    r = epoll_wait(ep, out, 4, 0);
    printf("again=%d\n", r);
    errno = 0;
    int s = ioctl(p.fd, NIOCRXSYNC);
    printf("sync=%d\nsync_errno=%d\n", s, s < 0 ? errno : 0);
    return 0;
}

/* Frames ready in the RX ring, not consumed. */
static uint32_t rx_avail(struct port *p)
{
    struct netmap_ring *rr = NETMAP_RXRING(p->nifp, 0);
    return (rr->tail - rr->head + rr->num_slots) % rr->num_slots;
}

/* EPOLLET on a netmap descriptor: one report per edge. The test sends frames, then (after
 * waiting2=1) more frames. */
static int cmd_epollet(const char *name)
{
    struct port p;
    open_port(&p, name, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 0x77 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev) < 0) die("epoll_ctl ADD netmap");
    printf("ready=1\n");
    fflush(stdout);
    struct epoll_event out[4];
    int r = epoll_wait(ep, out, 4, timeout_ms);
    printf("first=%d\nfirst_events=%u\n", r, r > 0 ? out[0].events : 0);
    usleep(100 * 1000);
    printf("frames1=%u\n", rx_avail(&p));
    /* Nothing consumed, nothing new: the edge was reported, an edge-triggered wait sleeps. */
    r = epoll_wait(ep, out, 4, 300);
    printf("second=%d\n", r);
    printf("waiting2=1\n");
    fflush(stdout);
    double t0 = now_s();
    r = epoll_wait(ep, out, 4, timeout_ms);
    printf("third=%d\nthird_ms=%.3f\n", r, (now_s() - t0) * 1e3);
    usleep(100 * 1000);
    printf("frames3=%u\n", rx_avail(&p));
    /* Consume everything: no new frames, no report. */
    struct netmap_ring *rr = NETMAP_RXRING(p.nifp, 0);
    rr->head = rr->cur = rr->tail;
    r = epoll_wait(ep, out, 4, 300);
    printf("fourth=%d\n", r);
    /* EPOLL_CTL_MOD re-arms: with nothing ready there is still nothing to report. */
    if (epoll_ctl(ep, EPOLL_CTL_MOD, p.fd, &ev) < 0) die("epoll_ctl MOD");
    r = epoll_wait(ep, out, 4, 0);
    printf("after_mod=%d\n", r);
    close(p.fd);
    close(ep);
    return 0;
}

static void on_alarm(int sig) { (void)sig; }

/* A signal interrupting the wait: -1 with errno EINTR, as the kernel's poll and epoll_wait. */
static int cmd_eintr(const char *name)
{
    struct port p;
    open_port(&p, name, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    if (sigaction(SIGALRM, &sa, NULL) < 0) die("sigaction");
    printf("ready=1\n");
    fflush(stdout);
    struct itimerval it = { { 0, 0 }, { 0, 200 * 1000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    struct pollfd f = { p.fd, POLLIN, 0 };
    errno = 0;
    int r = poll(&f, 1, 3000);
    printf("poll_rc=%d\npoll_errno=%d\n", r, r < 0 ? errno : 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 1 }, out[2];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p.fd, &ev) < 0) die("epoll");
    setitimer(ITIMER_REAL, &it, NULL);
    errno = 0;
    r = epoll_wait(ep, out, 2, 3000);
    printf("epoll_rc=%d\nepoll_errno=%d\n", r, r < 0 ? errno : 0);
    close(ep);
    close(p.fd);
    return 0;
}

static int cmd_hold(const char *name)
{
    struct port p;
    open_port(&p, name, 0);
    printf("mem_id=%u\nready=1\n", p.mem_id);
    fflush(stdout);
    double until = close_after_ms >= 0 ? now_s() + close_after_ms / 1e3 : 1e300;
    while (now_s() < until) {
        /* Keep the port busy: sync both ways now and then. */
        ioctl(p.fd, NIOCTXSYNC);
        ioctl(p.fd, NIOCRXSYNC);
        usleep(1000);
    }
    close(p.fd);
    printf("closed=1\n");
    fflush(stdout);
    for (;;) pause();
    return 0;
}

static unsigned rnd(void)
{
    static unsigned s = 12345;
    s = s * 1103515245u + 12345u;
    return s >> 8;
}

static int hostile_rx_only; /* --rx-only: scribble over the RX ring only (cases 3 and 5) */

static int cmd_hostile(const char *name, int seconds)
{
    struct port p;
    open_port(&p, name, 0);
    printf("ready=1\n");
    fflush(stdout);
    long rounds = 0, refused = 0;
    double end = now_s() + seconds;
    uint32_t ring = reg_mode == NR_REG_ONE_NIC ? reg_ringid : 0; /* the ring its netmap_if lists */
    struct netmap_ring *t = NETMAP_TXRING(p.nifp, ring), *r = NETMAP_RXRING(p.nifp, ring);
    while (now_s() < end) {
        rounds++;
        uint32_t n = t->num_slots;
        unsigned pick = rnd() % 7;
        if (hostile_rx_only) pick = pick % 2 ? 3 : 5;
        switch (pick) {
        case 0: t->head = rnd(); t->cur = rnd(); t->tail = rnd(); break;
        case 1: t->head = rnd() % n; t->cur = t->head; break;
        case 2:
            for (int i = 0; i < 64; i++) {
                struct netmap_slot *s = &t->slot[rnd() % n];
                s->buf_idx = rnd() % 4 == 0 ? rnd() : s->buf_idx;
                s->len = (uint16_t)rnd();
                s->flags = (uint16_t)rnd();
            }
            t->head = t->cur = (t->head + rnd() % n) % n;
            break;
        case 3: r->head = rnd(); r->cur = rnd(); break;
        case 4: {
            /* garbage ioctls and a control request of a type nobody serves */
            char junk[256];
            for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)rnd();
            if (ioctl(p.fd, _IOWR('i', 200 + rnd() % 50, struct nmreq), junk) < 0) refused++;
            struct nmreq_header h;
            memcpy(&h, junk, sizeof h);
            h.nr_version = NETMAP_API;
            h.nr_reqtype = 13 + rnd() % 100;
            h.nr_options = 0;
            h.nr_body = 0;
            if (ioctl(p.fd, NIOCCTRL, &h) < 0) refused++;
            void *m = mmap(NULL, p.memsize + 4096 * (1 + rnd() % 16), PROT_READ, MAP_SHARED, p.fd, 0);
            if (m == MAP_FAILED) refused++; else munmap(m, p.memsize);
            break;
        }
        case 5: {
            /* the self-served RX ring's words in netmap_ring's sem area (hnf_proto.h), and tail */
            uint32_t *w = (uint32_t *)((char *)r + 128);
            w[0] = rnd() % 3 ? rnd() : rnd() % n;          /* release word */
            w[16] = rnd();                                 /* publish word */
            r->tail = rnd();
            break;
        }
        default: break;
        }
        ioctl(p.fd, rnd() % 2 ? NIOCTXSYNC : NIOCRXSYNC);
        if (rounds % 64 == 0) {
            struct pollfd f = { p.fd, POLLIN | POLLOUT, 0 };
            poll(&f, 1, 0);
        }
    }
    printf("rounds=%ld\nrefused=%ld\n", rounds, refused);
    return 0;
}

/* One registration and its errno (pipes' and rings' refusals). */
static int cmd_regerr(const char *name)
{
    int fd = open("/dev/netmap", O_RDWR);
    if (fd < 0) die("open /dev/netmap");
    int rc, mem_id = 0;
    if (legacy) {
        struct nmreq q;
        legacy_register_req(&q, name, 0);
        rc = ioctl(fd, NIOCREGIF, &q);
        mem_id = q.nr_arg2;
    } else {
        struct nmreq_header h;
        struct nmreq_register r;
        register_req(&h, &r, name, 0);
        rc = ioctl(fd, NIOCCTRL, &h);
        mem_id = r.nr_mem_id;
        if (rc == 0) {
            /* the rings this registration's netmap_if lists (libnetmap's nmport_mmap scans ring_ofs) */
            char *mem = mmap(NULL, r.nr_memsize, PROT_READ, MAP_SHARED, fd, 0);
            if (mem == MAP_FAILED) die("mmap");
            struct netmap_if *nifp = NETMAP_IF(mem, r.nr_offset);
            printf("tx_rings=%u\nlisted=", nifp->ni_tx_rings);
            for (uint32_t i = 0; i < nifp->ni_tx_rings + nifp->ni_rx_rings; i++)
                if (nifp->ring_ofs[i]) printf("%s%u", i < nifp->ni_tx_rings ? "t" : "r", i < nifp->ni_tx_rings ? i : i - nifp->ni_tx_rings);
            printf("\n");
            munmap(mem, r.nr_memsize);
        }
    }
    printf("errno=%d\nmem_id=%d\n", rc < 0 ? errno : 0, rc < 0 ? 0 : mem_id);
    close(fd);
    return 0;
}

/* pkt-gen -p 2's registrations: rings 0 and 1 of one port on two descriptors (NR_REG_ONE_NIC),
 * a third registration of ring 1 (EBUSY), COUNT frames on ring 1; then ring 0's descriptor is
 * closed and COUNT more go on ring 1 (the port stays while a ring is registered). */
static void send_ring(struct port *p, uint32_t ring, long count, long *sent)
{
    struct netmap_ring *t = NETMAP_TXRING(p->nifp, ring);
    long done = 0;
    double end = now_s() + timeout_ms / 1e3;
    while (done < count && now_s() < end) {
        uint32_t cur = t->cur, n = nm_ring_space(t);
        for (; n > 0 && done < count; n--, done++) {
            struct netmap_slot *s = &t->slot[cur];
            fill(NETMAP_BUF(t, s->buf_idx), (uint32_t)(*sent + done), 60);
            s->len = 60;
            s->flags = 0;
            cur = nm_ring_next(t, cur);
        }
        t->head = t->cur = cur;
        if (ioctl(p->fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
    }
    *sent += done;
}

static int cmd_onenic(const char *name, long count)
{
    struct port p0, p1;
    reg_mode = NR_REG_ONE_NIC;
    reg_ringid = 0;
    open_port(&p0, name, 0);
    reg_ringid = 1;
    open_port(&p1, name, 0);
    for (int k = 0; k < 2; k++) {
        struct netmap_if *nifp = k ? p1.nifp : p0.nifp;
        printf("listed%d=", k);
        for (uint32_t i = 0; i < nifp->ni_tx_rings + nifp->ni_rx_rings; i++)
            if (nifp->ring_ofs[i]) printf("%s%u", i < nifp->ni_tx_rings ? "t" : "r", i < nifp->ni_tx_rings ? i : i - nifp->ni_tx_rings);
        printf("\n");
    }
    printf("same_mem=%d\n", p0.mem_id == p1.mem_id);
    int fd = open("/dev/netmap", O_RDWR);
    if (fd < 0) die("open /dev/netmap");
    struct nmreq_header h;
    struct nmreq_register r;
    register_req_as(&h, &r, name, NR_REG_ONE_NIC, 1, 0);
    printf("again_errno=%d\n", ioctl(fd, NIOCCTRL, &h) < 0 ? errno : 0);
    close(fd);
    long sent = 0;
    send_ring(&p1, 1, count, &sent);
    close(p0.fd);
    send_ring(&p1, 1, count, &sent);
    printf("sent=%ld\n", sent);
    close(p1.fd);
    return sent == 2 * count ? 0 : 1;
}

/* netmap's answers to misuse, as netmap gives them. */
static int cmd_errors(const char *name)
{
    int fd = open("/dev/netmap", O_RDWR);
    if (fd < 0) die("open");
    int e;
    e = ioctl(fd, NIOCTXSYNC) < 0 ? errno : 0;
    printf("sync_unregistered=%d\n", e);
    e = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? errno : 0;
    printf("mmap_unregistered=%d\n", e);
    struct nmreq_header h;
    memset(&h, 0, sizeof h);
    h.nr_version = NETMAP_API;
    h.nr_reqtype = NETMAP_REQ_SYNC_KLOOP_START;
    e = ioctl(fd, NIOCCTRL, &h) < 0 ? errno : 0;
    printf("unsupported_request=%d\n", e);
    h.nr_version = 11;
    h.nr_reqtype = NETMAP_REQ_REGISTER;
    e = ioctl(fd, NIOCCTRL, &h) < 0 ? errno : 0;
    printf("bad_version=%d\n", e);
    e = ioctl(fd, _IO('i', 250)) < 0 ? errno : 0;
    printf("unknown_ioctl=%d\n", e);
    close(fd);
    struct port p;
    open_port(&p, name, 0);
    e = mmap(NULL, p.memsize + 4096, PROT_READ, MAP_SHARED, p.fd, 0) == MAP_FAILED ? errno : 0;
    printf("mmap_too_big=%d\n", e);
    memset(&h, 0, sizeof h);
    struct nmreq_register r;
    memset(&r, 0, sizeof r);
    h.nr_version = NETMAP_API;
    h.nr_reqtype = NETMAP_REQ_REGISTER;
    strncpy(h.nr_name, name, sizeof h.nr_name - 1);
    h.nr_body = (uintptr_t)&r;
    r.nr_mode = NR_REG_ALL_NIC;
    e = ioctl(p.fd, NIOCCTRL, &h) < 0 ? errno : 0;
    printf("register_twice=%d\n", e);
    int fd2 = open("/dev/netmap", O_RDWR);
    r.nr_mode = NR_REG_ONE_NIC;
    r.nr_ringid = 7;
    strncpy(h.nr_name, "valeerr:other", sizeof h.nr_name - 1);
    e = ioctl(fd2, NIOCCTRL, &h) < 0 ? errno : 0;
    printf("bad_ring=%d\n", e);
    r.nr_mode = NR_REG_SW;
    e = ioctl(fd2, NIOCCTRL, &h) < 0 ? errno : 0;
    printf("host_rings=%d\n", e);
    close(fd2);
    printf("EINVAL=%d\nENXIO=%d\nEBUSY=%d\nEOPNOTSUPP=%d\n", EINVAL, ENXIO, EBUSY, EOPNOTSUPP);
    return 0;
}

/* PORT_HDR_SET/GET through NIOCCTRL and the legacy nr_cmd forms; errno answers. */
static int hdr_ctl(int fd, const char *name, uint16_t type, uint32_t *len)
{
    struct nmreq_header h;
    struct nmreq_port_hdr b;
    memset(&h, 0, sizeof h);
    memset(&b, 0, sizeof b);
    h.nr_version = NETMAP_API;
    h.nr_reqtype = type;
    strncpy(h.nr_name, name, sizeof h.nr_name - 1);
    h.nr_body = (uintptr_t)&b;
    b.nr_hdr_len = *len;
    if (ioctl(fd, NIOCCTRL, &h) < 0) return errno;
    *len = b.nr_hdr_len;
    return 0;
}

static int hdr_legacy(int fd, const char *name, uint16_t cmd, uint16_t *len)
{
    struct nmreq q;
    memset(&q, 0, sizeof q);
    strncpy(q.nr_name, name, sizeof q.nr_name - 1);
    q.nr_version = NETMAP_API;
    q.nr_cmd = cmd;
    q.nr_arg1 = *len;
    if (ioctl(fd, NIOCREGIF, &q) < 0) return errno;
    *len = q.nr_arg1;
    return 0;
}

static uint32_t sum16(const unsigned char *p, int n, uint32_t s)
{
    for (int i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1) s += (uint32_t)(p[n - 1] << 8);
    return s;
}

static uint16_t fold16(uint32_t s)
{
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* An IPv4/UDP frame from SRC (last MAC byte) to broadcast with PAY payload bytes; its UDP
 * checksum is the pseudo-header's partial sum (a NEEDS_CSUM frame) or the full one. */
static int udp_frame(unsigned char *f, unsigned char src, int pay, int partial)
{
    int len = 14 + 20 + 8 + pay;
    memset(f, 0xff, 6);
    unsigned char mac[6] = { 0x02, 0, 0, 0, 0x77, src };
    memcpy(f + 6, mac, 6);
    f[12] = 0x08; f[13] = 0x00;
    unsigned char *ip = f + 14, *udp = ip + 20;
    memset(ip, 0, 20);
    ip[0] = 0x45; ip[2] = (uint8_t)((20 + 8 + pay) >> 8); ip[3] = (uint8_t)(20 + 8 + pay); ip[8] = 64; ip[9] = 17;
    ip[12] = 10; ip[15] = src; ip[16] = 10; ip[19] = 200;
    uint16_t ic = (uint16_t)~fold16(sum16(ip, 20, 0));
    ip[10] = (uint8_t)(ic >> 8); ip[11] = (uint8_t)ic;
    udp[0] = 0x30; udp[1] = 0x39; udp[2] = 0x1f; udp[3] = 0x90;
    udp[4] = (uint8_t)((8 + pay) >> 8); udp[5] = (uint8_t)(8 + pay); udp[6] = 0; udp[7] = 0;
    for (int i = 0; i < pay; i++) udp[8 + i] = (unsigned char)(i * 7 + src);
    uint32_t pseudo = sum16(ip + 12, 8, 0) + 17 + (uint32_t)(8 + pay);
    uint16_t c = partial ? fold16(pseudo) : (uint16_t)~fold16(sum16(udp, 8 + pay, pseudo));
    if (!partial && c == 0) c = 0xffff;
    udp[6] = (uint8_t)(c >> 8); udp[7] = (uint8_t)c;
    return len;
}

static void send_one(struct port *p, const unsigned char *data, int len)
{
    struct netmap_ring *t = NETMAP_TXRING(p->nifp, 0);
    if (nm_ring_space(t) == 0) { errno = ENOSPC; die("tx ring full"); }
    struct netmap_slot *s = &t->slot[t->cur];
    memcpy(NETMAP_BUF(t, s->buf_idx), data, (size_t)len);
    s->len = (uint16_t)len;
    s->flags = 0;
    t->head = t->cur = nm_ring_next(t, t->cur);
    if (ioctl(p->fd, NIOCTXSYNC) < 0) die("NIOCTXSYNC");
}

/* Waits for one frame; copies it out and returns its length (-1: none). */
static int recv_one(struct port *p, unsigned char *out)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        if (ioctl(p->fd, NIOCRXSYNC) < 0) die("NIOCRXSYNC");
        struct netmap_ring *r = NETMAP_RXRING(p->nifp, 0);
        if (!nm_ring_empty(r)) {
            struct netmap_slot *s = &r->slot[r->cur];
            int len = s->len;
            memcpy(out, NETMAP_BUF(r, s->buf_idx), (size_t)len);
            r->head = r->cur = nm_ring_next(r, r->cur);
            return len;
        }
        usleep(10000);
    }
    return -1;
}

/*
 * vnet A B: A's port gets a 10-byte virtio-net header (PORT_HDR_SET), B's none. A sends a
 * UDP frame with NEEDS_CSUM and a plain one; B must get both without the header, the first
 * with its checksum completed. B sends a frame; A must get it behind a zeroed header.
 */
static int cmd_vnet(const char *a, const char *b)
{
    struct port pa, pb;
    open_port(&pa, a, 0);
    open_port(&pb, b, 0);
    uint32_t len = 7;
    char other[64];
    snprintf(other, sizeof other, "%.*s:hnfnoport", (int)(strchr(a, ':') ? strchr(a, ':') - a : 4), a);
    printf("set_bad_len=%d\n", hdr_ctl(pa.fd, a, NETMAP_REQ_PORT_HDR_SET, &len));
    len = 10;
    printf("set_no_port=%d\n", hdr_ctl(pa.fd, other, NETMAP_REQ_PORT_HDR_SET, &len));
    printf("get_no_port=%d\n", hdr_ctl(pa.fd, other, NETMAP_REQ_PORT_HDR_GET, &len));
    uint16_t l16 = 12;
    printf("legacy_set=%d\n", hdr_legacy(pb.fd, b, NETMAP_BDG_VNET_HDR, &l16));
    l16 = 0;
    int e = hdr_legacy(pb.fd, b, NETMAP_VNET_HDR_GET, &l16);
    printf("legacy_get=%d\nlegacy_len=%u\n", e, l16);
    len = 0;
    printf("set_b=%d\n", hdr_ctl(pb.fd, b, NETMAP_REQ_PORT_HDR_SET, &len));
    len = 10;
    printf("set_a=%d\n", hdr_ctl(pa.fd, a, NETMAP_REQ_PORT_HDR_SET, &len));
    uint32_t ga = 99, gb = 99;
    hdr_ctl(pa.fd, a, NETMAP_REQ_PORT_HDR_GET, &ga);
    hdr_ctl(pb.fd, b, NETMAP_REQ_PORT_HDR_GET, &gb);
    printf("hdr_a=%u\nhdr_b=%u\n", ga, gb);

    unsigned char f[2048], want[2048], got[2048];
    /* A -> B, NEEDS_CSUM: csum_start 34 (UDP header), csum_offset 6. */
    memset(f, 0, 10);
    f[0] = 1; /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
    f[6] = 34; f[8] = 6;
    int n = udp_frame(f + 10, 1, 100, 1);
    udp_frame(want, 1, 100, 0);
    send_one(&pa, f, 10 + n);
    int g = recv_one(&pb, got);
    printf("a2b_csum_len=%d\na2b_csum_ok=%d\n", g, g == n && !memcmp(got, want, (size_t)n));
    /* A -> B, no offload: the header is stripped, the frame untouched. */
    memset(f, 0, 10);
    n = udp_frame(f + 10, 1, 40, 0);
    send_one(&pa, f, 10 + n);
    g = recv_one(&pb, got);
    printf("a2b_len=%d\na2b_ok=%d\n", g, g == n && !memcmp(got, f + 10, (size_t)n));
    /* B -> A: a zeroed 10-byte header in front of B's frame. */
    n = udp_frame(f, 2, 60, 0);
    send_one(&pb, f, n);
    g = recv_one(&pa, got);
    static const unsigned char zero[12];
    printf("b2a_len=%d\nb2a_ok=%d\n", g, g == 10 + n && !memcmp(got, zero, 10) && !memcmp(got + 10, f, (size_t)n));
    printf("sent_len=%d\n", n);
    close(pa.fd);
    close(pb.fd);
    return 0;
}

/* vale-ctl's requests: newif|delif|attach|detach NAME through NIOCCTRL, or with --legacy nr_cmd. */
static int cmd_ctl(const char *op, const char *name);

/* newif PREFIX0 .. PREFIX(N-1), then delif them all: how many the daemon made, its errno after. */
static int cmd_many(const char *prefix, int n)
{
    int fd = open("/dev/netmap", O_RDWR);
    if (fd < 0) die("open /dev/netmap");
    int made = 0, last = 0, deleted = 0;
    char name[32];
    for (int i = 0; i < n; i++) {
        struct nmreq_header h;
        struct nmreq_vale_newif v;
        memset(&h, 0, sizeof h);
        memset(&v, 0, sizeof v);
        h.nr_version = NETMAP_API;
        h.nr_reqtype = NETMAP_REQ_VALE_NEWIF;
        h.nr_body = (uintptr_t)&v;
        snprintf(name, sizeof name, "%s%d", prefix, i);
        strncpy(h.nr_name, name, sizeof h.nr_name - 1);
        if (ioctl(fd, NIOCCTRL, &h) < 0) last = errno;
        else made++;
    }
    for (int i = 0; i < n; i++) {
        struct nmreq_header h;
        memset(&h, 0, sizeof h);
        h.nr_version = NETMAP_API;
        h.nr_reqtype = NETMAP_REQ_VALE_DELIF;
        snprintf(name, sizeof name, "%s%d", prefix, i);
        strncpy(h.nr_name, name, sizeof h.nr_name - 1);
        if (ioctl(fd, NIOCCTRL, &h) == 0) deleted++;
    }
    printf("made=%d\nlast_errno=%d\ndeleted=%d\n", made, last, deleted);
    close(fd);
    return 0;
}

static int cmd_ctl(const char *op, const char *name)
{
    int fd = open("/dev/netmap", O_RDWR);
    if (fd < 0) die("open /dev/netmap");
    int e = 0;
    if (legacy) {
        struct nmreq q;
        memset(&q, 0, sizeof q);
        strncpy(q.nr_name, name, sizeof q.nr_name - 1);
        q.nr_version = NETMAP_API;
        q.nr_cmd = !strcmp(op, "newif") ? NETMAP_BDG_NEWIF : !strcmp(op, "delif") ? NETMAP_BDG_DELIF
                 : !strcmp(op, "attach") ? NETMAP_BDG_ATTACH : NETMAP_BDG_DETACH;
        q.nr_flags = reg_mode; /* --mode 3 (NR_REG_NIC_SW): vale-ctl -h's attach with the host stack */
        if (ioctl(fd, NIOCREGIF, &q) < 0) e = errno;
        else if (q.nr_cmd == NETMAP_BDG_NEWIF)
            printf("mem_id=%u\nslots=%u\nrings=%u\n", q.nr_arg2, q.nr_tx_slots, q.nr_tx_rings);
    } else {
        struct nmreq_header h;
        struct nmreq_vale_newif n;
        struct nmreq_vale_attach a;
        struct nmreq_vale_detach d;
        memset(&h, 0, sizeof h);
        memset(&n, 0, sizeof n);
        memset(&a, 0, sizeof a);
        memset(&d, 0, sizeof d);
        h.nr_version = NETMAP_API;
        strncpy(h.nr_name, name, sizeof h.nr_name - 1);
        if (!strcmp(op, "newif")) { h.nr_reqtype = NETMAP_REQ_VALE_NEWIF; h.nr_body = (uintptr_t)&n; }
        else if (!strcmp(op, "delif")) h.nr_reqtype = NETMAP_REQ_VALE_DELIF; /* no body, as vale-ctl */
        else if (!strcmp(op, "attach")) { h.nr_reqtype = NETMAP_REQ_VALE_ATTACH; h.nr_body = (uintptr_t)&a; a.reg.nr_mode = reg_mode; }
        else { h.nr_reqtype = NETMAP_REQ_VALE_DETACH; h.nr_body = (uintptr_t)&d; }
        if (ioctl(fd, NIOCCTRL, &h) < 0) e = errno;
        else if (h.nr_reqtype == NETMAP_REQ_VALE_NEWIF)
            printf("mem_id=%u\nslots=%u\nrings=%u\n", n.nr_mem_id, n.nr_tx_slots, n.nr_tx_rings);
    }
    printf("errno=%d\n", e);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *pos[8];
    int npos = 0;
    uint32_t extra = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--legacy")) legacy = 1;
        else if (!strcmp(argv[i], "--busy")) busy = 1;
        else if (!strcmp(argv[i], "--select")) use_select = 1;
        else if (!strcmp(argv[i], "--only-test")) only_test = 1;
        else if (!strcmp(argv[i], "--rx-only")) hostile_rx_only = 1;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) timeout_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--extra") && i + 1 < argc) extra = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--close-after") && i + 1 < argc) close_after_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) reg_mode = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ringid") && i + 1 < argc) reg_ringid = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rings") && i + 1 < argc) reg_rings = (uint16_t)atoi(argv[++i]);
        else if (npos < 8) pos[npos++] = argv[i];
    }
    if (npos >= 1 && !strcmp(pos[0], "offsets")) return cmd_offsets();
    if (npos >= 2 && !strcmp(pos[0], "info")) return cmd_info(pos[1], extra);
    if (npos >= 3 && !strcmp(pos[0], "tx")) return cmd_tx(pos[1], atol(pos[2]), npos >= 4 ? atoi(pos[3]) : 60);
    if (npos >= 3 && !strcmp(pos[0], "rx")) return cmd_rx(pos[1], atol(pos[2]));
    if (npos >= 4 && !strcmp(pos[0], "fwd")) return cmd_fwd(pos[1], pos[2], atol(pos[3]));
    if (npos >= 2 && !strcmp(pos[0], "wait")) return cmd_wait(pos[1]);
    if (npos >= 2 && !strcmp(pos[0], "hold")) return cmd_hold(pos[1]);
    if (npos >= 3 && !strcmp(pos[0], "epoll")) return cmd_epoll(pos[1], atol(pos[2]));
    if (npos >= 2 && !strcmp(pos[0], "epollhup")) return cmd_epollhup(pos[1]);
    if (npos >= 2 && !strcmp(pos[0], "epollet")) return cmd_epollet(pos[1]);
    if (npos >= 2 && !strcmp(pos[0], "eintr")) return cmd_eintr(pos[1]);
    if (npos >= 2 && !strcmp(pos[0], "hostile")) return cmd_hostile(pos[1], npos >= 3 ? atoi(pos[2]) : 2);
    if (npos >= 2 && !strcmp(pos[0], "errors")) return cmd_errors(pos[1]);
    if (npos >= 3 && !strcmp(pos[0], "vnet")) return cmd_vnet(pos[1], pos[2]);
    if (npos >= 3 && !strcmp(pos[0], "ctl")) return cmd_ctl(pos[1], pos[2]);
    if (npos >= 3 && !strcmp(pos[0], "many")) return cmd_many(pos[1], atoi(pos[2]));
    if (npos >= 2 && !strcmp(pos[0], "regerr")) return cmd_regerr(pos[1]);
    if (npos >= 3 && !strcmp(pos[0], "onenic")) return cmd_onenic(pos[1], atol(pos[2]));
    fprintf(stderr, "usage: nm_tool offsets|info|tx|rx|fwd|wait|hold|hostile|errors|vnet|ctl|many ... (see the file's comment)\n");
    return 2;
}
