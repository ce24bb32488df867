/*
 * libhypernf-netmap.so: a /dev/netmap for unmodified netmap programs, served by the HyperNF
 * daemon instead of netmap's kernel module. Loaded with LD_PRELOAD (hypernf exec sets it).
 *
 * What the program sees (netmap API 14, see netmap_abi.h):
 *   open("/dev/netmap")  a real descriptor E (an eventfd), so poll/select/epoll work on it;
 *                        behind it, hidden, a Unix stream connection S to the daemon.
 *   ioctl(E, NIOCCTRL)   REGISTER, PORT_INFO_GET, POOLS_INFO_GET, PORT_HDR_SET/GET,
 *                        VALE_ATTACH/DETACH/LIST, VALE_NEWIF/DELIF go to the daemon over S;
 *                        other request types fail with EINVAL, as in netmap.
 *   ioctl(E, NIOCREGIF/NIOCGINFO)  the legacy struct nmreq, converted.
 *   ioctl(E, NIOCTXSYNC) a futex hand-off through the control page: a host thread of the
 *                        domain runs the sync (the switch flush) while we wait.
 *   ioctl(E, NIOCRXSYNC) on a switch port: done here, without the host (HNF_FEAT_RX_SELF:
 *                        two words in each ring's sem area); on a pipe's end: a hand-off.
 *   mmap(E)              maps the domain's region (a memfd the daemon passed with SCM_RIGHTS).
 *   poll/ppoll/select/pselect on E  netmap's semantics: the rings are synced first, then the
 *                        real call blocks on E, which the host writes when frames arrive.
 *   epoll_ctl/epoll_wait/epoll_pwait/epoll_pwait2 with E  the same semantics through the
 *                        program's own epoll set: E is kept in a table of that set (not in
 *                        the kernel's), synced and checked at each wait, and the wait blocks
 *                        on the epoll descriptor and the eventfds together.
 *   close(E)             closes S: the daemon detaches the port (and destroys the process's
 *                        domain with its last connection).
 * The library trusts the daemon; the daemon trusts nothing the library or program writes.
 * Protocol: hnf_proto.h and docs/process-domains.md.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "netmap_abi.h"
#include "hnf_proto.h"
#include "../../guest/include/hnf_rxself.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_FDS 65536
#define DEFAULT_SOCKET "/run/hypernf/hypernf.sock"
#define NM_TX_TRACKED 16                /* TX rings whose last synced head poll remembers */

/* The self-served RX words live in netmap_ring's sem area, one cache line each (hnf_proto.h). */
_Static_assert(HNF_RING_RELEASE_OFS == offsetof(struct netmap_ring, sem), "release word");
_Static_assert(HNF_RING_PUBLISH_OFS + 4 <= offsetof(struct netmap_ring, slot), "publish word");
_Static_assert(HNF_RING_HEAD_OFS == offsetof(struct netmap_ring, head) && HNF_RING_CUR_OFS == offsetof(struct netmap_ring, cur) &&
               HNF_RING_TAIL_OFS == offsetof(struct netmap_ring, tail) && HNF_RING_NUM_SLOTS_OFS == offsetof(struct netmap_ring, num_slots),
               "hnf_rxself.h's ring offsets");

struct nmfd {
    int sock;                       /* S: to the daemon, CLOEXEC */
    int registered;
    int memfd, ctlfd, kickfd;        /* kickfd: split/merge's backend kick (HNF_FEAT_TX_KICK), else -1 */
    char *mem;                      /* our own mapping of the region (poll reads ring indices) */
    uint64_t memsize, offset;
    struct hnf_ctl *ctl;
    uint32_t seq;
    uint64_t flags;                 /* NR_* of the registration */
    uint32_t first_tx, last_tx, first_rx, last_rx;
    uint16_t mem_id;
    uint32_t features;              /* HNF_FEAT_* of the registration */
    uint32_t tx_handed[NM_TX_TRACKED]; /* each TX ring's head at our last txsync (netmap's hwcur) */
    int dead;                       /* S hung up: the daemon (or our port's region) is gone */
    pthread_mutex_t lock;           /* one socket request at a time */
};

static struct nmfd *table[MAX_FDS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
static int (*real_epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);

static void resolve(void)
{
    if (real_close) return;
    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    real_openat = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
    real_poll = (int (*)(struct pollfd *, nfds_t, int))dlsym(RTLD_NEXT, "poll");
    real_ppoll = (int (*)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))dlsym(RTLD_NEXT, "ppoll");
    real_select = (int (*)(int, fd_set *, fd_set *, fd_set *, struct timeval *))dlsym(RTLD_NEXT, "select");
    real_pselect = (int (*)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *))dlsym(RTLD_NEXT, "pselect");
    real_epoll_ctl = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    real_epoll_pwait = (int (*)(int, struct epoll_event *, int, int, const sigset_t *))dlsym(RTLD_NEXT, "epoll_pwait");
    real_epoll_pwait2 = (int (*)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *))dlsym(RTLD_NEXT, "epoll_pwait2");
    __atomic_store_n(&real_close, (int (*)(int))dlsym(RTLD_NEXT, "close"), __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void init(void) { resolve(); }

static void warn(const char *fmt, ...)
{
    if (getenv("HYPERNF_NETMAP_QUIET")) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
}

static struct nmfd *lookup(int fd)
{
    if (fd < 0 || fd >= MAX_FDS) return NULL;
    return __atomic_load_n(&table[fd], __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------------- the daemon connection */

static int write_all(int s, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(s, c, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        c += w; n -= (size_t)w;
    }
    return 0;
}

static int read_all(int s, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = recv(s, c, n, 0);
        if (r == 0) { errno = EPIPE; return -1; }
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        c += r; n -= (size_t)r;
    }
    return 0;
}

static void json_string(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 8 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { out[o++] = '\\'; out[o++] = (char)ch; }
        else if (ch >= 0x20) out[o++] = (char)ch;
    }
    out[o] = 0;
}

/* Connects S and says hello; the options of hypernf exec ride in the environment. */
static int daemon_connect(void)
{
    const char *path = getenv("HYPERNF_SOCKET");
    if (!path || !*path) path = DEFAULT_SOCKET;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) { real_close(s); errno = ENAMETOOLONG; return -1; }
    strcpy(a.sun_path, path);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        warn("hypernf-netmap: cannot reach the HyperNF daemon at %s (%s); start it with 'hypernf daemon' or set HYPERNF_SOCKET",
             path, strerror(e));
        real_close(s);
        errno = ENOENT; /* as if /dev/netmap did not exist */
        return -1;
    }
    char model[64], cpus[128], name[128], line[600];
    json_string(model, sizeof model, getenv("HYPERNF_IO_MODEL"));
    json_string(cpus, sizeof cpus, getenv("HYPERNF_CPUS"));
    json_string(name, sizeof name, getenv("HYPERNF_NAME"));
    const char *w = getenv("HYPERNF_WEIGHT"), *c = getenv("HYPERNF_CAP");
    int n = snprintf(line, sizeof line,
                     "{\"op\":\"netmap_open\",\"args\":{\"protocol\":%d,\"io_model\":\"%s\",\"weight\":%ld,\"cap\":%ld,\"cpus\":\"%s\",\"name\":\"%s\"}}\n",
                     HNF_PROTO_VERSION, model, w ? strtol(w, NULL, 10) : 0L, c ? strtol(c, NULL, 10) : 0L, cpus, name);
    if (n <= 0 || n >= (int)sizeof line || write_all(s, line, (size_t)n) < 0) { real_close(s); errno = EIO; return -1; }
    /* The answer is one line; the daemon sends nothing after it until we ask. */
    char reply[1024];
    size_t got = 0;
    while (got < sizeof reply - 1) {
        ssize_t r = recv(s, reply + got, 1, 0);
        if (r <= 0) { if (r < 0 && errno == EINTR) continue; break; }
        if (reply[got++] == '\n') break;
    }
    reply[got] = 0;
    if (!strstr(reply, "\"ok\":true")) {
        warn("hypernf-netmap: the daemon refused /dev/netmap: %s", got ? reply : "(connection closed)");
        real_close(s);
        errno = EACCES;
        return -1;
    }
    return s;
}

