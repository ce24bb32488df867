/* The router NF's core (hnf_router.h). Shared by the guest and the host tests. */
#include "hnf_router.h"
#include "hnf_net.h"

static int lower_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        if (x != *b) return 0;
    }
    return *a == *b;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

/* One route line: "PREFIX via MAC port N" (a '#' starts a comment). 1 added, 0 blank, -1 error. */
static int parse_route(struct hnf_router *r, char *line, const uint8_t macs[2][6], char *err, size_t errlen)
{
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *t[6];
    int n = hnf_split(line, " \t\r\n", t, 6);
    if (n == 0) return 0;
    uint32_t prefix;
    int len;
    uint8_t mac[6];
    uint64_t port;
    if (n != 5 || !lower_eq(t[1], "via") || !lower_eq(t[3], "port")) {
        hnf_snprintf(err, errlen, "route '%s...': expected 'PREFIX via MAC port N', e.g. '10.0.1.0/24 via 00:16:3e:00:00:02 port 1'", t[0]);
        return -1;
    }
    if (hnf_parse_prefix(t[0], &prefix, &len) != 0) {
        hnf_snprintf(err, errlen, "route: bad prefix '%s' (A.B.C.D/N with zero host bits)", t[0]);
        return -1;
    }
    if (hnf_parse_mac(t[2], mac) != 0) {
        hnf_snprintf(err, errlen, "route %s: next hop '%s' is not a MAC like 00:16:3e:00:00:02", t[0], t[2]);
        return -1;
    }
    if (hnf_parse_u64(t[4], &port) != 0 || port > 1) {
        hnf_snprintf(err, errlen, "route %s: port '%s' must be 0 or 1", t[0], t[4]);
        return -1;
    }
    for (int i = 0; i < r->nroutes; i++)
        if (r->routes[i].prefix == prefix && r->routes[i].len == len) {
            hnf_snprintf(err, errlen, "route %s: a route for this prefix already exists; keep one", t[0]);
            return -1;
        }
    if (r->nroutes == HNF_ROUTER_MAX_ROUTES) {
        hnf_snprintf(err, errlen, "route %s: more than %d routes", t[0], HNF_ROUTER_MAX_ROUTES);
        return -1;
    }
    struct hnf_route *rt = &r->routes[r->nroutes++];
    rt->prefix = prefix;
    rt->len = len;
    rt->mask = len == 0 ? 0 : 0xFFFFFFFFu << (32 - len);
    rt->port = (int)port;
    memcpy(rt->rewrite, mac, 6);
    memcpy(rt->rewrite + 6, macs[port], 6);
    return 1;
}

