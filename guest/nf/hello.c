/*
 * hello: the boot test's guest. Prints what it was given (boot info, command line,
 * ports and their rings, both clocks) and exits with status=N from its command line
 * (default 0). Arguments: status=N (-2^31..2^31-1), spin=N (rdtsc cycles to burn first).
 */
#include "hnf.h"

int main(const struct hnf_boot_info *bi)
{
    char *args = hnf_cmdline();
    hnf_printf("hello: abi=%u ring=%u transport=%s io_model=%u domid=%u vcpu=%u mem=%lu tsc_khz=%lu nports=%u\n",
               bi->abi_version, bi->ring, bi->transport == HNF_TRANSPORT_PIO ? "pio" : "mmio", bi->io_model,
               bi->domid, bi->vcpu, bi->mem_size, bi->tsc_khz, bi->nports);
    hnf_printf("hello: cmdline='%s'\n", args);
    for (uint32_t k = 0; k < bi->nports && k < HNF_MAX_PORTS; k++) {
        struct netmap_if *nifp = hnf_port(k);
        if (nifp == 0) {
            hnf_printf("hello: port %u: no netmap_if\n", k);
            return 3;
        }
        struct netmap_ring *tx = NETMAP_TXRING(nifp, 0), *rx = NETMAP_RXRING(nifp, 0);
        hnf_printf("hello: port %u name=%.16s tx_rings=%u rx_rings=%u tx_slots=%u rx_slots=%u buf_size=%u tx_tail=%u\n", k,
                   nifp->ni_name, nifp->ni_tx_rings, nifp->ni_rx_rings, tx->num_slots, rx->num_slots, tx->nr_buf_size, tx->tail);
    }
    int64_t status = 0;
    uint64_t spin = 0;
    char *items[16];
    int n = hnf_split(args, ", \t", items, 16);
    for (int i = 0; i < n; i++) {
        char *k, *v;
        if (hnf_kv(items[i], &k, &v) == 0 && strcmp(k, "status") == 0 && hnf_parse_i64(v, &status) == 0 &&
            status >= INT32_MIN && status <= INT32_MAX)
            continue;
        if (hnf_kv(items[i], &k, &v) == 0 && strcmp(k, "spin") == 0 && hnf_parse_u64(v, &spin) == 0) continue;
        hnf_printf("hello: bad argument '%s' (status=N, spin=CYCLES)\n", items[i]);
        return 2;
    }
    uint64_t t0 = hnf_clock_ns(), c0 = hnf_rdtsc();
    while (hnf_rdtsc() - c0 < spin) hnf_pause();
    uint64_t t1 = hnf_clock_ns();
    hnf_printf("hello: clock_ns=%lu walltime_ns=%lu spin_ns=%lu\n", t1, hnf_walltime_ns(), t1 - t0);
    hnf_printf("hello: exit status=%d\n", (int)status);
    return (int)status;
}