/* One request and its reply; fds received (CLOEXEC) go to fds_out (up to 2). Returns 0 or -1/errno. */
static int daemon_call(int s, uint32_t type, const void *body, uint32_t len, int send_fd,
                       void *reply, uint32_t reply_len, int *fds_out, int nfds_out)
{
    struct hnf_msg_hdr h = { type, len };
    char buf[sizeof h + 256];
    if (len > 256) { errno = EINVAL; return -1; }
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, body, len);
    struct iovec iov = { buf, sizeof h + len };
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    union { char b[CMSG_SPACE(sizeof(int) * 3)]; struct cmsghdr align; } cb;
    if (send_fd >= 0) {
        memset(&cb, 0, sizeof cb);
        m.msg_control = cb.b;
        m.msg_controllen = CMSG_SPACE(sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &send_fd, sizeof(int));
    }
    for (;;) {
        ssize_t w = sendmsg(s, &m, MSG_NOSIGNAL);
        if (w == (ssize_t)iov.iov_len) break;
        if (w < 0 && errno == EINTR) continue;
        errno = EIO;
        return -1;
    }
    /* The reply header carries the descriptors. */
    struct hnf_msg_hdr rh;
    struct iovec riov = { &rh, sizeof rh };
    memset(&m, 0, sizeof m);
    memset(&cb, 0, sizeof cb);
    m.msg_iov = &riov;
    m.msg_iovlen = 1;
    m.msg_control = cb.b;
    m.msg_controllen = sizeof cb.b;
    ssize_t r;
    do r = recvmsg(s, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL); while (r < 0 && errno == EINTR);
    int nrecv = 0, recvd[3] = { -1, -1, -1 };
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (nrecv < 3) recvd[nrecv++] = fd; else real_close(fd);
            }
        }
    }
    if (r != (ssize_t)sizeof rh || rh.type != (type | HNF_MSG_REPLY) || rh.len != reply_len ||
        read_all(s, reply, reply_len) < 0) {
        for (int i = 0; i < nrecv; i++) real_close(recvd[i]);
        errno = EIO;
        return -1;
    }
    for (int i = 0; i < nfds_out; i++) fds_out[i] = i < nrecv ? recvd[i] : -1;
    for (int i = nfds_out; i < nrecv; i++) real_close(recvd[i]);
    return 0;
}

/* ---------------------------------------------------------------- open / close */

static int is_netmap_path(const char *p)
{
    return p && strcmp(p, "/dev/netmap") == 0;
}

static int nm_open(int flags)
{
    resolve();
    int e = eventfd(0, EFD_NONBLOCK | ((flags & O_CLOEXEC) ? EFD_CLOEXEC : 0));
    if (e < 0) return -1;
    if (e >= MAX_FDS) { real_close(e); errno = EMFILE; return -1; }
    int s = daemon_connect();
    if (s < 0) { int err = errno; real_close(e); errno = err; return -1; }
    struct nmfd *n = calloc(1, sizeof *n);
    if (!n) { real_close(s); real_close(e); errno = ENOMEM; return -1; }
    n->sock = s;
    n->memfd = n->ctlfd = n->kickfd = -1;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_lock(&table_lock);
    __atomic_store_n(&table[e], n, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&table_lock);
    return e;
}

static void nm_release(struct nmfd *n)
{
    if (n->mem) munmap(n->mem, n->memsize);
    if (n->ctl) munmap(n->ctl, sizeof(struct hnf_ctl));
    if (n->memfd >= 0) real_close(n->memfd);
    if (n->ctlfd >= 0) real_close(n->ctlfd);
    if (n->kickfd >= 0) real_close(n->kickfd);
    real_close(n->sock);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

EXPORT int open(const char *path, int flags, ...)
{
    resolve();
    if (is_netmap_path(path)) return nm_open(flags);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    return real_open(path, flags, mode);
}
EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

EXPORT int __open_2(const char *path, int flags)
{
    return open(path, flags);
}
EXPORT int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    resolve();
    if (is_netmap_path(path)) return nm_open(flags);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }
    return real_openat(dirfd, path, flags, mode);
}
EXPORT int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

static void epoll_forget(int fd);

EXPORT int close(int fd)
{
    resolve();
    epoll_forget(fd);
    if (fd >= 0 && fd < MAX_FDS && __atomic_load_n(&table[fd], __ATOMIC_RELAXED)) {
        pthread_mutex_lock(&table_lock);
        struct nmfd *n = table[fd];
        __atomic_store_n(&table[fd], NULL, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&table_lock);
        if (n) nm_release(n);
    }
    return real_close(fd);
}

/* ---------------------------------------------------------------- the sync hand-off */

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* The daemon went away (S hung up): syncs can never complete. */
static int daemon_gone(struct nmfd *n)
{
    struct pollfd p = { n->sock, POLLIN, 0 };
    if (real_poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR)) return 1;
    char c;
    return recv(n->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static struct netmap_if *nifp_of(struct nmfd *n)
{
    return NETMAP_IF(n->mem, n->offset);
}

/*
 * rxsync of a self-served registration (HNF_FEAT_RX_SELF), without the host: release what the
 * user consumed (the release word := head) and show what the senders delivered (tail := the
 * publish word). As netmap's rxsync, a head or cur outside [last release, tail] resets the
 * ring to the last release instead. The host checks the release word again on its side.
 */
static void nm_rxsync_self(struct nmfd *n)
{
    struct netmap_if *nifp = nifp_of(n);
    for (uint32_t i = n->first_rx; i <= n->last_rx && i < nifp->ni_rx_rings; i++)
        hnf_rxsync_self(NETMAP_RXRING(nifp, i));
}

/* Hands op to the domain's host thread and waits for it (the hypercall). 0 or -1/errno. */
static int nm_sync(struct nmfd *n, uint32_t op)
{
    if (__atomic_load_n(&n->dead, __ATOMIC_RELAXED)) { errno = EIO; return -1; }
    int rx_self = (op & HNF_OP_RXSYNC) && (n->features & HNF_FEAT_RX_SELF);
    if (rx_self) op &= ~(uint32_t)HNF_OP_RXSYNC;
    uint32_t handed[NM_TX_TRACKED];
    struct netmap_if *nifp = nifp_of(n);
    uint32_t ntx = 0;
    if (op & HNF_OP_TXSYNC)
        for (uint32_t i = n->first_tx; i <= n->last_tx && i < nifp->ni_tx_rings && ntx < NM_TX_TRACKED; i++)
            handed[ntx++] = NETMAP_TXRING(nifp, i)->head;
    if ((op & HNF_OP_TXSYNC) && n->kickfd >= 0) {
        /* split/merge: kick the backend ourselves, only if it asked (hnf_proto.h, HNF_FEAT_TX_KICK).
         * The fence orders our head stores before the read of needs_kick (Dekker with the backend). */
        op &= ~(uint32_t)HNF_OP_TXSYNC;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        int asks = 0;
        if (n->first_tx <= n->last_tx && n->first_tx < nifp->ni_tx_rings) {
            struct netmap_ring *t0 = NETMAP_TXRING(nifp, n->first_tx);
            asks = __atomic_load_n((uint32_t *)((char *)t0 + HNF_RING_NEEDS_KICK_OFS), __ATOMIC_RELAXED) != 0;
        }
        if (asks) {
            uint64_t one = 1;
            ssize_t w = write(n->kickfd, &one, sizeof one);
            (void)w; /* EAGAIN: the counter is full, the backend has a kick pending anyway */
        }
        for (uint32_t k = 0; k < ntx; k++) n->tx_handed[k] = handed[k];
    }
    if (op == 0) {
        if (rx_self) nm_rxsync_self(n);
        return 0;
    }
    struct hnf_ctl *c = n->ctl;
    uint32_t seq = ++n->seq;
    if (seq == 0) seq = ++n->seq;
    c->op = op;
    c->cpu = sched_getcpu();
    __atomic_store_n(&c->req_seq, seq, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&c->host_idle, __ATOMIC_SEQ_CST))
        futex(&c->req_seq, FUTEX_WAKE, 1, NULL);
    /* No spinning: the host thread runs on our CPU while we sleep. */
    uint32_t done = __atomic_load_n(&c->done_seq, __ATOMIC_ACQUIRE);
    if (done != seq) {
        __atomic_store_n(&c->caller_waiting, 1, __ATOMIC_SEQ_CST);
        while ((done = __atomic_load_n(&c->done_seq, __ATOMIC_ACQUIRE)) != seq) {
            struct timespec ts = { 1, 0 };
            if (futex(&c->done_seq, FUTEX_WAIT, done, &ts) < 0 && errno == ETIMEDOUT && daemon_gone(n)) {
                __atomic_store_n(&n->dead, 1, __ATOMIC_RELAXED);
                __atomic_store_n(&c->caller_waiting, 0, __ATOMIC_RELAXED);
                errno = EIO;
                return -1;
            }
        }
        __atomic_store_n(&c->caller_waiting, 0, __ATOMIC_RELAXED);
    }
    int32_t res = __atomic_load_n(&c->result, __ATOMIC_ACQUIRE);
    if (res < 0) { errno = -res; return -1; }
    for (uint32_t k = 0; k < ntx; k++) n->tx_handed[k] = handed[k];
    if (rx_self) nm_rxsync_self(n);
    return 0;
}

