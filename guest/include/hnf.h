/*
 * hnf.h: the HyperNF guest SDK, for C programs that run as VM domains.
 *
 * The contract this header implements is docs/guest-abi.md (boot info, memory map,
 * hypercalls) and docs/abi.md (the netmap structures inside the domain region, netmap
 * API 14's layout). Every layout below is checked with _Static_assert, and the test
 * suite checks the same offsets against the C# side (NetmapAbi) and the docs.
 *
 * The guest is freestanding: no libc, no SSE, no interrupts. What it has is this
 * header and guest/lib (start stub, string functions, a formatter, an argument parser,
 * the bump-in-the-wire loop). See guest/README.md.
 *
 * Addresses: the VMM identity-maps guest RAM and the region, so a pointer is its
 * guest-physical address (GPA). Hypercall blocks must be in RAM and 8-byte aligned.
 */
#ifndef HNF_H
#define HNF_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>

#ifdef HNF_HOST
#include <string.h>
#else
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
#endif

/* ------------------------------------------------------------------------------------ */
/* Boot info (GPA 0x8000; RDI at _start)                                                 */
/* ------------------------------------------------------------------------------------ */

#define HNF_BOOT_MAGIC 0x42464E48u /* "HNFB" */
#define HNF_ABI_VERSION 3u
#define HNF_TRANSPORT_PIO 0u  /* outl to 0x500 + op: ring 0 only */
#define HNF_TRANSPORT_MMIO 1u /* 32-bit store to 0xFEB00000 + op * 8: any ring */
#define HNF_IO_HYPERCALL 0u
#define HNF_IO_SPLIT 1u
#define HNF_IO_MERGE 2u
#define HNF_MAX_PORTS 8
#define HNF_CMDLINE_MAX 4096

struct hnf_boot_info {
    uint32_t magic;          /*   0 */
    uint32_t abi_version;    /*   4 */
    uint32_t transport;      /*   8 */
    uint32_t ring;           /*  12: CPL 0 or 3 */
    uint64_t mem_size;       /*  16 */
    uint64_t kernel_end;     /*  24: heap start */
    uint64_t tsc_khz;        /*  32: 0 if unknown */
    uint64_t cmdline;        /*  40: GPA of a NUL-terminated string */
    uint64_t region_gpa;     /*  48 */
    uint64_t region_size;    /*  56 */
    uint32_t nports;         /*  64 */
    uint32_t io_model;       /*  68 */
    uint64_t nifp[HNF_MAX_PORTS]; /* 72 */
    uint64_t kick_gpa;       /* 136 */
    uint64_t needs_kick_gpa; /* 144 */
    uint32_t domid;          /* 152 */
    uint32_t vcpu;           /* 156 */
    uint64_t shutdown_gpa;   /* 160: u32 the VMM sets to ask the guest to stop (version 2) */
    uint32_t features;       /* 168: HNF_FEAT_* (version 3) */
    uint32_t _pad;           /* 172 */
};
/* The ports' RX rings are self-served: hnf_rxsync makes no exit; it stores the user's head into
 * the ring's release word and copies the publish word into tail (both in netmap_ring's sem area,
 * which netmap reserves; the VMM's senders take the release only inside the ring's window). */
#define HNF_FEAT_RX_SELF 1u
#include "hnf_rxself.h" /* the two words' offsets and the rxsync itself, shared with the preload library */
_Static_assert(offsetof(struct hnf_boot_info, transport) == 8, "boot_info.transport");
_Static_assert(offsetof(struct hnf_boot_info, mem_size) == 16, "boot_info.mem_size");
_Static_assert(offsetof(struct hnf_boot_info, cmdline) == 40, "boot_info.cmdline");
_Static_assert(offsetof(struct hnf_boot_info, region_size) == 56, "boot_info.region_size");
_Static_assert(offsetof(struct hnf_boot_info, nports) == 64, "boot_info.nports");
_Static_assert(offsetof(struct hnf_boot_info, nifp) == 72, "boot_info.nifp");
_Static_assert(offsetof(struct hnf_boot_info, kick_gpa) == 136, "boot_info.kick_gpa");
_Static_assert(offsetof(struct hnf_boot_info, needs_kick_gpa) == 144, "boot_info.needs_kick_gpa");
_Static_assert(offsetof(struct hnf_boot_info, vcpu) == 156, "boot_info.vcpu");
_Static_assert(offsetof(struct hnf_boot_info, shutdown_gpa) == 160, "boot_info.shutdown_gpa");
_Static_assert(offsetof(struct hnf_boot_info, features) == 168, "boot_info.features");
_Static_assert(sizeof(struct hnf_boot_info) == 176, "boot_info size");