int hnf_router_init(struct hnf_router *r, char *args, char *err, size_t errlen)
{
    char *items[HNF_ROUTER_MAX_ROUTES + 8];
    uint8_t macs[2][6];
    int have_mac[2] = { 0, 0 }, have_nonip = 0;
    memset(r, 0, sizeof *r);
    int n = hnf_split(args, ",", items, (int)(sizeof items / sizeof items[0]));
    if (n < 0) {
        hnf_snprintf(err, errlen, "too many arguments");
        return -1;
    }
    /* First pass: everything but routes (a route needs both port MACs). */
    for (int i = 0; i < n; i++) {
        char *key, *value;
        char *item = trim(items[i]);
        if (*item == 0) { items[i] = 0; continue; }
        if (hnf_kv(item, &key, &value) != 0) {
            hnf_snprintf(err, errlen, "argument '%s' is not key=value; allowed keys: mac0, mac1, route, nonip", item);
            return -1;
        }
        key = trim(key);
        value = trim(value);
        for (char *c = key; *c; c++) if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
        if (strcmp(key, "mac0") == 0 || strcmp(key, "mac1") == 0) {
            int p = key[3] - '0';
            if (have_mac[p]) { hnf_snprintf(err, errlen, "key '%s' is given twice; give it once", key); return -1; }
            if (hnf_parse_mac(value, macs[p]) != 0) {
                hnf_snprintf(err, errlen, "%s=%s is not valid; expected a MAC address like 02:00:00:00:00:01", key, value);
                return -1;
            }
            have_mac[p] = 1;
            items[i] = 0;
        } else if (strcmp(key, "nonip") == 0) {
            if (have_nonip) { hnf_snprintf(err, errlen, "key 'nonip' is given twice; give it once"); return -1; }
            if (lower_eq(value, "pass")) r->pass_nonip = 1;
            else if (!lower_eq(value, "drop")) { hnf_snprintf(err, errlen, "nonip=%s is not valid; expected one of: drop, pass", value); return -1; }
            have_nonip = 1;
            items[i] = 0;
        } else if (strcmp(key, "route") == 0) {
            items[i] = value; /* second pass */
        } else if (strcmp(key, "routes") == 0) {
            hnf_snprintf(err, errlen, "routes=%s: a guest has no files; give the routes inline with route=", value);
            return -1;
        } else {
            hnf_snprintf(err, errlen, "unknown key '%s'; allowed keys: mac0, mac1, routes, route, nonip", key);
            return -1;
        }
    }
    for (int p = 0; p < 2; p++)
        if (!have_mac[p]) {
            hnf_snprintf(err, errlen, "mac%d= is required: the MAC address of router port %d, e.g. mac%d=02:00:00:00:00:0%d", p, p, p, p + 1);
            return -1;
        }
    for (int i = 0; i < n; i++) {
        if (items[i] == 0) continue;
        char *lines[HNF_ROUTER_MAX_ROUTES + 1];
        int m = hnf_split(items[i], ";", lines, HNF_ROUTER_MAX_ROUTES + 1);
        if (m < 0) { hnf_snprintf(err, errlen, "more than %d routes", HNF_ROUTER_MAX_ROUTES); return -1; }
        for (int k = 0; k < m; k++)
            if (parse_route(r, lines[k], (const uint8_t (*)[6])macs, err, errlen) < 0) return -1;
    }
    return 0;
}

const struct hnf_route *hnf_router_lookup(const struct hnf_router *r, uint32_t dst)
{
    const struct hnf_route *best = 0;
    for (int i = 0; i < r->nroutes; i++) {
        const struct hnf_route *rt = &r->routes[i];
        if ((dst & rt->mask) == rt->prefix && (best == 0 || rt->len > best->len)) best = rt;
    }
    return best;
}

enum hnf_verdict hnf_router_process(struct hnf_router *r, uint8_t *f, uint32_t len, int in_port)
{
    if (len < ETH_HLEN) { r->bad_header++; return HNF_DROP; }
    uint16_t type = hnf_be16(f + 12);
    uint32_t l3 = ETH_HLEN;
    if (type == ETH_P_VLAN) {
        if (len < ETH_HLEN + 4) { r->bad_header++; return HNF_DROP; }
        type = hnf_be16(f + 16);
        l3 = ETH_HLEN + 4;
    }
    if (type != ETH_P_IPV4) {
        r->non_ipv4++;
        return r->pass_nonip ? HNF_FORWARD : HNF_DROP;
    }
    uint8_t *ip = f + l3;
    uint32_t iplen = len - l3, ihl = (uint32_t)(ip[0] & 0x0F) * 4, total = iplen >= 4 ? hnf_be16(ip + 2) : 0;
    if (iplen < 20 || (ip[0] >> 4) != 4 || ihl < 20 || ihl > iplen || total > iplen || total < ihl ||
        hnf_csum_fold(hnf_csum_add(ip, ihl, 0)) != 0) {
        r->bad_header++;
        return HNF_DROP;
    }
    const struct hnf_route *rt = hnf_router_lookup(r, hnf_be32(ip + 16));
    if (rt == 0) { r->no_route++; return HNF_DROP; }
    if (ip[8] <= 1) { r->ttl_expired++; return HNF_DROP; }
    uint16_t old_word = hnf_be16(ip + 8);
    ip[8]--;
    hnf_put_be16(ip + 10, hnf_csum_update16(hnf_be16(ip + 10), old_word, hnf_be16(ip + 8)));
    memcpy(f, rt->rewrite, 12);
    r->routed++;
    return rt->port == in_port ? HNF_REFLECT : HNF_FORWARD;
}