/* Some bound TX ring holds frames not handed to the host yet (netmap's head != hwcur). */
static int tx_pending(struct nmfd *n)
{
    struct netmap_if *nifp = nifp_of(n);
    uint32_t k = 0;
    for (uint32_t i = n->first_tx; i <= n->last_tx && i < nifp->ni_tx_rings; i++, k++)
        if (k >= NM_TX_TRACKED || NETMAP_TXRING(nifp, i)->head != n->tx_handed[k]) return 1;
    return 0;
}

static int rx_ready(struct nmfd *n)
{
    struct netmap_if *nifp = nifp_of(n);
    for (uint32_t i = n->first_rx; i <= n->last_rx && i < nifp->ni_rx_rings; i++) {
        struct netmap_ring *r = NETMAP_RXRING(nifp, i);
        if (__atomic_load_n(&r->cur, __ATOMIC_RELAXED) != __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE)) return 1;
    }
    return 0;
}

static int tx_ready(struct nmfd *n)
{
    struct netmap_if *nifp = nifp_of(n);
    for (uint32_t i = n->first_tx; i <= n->last_tx && i < nifp->ni_tx_rings; i++) {
        struct netmap_ring *r = NETMAP_TXRING(nifp, i);
        if (__atomic_load_n(&r->cur, __ATOMIC_RELAXED) != __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE)) return 1;
    }
    return 0;
}

/*
 * netmap's poll on one descriptor: txsync when POLLOUT is asked, or unless NR_NO_TX_POLL when
 * a TX ring has frames not synced yet (netmap skips a ring whose head is its hwcur), rxsync
 * when POLLIN is asked (or NR_DO_RX_POLL), then POLLIN if an RX ring has cur != tail, POLLOUT
 * if a TX ring has. When arm is set the host is asked (rx_waiting) to write the eventfd on the
 * next delivery, before the sync, so nothing published after the sync is missed.
 */
static short nm_poll_one(struct nmfd *n, short events, int arm)
{
    if (!n->registered || __atomic_load_n(&n->dead, __ATOMIC_RELAXED)) return POLLERR;
    uint32_t op = 0;
    if ((events & POLLOUT) || (!(n->flags & NR_NO_TX_POLL) && tx_pending(n))) op |= HNF_OP_TXSYNC;
    if ((events & (POLLIN | POLLRDNORM)) || (n->flags & NR_DO_RX_POLL)) op |= HNF_OP_RXSYNC;
    if (arm) __atomic_store_n(&n->ctl->rx_waiting, 1, __ATOMIC_SEQ_CST);
    if (op && nm_sync(n, op) < 0) return POLLERR;
    short rev = 0;
    if ((events & (POLLIN | POLLRDNORM)) && rx_ready(n)) rev |= events & (POLLIN | POLLRDNORM);
    if ((events & (POLLOUT | POLLWRNORM)) && tx_ready(n)) rev |= events & (POLLOUT | POLLWRNORM);
    return rev;
}

static void drain(int fd)
{
    uint64_t v;
    int err = errno;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
    errno = err; /* an empty eventfd's EAGAIN must not become the caller's errno (poll's EINTR) */
}

/*
 * A wait that armed rx_waiting ends: take the flag back. If the host took it first, it wrote
 * (or is about to write) the eventfd: read that count, so the next wait does not wake for it.
 * If the flag was still ours, nobody wrote and no read is needed (the common case costs no
 * system call).
 */