/* ------------------------------------------------------------------------------------ */
/* netmap structures (netmap API 14 layout; docs/abi.md)                                  */
/* ------------------------------------------------------------------------------------ */

#define NS_BUF_CHANGED 0x0001
#define NS_REPORT 0x0002
#define NS_INDIRECT 0x0010 /* refused by the switch: a counted drop */
#define NS_MOREFRAG 0x0020
#define NS_FRAG_SHIFT 8    /* received chains: fragment count in the high byte */

struct netmap_slot {
    uint32_t buf_idx; /* 0: buffer index in this domain's region (0 and 1 are never valid) */
    uint16_t len;     /* 4 */
    uint16_t flags;   /* 6: NS_* */
    uint64_t ptr;     /* 8: unused */
};
_Static_assert(sizeof(struct netmap_slot) == 16, "netmap_slot size");
_Static_assert(offsetof(struct netmap_slot, len) == 4, "netmap_slot.len");
_Static_assert(offsetof(struct netmap_slot, flags) == 6, "netmap_slot.flags");
_Static_assert(offsetof(struct netmap_slot, ptr) == 8, "netmap_slot.ptr");

struct netmap_ring {
    const int64_t buf_ofs;      /*   0: from this ring to buffer 0 */
    const uint32_t num_slots;   /*   8 */
    const uint32_t nr_buf_size; /*  12 */
    const uint16_t ringid;      /*  16 */
    const uint16_t dir;         /*  18: 0 TX, 1 RX */
    uint32_t head;              /*  20: written by the guest */
    uint32_t cur;               /*  24: written by the guest */
    const volatile uint32_t tail; /* 28: written by the host (also asynchronously in split/merge) */
    const uint32_t flags;       /*  32 */
    uint32_t _pad0;             /*  36 */
    const int64_t ts[2];        /*  40: timestamp, unused */
    uint8_t _reserved[72];      /*  56: netmap's offset_mask/buf_align area, unused here */
    uint8_t sem[128];           /* 128: netmap's sem, unused */
    struct netmap_slot slot[];  /* 256 */
};
_Static_assert(offsetof(struct netmap_ring, num_slots) == 8, "netmap_ring.num_slots");
_Static_assert(offsetof(struct netmap_ring, nr_buf_size) == 12, "netmap_ring.nr_buf_size");
_Static_assert(offsetof(struct netmap_ring, ringid) == 16, "netmap_ring.ringid");
_Static_assert(offsetof(struct netmap_ring, dir) == 18, "netmap_ring.dir");
_Static_assert(offsetof(struct netmap_ring, head) == 20, "netmap_ring.head");
_Static_assert(offsetof(struct netmap_ring, cur) == 24, "netmap_ring.cur");
_Static_assert(offsetof(struct netmap_ring, tail) == 28, "netmap_ring.tail");
_Static_assert(offsetof(struct netmap_ring, flags) == 32, "netmap_ring.flags");
_Static_assert(offsetof(struct netmap_ring, ts) == 40, "netmap_ring.ts");
_Static_assert(offsetof(struct netmap_ring, sem) == 128, "netmap_ring.sem");
_Static_assert(offsetof(struct netmap_ring, slot) == 256, "netmap_ring.slot");
_Static_assert(HNF_RING_HEAD_OFS == offsetof(struct netmap_ring, head) && HNF_RING_CUR_OFS == offsetof(struct netmap_ring, cur) &&
               HNF_RING_TAIL_OFS == offsetof(struct netmap_ring, tail) && HNF_RING_NUM_SLOTS_OFS == offsetof(struct netmap_ring, num_slots) &&
               HNF_RING_RELEASE_OFS == offsetof(struct netmap_ring, sem), "hnf_rxself.h's ring offsets");

