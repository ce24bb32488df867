/*
 * cost: burns a set number of TSC cycles per frame (an rdtsc spin), then forwards it
 * like l2fwd: an NF of known per-frame cost for experiments (the C# "cost" NF converts
 * cycles into a calibrated loop; a guest can read the TSC directly). Arguments:
 * cycles=N (0..10^9, default 0), count=N, report=MS (as l2fwd), tsc_hz=HZ (accepted for
 * config compatibility with the C# NF and ignored: cycles are counted, not converted).
 */
#include "hnf_bump.h"

struct cost { uint64_t cycles, frames, spent; };

static enum hnf_verdict burn(void *ctx, uint8_t *frame, uint32_t first_len, uint32_t frame_len, int in_port)
{
    (void)frame, (void)first_len, (void)frame_len, (void)in_port;
    struct cost *c = ctx;
    uint64_t t0 = hnf_rdtsc(), t;
    while ((t = hnf_rdtsc()) - t0 < c->cycles) hnf_pause();
    c->frames++;
    c->spent += t - t0;
    return HNF_FORWARD;
}

static void report(void *ctx)
{
    struct cost *c = ctx;
    hnf_printf("cost: cycles_per_frame=%lu frames=%lu measured_cycles_per_frame=%lu\n", c->cycles, c->frames,
               c->frames ? c->spent / c->frames : 0);
}

int main(const struct hnf_boot_info *bi)
{
    (void)bi;
    static struct cost c;
    uint64_t count = 0, report_ms = 0, hz;
    char *items[16];
    int n = hnf_split(hnf_cmdline(), ", \t", items, 16);
    if (n < 0) { hnf_print("cost: too many arguments\n"); return 2; }
    for (int i = 0; i < n; i++) {
        char *k, *v;
        if (hnf_kv(items[i], &k, &v) != 0) {
            hnf_printf("cost: argument '%s' is not key=value (cycles=N, count=N, report=MS)\n", items[i]);
            return 2;
        }
        uint64_t *dst = strcmp(k, "cycles") == 0 ? &c.cycles : strcmp(k, "count") == 0 ? &count
                      : strcmp(k, "report") == 0 ? &report_ms : strcmp(k, "tsc_hz") == 0 ? &hz : 0;
        if (dst == 0) { hnf_printf("cost: unknown key '%s'; allowed keys: cycles, count, report, tsc_hz\n", k); return 2; }
        if (hnf_parse_u64(v, dst) != 0) { hnf_printf("cost: %s=%s is not a non-negative integer\n", k, v); return 2; }
        if (dst == &hz) hnf_printf("cost: tsc_hz=%s ignored: the guest counts TSC cycles directly\n", v);
    }
    if (c.cycles > 1000000000) { hnf_printf("cost: cycles=%lu is not valid; expected an integer in 0..1000000000\n", c.cycles); return 2; }
    hnf_printf("cost: cycles=%lu tsc_khz=%lu\n", c.cycles, hnf_boot->tsc_khz);
    struct hnf_bump_opts o = { .name = "cost", .count = count, .report_ns = report_ms * 1000000, .report = report };
    struct hnf_bump_stats st;
    int rc = hnf_bump_run(burn, &c, &o, &st);
    if (rc == 0) {
        hnf_bump_print("cost", &st);
        report(&c);
    }
    return rc;
}
