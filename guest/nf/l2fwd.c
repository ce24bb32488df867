/*
 * l2fwd: forwards every frame unchanged between port 0 and port 1 (zero-copy: buffers
 * are swapped between RX and TX slots), or back out of port 0 when the domain has one
 * port. Arguments: count=N (exit after N frames with a summary; default: run until
 * destroyed), report=MS (a stats line every MS ms; default 0: none).
 */
#include "hnf_bump.h"

static enum hnf_verdict forward(void *ctx, uint8_t *frame, uint32_t first_len, uint32_t frame_len, int in_port)
{
    (void)ctx, (void)frame, (void)first_len, (void)frame_len, (void)in_port;
    return HNF_FORWARD;
}

/* Parses count= and report= (shared by l2fwd and cost through this file's pattern). */
static int parse(char *args, uint64_t *count, uint64_t *report_ms)
{
    char *items[16];
    int n = hnf_split(args, ", \t", items, 16);
    if (n < 0) { hnf_print("l2fwd: too many arguments\n"); return -1; }
    for (int i = 0; i < n; i++) {
        char *k, *v;
        if (hnf_kv(items[i], &k, &v) != 0) { hnf_printf("l2fwd: argument '%s' is not key=value (count=N, report=MS)\n", items[i]); return -1; }
        uint64_t *dst = strcmp(k, "count") == 0 ? count : strcmp(k, "report") == 0 ? report_ms : 0;
        if (dst == 0) { hnf_printf("l2fwd: unknown key '%s'; allowed keys: count, report\n", k); return -1; }
        if (hnf_parse_u64(v, dst) != 0) { hnf_printf("l2fwd: %s=%s is not a non-negative integer\n", k, v); return -1; }
    }
    return 0;
}

int main(const struct hnf_boot_info *bi)
{
    (void)bi;
    uint64_t count = 0, report_ms = 0;
    if (parse(hnf_cmdline(), &count, &report_ms) != 0) return 2;
    struct hnf_bump_opts o = { .name = "l2fwd", .count = count, .report_ns = report_ms * 1000000 };
    struct hnf_bump_stats st;
    int rc = hnf_bump_run(forward, 0, &o, &st);
    if (rc == 0) hnf_bump_print("l2fwd", &st);
    return rc;
}