struct netmap_if {
    const char ni_name[16];           /*  0: "valex:lx0", NUL-padded */
    const uint32_t ni_version;        /* 16 */
    const uint32_t ni_flags;          /* 20 */
    const uint32_t ni_tx_rings;       /* 24 */
    const uint32_t ni_rx_rings;       /* 28 */
    uint32_t ni_bufs_head;            /* 32: spare buffers, linked through their first 4 bytes */
    const uint32_t ni_host_tx_rings;  /* 36 */
    const uint32_t ni_host_rx_rings;  /* 40 */
    uint32_t ni_spare1[3];            /* 44 */
    const int64_t ring_ofs[];         /* 56: relative to this netmap_if; TX rings then RX rings */
};
_Static_assert(offsetof(struct netmap_if, ni_version) == 16, "netmap_if.ni_version");
_Static_assert(offsetof(struct netmap_if, ni_tx_rings) == 24, "netmap_if.ni_tx_rings");
_Static_assert(offsetof(struct netmap_if, ni_rx_rings) == 28, "netmap_if.ni_rx_rings");
_Static_assert(offsetof(struct netmap_if, ni_bufs_head) == 32, "netmap_if.ni_bufs_head");
_Static_assert(offsetof(struct netmap_if, ni_host_tx_rings) == 36, "netmap_if.ni_host_tx_rings");
_Static_assert(offsetof(struct netmap_if, ni_spare1) == 44, "netmap_if.ni_spare1");
_Static_assert(offsetof(struct netmap_if, ring_ofs) == 56, "netmap_if.ring_ofs");

/* netmap's accessors, same names and meaning. */
#define NETMAP_TXRING(nifp, i) \
    ((struct netmap_ring *)((char *)(nifp) + (nifp)->ring_ofs[(i)]))
#define NETMAP_RXRING(nifp, i) \
    ((struct netmap_ring *)((char *)(nifp) + \
        (nifp)->ring_ofs[(i) + (nifp)->ni_tx_rings + (nifp)->ni_host_tx_rings]))
#define NETMAP_BUF(ring, index) \
    ((char *)(ring) + (ring)->buf_ofs + ((int64_t)(index) * (ring)->nr_buf_size))

static inline uint32_t nm_ring_next(const struct netmap_ring *r, uint32_t i)
{
    return i + 1 == r->num_slots ? 0 : i + 1;
}

/* Slots the user may fill (TX) or read (RX): [cur, tail). */
static inline uint32_t nm_ring_space(const struct netmap_ring *r)
{
    int64_t n = (int64_t)r->tail - (int64_t)r->cur;
    if (n < 0) n += r->num_slots;
    return (uint32_t)n;
}

static inline int nm_ring_empty(const struct netmap_ring *r) { return r->cur == r->tail; }

/* ------------------------------------------------------------------------------------ */
/* Hypercalls                                                                             */
/* ------------------------------------------------------------------------------------ */

#define HNF_OP_WALLTIME 1
#define HNF_OP_PUTS 2
#define HNF_OP_POLL 3
#define HNF_OP_CLOCK 4
#define HNF_OP_EXIT 8
#define HNF_OP_TXSYNC 16
#define HNF_OP_RXSYNC 17
#define HNF_PIO_BASE 0x500
#define HNF_DOORBELL_GPA 0xFEB00000u
#define HNF_ALL_RINGS 0xFFFFFFFFu
#define HNF_PUTS_MAX 4096
#define HNF_EINVAL (-22)

