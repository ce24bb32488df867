/*
 * The guest runtime: start-up after _start, hypercall wrappers, clocks, console, exit,
 * heap. Everything here relies only on docs/guest-abi.md.
 */
#include "hnf.h"

/* In .data, not .bss: vCPU 0 zeroes .bss after setting it. */
const struct hnf_boot_info *hnf_boot __attribute__((section(".data"))) = 0;

extern char __bss_start[], __bss_end[], _end[];

static uint64_t heap_next, heap_limit;

/* Clock anchor for hnf_now_ns. */
static uint64_t anchor_ns, anchor_tsc, ns_per_tsc_q32;

static void start_checks(const struct hnf_boot_info *bi)
{
    /* Without a valid boot info the transport is unknown, so no hypercall can report
     * the problem: crash at once (the VMM records the registers; RDI shows the pointer). */
    if (bi == 0 || bi->magic != HNF_BOOT_MAGIC || bi->abi_version != HNF_ABI_VERSION ||
        (bi->transport != HNF_TRANSPORT_PIO && bi->transport != HNF_TRANSPORT_MMIO))
        __builtin_trap();
}

__attribute__((noreturn, used)) void hnf_start0(const struct hnf_boot_info *bi)
{
    start_checks(bi);
    hnf_boot = bi;
    /* The ELF loader zero-fills .bss (p_memsz); do it again so nothing depends on that. */
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    heap_next = (bi->kernel_end + 15) & ~(uint64_t)15;
    if (heap_next < (uint64_t)(uintptr_t)_end) heap_next = ((uint64_t)(uintptr_t)_end + 15) & ~(uint64_t)15;
    heap_limit = bi->mem_size > (256u << 10) ? bi->mem_size - (256u << 10) : 0;
    if (bi->tsc_khz != 0) ns_per_tsc_q32 = (1000000ull << 32) / bi->tsc_khz;
    hnf_exit(main(bi));
}

/* vCPUs other than 0: the NFs are single-threaded (one ring pair per port), so these
 * sleep until the domain is destroyed (a shutdown request stops vCPU 0's main; the domain
 * has exited once every vCPU has, so these leave too). Only the boot info and this stack
 * are used. */
__attribute__((noreturn, used)) void hnf_start_secondary(const struct hnf_boot_info *bi)
{
    start_checks(bi);
    while (*(volatile uint32_t *)(uintptr_t)bi->shutdown_gpa == 0) {
        /* An hour: the VMM wakes a POLL when it sets the shutdown word. */
        _Alignas(8) volatile struct hnf_hc_poll p = { .timeout_ns = 3600ull * 1000000000ull };
        hnf_hypercall_on(bi->transport, HNF_OP_POLL, &p);
    }
    _Alignas(8) volatile struct hnf_hc_exit e = { .status = 0 };
    hnf_hypercall_on(bi->transport, HNF_OP_EXIT, &e);
    for (;;) __builtin_trap();
}

void hnf_puts(const char *s, size_t len)
{
    while (len > 0) {
        size_t n = len > HNF_PUTS_MAX ? HNF_PUTS_MAX : len;
        _Alignas(8) volatile struct hnf_hc_puts p = { .data = (uint64_t)(uintptr_t)s, .len = n };
        hnf_hypercall(HNF_OP_PUTS, &p);
        s += n;
        len -= n;
    }
}

void hnf_print(const char *s) { hnf_puts(s, strlen(s)); }

int hnf_printf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = hnf_vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    hnf_puts(buf, len);
    if ((size_t)n >= sizeof buf) hnf_print("...[truncated]\n");
    return n;
}

uint64_t hnf_clock_ns(void)
{
    _Alignas(8) volatile struct hnf_hc_time t = { 0 };
    hnf_hypercall(HNF_OP_CLOCK, &t);
    return t.ns;
}

uint64_t hnf_walltime_ns(void)
{
    _Alignas(8) volatile struct hnf_hc_time t = { 0 };
    hnf_hypercall(HNF_OP_WALLTIME, &t);
    return t.ns;
}

uint64_t hnf_now_ns(void)
{
    if (ns_per_tsc_q32 == 0) return hnf_clock_ns();
    uint64_t tsc = hnf_rdtsc();
    uint64_t dt = tsc - anchor_tsc;
    /* Re-anchor every ~50 ms (and on the first call, or if the TSC went backwards). */
    if (anchor_tsc == 0 || tsc < anchor_tsc || dt > hnf_boot->tsc_khz * 50) {
        anchor_tsc = hnf_rdtsc();
        anchor_ns = hnf_clock_ns();
        return anchor_ns;
    }
    return anchor_ns + (uint64_t)(((unsigned __int128)dt * ns_per_tsc_q32) >> 32);
}

static int split_model(void)
{
    return hnf_boot->io_model != HNF_IO_HYPERCALL && hnf_boot->kick_gpa != 0 && hnf_boot->needs_kick_gpa != 0;
}

/* Split/merge: head is published (plain stores, x86 TSO); the mfence orders it before the
 * read of needs_kick, the Dekker handshake with the backend's set-fence-recheck. */
static void kick_backend(void)
{
    hnf_mfence();
    if (*(volatile uint32_t *)(uintptr_t)hnf_boot->needs_kick_gpa != 0)
        __asm__ volatile("movl %0, (%1)" : : "r"(1u), "r"((uintptr_t)hnf_boot->kick_gpa) : "memory");
}

