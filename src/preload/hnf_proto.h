/*
 * hnf_proto.h: the private protocol between libhypernf-netmap.so (untrusted, inside the
 * netmap program) and the HyperNF daemon (trusted). Mirrored in C# by
 * src/HyperNF/Netmap/ProcessProtocol.cs; docs/process-domains.md explains it.
 *
 * 1. The library connects to $HYPERNF_SOCKET and sends one JSON line
 *    {"op":"netmap_open","args":{...options...}}; the daemon answers one JSON line. From then
 *    on the connection carries the binary messages below (little-endian, fixed size).
 * 2. Every message is a struct hnf_msg_hdr followed by `len` bytes of body. File
 *    descriptors ride as SCM_RIGHTS on the header's sendmsg.
 * 3. The data path (TXSYNC/RXSYNC/poll's syncs) does not use the socket: it is a futex
 *    hand-off through the control page (struct hnf_ctl), a MAP_SHARED memfd page.
 */
#ifndef HYPERNF_PROTO_H
#define HYPERNF_PROTO_H

#include <stdint.h>

#define HNF_PROTO_VERSION 2
#define HNF_CTL_MAGIC 0x4c43464eu /* "NFCL" */

enum hnf_msg_type {
    HNF_MSG_REGISTER = 1,   /* body hnf_register_req, fd: the eventfd to signal; reply: hnf_register_rep, fds: region, control page */
    HNF_MSG_PORT_INFO = 2,  /* body hnf_info_req; reply hnf_info_rep (port info and pool layout) */
    HNF_MSG_VALE = 3,       /* body hnf_vale_req; reply hnf_vale_rep */
    HNF_MSG_REPLY = 0x80,   /* OR-ed with the request type */
};

struct hnf_msg_hdr {
    uint32_t type;
    uint32_t len;
};

struct hnf_register_req {           /* 96 bytes */
    char     name[64];
    uint32_t mode;                  /* NR_REG_* */
    uint32_t ringid;
    uint64_t flags;                 /* NR_* flags */
    uint32_t extra_bufs;
    uint32_t tx_slots, rx_slots;    /* requested; 0: default */
    uint16_t tx_rings, rx_rings;
};

struct hnf_register_rep {           /* 64 bytes */
    int32_t  error;                 /* 0 or a positive errno, as netmap returns */
    uint32_t extra_bufs;            /* granted */
    uint64_t offset;                /* netmap_if offset in the region */
    uint64_t memsize;
    uint32_t tx_slots, rx_slots;
    uint16_t tx_rings, rx_rings;
    uint16_t mem_id;
    uint16_t domain_id;
    uint32_t first_tx, last_tx;     /* bound rings (inclusive) */
    uint32_t first_rx, last_rx;
    uint32_t port_index;            /* on the bridge */
    uint32_t features;              /* HNF_FEAT_*; with HNF_FEAT_TX_KICK a third fd: the kick eventfd */
};

/*
 * HNF_FEAT_RX_SELF: the registration's RX rings are self-served. rxsync needs no hand-off:
 * the library stores the user's head into the ring's release word (our rxsync's release of
 * [old head, head)) and copies the publish word, which the senders advance as they deliver,
 * into tail. Both words sit in netmap_ring's sem area, which netmap reserves and programs
 * never touch, one cache line each. The host reads the release word when it needs room and
 * accepts it only inside [hwcur, hwtail]. Pipes' ends do not have it (their syncs move slots).
 */
#define HNF_FEAT_RX_SELF 1u   /* the words' offsets and the rxsync itself: guest/include/hnf_rxself.h */

/*
 * HNF_FEAT_TX_KICK (split/merge): TXSYNC is a kick, not a hand-off. The REGISTER reply carries a
 * third descriptor, an eventfd the port's backend thread waits on. The library publishes head,
 * issues a full fence, and writes the eventfd only if its TX ring's needs-kick word (in the
 * ring's sem area) is set; the backend sets the word in every TX ring of the port with a full
 * fence, then re-checks the rings before it sleeps: a VM's store to its ioeventfd address, done
 * by the program. The backend returns TX slots (tail) by itself and wakes a poll through the
 * eventfd E as it does for received frames. Registrations of one ring of a shared port (ONE_NIC)
 * share the port's backend and its eventfd.
 */