/* Argument blocks: 8-byte aligned, offsets as in docs/guest-abi.md. */
struct hnf_hc_time { uint64_t ns; };                       /* WALLTIME, CLOCK */
struct hnf_hc_puts { uint64_t data; uint64_t len; };
struct hnf_hc_poll {
    uint64_t timeout_ns; /*  0 */
    uint32_t rx_mask;    /*  8 */
    uint32_t tx_mask;    /* 12 */
    uint32_t ready;      /* 16: out */
    int32_t ret;         /* 20: out */
};
struct hnf_hc_exit { int32_t status; uint32_t _pad; };
struct hnf_hc_sync { uint32_t port; uint32_t ring; int32_t ret; uint32_t _pad; }; /* TXSYNC, RXSYNC */
_Static_assert(offsetof(struct hnf_hc_puts, len) == 8, "puts.len");
_Static_assert(offsetof(struct hnf_hc_poll, rx_mask) == 8, "poll.rx_mask");
_Static_assert(offsetof(struct hnf_hc_poll, tx_mask) == 12, "poll.tx_mask");
_Static_assert(offsetof(struct hnf_hc_poll, ready) == 16, "poll.ready");
_Static_assert(offsetof(struct hnf_hc_poll, ret) == 20, "poll.ret");
_Static_assert(offsetof(struct hnf_hc_sync, ring) == 4, "sync.ring");
_Static_assert(offsetof(struct hnf_hc_sync, ret) == 8, "sync.ret");

/*
 * The raw hypercall: op and the GPA of its block, over the given transport. The
 * "memory" clobber makes the compiler write the block (and any ring index) before the
 * exit and re-read everything after it. PIO is outl; MMIO is one 32-bit mov (a plain
 * instruction the VMM's MMIO decoder always understands). Any pointer argument that is
 * not in RAM or not 8-byte aligned crashes this domain: that is the ABI.
 */
static inline void hnf_hypercall_on(uint32_t transport, uint32_t op, const volatile void *block)
{
    uint32_t gpa = (uint32_t)(uintptr_t)block;
    if (transport == HNF_TRANSPORT_PIO) {
        __asm__ volatile("outl %0, %w1" : : "a"(gpa), "Nd"((uint16_t)(HNF_PIO_BASE + op)) : "memory");
    } else {
        uintptr_t bell = (uintptr_t)HNF_DOORBELL_GPA + (uintptr_t)op * 8;
        __asm__ volatile("movl %0, (%1)" : : "r"(gpa), "r"(bell) : "memory");
    }
}

/* The boot info of this vCPU, set by the start stub before main. */
extern const struct hnf_boot_info *hnf_boot;

static inline void hnf_hypercall(uint32_t op, const volatile void *block)
{
    hnf_hypercall_on(hnf_boot->transport, op, block);
}

/* Console (PUTS): one hypercall per call, long text split into 4096-byte pieces. */
void hnf_puts(const char *s, size_t len);
void hnf_print(const char *s);
int hnf_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int hnf_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int hnf_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clocks. hnf_clock_ns: CLOCK_MONOTONIC of the host (the clock the C# pkt-gen stamps
 * with), one hypercall. hnf_walltime_ns: ns since the epoch. hnf_now_ns: the same
 * monotonic clock extrapolated with the TSC between hypercalls (re-anchored every
 * 50 ms; falls back to hnf_clock_ns when tsc_khz is 0): cheap enough per batch. */
uint64_t hnf_clock_ns(void);
uint64_t hnf_walltime_ns(void);
uint64_t hnf_now_ns(void);

