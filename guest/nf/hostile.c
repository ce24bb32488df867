/*
 * hostile: a guest that misbehaves on purpose, one action per run, chosen by its command
 * line (mode=NAME or just NAME; rounds=N, seed=N, op=N where a mode takes them). The
 * host must survive every mode: either the domain crashes (a fault, with the reason
 * recorded) or the bad input is refused and counted and the guest goes on.
 *
 * Modes the guest survives (exit 0 when the host behaved, 1 when it did not):
 *   ring-index   random head/cur/tail on every ring (and RX rings' release words), then
 *                TXSYNC/RXSYNC: the host resets a TX ring (counted as corrupt ring index), the
 *                SDK's rxsync an RX ring; indices must come back in range
 *   slot-fields  random buf_idx/len/flags in every TX and RX slot, legal head moves, syncs:
 *                counted drops, every TX slot handed back
 *   bad-port     TXSYNC/RXSYNC on a port or ring that does not exist: ret must be -22
 *   kick         a million stores to the kick page (split/merge), then exit 0
 * Modes that must crash the domain (if the hypercall returns, exit 1 says so):
 *   wild-block     a block GPA outside RAM            block-past-ram  a block straddling RAM's end
 *   misaligned     a block at an odd multiple of 4     puts-wild       PUTS of a buffer outside RAM
 *   puts-len       PUTS with a length of 2^40          unknown-op      hypercall op=N (default 63)
 *   read-doorbell  a load from the doorbell page       doorbell-byte   a 1-byte store to a doorbell
 *   write-past-ram a store at mem_size                 write-region-end a store just past the region
 *   write-unmapped a store at 3 GiB (not mapped)       null            a load from address 0 (#PF)
 *   ud             ud2 (#UD)                           gp              a non-canonical load (#GP)
 *   sse            an SSE instruction (the SDK builds without SSE; emulated ring 0 cannot run it)
 *   pagetable      zeroes its own PML4, then touches memory
 *   stack-overflow unbounded recursion down through its own image and page tables
 * Modes that never end by themselves (the host must stop them on destroy):
 *   loop           an endless loop without exits       block  POLL with a one-hour timeout
 */
#include "hnf.h"

static uint64_t rng;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int ring_index(uint64_t rounds)
{
    const struct hnf_boot_info *bi = hnf_boot;
    uint64_t resets = 0;
    for (uint64_t i = 0; i < rounds; i++) {
        for (uint32_t p = 0; p < bi->nports; p++) {
            struct netmap_if *nifp = hnf_port(p);
            if (nifp == 0) return 1;
            for (uint32_t k = 0; k < nifp->ni_tx_rings + nifp->ni_rx_rings; k++) {
                struct netmap_ring *r = (struct netmap_ring *)((char *)nifp + nifp->ring_ofs[k]);
                uint64_t x = next();
                /* half in range (a wrong but plausible move), half anywhere */
                uint32_t lim = (x & 1) ? r->num_slots : 0xFFFFFFFFu;
                r->head = (uint32_t)(next() % ((uint64_t)lim + 1));
                r->cur = (uint32_t)(next() % ((uint64_t)lim + 1));
                if (x & 2) *(volatile uint32_t *)&r->tail = (uint32_t)next();
                /* an RX ring's release word (self-served rings, in the sem area): garbage too */
                if (k >= nifp->ni_tx_rings && (x & 4)) *(volatile uint32_t *)((char *)r + HNF_RING_RELEASE_OFS) = (uint32_t)next();
            }
            int a = hnf_txsync(p, HNF_ALL_RINGS), b = hnf_rxsync(p, HNF_ALL_RINGS);
            if (a != 0 || b != 0) {
                hnf_printf("hostile: ring-index: a sync of port %u returned %d/%d, expected 0\n", p, a, b);
                return 1;
            }
            for (uint32_t k = 0; k < nifp->ni_tx_rings + nifp->ni_rx_rings; k++) {
                struct netmap_ring *r = (struct netmap_ring *)((char *)nifp + nifp->ring_ofs[k]);
                if (r->head >= r->num_slots || r->cur >= r->num_slots || r->tail >= r->num_slots) {
                    hnf_printf("hostile: ring-index: port %u ring %u left at head=%u cur=%u tail=%u of %u slots\n", p, k,
                               r->head, r->cur, r->tail, r->num_slots);
                    return 1;
                }
                resets++;
            }
        }
    }
    hnf_printf("hostile: ring-index rounds=%lu rings_checked=%lu ok\n", rounds, resets);
    return 0;
}