#define HNF_FEAT_TX_KICK 2u
#define HNF_RING_NEEDS_KICK_OFS 128   /* in a TX ring: sem[0..3] */

struct hnf_info_req {               /* 72 bytes */
    char     name[64];
    uint16_t mem_id;
    uint16_t pad[3];
};

struct hnf_info_rep {               /* 88 bytes */
    int32_t  error;
    uint16_t mem_id;
    uint16_t pad;
    uint64_t memsize;
    uint32_t tx_slots, rx_slots;
    uint16_t tx_rings, rx_rings;
    uint32_t pad2;
    uint64_t if_pool_offset;
    uint32_t if_pool_objtotal, if_pool_objsize;
    uint64_t ring_pool_offset;
    uint32_t ring_pool_objtotal, ring_pool_objsize;
    uint64_t buf_pool_offset;
    uint32_t buf_pool_objtotal, buf_pool_objsize;
    uint64_t pad3;
};

struct hnf_vale_req {               /* 80 bytes */
    uint16_t reqtype;               /* NETMAP_REQ_VALE_* or PORT_HDR_* */
    uint16_t bridge_idx;            /* VALE_LIST */
    uint32_t port_idx;              /* VALE_LIST */
    char     name[64];
    uint32_t hdr_len;               /* PORT_HDR_SET */
    uint32_t pad;
};

struct hnf_vale_rep {               /* 80 bytes */
    int32_t  error;
    uint16_t bridge_idx;            /* VALE_NEWIF: the new port's nr_mem_id */
    uint16_t pad;
    uint32_t port_idx;              /* VALE_NEWIF: slots per ring */
    uint32_t hdr_len;               /* PORT_HDR_GET/SET; VALE_NEWIF: rings per direction */
    char     name[64];
};

/*
 * The control page. The library writes the request words, the host the completion words;
 * each side only ever trusts what it wrote itself (the host reads op and cpu once and
 * validates them). Futexes on it are shared (not FUTEX_PRIVATE): two processes map it.
 */
enum hnf_op { HNF_OP_TXSYNC = 1, HNF_OP_RXSYNC = 2, HNF_OP_BOTH = 3 };

struct hnf_ctl {
    uint32_t magic;                 /* 0: written by the host */
    uint32_t version;               /* 4 */
    uint32_t pad0[14];
    /* 64: the request (library -> host) */
    uint32_t req_seq;               /* 64: the host futex-waits here */
    uint32_t op;                    /* 68: enum hnf_op */
    int32_t  cpu;                   /* 72: the caller's CPU (sched_getcpu) */
    uint32_t host_idle;             /* 76: set by the host before it sleeps on req_seq */
    uint32_t pad1[12];
    /* 128: the completion (host -> library) */
    uint32_t done_seq;              /* 128: the library futex-waits here */
    int32_t  result;                /* 132: 0 or -errno */
    uint32_t caller_waiting;        /* 136: set by the library before it sleeps on done_seq */
    uint32_t pad2[13];
    /* 192: RX notification */
    uint32_t rx_waiting;            /* 192: set by the library before it blocks on its eventfd;
                                       the host clears it and writes the eventfd */
    uint32_t pad3[15];
};

_Static_assert(sizeof(struct hnf_register_req) == 96, "hnf_register_req");
_Static_assert(sizeof(struct hnf_register_rep) == 64, "hnf_register_rep");
_Static_assert(sizeof(struct hnf_info_req) == 72, "hnf_info_req");
_Static_assert(sizeof(struct hnf_info_rep) == 88, "hnf_info_rep");
_Static_assert(sizeof(struct hnf_vale_req) == 80, "hnf_vale_req");
_Static_assert(sizeof(struct hnf_vale_rep) == 80, "hnf_vale_rep");
_Static_assert(sizeof(struct hnf_ctl) == 256, "hnf_ctl");

#define HNF_CTL_REQ_SEQ 64
#define HNF_CTL_DONE_SEQ 128
#define HNF_CTL_RX_WAITING 192

#endif /* HYPERNF_PROTO_H */
