/*
 * router: an IPv4 router between port 0 and port 1, the C# "router" NF's semantics
 * (hnf_router.h: arguments, counters). Extra arguments of the guest: count=N, report=MS
 * (as l2fwd).
 */
#include "hnf_router.h"

static struct hnf_router router;

static enum hnf_verdict route(void *ctx, uint8_t *frame, uint32_t first_len, uint32_t frame_len, int in_port)
{
    (void)frame_len;
    return hnf_router_process(ctx, frame, first_len, in_port);
}

static void report(void *ctx)
{
    struct hnf_router *r = ctx;
    hnf_printf("router: routed=%lu no_route=%lu ttl_expired=%lu bad_header=%lu %s=%lu\n", r->routed, r->no_route,
               r->ttl_expired, r->bad_header, r->pass_nonip ? "non_ipv4_passed" : "non_ipv4", r->non_ipv4);
}

/* Takes count= and report= out of the argument list, leaving the router's own. */
static int take_guest_args(char *args, uint64_t *count, uint64_t *report_ms)
{
    char *w = args;
    for (char *item = args; item != 0 && *item;) {
        char *comma = strchr(item, ',');
        size_t len = comma ? (size_t)(comma - item) : strlen(item);
        uint64_t *dst = strncmp(item, "count=", 6) == 0 ? count : strncmp(item, "report=", 7) == 0 ? report_ms : 0;
        if (dst) {
            char num[24];
            size_t eq = (size_t)(strchr(item, '=') - item) + 1;
            if (len - eq >= sizeof num) return -1;
            memcpy(num, item + eq, len - eq);
            num[len - eq] = 0;
            if (hnf_parse_u64(num, dst) != 0) { hnf_printf("router: %s is not key=non-negative integer\n", num); return -1; }
        } else {
            if (w != args) *w++ = ',';
            memmove(w, item, len);
            w += len;
        }
        item = comma ? comma + 1 : 0;
    }
    *w = 0;
    return 0;
}

int main(const struct hnf_boot_info *bi)
{
    (void)bi;
    char err[256];
    uint64_t count = 0, report_ms = 0;
    char *args = hnf_cmdline();
    if (take_guest_args(args, &count, &report_ms) != 0) return 2;
    if (hnf_router_init(&router, args, err, sizeof err) != 0) {
        hnf_printf("router: %s\n", err);
        return 2;
    }
    hnf_printf("router: %d routes\n", router.nroutes);
    for (int i = 0; i < router.nroutes; i++) {
        const struct hnf_route *r = &router.routes[i];
        const uint8_t *m = r->rewrite;
        hnf_printf("router: %u.%u.%u.%u/%d via %02x:%02x:%02x:%02x:%02x:%02x port %d\n", r->prefix >> 24, (r->prefix >> 16) & 255,
                   (r->prefix >> 8) & 255, r->prefix & 255, r->len, m[0], m[1], m[2], m[3], m[4], m[5], r->port);
    }
    struct hnf_bump_opts o = { .name = "router", .count = count, .report_ns = report_ms * 1000000, .report = report };
    struct hnf_bump_stats st;
    int rc = hnf_bump_run(route, &router, &o, &st);
    if (rc == 0) {
        hnf_bump_print("router", &st);
        report(&router);
    }
    return rc;
}