int hnf_txsync(uint32_t port, uint32_t ring)
{
    if (split_model()) {
        if (port >= hnf_boot->nports) return HNF_EINVAL;
        kick_backend();
        return 0;
    }
    _Alignas(8) volatile struct hnf_hc_sync s = { .port = port, .ring = ring };
    hnf_hypercall(HNF_OP_TXSYNC, &s);
    return s.ret;
}

int hnf_rxsync(uint32_t port, uint32_t ring)
{
    if (hnf_boot->features & HNF_FEAT_RX_SELF) {
        if (port >= hnf_boot->nports) return HNF_EINVAL;
        struct netmap_if *nifp = (struct netmap_if *)(uintptr_t)hnf_boot->nifp[port];
        uint32_t n = nifp->ni_rx_rings;
        if (ring != HNF_ALL_RINGS && ring >= n) return HNF_EINVAL;
        for (uint32_t k = ring == HNF_ALL_RINGS ? 0 : ring; k < n; k++) {
            hnf_rxsync_self(NETMAP_RXRING(nifp, k)); /* no exit (hnf_rxself.h) */
            if (ring != HNF_ALL_RINGS) break;
        }
        return 0;
    }
    _Alignas(8) volatile struct hnf_hc_sync s = { .port = port, .ring = ring };
    hnf_hypercall(HNF_OP_RXSYNC, &s);
    return s.ret;
}

/* Self-served RX: rxsync every RX ring of the ports in mask; the ports that then have frames. */
static uint32_t rx_self_ready(uint32_t mask)
{
    uint32_t ready = 0;
    for (uint32_t k = 0; k < hnf_boot->nports && k < HNF_MAX_PORTS; k++) {
        if (!(mask & (1u << k))) continue;
        struct netmap_if *nifp = (struct netmap_if *)(uintptr_t)hnf_boot->nifp[k];
        for (uint32_t r = 0; r < nifp->ni_rx_rings; r++) {
            struct netmap_ring *ring = NETMAP_RXRING(nifp, r);
            hnf_rxsync_self(ring);
            if (ring->cur != ring->tail) ready |= 1u << k;
        }
    }
    return ready;
}

uint32_t hnf_poll(uint64_t timeout_ns, uint32_t rx_mask, uint32_t tx_mask, int32_t *ret)
{
    /* Split/merge: the kick instead of a flush; the VMM does not flush tx_mask ports then,
     * it also returns when their TX rings have room again (the backend took the frames). */
    if (tx_mask != 0 && split_model()) kick_backend();
    /* Self-served RX rings: sync them here first; with frames there already and no TX flush to
     * ask for, POLL returns without an exit (netmap's poll returns at once when ready too). */
    int self = (hnf_boot->features & HNF_FEAT_RX_SELF) != 0;
    uint32_t valid = hnf_boot->nports >= 32 ? 0xFFFFFFFFu : (1u << hnf_boot->nports) - 1;
    if (self && rx_mask != 0 && ((rx_mask | tx_mask) & ~valid) == 0) {
        uint32_t ready = rx_self_ready(rx_mask);
        if (ready != 0 && (tx_mask == 0 || split_model())) {
            if (ret) {
                int32_t bits = 0;
                for (uint32_t m = ready; m != 0; m &= m - 1) bits++; /* no libgcc: no __builtin_popcount */
                *ret = bits;
            }
            return ready;
        }
    }
    _Alignas(8) volatile struct hnf_hc_poll p = { .timeout_ns = timeout_ns, .rx_mask = rx_mask, .tx_mask = tx_mask };
    hnf_hypercall(HNF_OP_POLL, &p);
    /* The VMM's POLL only looks at self-served rings: show the user what arrived. */
    if (self && p.ready != 0 && (p.ready & ~valid) == 0) (void)rx_self_ready(p.ready);
    if (ret) *ret = p.ret;
    return p.ready;
}

void hnf_sleep_ns(uint64_t ns) { (void)hnf_poll(ns, 0, 0, 0); }

__attribute__((noreturn)) void hnf_exit(int status)
{
    _Alignas(8) volatile struct hnf_hc_exit e = { .status = status };
    hnf_hypercall(HNF_OP_EXIT, &e);
    /* EXIT does not return; if a VMM resumed us anyway, crash rather than run on. */
    for (;;) __builtin_trap();
}

struct netmap_if *hnf_port(uint32_t k)
{
    if (k >= hnf_boot->nports || k >= HNF_MAX_PORTS || hnf_boot->nifp[k] == 0) return 0;
    return (struct netmap_if *)(uintptr_t)hnf_boot->nifp[k];
}

char *hnf_buf_checked(const struct netmap_ring *r, uint32_t idx)
{
    uint64_t lo = hnf_boot->region_gpa, hi = lo + hnf_boot->region_size;
    uint64_t p = (uint64_t)(uintptr_t)NETMAP_BUF(r, idx);
    if (idx < 2 || p < lo || p + r->nr_buf_size > hi || p + r->nr_buf_size < p) return 0;
    return (char *)(uintptr_t)p;
}

void *hnf_alloc(size_t size)
{
    uint64_t p = heap_next, n = ((uint64_t)size + 15) & ~(uint64_t)15;
    if (n < size || p + n > heap_limit || p + n < p) return 0;
    heap_next = p + n;
    return (void *)(uintptr_t)p;
}
