/*
 * hosttest: runs the guest SDK's portable code (formatter, parsers, checksums, pkt-gen
 * frames, sequence tracker, histogram, router core) on the host, so the C# tests
 * (tests/HyperNF.Tests/Guest) can compare it with the C# implementations it mirrors,
 * and prints hnf.h's layouts. Built by the tests with the host's gcc and -DHNF_HOST:
 *   gcc -DHNF_HOST -Iguest/include guest/test/hosttest.c guest/lib/{fmt,args,net,router}.c
 *
 * Reads commands from stdin, one per line, fields separated by '|'; answers one line
 * each (several for "offsets", ended by "end"):
 *   offsets
 *   frame|LEN|DMAC|SMAC|SRCIP|SPORT|DSTIP|DPORT|SEQ|TS      -> hex of the first fragment
 *   check|LEN|HEX                                           -> STATUS SEQ TS
 *   hist|V1 V2 ...                                          -> count min max p50 p90 p99 p99.9
 *   seq|S1 S2 ...                                           -> lost reordered duplicates distinct
 *   router|ARGS|IN_PORT|HEX                                 -> VERDICT HEX routed no_route ttl bad nonip | error: MSG
 *   csum16|CSUM|OLD|NEW                                     -> result
 *   mac|NAME                                                -> default pkt-gen MAC
 *   parse|KIND|TEXT (KIND: u64 i64 rate mac ipv4 prefix)    -> ok VALUE | err
 *   split|SEPS|TEXT                                         -> N|tok|tok...
 *   fmt|N                                                   -> the Nth formatter case
 */
#include <stdio.h>
#include <stdlib.h>
#include "hnf.h"
#include "hnf_net.h"
#include "hnf_router.h"

const struct hnf_boot_info *hnf_boot;

int hnf_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(stderr, fmt, ap);
    va_end(ap);
    return n;
}

#define OFF(s, f) printf(#s "." #f " %zu\n", offsetof(struct s, f))

static void offsets(void)
{
    OFF(hnf_boot_info, magic); OFF(hnf_boot_info, abi_version); OFF(hnf_boot_info, transport); OFF(hnf_boot_info, ring);
    OFF(hnf_boot_info, mem_size); OFF(hnf_boot_info, kernel_end); OFF(hnf_boot_info, tsc_khz); OFF(hnf_boot_info, cmdline);
    OFF(hnf_boot_info, region_gpa); OFF(hnf_boot_info, region_size); OFF(hnf_boot_info, nports); OFF(hnf_boot_info, io_model);
    OFF(hnf_boot_info, nifp); OFF(hnf_boot_info, kick_gpa); OFF(hnf_boot_info, needs_kick_gpa); OFF(hnf_boot_info, domid);
    OFF(hnf_boot_info, vcpu); OFF(hnf_boot_info, shutdown_gpa); OFF(hnf_boot_info, features); OFF(hnf_boot_info, _pad);
    printf("hnf_boot_info.sizeof %zu\n", sizeof(struct hnf_boot_info));
    OFF(netmap_if, ni_name); OFF(netmap_if, ni_version); OFF(netmap_if, ni_flags); OFF(netmap_if, ni_tx_rings);
    OFF(netmap_if, ni_rx_rings); OFF(netmap_if, ni_bufs_head); OFF(netmap_if, ni_host_tx_rings); OFF(netmap_if, ni_host_rx_rings);
    OFF(netmap_if, ni_spare1); OFF(netmap_if, ring_ofs);
    OFF(netmap_ring, buf_ofs); OFF(netmap_ring, num_slots); OFF(netmap_ring, nr_buf_size); OFF(netmap_ring, ringid);
    OFF(netmap_ring, dir); OFF(netmap_ring, head); OFF(netmap_ring, cur); OFF(netmap_ring, tail); OFF(netmap_ring, flags);
    OFF(netmap_ring, ts); OFF(netmap_ring, sem); OFF(netmap_ring, slot);
    OFF(netmap_slot, buf_idx); OFF(netmap_slot, len); OFF(netmap_slot, flags); OFF(netmap_slot, ptr);
    printf("netmap_slot.sizeof %zu\n", sizeof(struct netmap_slot));
    OFF(hnf_hc_time, ns); OFF(hnf_hc_puts, data); OFF(hnf_hc_puts, len);
    OFF(hnf_hc_poll, timeout_ns); OFF(hnf_hc_poll, rx_mask); OFF(hnf_hc_poll, tx_mask); OFF(hnf_hc_poll, ready); OFF(hnf_hc_poll, ret);
    OFF(hnf_hc_exit, status); OFF(hnf_hc_sync, port); OFF(hnf_hc_sync, ring); OFF(hnf_hc_sync, ret);
    printf("op.WALLTIME %d\nop.PUTS %d\nop.POLL %d\nop.CLOCK %d\nop.EXIT %d\nop.TXSYNC %d\nop.RXSYNC %d\n", HNF_OP_WALLTIME,
           HNF_OP_PUTS, HNF_OP_POLL, HNF_OP_CLOCK, HNF_OP_EXIT, HNF_OP_TXSYNC, HNF_OP_RXSYNC);
    printf("const.BOOT_MAGIC %u\nconst.ABI_VERSION %u\nconst.PIO_BASE %d\nconst.DOORBELL %u\nconst.PUTS_MAX %d\nconst.EINVAL %d\n",
           HNF_BOOT_MAGIC, HNF_ABI_VERSION, HNF_PIO_BASE, HNF_DOORBELL_GPA, HNF_PUTS_MAX, HNF_EINVAL);
    printf("const.NS_BUF_CHANGED %d\nconst.NS_REPORT %d\nconst.NS_INDIRECT %d\nconst.NS_MOREFRAG %d\n", NS_BUF_CHANGED, NS_REPORT,
           NS_INDIRECT, NS_MOREFRAG);
    printf("end\n");
}