static int slot_fields(uint64_t rounds)
{
    const struct hnf_boot_info *bi = hnf_boot;
    uint64_t frames = 0;
    for (uint64_t i = 0; i < rounds; i++) {
        for (uint32_t p = 0; p < bi->nports; p++) {
            struct netmap_if *nifp = hnf_port(p);
            if (nifp == 0) return 1;
            struct netmap_ring *tx = NETMAP_TXRING(nifp, 0), *rx = NETMAP_RXRING(nifp, 0);
            uint32_t cur = tx->cur, n = nm_ring_space(tx);
            for (uint32_t j = 0; j < n; j++, cur = nm_ring_next(tx, cur)) {
                struct netmap_slot *s = &tx->slot[cur];
                uint64_t x = next();
                s->buf_idx = (x & 3) == 0 ? s->buf_idx : (uint32_t)next(); /* a quarter keep a valid buffer */
                s->len = (uint16_t)next();
                s->flags = (uint16_t)next();
                s->ptr = next();
            }
            tx->head = tx->cur = cur;
            frames += n;
            /* RX slots we own get foreign buffers: the host must refuse to write into them */
            for (uint32_t j = rx->head; j != rx->tail; j = nm_ring_next(rx, j)) rx->slot[j].buf_idx = (uint32_t)next();
            rx->head = rx->cur = rx->tail;
            int a = hnf_txsync(p, HNF_ALL_RINGS), b = hnf_rxsync(p, HNF_ALL_RINGS);
            if (a != 0 || b != 0) {
                hnf_printf("hostile: slot-fields: a sync of port %u returned %d/%d, expected 0\n", p, a, b);
                return 1;
            }
            if (bi->io_model == HNF_IO_HYPERCALL && nm_ring_space(tx) != tx->num_slots - 1) {
                hnf_printf("hostile: slot-fields: port %u: %u of %u TX slots handed back\n", p, nm_ring_space(tx), tx->num_slots - 1);
                return 1;
            }
        }
    }
    hnf_printf("hostile: slot-fields rounds=%lu frames=%lu ok\n", rounds, frames);
    return 0;
}

static int bad_port(void)
{
    const struct hnf_boot_info *bi = hnf_boot;
    int a = hnf_txsync(bi->nports, 0), b = hnf_rxsync(bi->nports + 5, 0), c = 0, d = 0;
    if (bi->nports > 0) {
        c = hnf_txsync(0, 4096);
        d = hnf_rxsync(0, 4096);
    }
    hnf_printf("hostile: bad-port txsync=%d rxsync=%d txring=%d rxring=%d\n", a, b, c, d);
    return a == HNF_EINVAL && b == HNF_EINVAL && (bi->nports == 0 || (c == HNF_EINVAL && d == HNF_EINVAL)) ? 0 : 1;
}

static void recurse(volatile uint64_t *depth)
{
    volatile uint8_t pad[512];
    pad[0] = (uint8_t)*depth;
    if (++*depth == 0) return; /* never: 2^64 frames do not fit anywhere */
    recurse(depth);
    pad[1] = pad[0]; /* not a tail call */
}

/* pxor %xmm0,%xmm0; ret: kept as data so the SDK's own code stays SSE-free. */
static const uint8_t sse_code[] __attribute__((aligned(16))) = { 0x66, 0x0f, 0xef, 0xc0, 0xc3 };

#define SURVIVED(what) do { hnf_printf("hostile: %s: the hypercall returned; the host should have crashed the domain\n", what); return 1; } while (0)

