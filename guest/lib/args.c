/*
 * Command-line parsing: the VMM puts the NF's arguments (nf_args of the domain config)
 * at boot_info.cmdline. pkt-gen style programs split it into flags (hnf_split +
 * hnf_getopt); key=value programs split at ',' and use hnf_kv. All parsers are strict
 * and return -1 on anything they do not fully understand. Shared with host tests.
 */
#include "hnf.h"

#ifndef HNF_HOST
static char cmdline_copy[HNF_CMDLINE_MAX];

char *hnf_cmdline(void)
{
    const char *src = (const char *)(uintptr_t)hnf_boot->cmdline;
    size_t n = 0;
    if (src != 0)
        while (n + 1 < sizeof cmdline_copy && src[n]) { cmdline_copy[n] = src[n]; n++; }
    cmdline_copy[n] = 0;
    return cmdline_copy;
}
#endif

int hnf_split(char *s, const char *seps, char **argv, int max)
{
    int n = 0;
    while (*s) {
        while (*s && strchr(seps, *s)) *s++ = 0;
        if (!*s) break;
        if (n == max) return -1;
        argv[n++] = s;
        while (*s && !strchr(seps, *s)) s++;
    }
    return n;
}

int hnf_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (s == 0 || *s == 0) return -1;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        if (*s == 0) return -1;
    }
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9') d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f') d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F') d = (unsigned)(*s - 'A' + 10);
        else return -1;
        if (v > (UINT64_MAX - d) / base) return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

int hnf_parse_i64(const char *s, int64_t *out)
{
    int neg = s != 0 && *s == '-';
    uint64_t v;
    if (hnf_parse_u64(neg ? s + 1 : s, &v) != 0) return -1;
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int hnf_parse_rate(const char *s, uint64_t *out)
{
    char tmp[32];
    size_t n = s ? strlen(s) : 0;
    uint64_t mult = 1, v;
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n + 1);
    char last = tmp[n - 1];
    if (last == 'k' || last == 'K') mult = 1000;
    else if (last == 'm' || last == 'M') mult = 1000000;
    else if (last == 'g' || last == 'G') mult = 1000000000;
    if (mult != 1) tmp[n - 1] = 0;
    if (hnf_parse_u64(tmp, &v) != 0 || v > UINT64_MAX / mult) return -1;
    *out = v * mult;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int hnf_parse_mac(const char *s, uint8_t mac[6])
{
    if (s == 0 || strlen(s) != 17) return -1;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':')) return -1;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int parse_quad(const char *s, size_t n, uint32_t *out, int leading_zeros)
{
    uint32_t a = 0;
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.') return -1;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3) v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (!leading_zeros && i - start > 1 && s[start] == '0')) return -1;
        a = a << 8 | v;
    }
    if (i != n) return -1;
    *out = a;
    return 0;
}

/* "010" is a typo, not shorthand, for pkt-gen (as EndpointRange.cs) */
int hnf_parse_ipv4_n(const char *s, size_t n, uint32_t *out) { return parse_quad(s, n, out, 0); }

int hnf_parse_ipv4(const char *s, uint32_t *out) { return s ? hnf_parse_ipv4_n(s, strlen(s), out) : -1; }

int hnf_parse_prefix(const char *s, uint32_t *net, int *len)
{
    const char *slash = strchr(s, '/');
    uint32_t a;
    uint64_t l = 32;
    /* octets with leading zeros are decimal here, as in the C# NFs' rules (Addresses.cs) */
    if (parse_quad(s, slash ? (size_t)(slash - s) : strlen(s), &a, 1) != 0) return -1;
    if (slash && (slash[1] == 0 || strlen(slash + 1) > 2 || hnf_parse_u64(slash + 1, &l) != 0 || l > 32)) return -1;
    uint32_t mask = l == 0 ? 0 : 0xFFFFFFFFu << (32 - l);
    if ((a & ~mask) != 0) return -1;
    *net = a;
    *len = (int)l;
    return 0;
}

int hnf_getopt(struct hnf_getopt *g, const char *prog, const char *optstring)
{
    g->arg = 0;
    if (g->i >= g->argc) return 0;
    const char *a = g->argv[g->i];
    if (a[0] != '-' || a[1] == 0 || a[2] != 0 || a[1] == ':') {
        hnf_printf("%s: unexpected argument '%s' (flags are -X VALUE)\n", prog, a);
        return '?';
    }
    const char *o = strchr(optstring, a[1]);
    if (o == 0) {
        hnf_printf("%s: unknown flag '%s' (known: %s)\n", prog, a, optstring);
        return '?';
    }
    g->i++;
    if (o[1] == ':') {
        if (g->i >= g->argc) {
            hnf_printf("%s: %s needs a value\n", prog, a);
            return '?';
        }
        g->arg = g->argv[g->i++];
    }
    return a[1];
}

int hnf_kv(char *item, char **key, char **value)
{
    char *eq = strchr(item, '=');
    if (eq == 0 || eq == item) return -1;
    *eq = 0;
    *key = item;
    *value = eq + 1;
    return 0;
}