static void hex_out(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

static size_t hex_in(const char *s, uint8_t *b, size_t max)
{
    size_t n = 0;
    while (s[0] && s[1] && n < max) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) break;
        b[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static char *field(char **p)
{
    char *s = *p, *bar = s ? strchr(s, '|') : 0;
    if (bar) { *bar = 0; *p = bar + 1; } else *p = 0;
    return s ? s : (char *)"";
}

static void fmt_case(int n)
{
    char b[128];
    switch (n) {
    case 0: hnf_snprintf(b, sizeof b, "%d %i %u", -42, 7, 4000000000u); break;
    case 1: hnf_snprintf(b, sizeof b, "%ld %lu %lx %lX", (long)INT64_MIN, (unsigned long)UINT64_MAX, 0xdeadbeefUL, 0xabcUL); break;
    case 2: hnf_snprintf(b, sizeof b, "[%5d][%-5d][%05d][%02x:%02x]", 42, 42, -42, 0xa, 0xff); break;
    case 3: hnf_snprintf(b, sizeof b, "[%s][%8s][%-8s][%.3s][%c]", "abc", "abc", "abc", "abcdef", 'z'); break;
    case 4: hnf_snprintf(b, sizeof b, "%p %% %zu %s", (void *)0x1000, (size_t)12, (char *)0); break;
    case 5: { int r = hnf_snprintf(b, 8, "%s", "truncated text"); char t[160]; snprintf(t, sizeof t, "%s|%d", b, r); memcpy(b, t, sizeof b); b[sizeof b - 1] = 0; break; }
    default: strcpy(b, "?"); break;
    }
    printf("%s\n", b);
}

int main(void)
{
    static char line[1 << 16];
    static uint8_t frame[4096];
    setvbuf(stdout, 0, _IOLBF, 0); /* one answer line is one flush, whatever path printed it */
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        char *p = line, *cmd = field(&p);
        if (strcmp(cmd, "offsets") == 0) {
            offsets();
        } else if (strcmp(cmd, "frame") == 0) {
            uint32_t len = (uint32_t)strtoul(field(&p), 0, 10), first = len < 2048 ? len : 2048, sip, dip;
            uint8_t dmac[6], smac[6];
            hnf_parse_mac(field(&p), dmac);
            hnf_parse_mac(field(&p), smac);
            hnf_parse_ipv4(field(&p), &sip);
            uint16_t sport = (uint16_t)strtoul(field(&p), 0, 10);
            hnf_parse_ipv4(field(&p), &dip);
            uint16_t dport = (uint16_t)strtoul(field(&p), 0, 10);
            uint64_t sq = strtoull(field(&p), 0, 10), ts = strtoull(field(&p), 0, 10);
            memset(frame, 0xEE, sizeof frame); /* the writer must clear what it does not write */
            hnf_pkt_write(frame, first, len, dmac, smac, sip, sport, dip, dport);
            hnf_pkt_stamp(frame, sq, ts);
            hex_out(frame, first);
            printf("\n");
        } else if (strcmp(cmd, "check") == 0) {
            uint32_t len = (uint32_t)strtoul(field(&p), 0, 10);
            size_t n = hex_in(field(&p), frame, sizeof frame);
            uint64_t sq = 0;
            int64_t ts = 0;
            int st = hnf_pkt_check(frame, (uint32_t)n, len, &sq, &ts);
            printf("%d %llu %lld\n", st, (unsigned long long)sq, (long long)ts);
        } else if (strcmp(cmd, "hist") == 0) {
            static struct hnf_hist h;
            hnf_hist_reset(&h);
            for (char *t = strtok(field(&p), " "); t; t = strtok(0, " ")) hnf_hist_record(&h, strtoll(t, 0, 10));
            printf("%llu %llu %llu %llu %llu %llu %llu\n", (unsigned long long)h.count, (unsigned long long)(h.count ? h.min : 0),
                   (unsigned long long)h.max, (unsigned long long)hnf_hist_percentile(&h, 500),
                   (unsigned long long)hnf_hist_percentile(&h, 900), (unsigned long long)hnf_hist_percentile(&h, 990),
                   (unsigned long long)hnf_hist_percentile(&h, 999));
        } else if (strcmp(cmd, "seq") == 0) {
            static struct hnf_seq s;
            hnf_seq_reset(&s);
            for (char *t = strtok(field(&p), " "); t; t = strtok(0, " ")) hnf_seq_add(&s, strtoull(t, 0, 10));
            printf("%lld %lld %lld %lld\n", (long long)hnf_seq_lost(&s), (long long)s.reordered, (long long)s.duplicates,
                   (long long)s.distinct);
        } else if (strcmp(cmd, "router") == 0) {
            static struct hnf_router r;
            char err[256];
            char *args = field(&p);
            int in = atoi(field(&p));
            size_t n = hex_in(field(&p), frame, sizeof frame);
            if (hnf_router_init(&r, args, err, sizeof err) != 0) {
                printf("error: %s\n", err);
                continue;
            }
            int v = hnf_router_process(&r, frame, (uint32_t)n, in);
            printf("%d ", v);
            hex_out(frame, n);
            printf(" %llu %llu %llu %llu %llu\n", (unsigned long long)r.routed, (unsigned long long)r.no_route,
                   (unsigned long long)r.ttl_expired, (unsigned long long)r.bad_header, (unsigned long long)r.non_ipv4);
        } else if (strcmp(cmd, "csum16") == 0) {
            unsigned c = (unsigned)strtoul(field(&p), 0, 0), o = (unsigned)strtoul(field(&p), 0, 0), nw = (unsigned)strtoul(field(&p), 0, 0);
            printf("%u\n", hnf_csum_update16((uint16_t)c, (uint16_t)o, (uint16_t)nw));
        } else if (strcmp(cmd, "mac") == 0) {
            const char *name = field(&p);
            uint8_t m[6];
            hnf_pkt_default_mac(name, 16, m);
            printf("%02x:%02x:%02x:%02x:%02x:%02x\n", m[0], m[1], m[2], m[3], m[4], m[5]);
        } else if (strcmp(cmd, "parse") == 0) {
            char *kind = field(&p), *text = field(&p);
            uint64_t u;
            int64_t i;
            uint32_t a;
            int l;
            uint8_t m[6];
            if (strcmp(kind, "u64") == 0 && hnf_parse_u64(text, &u) == 0) printf("ok %llu\n", (unsigned long long)u);
            else if (strcmp(kind, "i64") == 0 && hnf_parse_i64(text, &i) == 0) printf("ok %lld\n", (long long)i);
            else if (strcmp(kind, "rate") == 0 && hnf_parse_rate(text, &u) == 0) printf("ok %llu\n", (unsigned long long)u);
            else if (strcmp(kind, "ipv4") == 0 && hnf_parse_ipv4(text, &a) == 0) printf("ok %u\n", a);
            else if (strcmp(kind, "prefix") == 0 && hnf_parse_prefix(text, &a, &l) == 0) printf("ok %u/%d\n", a, l);
            else if (strcmp(kind, "mac") == 0 && hnf_parse_mac(text, m) == 0)
                printf("ok %02x:%02x:%02x:%02x:%02x:%02x\n", m[0], m[1], m[2], m[3], m[4], m[5]);
            else printf("err\n");
        } else if (strcmp(cmd, "split") == 0) {
            char *seps = field(&p), *text = field(&p), *argv[8];
            int n = hnf_split(text, seps, argv, 8);
            printf("%d", n);
            for (int k = 0; k < n; k++) printf("|%s", argv[k]);
            printf("\n");
        } else if (strcmp(cmd, "fmt") == 0) {
            fmt_case(atoi(field(&p)));
        } else {
            printf("unknown command '%s'\n", cmd);
        }
        fflush(stdout);
    }
    return 0;
}
