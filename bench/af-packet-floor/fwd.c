/* fwd: the smallest AF_PACKET forwarder between two interfaces, a latency floor for
 * `hypernf bench ports` (docs/ports.md, Latency). One thread, a TPACKET_V2 RX ring per
 * interface, poll() on both, each frame sent on the other interface with send().
 *   fwd IF_A IF_B [mode]
 * mode 2: every frame waits for poll() to wake this thread (two wake-ups per round trip);
 * mode 1: after a send(), the other ring is read again at once, as HyperNF's PollReceive does
 *         (the kernel often ran the receiver's stack inside send(): one wake-up per round trip);
 * mode 0: never sleeps (poll timeout 0): a core burnt, no wake-up at all;
 * mode 3: a thread per interface, each sleeping in poll() on its own socket; after a send()
 *         the sending thread reads the other ring if its thread is not reading it (a try-lock),
 *         as HyperNF's driver threads do (the kernel still wakes the other thread).
 * Build: gcc -O2 -o fwd fwd.c.  Stops on SIGINT/SIGTERM and prints what it forwarded. */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define FRAME 2048
#define FRAMES 256

struct port { int fd; unsigned char *ring; unsigned next; int lock; };
static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static void die(const char *what) { perror(what); exit(1); }

static void open_port(struct port *p, const char *ifname)
{
    int v = TPACKET_V2, one = 1;
    struct tpacket_req req = { .tp_block_size = FRAME * 2, .tp_block_nr = FRAMES / 2,
                               .tp_frame_size = FRAME, .tp_frame_nr = FRAMES };
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                               .sll_ifindex = (int)if_nametoindex(ifname) };
    struct packet_mreq mr = { .mr_ifindex = sll.sll_ifindex, .mr_type = PACKET_MR_PROMISC };
    if (!sll.sll_ifindex) die(ifname);
    if ((p->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))) < 0) die("socket");
    if (setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v)) die("PACKET_VERSION");
    if (setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one)) die("PACKET_IGNORE_OUTGOING");
    if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) die("PACKET_RX_RING");
    p->ring = mmap(NULL, (size_t)FRAME * FRAMES, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (p->ring == MAP_FAILED) die("mmap");
    if (bind(p->fd, (struct sockaddr *)&sll, sizeof sll)) die("bind");
    if (setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr)) die("PACKET_ADD_MEMBERSHIP");
}

/* Sends every frame waiting in from's ring on to's socket; returns how many. */
static long drain(struct port *from, struct port *to)
{
    long n = 0;
    for (;;) {
        struct tpacket2_hdr *h = (void *)(from->ring + (size_t)from->next * FRAME);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return n;
        if (send(to->fd, (unsigned char *)h + h->tp_mac, h->tp_snaplen, MSG_DONTWAIT) < 0) perror("send");
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        from->next = (from->next + 1) % FRAMES;
        n++;
    }
}

static struct port ports[2];

static int try_lock(struct port *p) { return !__atomic_exchange_n(&p->lock, 1, __ATOMIC_ACQUIRE); }
static void unlock(struct port *p) { __atomic_store_n(&p->lock, 0, __ATOMIC_RELEASE); }

/* mode 3: the thread of port i */
static void *port_thread(void *arg)
{
    long i = (long)arg, n = 0;
    struct port *me = &ports[i], *other = &ports[!i];
    struct pollfd pfd = { .fd = me->fd, .events = POLLIN };
    while (!stop) {
        if (poll(&pfd, 1, 200) <= 0 || !try_lock(me)) continue;
        long k = drain(me, other);
        unlock(me);
        n += k;
        if (k && try_lock(other)) { n += drain(other, me); unlock(other); }
    }
    return (void *)n;
}

int main(int argc, char **argv)
{
    struct port p[2] = { 0 };
    long forwarded = 0, wakeups = 0;
    int mode = argc > 3 ? atoi(argv[3]) : 1;
    if (argc < 3) { fprintf(stderr, "usage: fwd IF_A IF_B [mode 0|1|2]\n"); return 2; }
    open_port(&p[0], argv[1]);
    open_port(&p[1], argv[2]);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (mode == 3) {
        pthread_t t[2];
        void *r[2];
        ports[0] = p[0]; ports[1] = p[1];
        for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, port_thread, (void *)i);
        for (int i = 0; i < 2; i++) pthread_join(t[i], &r[i]);
        printf("forwarded %ld frames\n", (long)r[0] + (long)r[1]);
        return 0;
    }
    struct pollfd pfd[2] = { { .fd = p[0].fd, .events = POLLIN }, { .fd = p[1].fd, .events = POLLIN } };
    while (!stop) {
        if (poll(pfd, 2, mode == 0 ? 0 : 200) < 0) continue;
        if (mode) wakeups++;
        for (int i = 0; i < 2; i++) {
            if (mode == 2 && !(pfd[i].revents & POLLIN)) continue; /* only what poll() reported */
            long n = drain(&p[i], &p[!i]);
            forwarded += n;
            /* mode 1: what we just sent may have been answered inside send() */
            if (n && mode == 1) forwarded += drain(&p[!i], &p[i]);
        }
    }
    printf("forwarded %ld frames, %ld poll() returns\n", forwarded, wakeups);
    return 0;
}
