/*
 * hnf_router.h: the "router" NF's core (guest/lib/router.c), the same semantics as
 * src/HyperNF/Functions/Router.cs: longest-prefix match on the IPv4 destination, next-hop
 * and output-port MACs written into the Ethernet header, TTL decremented with an RFC 1624
 * checksum update; drops counted as no_route, ttl_expired (TTL 0 or 1 on arrival),
 * bad_header (malformed IPv4 or a wrong header checksum) and non_ipv4 (unless nonip=pass).
 *
 * Arguments (the domain's nf_args, comma-separated key=value, keys case-insensitive):
 *   mac0=MAC mac1=MAC            the router's own port addresses (required)
 *   route=PREFIX via MAC port N  repeatable; several in one value separated by ';'
 *   nonip=drop|pass              frames that are not IPv4 (default drop)
 * (routes=PATH is refused: a guest has no files; use route=.)
 */
#ifndef HNF_ROUTER_H
#define HNF_ROUTER_H

#include "hnf_bump.h"

#define HNF_ROUTER_MAX_ROUTES 256

struct hnf_route {
    uint32_t prefix, mask;
    int len, port;
    uint8_t rewrite[12]; /* next-hop MAC, then the output port's MAC */
};

struct hnf_router {
    struct hnf_route routes[HNF_ROUTER_MAX_ROUTES];
    int nroutes;
    int pass_nonip;
    uint64_t routed, no_route, ttl_expired, bad_header, non_ipv4;
};

/* Parses args (modified in place). 0 on success; -1 with a message in err. */
int hnf_router_init(struct hnf_router *r, char *args, char *err, size_t errlen);
/* The route for dst, or NULL. */
const struct hnf_route *hnf_router_lookup(const struct hnf_router *r, uint32_t dst);
/* One frame (first fragment, len bytes) arriving on in_port. */
enum hnf_verdict hnf_router_process(struct hnf_router *r, uint8_t *frame, uint32_t len, int in_port);

#endif