int main(const struct hnf_boot_info *bi)
{
    char *argv[8];
    const char *mode = 0;
    uint64_t rounds = 100, op = 63, seed = hnf_rdtsc() | 1;
    int n = hnf_split(hnf_cmdline(), " \t,", argv, 8);
    for (int i = 0; i < n; i++) {
        char *k, *v;
        if (hnf_kv(argv[i], &k, &v) != 0) { mode = argv[i]; continue; }
        if (strcmp(k, "mode") == 0) mode = v;
        else if ((strcmp(k, "rounds") == 0 && hnf_parse_u64(v, &rounds) == 0) || (strcmp(k, "seed") == 0 && hnf_parse_u64(v, &seed) == 0) ||
                 (strcmp(k, "op") == 0 && hnf_parse_u64(v, &op) == 0 && op < 0x40))
            continue;
        else { hnf_printf("hostile: bad argument '%s=%s'\n", k, v); return 2; }
    }
    if (mode == 0) { hnf_print("hostile: no mode (mode=NAME; see guest/nf/hostile.c)\n"); return 2; }
    rng = seed ? seed : 1;
    hnf_printf("hostile: mode=%s ring=%u transport=%u\n", mode, bi->ring, bi->transport);

    _Alignas(8) static volatile uint64_t block[4];
    uint64_t ram = bi->mem_size;
    if (strcmp(mode, "ring-index") == 0) return ring_index(rounds);
    if (strcmp(mode, "slot-fields") == 0) return slot_fields(rounds);
    if (strcmp(mode, "bad-port") == 0) return bad_port();
    if (strcmp(mode, "kick") == 0) {
        if (bi->kick_gpa == 0) { hnf_print("hostile: kick: no kick page in this I/O model\n"); return 0; }
        for (int i = 0; i < 1000000; i++) __asm__ volatile("movl %0, (%1)" : : "r"(1u), "r"((uintptr_t)bi->kick_gpa) : "memory");
        hnf_print("hostile: kick done\n");
        return 0;
    }
    if (strcmp(mode, "wild-block") == 0) { hnf_hypercall(HNF_OP_TXSYNC, (void *)(uintptr_t)0xFFFFF000u); SURVIVED(mode); }
    if (strcmp(mode, "block-past-ram") == 0) { hnf_hypercall(HNF_OP_POLL, (void *)(uintptr_t)(ram - 8)); SURVIVED(mode); }
    if (strcmp(mode, "misaligned") == 0) { hnf_hypercall(HNF_OP_CLOCK, (volatile char *)block + 4); SURVIVED(mode); }
    if (strcmp(mode, "puts-wild") == 0) {
        block[0] = 0x70000000u;
        block[1] = 16;
        hnf_hypercall(HNF_OP_PUTS, block);
        SURVIVED(mode);
    }
    if (strcmp(mode, "puts-len") == 0) {
        block[0] = (uint64_t)(uintptr_t)mode;
        block[1] = 1ull << 40;
        hnf_hypercall(HNF_OP_PUTS, block);
        SURVIVED(mode);
    }
    if (strcmp(mode, "unknown-op") == 0) { hnf_hypercall((uint32_t)op, block); SURVIVED(mode); }
    if (strcmp(mode, "read-doorbell") == 0) {
        uint32_t v = *(volatile uint32_t *)(uintptr_t)HNF_DOORBELL_GPA;
        hnf_printf("hostile: read-doorbell read %u\n", v);
        SURVIVED(mode);
    }
    if (strcmp(mode, "doorbell-byte") == 0) {
        *(volatile uint8_t *)(uintptr_t)(HNF_DOORBELL_GPA + HNF_OP_CLOCK * 8) = 1;
        SURVIVED(mode);
    }
    if (strcmp(mode, "write-past-ram") == 0) { *(volatile uint64_t *)(uintptr_t)ram = 1; SURVIVED(mode); }
    if (strcmp(mode, "write-region-end") == 0) { *(volatile uint64_t *)(uintptr_t)(bi->region_gpa + bi->region_size) = 1; SURVIVED(mode); }
    if (strcmp(mode, "write-unmapped") == 0) { *(volatile uint64_t *)(uintptr_t)0xC0000000u = 1; SURVIVED(mode); }
    if (strcmp(mode, "null") == 0) {
        uint64_t v = *(volatile uint64_t *)(uintptr_t)block[3]; /* block[3] is 0; the compiler cannot know */
        hnf_printf("hostile: null read %lu\n", v);
        SURVIVED(mode);
    }
    if (strcmp(mode, "ud") == 0) { __asm__ volatile("ud2"); SURVIVED(mode); }
    if (strcmp(mode, "gp") == 0) {
        uint64_t v;
        __asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(0x8000000000000000ull) : "memory");
        hnf_printf("hostile: gp read %lu\n", v);
        SURVIVED(mode);
    }
    if (strcmp(mode, "sse") == 0) { ((void (*)(void))(uintptr_t)sse_code)(); SURVIVED(mode); }
    if (strcmp(mode, "pagetable") == 0) {
        memset((void *)(uintptr_t)0x2000, 0, 4096);
        __asm__ volatile("" ::: "memory");
        hnf_print("hostile: pagetable zeroed\n"); /* the TLB may still hold translations: touch more */
        for (uint64_t a = 0x100000; a < ram; a += 0x200000) (void)*(volatile uint8_t *)(uintptr_t)a;
        SURVIVED(mode);
    }
    if (strcmp(mode, "stack-overflow") == 0) {
        volatile uint64_t depth = 0;
        recurse(&depth);
        SURVIVED(mode);
    }
    if (strcmp(mode, "loop") == 0) for (;;) __asm__ volatile("" ::: "memory");
    if (strcmp(mode, "block") == 0) {
        for (;;) hnf_poll(3600ull * 1000000000ull, 0, 0, 0);
    }
    hnf_printf("hostile: unknown mode '%s'\n", mode);
    return 2;
}