static inline uint64_t hnf_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void hnf_pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void hnf_mfence(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline void hnf_barrier(void) { __asm__ volatile("" ::: "memory"); }

/* Netmap syncs. ring = HNF_ALL_RINGS for all. In split/merge TXSYNC does not exit: it
 * kicks the backend only when it asked for a kick (docs/guest-abi.md) and returns 0. */
int hnf_txsync(uint32_t port, uint32_t ring);
int hnf_rxsync(uint32_t port, uint32_t ring);

/* POLL: flush TX of tx_mask ports, sync RX of rx_mask ports, block up to timeout_ns
 * until RX frames arrive. Returns the ready mask (bit k: port k has RX frames); *ret
 * gets the hypercall's ret when ret is not NULL. In split/merge the TX part is a kick,
 * and POLL also returns once a tx_mask port's TX ring has room (the backend took frames). */
uint32_t hnf_poll(uint64_t timeout_ns, uint32_t rx_mask, uint32_t tx_mask, int32_t *ret);

/* Sleeps without spinning (a POLL with empty masks). */
void hnf_sleep_ns(uint64_t ns);

/* The toolstack asked this domain to stop (xl shutdown): finish, print what you report,
 * return from main. One load, no exit; a POLL returns early once it is set. */
static inline int hnf_shutdown_requested(void)
{
    return *(volatile uint32_t *)(uintptr_t)hnf_boot->shutdown_gpa != 0;
}

/* EXIT: the vCPU stops; the domain shows exited(status). Never returns. */
__attribute__((noreturn)) void hnf_exit(int status);

/* Port k's netmap_if, or NULL for k >= nports or a zero GPA. */
struct netmap_if *hnf_port(uint32_t k);

/* A buffer of ring r, checked to lie inside the region (NULL if not). */
char *hnf_buf_checked(const struct netmap_ring *r, uint32_t idx);

/* Heap: a bump allocator from boot_info.kernel_end up to 256 KiB below the stack top.
 * 16-byte aligned, never freed; NULL when exhausted. */
void *hnf_alloc(size_t size);

/* The program's entry, called by the start stub on vCPU 0 (other vCPUs idle in POLL).
 * Its return value is the domain's exit status. */
#ifndef HNF_HOST
int main(const struct hnf_boot_info *bi);
#endif

/* ------------------------------------------------------------------------------------ */
/* Arguments (guest/lib/args.c)                                                           */
/* ------------------------------------------------------------------------------------ */

/* A private, writable copy of the command line (at most 4095 bytes, NUL-terminated). */
char *hnf_cmdline(void);

/* Splits s in place at any character of seps (runs of separators count once) into at
 * most max tokens; returns the count, or -1 when there are more than max. */
int hnf_split(char *s, const char *seps, char **argv, int max);

/* Numbers: decimal or 0x hex, the whole string, no overflow. 0 on success, -1 otherwise. */
int hnf_parse_u64(const char *s, uint64_t *out);
int hnf_parse_i64(const char *s, int64_t *out);
/* Like hnf_parse_u64 with an optional K/M/G suffix (x1000). */
int hnf_parse_rate(const char *s, uint64_t *out);
/* aa:bb:cc:dd:ee:ff */
int hnf_parse_mac(const char *s, uint8_t mac[6]);
/* Strict dotted quad into host order (10.0.0.1 -> 0x0A000001; "010.0.0.1" is refused, as
 * the C# pkt-gen does). */
int hnf_parse_ipv4(const char *s, uint32_t *out);
int hnf_parse_ipv4_n(const char *s, size_t n, uint32_t *out);
/* A.B.C.D/N with zero host bits; a bare address is /32. Octets may have leading zeros
 * (decimal), as in the C# NFs' rule and route syntax. */
int hnf_parse_prefix(const char *s, uint32_t *net, int *len);

/* getopt for "-f tx -n 100 -w": optstring as getopt's ("f:n:w"). Returns the option
 * character, 0 at the end, '?' after printing an error that names the flag. */
struct hnf_getopt {
    int argc;
    char **argv;
    int i;
    const char *arg;
};
int hnf_getopt(struct hnf_getopt *g, const char *prog, const char *optstring);

/* key=value: splits item at its first '='; -1 when there is none or the key is empty. */
int hnf_kv(char *item, char **key, char **value);

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                          */
/* ------------------------------------------------------------------------------------ */

static inline uint16_t hnf_be16(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)((b[0] << 8) | b[1]);
}
static inline uint32_t hnf_be32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint64_t hnf_be64(const void *p)
{
    return ((uint64_t)hnf_be32(p) << 32) | hnf_be32((const uint8_t *)p + 4);
}
static inline void hnf_put_be16(void *p, uint16_t v)
{
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}
static inline void hnf_put_be32(void *p, uint32_t v)
{
    hnf_put_be16(p, (uint16_t)(v >> 16));
    hnf_put_be16((uint8_t *)p + 2, (uint16_t)v);
}
static inline void hnf_put_be64(void *p, uint64_t v)
{
    hnf_put_be32(p, (uint32_t)(v >> 32));
    hnf_put_be32((uint8_t *)p + 4, (uint32_t)v);
}

#endif /* HNF_H */