static void disarm(struct nmfd *n, int fd)
{
    if (!n->registered) return;
    if (__atomic_exchange_n(&n->ctl->rx_waiting, 0, __ATOMIC_SEQ_CST) == 0) drain(fd);
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * poll/ppoll with netmap descriptors among fds. timeout_ns < 0: forever. The blocking part
 * is the real ppoll on a copy of fds where each netmap descriptor waits for POLLIN only
 * (its eventfd is always writable).
 */
static int nm_poll(struct pollfd *fds, nfds_t nfds, long long timeout_ns, const sigset_t *mask)
{
    /* tmp: a copy of fds, then one entry per netmap descriptor for its connection S (a hang-up
     * there wakes the wait: the daemon, or the region our port lives in, is gone) */
    struct pollfd local[64];
    nfds_t nnm = 0;
    for (nfds_t i = 0; i < nfds; i++) if (lookup(fds[i].fd)) nnm++;
    struct pollfd *tmp = nfds + nnm <= 64 ? local : malloc((nfds + nnm) * sizeof *tmp);
    if (!tmp) { errno = ENOMEM; return -1; }
    long long deadline = timeout_ns < 0 ? -1 : now_ns() + timeout_ns;
    int result;
    /* The first pass syncs and looks without asking the host for the eventfd: a ready
     * descriptor (the sender after its txsync, a receiver with frames) returns at once and
     * costs neither the host a write nor us a read. Only a pass that would block arms
     * rx_waiting, then syncs and looks again before blocking, so nothing the host publishes
     * after that sync is missed. */
    int armed = 0;
    for (;;) {
        int ready = 0, others = 0;
        for (nfds_t i = 0; i < nfds; i++) {
            fds[i].revents = 0;
            struct nmfd *n = lookup(fds[i].fd);
            if (n) {
                fds[i].revents = nm_poll_one(n, fds[i].events, armed);
                if (fds[i].revents) ready++;
            } else if (fds[i].fd >= 0) others++;
        }
        if (others) {
            /* The other descriptors' state, without blocking. */
            for (nfds_t i = 0; i < nfds; i++) {
                tmp[i] = fds[i];
                if (lookup(fds[i].fd)) tmp[i].fd = -1;
            }
            int r = real_poll(tmp, nfds, 0);
            if (r < 0) { result = -1; break; }
            for (nfds_t i = 0; i < nfds; i++)
                if (!lookup(fds[i].fd) && (fds[i].revents = tmp[i].revents)) ready++;
        }
        long long left = deadline < 0 ? -1 : deadline - now_ns();
        if (ready || timeout_ns == 0 || (deadline >= 0 && left <= 0)) { result = ready; break; }
        if (!armed) { armed = 1; continue; } /* arm, then sync and look again before sleeping */
        nfds_t k = nfds;
        for (nfds_t i = 0; i < nfds; i++) {
            tmp[i] = fds[i];
            struct nmfd *n = lookup(fds[i].fd);
            if (n) {
                tmp[i].events = POLLIN;
                if (k < nfds + nnm) tmp[k++] = (struct pollfd){ n->sock, POLLIN | POLLRDHUP, 0 };
            }
        }
        struct timespec ts, *tsp = NULL;
        if (left >= 0) { ts.tv_sec = left / 1000000000LL; ts.tv_nsec = left % 1000000000LL; tsp = &ts; }
        int r = real_ppoll(tmp, k, tsp, mask);
        if (r < 0) { result = -1; break; }
        k = nfds;
        for (nfds_t i = 0; i < nfds; i++) {
            struct nmfd *n = lookup(fds[i].fd);
            if (!n) continue;
            if (tmp[i].revents & POLLIN) drain(fds[i].fd);
            if (k < nfds + nnm && tmp[k++].revents && daemon_gone(n)) __atomic_store_n(&n->dead, 1, __ATOMIC_RELAXED);
        }
        /* Loop: the netmap descriptors are re-synced and everything re-checked. */
    }
    /* Done waiting: take rx_waiting back (reading the eventfd only if the host wrote it), so
     * level-triggered waiting does not spin. errno is the wait's (EINTR from ppoll). */
    int err = errno;
    for (nfds_t i = 0; armed && i < nfds; i++) {
        struct nmfd *n = lookup(fds[i].fd);
        if (n) disarm(n, fds[i].fd);
    }
    if (tmp != local) free(tmp);
    errno = err;
    return result;
}

static int has_netmap(const struct pollfd *fds, nfds_t nfds)
{
    for (nfds_t i = 0; i < nfds; i++) if (lookup(fds[i].fd)) return 1;
    return 0;
}

EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    resolve();
    if (!has_netmap(fds, nfds)) return real_poll(fds, nfds, timeout);
    return nm_poll(fds, nfds, timeout < 0 ? -1 : (long long)timeout * 1000000LL, NULL);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *ts, const sigset_t *mask)
{
    resolve();
    if (!has_netmap(fds, nfds)) return real_ppoll(fds, nfds, ts, mask);
    return nm_poll(fds, nfds, ts ? (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec : -1, mask);
}

/* select and pselect with a netmap descriptor in a set run as poll. */
static int nm_select(int nfds, fd_set *r, fd_set *w, fd_set *x, long long timeout_ns, const sigset_t *mask, int *handled)
{
    *handled = 0;
    if (nfds <= 0 || nfds > FD_SETSIZE) return 0;
    int any = 0;
    for (int fd = 0; fd < nfds && !any; fd++)
        if (lookup(fd) && ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x)))) any = 1;
    if (!any) return 0;
    *handled = 1;
    struct pollfd *p = malloc((size_t)nfds * sizeof *p);
    if (!p) { errno = ENOMEM; return -1; }
    nfds_t k = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = 0;
        if (r && FD_ISSET(fd, r)) ev |= POLLIN;
        if (w && FD_ISSET(fd, w)) ev |= POLLOUT;
        if (x && FD_ISSET(fd, x)) ev |= POLLPRI;
        if (ev) { p[k].fd = fd; p[k].events = ev; p[k].revents = 0; k++; }
    }
    int rc = nm_poll(p, k, timeout_ns, mask);
    if (rc >= 0) {
        if (r) FD_ZERO(r);
        if (w) FD_ZERO(w);
        if (x) FD_ZERO(x);
        rc = 0;
        for (nfds_t i = 0; i < k; i++) {
            short rv = p[i].revents;
            if (rv & POLLNVAL) { free(p); errno = EBADF; return -1; }
            if (r && (rv & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN)) { FD_SET(p[i].fd, r); rc++; }
            if (w && (rv & (POLLOUT | POLLERR)) && (p[i].events & POLLOUT)) { FD_SET(p[i].fd, w); rc++; }
            if (x && (rv & POLLPRI)) { FD_SET(p[i].fd, x); rc++; }
        }
    }
    free(p);
    return rc;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv)
{
    resolve();
    int handled;
    long long t = tv ? (long long)tv->tv_sec * 1000000000LL + (long long)tv->tv_usec * 1000LL : -1;
    int rc = nm_select(nfds, r, w, x, t, NULL, &handled);
    return handled ? rc : real_select(nfds, r, w, x, tv);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *ts, const sigset_t *mask)
{
    resolve();
    int handled;
    long long t = ts ? (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec : -1;
    int rc = nm_select(nfds, r, w, x, t, mask, &handled);
    return handled ? rc : real_pselect(nfds, r, w, x, ts, mask);
}

/* ---------------------------------------------------------------- epoll */

/*
 * A netmap descriptor added to an epoll set is kept here, per epoll descriptor, instead of in
 * the kernel's set: each wait syncs it and reports EPOLLIN/EPOLLOUT as poll would (netmap's
 * semantics: the kernel module's poll method syncs when epoll calls it), the other
 * descriptors are collected from the kernel's set without blocking, and when nothing is
 * ready the wait blocks in ppoll on the epoll descriptor (readable when the kernel's set has
 * events), the netmap eventfds and each entry's daemon connection S together (S hanging up:
 * the entry reports EPOLLERR|EPOLLHUP, as poll reports POLLERR). EPOLLONESHOT disables an
 * entry after one report until EPOLL_CTL_MOD.
 * EPOLLET: an entry is reported once per edge. At each report it remembers the tail of every
 * bound ring of the direction it reported (ep_item.rx_tail/tx_tail); later waits still sync it
 * (netmap's semantics) but report EPOLLIN again only when an RX tail moved since (new frames),
 * EPOLLOUT only when a TX tail moved (slots came back), EPOLLERR once. No wake-up is lost: the
 * wait arms rx_waiting before the sync that compares, so a delivery after that sync writes the
 * eventfd the wait then blocks on; and a tail cannot come back to the remembered value between
 * two syncs (a ring never holds num_slots frames). EPOLL_CTL_MOD re-arms, as the kernel does.
 * Limits: the netmap entries are invisible to a poll() of the epoll descriptor itself and to
 * an epoll set nesting this one.
 */
struct ep_item {
    int fd; uint32_t events; epoll_data_t data; int disabled;
    /* EPOLLET: what the last report saw (valid bits: 1 RX tails, 2 TX tails, 4 error reported) */
    uint32_t edge_seen;
    uint32_t rx_tail[NM_TX_TRACKED], tx_tail[NM_TX_TRACKED];
};
struct ep_set { int n, cap; struct ep_item *items; };
static struct ep_set *ep_sets[MAX_FDS];
static pthread_mutex_t ep_lock = PTHREAD_MUTEX_INITIALIZER;

static void epoll_forget(int fd)
{
    if (fd < 0 || fd >= MAX_FDS) return;
    pthread_mutex_lock(&ep_lock);
    struct ep_set *own = ep_sets[fd];
    ep_sets[fd] = NULL;
    if (own) { free(own->items); free(own); }
    if (lookup(fd)) {
        /* A netmap descriptor closed: the kernel drops a closed fd from every set; so do we. */
        for (int e = 0; e < MAX_FDS; e++) {
            struct ep_set *s = ep_sets[e];
            if (!s) continue;
            for (int i = 0; i < s->n; i++)
                if (s->items[i].fd == fd) { s->items[i] = s->items[--s->n]; break; }
        }
    }
    pthread_mutex_unlock(&ep_lock);
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    resolve();
    if (!lookup(fd)) return real_epoll_ctl(epfd, op, fd, ev);
    if (epfd < 0 || epfd >= MAX_FDS || epfd == fd) { errno = EINVAL; return -1; }
    /* Is epfd an epoll descriptor? Deleting our eventfd (never in the kernel's set) says:
     * ENOENT yes, EBADF no descriptor, EINVAL not an epoll descriptor. */
    if (real_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == 0 || errno != ENOENT) {
        if (errno != EBADF) errno = EINVAL;
        return -1;
    }
    if (op != EPOLL_CTL_DEL && !ev) { errno = EFAULT; return -1; }
    pthread_mutex_lock(&ep_lock);
    struct ep_set *s = ep_sets[epfd];
    int idx = -1;
    for (int i = 0; s && i < s->n; i++) if (s->items[i].fd == fd) { idx = i; break; }
    int rc = 0;
    switch (op) {
    case EPOLL_CTL_ADD:
        if (idx >= 0) { errno = EEXIST; rc = -1; break; }
        if (!s && !(s = ep_sets[epfd] = calloc(1, sizeof *s))) { errno = ENOMEM; rc = -1; break; }
        if (s->n == s->cap) {
            int cap = s->cap ? 2 * s->cap : 8;
            struct ep_item *it = realloc(s->items, (size_t)cap * sizeof *it);
            if (!it) { errno = ENOMEM; rc = -1; break; }
            s->items = it;
            s->cap = cap;
        }
        s->items[s->n++] = (struct ep_item){ .fd = fd, .events = ev->events, .data = ev->data };
        break;
    case EPOLL_CTL_MOD:
        if (idx < 0) { errno = ENOENT; rc = -1; break; }
        s->items[idx].events = ev->events;
        s->items[idx].data = ev->data;
        s->items[idx].disabled = 0;
        s->items[idx].edge_seen = 0;   /* re-armed: the current state is an edge again */
        break;
    case EPOLL_CTL_DEL:
        if (idx < 0) { errno = ENOENT; rc = -1; break; }
        s->items[idx] = s->items[--s->n];
        break;
    default:
        errno = EINVAL;
        rc = -1;
    }
    pthread_mutex_unlock(&ep_lock);
    return rc;
}

/* A copy of epfd's netmap entries (the set may change while we wait); *n = 0 when there are none. */
static struct ep_item *ep_snapshot(int epfd, int *n)
{
    *n = 0;
    if (epfd < 0 || epfd >= MAX_FDS || !__atomic_load_n(&ep_sets[epfd], __ATOMIC_RELAXED)) return NULL;
    pthread_mutex_lock(&ep_lock);
    struct ep_set *s = ep_sets[epfd];
    struct ep_item *copy = NULL;
    if (s && s->n > 0 && (copy = malloc((size_t)s->n * sizeof *copy))) {
        memcpy(copy, s->items, (size_t)s->n * sizeof *copy);
        *n = s->n;
    }
    pthread_mutex_unlock(&ep_lock);
    return copy;
}

/* Records a report of entry it->fd of epfd: EPOLLONESHOT disables it until EPOLL_CTL_MOD,
 * EPOLLET keeps what this report saw (it->edge_seen, rx_tail, tx_tail). */
static void ep_reported(int epfd, const struct ep_item *it)
{
    pthread_mutex_lock(&ep_lock);
    struct ep_set *s = ep_sets[epfd];
    for (int i = 0; s && i < s->n; i++)
        if (s->items[i].fd == it->fd) {
            if (s->items[i].events & EPOLLONESHOT) s->items[i].disabled = 1;
            if (s->items[i].events & EPOLLET) {
                s->items[i].edge_seen = it->edge_seen;
                memcpy(s->items[i].rx_tail, it->rx_tail, sizeof it->rx_tail);
                memcpy(s->items[i].tx_tail, it->tx_tail, sizeof it->tx_tail);
            }
        }
    pthread_mutex_unlock(&ep_lock);
}

/* The tails of n's bound rings of one direction; returns 1 if any differs from seen[] (or a
 * ring is beyond what seen[] can hold). seen[] is updated to the current tails. */
static int tails_moved(struct nmfd *n, int rx, uint32_t *seen)
{
    struct netmap_if *nifp = nifp_of(n);
    uint32_t first = rx ? n->first_rx : n->first_tx, last = rx ? n->last_rx : n->last_tx;
    uint32_t nrings = rx ? nifp->ni_rx_rings : nifp->ni_tx_rings;
    int moved = 0;
    for (uint32_t i = first, k = 0; i <= last && i < nrings; i++, k++) {
        if (k >= NM_TX_TRACKED) return 1;
        struct netmap_ring *r = rx ? NETMAP_RXRING(nifp, i) : NETMAP_TXRING(nifp, i);
        uint32_t t = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
        if (t != seen[k]) { moved = 1; seen[k] = t; }
    }
    return moved;
}

/* EPOLLET: keeps of rev only what is a new edge for entry it (and records it in it). */
static short ep_edges(struct nmfd *nm, struct ep_item *it, short rev)
{
    if (rev & POLLERR) {
        if (it->edge_seen & 4) rev &= ~(POLLERR | POLLHUP);
        else it->edge_seen |= 4;
        return rev;
    }
    if (rev & (POLLIN | POLLRDNORM)) {
        int moved = tails_moved(nm, 1, it->rx_tail);
        if ((it->edge_seen & 1) && !moved) rev &= ~(POLLIN | POLLRDNORM);
        it->edge_seen |= 1;
    }
    if (rev & (POLLOUT | POLLWRNORM)) {
        int moved = tails_moved(nm, 0, it->tx_tail);
        if ((it->edge_seen & 2) && !moved) rev &= ~(POLLOUT | POLLWRNORM);
        it->edge_seen |= 2;
    }
    return rev;
}

static int nm_epoll_wait(int epfd, struct epoll_event *out, int max, long long timeout_ns, const sigset_t *mask)
{
    if (max <= 0 || !out) { errno = EINVAL; return -1; }
    long long deadline = timeout_ns < 0 ? -1 : now_ns() + timeout_ns;
    int armed = 0; /* as poll: rx_waiting only on the pass before blocking */
    for (;;) {
        int n;
        struct ep_item *it = ep_snapshot(epfd, &n);
        if (!it) {
            /* No netmap entry (any more): the kernel's wait does it all. */
            long long left = deadline < 0 ? -1 : deadline - now_ns();
            if (left < 0 && deadline >= 0) left = 0;
            struct timespec ts = { left / 1000000000LL, left % 1000000000LL };
            if (real_epoll_pwait2) return real_epoll_pwait2(epfd, out, max, left < 0 ? NULL : &ts, mask);
            return real_epoll_pwait(epfd, out, max, left < 0 ? -1 : (int)((left + 999999) / 1000000), mask);
        }
        int ready = 0;
        for (int i = 0; i < n && ready < max; i++) {
            struct nmfd *nm = lookup(it[i].fd);
            if (!nm || it[i].disabled) continue;
            short want = (short)(it[i].events & (EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM));
            short rev = nm_poll_one(nm, want, armed);
            /* A hung-up connection (the daemon, or the region our port lives in, is gone): the
             * kernel reports a hang-up as EPOLLHUP next to the error. */
            if ((rev & POLLERR) && __atomic_load_n(&nm->dead, __ATOMIC_RELAXED)) rev |= POLLHUP;
            if (rev && (it[i].events & EPOLLET)) rev = ep_edges(nm, &it[i], rev);
            if (rev) {
                out[ready].events = (uint32_t)rev & (it[i].events | EPOLLERR | EPOLLHUP);
                out[ready].data = it[i].data;
                ready++;
                ep_reported(epfd, &it[i]);
            }
        }
        if (ready < max) {
            int r = real_epoll_pwait(epfd, out + ready, max - ready, 0, NULL);
            if (r > 0) ready += r;
            else if (r < 0 && !ready) { free(it); return -1; }
        }
        long long left = deadline < 0 ? -1 : deadline - now_ns();
        if (ready || timeout_ns == 0 || (deadline >= 0 && left <= 0)) {
            int err = errno;
            for (int i = 0; armed && i < n; i++) {
                struct nmfd *nm = lookup(it[i].fd);
                if (nm) disarm(nm, it[i].fd);
            }
            free(it);
            errno = err;
            return ready;
        }
        if (!armed) { armed = 1; free(it); continue; } /* arm, then sync and look again before sleeping */
        /* Block on the kernel's set, the eventfds the host writes and each entry's connection S
         * (p[1 + n + i]: a hang-up there means the daemon, or our port's region, is gone). */
        struct pollfd local[65], *p = 2 * n + 1 <= 65 ? local : malloc((size_t)(2 * n + 1) * sizeof *p);
        if (!p) { free(it); errno = ENOMEM; return -1; }
        p[0] = (struct pollfd){ epfd, POLLIN, 0 };
        for (int i = 0; i < n; i++) {
            struct nmfd *nm = lookup(it[i].fd);
            int live = nm && !it[i].disabled;
            p[i + 1] = (struct pollfd){ live ? it[i].fd : -1, POLLIN, 0 };
            p[1 + n + i] = (struct pollfd){ live && !__atomic_load_n(&nm->dead, __ATOMIC_RELAXED) ? nm->sock : -1,
                                            POLLIN | POLLRDHUP, 0 };
        }
        struct timespec ts, *tsp = NULL;
        if (left >= 0) { ts.tv_sec = left / 1000000000LL; ts.tv_nsec = left % 1000000000LL; tsp = &ts; }
        int r = real_ppoll(p, (nfds_t)(2 * n + 1), tsp, mask);
        int err = errno;
        for (int i = 0; r > 0 && i < n; i++) {
            if (p[i + 1].revents & POLLIN) drain(it[i].fd);
            struct nmfd *nm;
            if (p[1 + n + i].revents && (nm = lookup(it[i].fd)) && daemon_gone(nm))
                __atomic_store_n(&nm->dead, 1, __ATOMIC_RELAXED);
        }
        if (p != local) free(p);
        if (r < 0) {
            for (int i = 0; i < n; i++) {
                struct nmfd *nm = lookup(it[i].fd);
                if (nm) disarm(nm, it[i].fd);
            }
            free(it);
            errno = err;
            return -1; /* EINTR: as epoll_wait */
        }
        free(it);
    }
}

EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    resolve();
    if (epfd < 0 || epfd >= MAX_FDS || !__atomic_load_n(&ep_sets[epfd], __ATOMIC_RELAXED))
        return real_epoll_pwait(epfd, events, max, timeout, NULL);
    return nm_epoll_wait(epfd, events, max, timeout < 0 ? -1 : (long long)timeout * 1000000LL, NULL);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *mask)
{
    resolve();
    if (epfd < 0 || epfd >= MAX_FDS || !__atomic_load_n(&ep_sets[epfd], __ATOMIC_RELAXED))
        return real_epoll_pwait(epfd, events, max, timeout, mask);
    return nm_epoll_wait(epfd, events, max, timeout < 0 ? -1 : (long long)timeout * 1000000LL, mask);
}

EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int max, const struct timespec *ts, const sigset_t *mask)
{
    resolve();
    if (epfd < 0 || epfd >= MAX_FDS || !__atomic_load_n(&ep_sets[epfd], __ATOMIC_RELAXED)) {
        if (real_epoll_pwait2) return real_epoll_pwait2(epfd, events, max, ts, mask);
        errno = ENOSYS;
        return -1;
    }
    return nm_epoll_wait(epfd, events, max, ts ? (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec : -1, mask);
}

/* ---------------------------------------------------------------- mmap */

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    resolve();
    struct nmfd *n = lookup(fd);
    if (!n) return real_mmap(addr, len, prot, flags, fd, off);
    if (!n->registered || off < 0 || len == 0 || (uint64_t)off + len > n->memsize) {
        errno = EINVAL; /* netmap's answer to a mapping beyond its region, or before NIOCREGIF */
        return MAP_FAILED;
    }
    return real_mmap(addr, len, prot, flags, n->memfd, off);
}
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));

/* ---------------------------------------------------------------- ioctl */

static int nm_register(struct nmfd *n, const char *name, uint32_t mode, uint32_t ringid, uint64_t flags,
                       uint32_t extra, struct hnf_register_rep *rep, int efd,
                       uint32_t tx_slots, uint32_t rx_slots, uint16_t tx_rings, uint16_t rx_rings)
{
    if (n->registered) { errno = EBUSY; return -1; }
    struct hnf_register_req q;
    memset(&q, 0, sizeof q);
    strncpy(q.name, name, sizeof q.name - 1);
    q.mode = mode;
    q.ringid = ringid;
    q.flags = flags;
    q.extra_bufs = extra;
    q.tx_slots = tx_slots;
    q.rx_slots = rx_slots;
    q.tx_rings = tx_rings;
    q.rx_rings = rx_rings;
    int fds[3];
    pthread_mutex_lock(&n->lock);
    int rc = daemon_call(n->sock, HNF_MSG_REGISTER, &q, sizeof q, efd, rep, sizeof *rep, fds, 3);
    pthread_mutex_unlock(&n->lock);
    if (rc < 0) return -1;
    int want_kick = (rep->features & HNF_FEAT_TX_KICK) != 0;
    if (rep->error || fds[0] < 0 || fds[1] < 0 || (want_kick && fds[2] < 0)) {
        for (int i = 0; i < 3; i++) if (fds[i] >= 0) real_close(fds[i]);
        errno = rep->error ? rep->error : EIO;
        return -1;
    }
    if (!want_kick && fds[2] >= 0) { real_close(fds[2]); fds[2] = -1; }
    void *mem = real_mmap(NULL, rep->memsize, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    void *ctl = real_mmap(NULL, sizeof(struct hnf_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0);
    if (mem == MAP_FAILED || ctl == MAP_FAILED) {
        if (mem != MAP_FAILED) munmap(mem, rep->memsize);
        if (ctl != MAP_FAILED) munmap(ctl, sizeof(struct hnf_ctl));
        for (int i = 0; i < 3; i++) if (fds[i] >= 0) real_close(fds[i]);
        errno = ENOMEM;
        return -1;
    }
    n->mem = mem;
    n->ctl = ctl;
    n->memfd = fds[0];
    n->ctlfd = fds[1];
    n->kickfd = fds[2];
    n->memsize = rep->memsize;
    n->offset = rep->offset;
    n->flags = flags;
    n->first_tx = rep->first_tx; n->last_tx = rep->last_tx;
    n->first_rx = rep->first_rx; n->last_rx = rep->last_rx;
    n->mem_id = rep->mem_id;
    n->features = rep->features;
    {
        struct netmap_if *nifp = nifp_of(n);
        uint32_t k = 0;
        for (uint32_t i = n->first_tx; i <= n->last_tx && i < nifp->ni_tx_rings && k < NM_TX_TRACKED; i++, k++)
            n->tx_handed[k] = NETMAP_TXRING(nifp, i)->head;
    }
    n->seq = __atomic_load_n(&n->ctl->done_seq, __ATOMIC_ACQUIRE);
    __atomic_store_n(&n->registered, 1, __ATOMIC_RELEASE);
    return 0;
}

static int nm_info(struct nmfd *n, const char *name, uint16_t mem_id, struct hnf_info_rep *rep)
{
    struct hnf_info_req q;
    memset(&q, 0, sizeof q);
    strncpy(q.name, name, sizeof q.name - 1);
    q.mem_id = mem_id;
    pthread_mutex_lock(&n->lock);
    int rc = daemon_call(n->sock, HNF_MSG_PORT_INFO, &q, sizeof q, -1, rep, sizeof *rep, NULL, 0);
    pthread_mutex_unlock(&n->lock);
    if (rc < 0) return -1;
    if (rep->error) { errno = rep->error; return -1; }
    return 0;
}

static int nm_vale(struct nmfd *n, uint16_t reqtype, const char *name, struct hnf_vale_rep *rep,
                   uint16_t bridge_idx, uint32_t port_idx, uint32_t hdr_len)
{
    struct hnf_vale_req q;
    memset(&q, 0, sizeof q);
    q.reqtype = reqtype;
    strncpy(q.name, name, sizeof q.name - 1);
    q.bridge_idx = bridge_idx;
    q.port_idx = port_idx;
    q.hdr_len = hdr_len;
    pthread_mutex_lock(&n->lock);
    int rc = daemon_call(n->sock, HNF_MSG_VALE, &q, sizeof q, -1, rep, sizeof *rep, NULL, 0);
    pthread_mutex_unlock(&n->lock);
    if (rc < 0) return -1;
    if (rep->error) { errno = rep->error; return -1; }
    return 0;
}

static int nm_ctrl(int fd, struct nmfd *n, struct nmreq_header *h)
{
    if (!h) { errno = EFAULT; return -1; }
    if (h->nr_version < NETMAP_MIN_API || h->nr_version > NETMAP_MAX_API || h->nr_reserved) {
        h->nr_version = NETMAP_API;
        errno = EINVAL;
        return -1;
    }
    h->nr_name[sizeof h->nr_name - 1] = 0;
    /* No request options are supported: netmap marks them EOPNOTSUPP and fails. */
    if (h->nr_options) {
        struct nmreq_option *o = (struct nmreq_option *)(uintptr_t)h->nr_options;
        for (int i = 0; o && i < 16; i++, o = (struct nmreq_option *)(uintptr_t)o->nro_next)
            o->nro_status = EOPNOTSUPP;
        errno = EOPNOTSUPP;
        return -1;
    }
    void *body = (void *)(uintptr_t)h->nr_body;
    switch (h->nr_reqtype) {
    case NETMAP_REQ_REGISTER: {
        struct nmreq_register *r = body;
        if (!r) { errno = EINVAL; return -1; }
        struct hnf_register_rep rep;
        if (nm_register(n, h->nr_name, r->nr_mode, r->nr_ringid, r->nr_flags, r->nr_extra_bufs, &rep, fd,
                        r->nr_tx_slots, r->nr_rx_slots, r->nr_tx_rings, r->nr_rx_rings) < 0)
            return -1;
        r->nr_offset = rep.offset;
        r->nr_memsize = rep.memsize;
        r->nr_tx_slots = rep.tx_slots;
        r->nr_rx_slots = rep.rx_slots;
        r->nr_tx_rings = rep.tx_rings;
        r->nr_rx_rings = rep.rx_rings;
        r->nr_host_tx_rings = 0;
        r->nr_host_rx_rings = 0;
        r->nr_mem_id = rep.mem_id;
        r->nr_extra_bufs = rep.extra_bufs;
        return 0;
    }
    case NETMAP_REQ_PORT_INFO_GET: {
        struct nmreq_port_info_get *r = body;
        if (!r) { errno = EINVAL; return -1; }
        struct hnf_info_rep rep;
        if (nm_info(n, h->nr_name, r->nr_mem_id, &rep) < 0) return -1;
        r->nr_memsize = rep.memsize;
        r->nr_tx_slots = rep.tx_slots;
        r->nr_rx_slots = rep.rx_slots;
        r->nr_tx_rings = rep.tx_rings;
        r->nr_rx_rings = rep.rx_rings;
        r->nr_host_tx_rings = 0;
        r->nr_host_rx_rings = 0;
        r->nr_mem_id = rep.mem_id;
        return 0;
    }
    case NETMAP_REQ_POOLS_INFO_GET: {
        struct nmreq_pools_info *r = body;
        if (!r) { errno = EINVAL; return -1; }
        struct hnf_info_rep rep;
        if (nm_info(n, h->nr_name, r->nr_mem_id, &rep) < 0) return -1;
        r->nr_memsize = rep.memsize;
        r->nr_mem_id = rep.mem_id;
        r->nr_if_pool_offset = rep.if_pool_offset;
        r->nr_if_pool_objtotal = rep.if_pool_objtotal;
        r->nr_if_pool_objsize = rep.if_pool_objsize;
        r->nr_ring_pool_offset = rep.ring_pool_offset;
        r->nr_ring_pool_objtotal = rep.ring_pool_objtotal;
        r->nr_ring_pool_objsize = rep.ring_pool_objsize;
        r->nr_buf_pool_offset = rep.buf_pool_offset;
        r->nr_buf_pool_objtotal = rep.buf_pool_objtotal;
        r->nr_buf_pool_objsize = rep.buf_pool_objsize;
        return 0;
    }
    case NETMAP_REQ_VALE_ATTACH:
    case NETMAP_REQ_VALE_DETACH:
    case NETMAP_REQ_VALE_LIST:
    case NETMAP_REQ_VALE_NEWIF:
    case NETMAP_REQ_VALE_DELIF:
    case NETMAP_REQ_PORT_HDR_SET:
    case NETMAP_REQ_PORT_HDR_GET: {
        uint16_t bidx = 0;
        uint32_t pidx = 0, hlen = 0;
        if (h->nr_reqtype == NETMAP_REQ_VALE_LIST) {
            struct nmreq_vale_list *l = body;
            if (!l) { errno = EINVAL; return -1; }
            bidx = l->nr_bridge_idx;
            pidx = l->nr_port_idx;
        } else if (h->nr_reqtype == NETMAP_REQ_PORT_HDR_SET || h->nr_reqtype == NETMAP_REQ_PORT_HDR_GET) {
            struct nmreq_port_hdr *p = body;
            if (!p) { errno = EINVAL; return -1; }
            hlen = p->nr_hdr_len;
        } else if (h->nr_reqtype != NETMAP_REQ_VALE_DELIF && !body) {
            errno = EINVAL;
            return -1;
        }
        if (h->nr_reqtype == NETMAP_REQ_VALE_ATTACH) {
            /* vale-ctl -h: the interface together with its host stack (host rings): not served */
            uint32_t m = ((struct nmreq_vale_attach *)body)->reg.nr_mode;
            if (m == NR_REG_SW || m == NR_REG_NIC_SW || m == NR_REG_ONE_SW) { errno = EOPNOTSUPP; return -1; }
        }
        struct hnf_vale_rep rep;
        if (nm_vale(n, h->nr_reqtype, h->nr_name, &rep, bidx, pidx, hlen) < 0) return -1;
        switch (h->nr_reqtype) {
        case NETMAP_REQ_VALE_LIST: {
            struct nmreq_vale_list *l = body;
            l->nr_bridge_idx = rep.bridge_idx;
            l->nr_port_idx = rep.port_idx;
            memcpy(h->nr_name, rep.name, sizeof h->nr_name);
            h->nr_name[sizeof h->nr_name - 1] = 0;
            break;
        }
        case NETMAP_REQ_VALE_ATTACH: ((struct nmreq_vale_attach *)body)->port_index = rep.port_idx; break;
        case NETMAP_REQ_VALE_DETACH: ((struct nmreq_vale_detach *)body)->port_index = rep.port_idx; break;
        case NETMAP_REQ_PORT_HDR_GET: ((struct nmreq_port_hdr *)body)->nr_hdr_len = rep.hdr_len; break;
        case NETMAP_REQ_VALE_NEWIF: {
            /* the new port's layout: mem_id in bridge_idx, slots in port_idx, rings in hdr_len */
            struct nmreq_vale_newif *v = body;
            v->nr_tx_slots = v->nr_rx_slots = rep.port_idx;
            v->nr_tx_rings = v->nr_rx_rings = (uint16_t)rep.hdr_len;
            v->nr_mem_id = rep.bridge_idx;
            break;
        }
        default: break;
        }
        return 0;
    }
    default:
        errno = EINVAL; /* netmap's answer to a request type it does not serve */
        return -1;
    }
}

/* The legacy struct nmreq (NIOCREGIF with nr_cmd, NIOCGINFO), converted as netmap does. */
static int nm_legacy(int fd, struct nmfd *n, unsigned long cmd, struct nmreq *q)
{
    if (!q) { errno = EFAULT; return -1; }
    if (q->nr_version < NETMAP_MIN_API) { errno = EINVAL; return -1; }
    char name[NM_IFNAMSZ + 1];
    memcpy(name, q->nr_name, NM_IFNAMSZ);
    name[NM_IFNAMSZ] = 0;
    if (cmd == NIOCGINFO) {
        struct hnf_info_rep rep;
        if (nm_info(n, name, q->nr_arg2, &rep) < 0) return -1;
        q->nr_memsize = (uint32_t)rep.memsize;
        q->nr_tx_slots = rep.tx_slots;
        q->nr_rx_slots = rep.rx_slots;
        q->nr_tx_rings = rep.tx_rings;
        q->nr_rx_rings = rep.rx_rings;
        q->nr_arg2 = rep.mem_id;
        return 0;
    }
    if (q->nr_cmd != 0) {
        uint16_t t;
        switch (q->nr_cmd) {
        case NETMAP_BDG_ATTACH:
            /* the host stack too (nr_arg1 NETMAP_BDG_HOST, or a host-ring mode): no host rings here */
            if (q->nr_arg1 == NETMAP_BDG_HOST || (q->nr_flags & NR_REG_MASK) == NR_REG_SW || (q->nr_flags & NR_REG_MASK) == NR_REG_NIC_SW) {
                errno = EOPNOTSUPP;
                return -1;
            }
            t = NETMAP_REQ_VALE_ATTACH;
            break;
        case NETMAP_BDG_DETACH: t = NETMAP_REQ_VALE_DETACH; break;
        case NETMAP_BDG_LIST: t = NETMAP_REQ_VALE_LIST; break;
        case NETMAP_BDG_NEWIF: t = NETMAP_REQ_VALE_NEWIF; break;
        case NETMAP_BDG_DELIF: t = NETMAP_REQ_VALE_DELIF; break;
        case NETMAP_BDG_VNET_HDR: t = NETMAP_REQ_PORT_HDR_SET; break;
        case NETMAP_VNET_HDR_GET: t = NETMAP_REQ_PORT_HDR_GET; break;
        default: errno = EINVAL; return -1;
        }
        struct hnf_vale_rep rep;
        if (nm_vale(n, t, name, &rep, q->nr_arg1, q->nr_arg2, q->nr_arg1) < 0) return -1;
        if (t == NETMAP_REQ_PORT_HDR_GET) q->nr_arg1 = (uint16_t)rep.hdr_len;
        if (t == NETMAP_REQ_VALE_NEWIF) {
            q->nr_tx_slots = q->nr_rx_slots = rep.port_idx;
            q->nr_tx_rings = q->nr_rx_rings = (uint16_t)rep.hdr_len;
            q->nr_arg2 = rep.bridge_idx;
        }
        if (t == NETMAP_REQ_VALE_LIST) {
            memcpy(q->nr_name, rep.name, NM_IFNAMSZ);
            q->nr_name[NM_IFNAMSZ - 1] = 0;
            q->nr_arg1 = rep.bridge_idx;
            q->nr_arg2 = (uint16_t)rep.port_idx;
        }
        return 0;
    }
    uint32_t mode = q->nr_flags & NR_REG_MASK, ringid = q->nr_ringid & NETMAP_RING_MASK;
    if (mode == NR_REG_DEFAULT) {
        if (q->nr_ringid & NETMAP_SW_RING) mode = NR_REG_SW;
        else if (q->nr_ringid & NETMAP_HW_RING) mode = NR_REG_ONE_NIC;
        else mode = NR_REG_ALL_NIC;
    }
    uint64_t flags = q->nr_flags & ~(uint32_t)NR_REG_MASK;
    if (q->nr_ringid & NETMAP_NO_TX_POLL) flags |= NR_NO_TX_POLL;
    if (q->nr_ringid & NETMAP_DO_RX_POLL) flags |= NR_DO_RX_POLL;
    struct hnf_register_rep rep;
    if (nm_register(n, name, mode, ringid, flags, q->nr_arg3, &rep, fd,
                    q->nr_tx_slots, q->nr_rx_slots, q->nr_tx_rings, q->nr_rx_rings) < 0)
        return -1;
    if (rep.offset > UINT32_MAX || rep.memsize > UINT32_MAX) { errno = EOVERFLOW; return -1; }
    q->nr_offset = (uint32_t)rep.offset;
    q->nr_memsize = (uint32_t)rep.memsize;
    q->nr_tx_slots = rep.tx_slots;
    q->nr_rx_slots = rep.rx_slots;
    q->nr_tx_rings = rep.tx_rings;
    q->nr_rx_rings = rep.rx_rings;
    q->nr_arg2 = rep.mem_id;
    q->nr_arg3 = rep.extra_bufs;
    return 0;
}

EXPORT int ioctl(int fd, unsigned long cmd, ...)
{
    resolve();
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    struct nmfd *n = lookup(fd);
    if (!n) return real_ioctl(fd, cmd, arg);
    switch (cmd) {
    case NIOCCTRL: return nm_ctrl(fd, n, arg);
    case NIOCREGIF:
    case NIOCGINFO: return nm_legacy(fd, n, cmd, arg);
    case NIOCTXSYNC:
    case NIOCRXSYNC:
        if (!__atomic_load_n(&n->registered, __ATOMIC_ACQUIRE)) { errno = ENXIO; return -1; }
        return nm_sync(n, cmd == NIOCTXSYNC ? HNF_OP_TXSYNC : HNF_OP_RXSYNC);
    default:
        errno = EOPNOTSUPP; /* netmap on Linux: an ioctl it does not know */
        return -1;
    }
}
