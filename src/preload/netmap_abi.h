/*
 * netmap_abi.h: the user-visible ABI of netmap API 14 (struct layouts, ioctl numbers,
 * flags and the helper macros of netmap_user.h), written for HyperNF from netmap's
 * published ABI. Programs built against netmap's own headers see the same bytes; our test
 * programs include this file instead of <net/netmap_user.h>. Offsets are checked by
 * tests/native/nm_offsets.c against src/HyperNF/Netmap/NetmapAbi.cs (NetmapAbiTests).
 */
#ifndef HYPERNF_NETMAP_ABI_H
#define HYPERNF_NETMAP_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <sys/types.h>

#define NETMAP_API      14
#define NETMAP_MIN_API  14
#define NETMAP_MAX_API  15
#define NM_IFNAMSZ      16          /* IFNAMSIZ: netmap_if.ni_name and nmreq.nr_name */
#define NETMAP_REQ_IFNAMSIZ 64      /* nmreq_header.nr_name */

/* ---- shared-memory structures ---- */

struct netmap_slot {                /* 16 bytes */
    uint32_t buf_idx;               /* 0 */
    uint16_t len;                   /* 4 */
    uint16_t flags;                 /* 6 */
    uint64_t ptr;                   /* 8 */
};

#define NS_BUF_CHANGED  0x0001
#define NS_REPORT       0x0002
#define NS_FORWARD      0x0004
#define NS_NO_LEARN     0x0008
#define NS_INDIRECT     0x0010
#define NS_MOREFRAG     0x0020
#define NS_PORT_SHIFT   8
#define NS_PORT_MASK    (0xff << NS_PORT_SHIFT)
#define NS_RFRAGS(s)    ((((s)->flags) >> 8) & 0xff)
#define NETMAP_MAX_FRAGS 64

struct netmap_ring {                /* header: 256 bytes, then the slots */
    const int64_t  buf_ofs;         /* 0: buffer 0 relative to this ring */
    const uint32_t num_slots;       /* 8 */
    const uint32_t nr_buf_size;     /* 12 */
    const uint16_t ringid;          /* 16 */
    const uint16_t dir;             /* 18: 0 tx, 1 rx */
    uint32_t head;                  /* 20 */
    uint32_t cur;                   /* 24 */
    uint32_t tail;                  /* 28 */
    uint32_t flags;                 /* 32 */
    struct timeval ts;              /* 40 */
    const uint64_t offset_mask;     /* 56: 0, buffer offsets are not used */
    const uint64_t buf_align;       /* 64 */
    uint8_t sem[128] __attribute__((aligned(128)));  /* 128 */
    struct netmap_slot slot[];      /* 256 */
};

#define NR_TIMESTAMP    0x0002
#define NR_FORWARD      0x0004

struct netmap_if {
    char           ni_name[NM_IFNAMSZ];  /* 0 */
    const uint32_t ni_version;           /* 16 */
    const uint32_t ni_flags;             /* 20 */
    const uint32_t ni_tx_rings;          /* 24 */
    const uint32_t ni_rx_rings;          /* 28 */
    uint32_t       ni_bufs_head;         /* 32 */
    const uint32_t ni_host_tx_rings;     /* 36 */
    const uint32_t ni_host_rx_rings;     /* 40 */
    uint32_t       ni_spare1[3];         /* 44 */
    const ssize_t  ring_ofs[];           /* 56: tx rings, host tx, rx rings, host rx */
};
#define NI_PRIV_MEM 0x1

/* ---- control requests (NIOCCTRL) ---- */

struct nmreq_header {                    /* 88 bytes */
    uint16_t nr_version;                 /* 0 */
    uint16_t nr_reqtype;                 /* 2 */
    uint32_t nr_reserved;                /* 4 */
    char     nr_name[NETMAP_REQ_IFNAMSIZ]; /* 8 */
    uint64_t nr_options;                 /* 72 */
    uint64_t nr_body;                    /* 80 */
};

enum {
    NETMAP_REQ_REGISTER = 1,
    NETMAP_REQ_PORT_INFO_GET,
    NETMAP_REQ_VALE_ATTACH,
    NETMAP_REQ_VALE_DETACH,
    NETMAP_REQ_VALE_LIST,
    NETMAP_REQ_PORT_HDR_SET,
    NETMAP_REQ_PORT_HDR_GET,
    NETMAP_REQ_VALE_NEWIF,
    NETMAP_REQ_VALE_DELIF,
    NETMAP_REQ_VALE_POLLING_ENABLE,
    NETMAP_REQ_VALE_POLLING_DISABLE,
    NETMAP_REQ_POOLS_INFO_GET,
    NETMAP_REQ_SYNC_KLOOP_START,
    NETMAP_REQ_SYNC_KLOOP_STOP,
    NETMAP_REQ_CSB_ENABLE,
};

struct nmreq_option {
    uint64_t nro_next;
    uint32_t nro_reqtype;
    uint32_t nro_status;
    uint64_t nro_size;
};

struct nmreq_register {                  /* 56 bytes */
    uint64_t nr_offset;                  /* 0 */
    uint64_t nr_memsize;                 /* 8 */
    uint32_t nr_tx_slots;                /* 16 */
    uint32_t nr_rx_slots;                /* 20 */
    uint16_t nr_tx_rings;                /* 24 */
    uint16_t nr_rx_rings;                /* 26 */
    uint16_t nr_host_tx_rings;           /* 28 */
    uint16_t nr_host_rx_rings;           /* 30 */
    uint16_t nr_mem_id;                  /* 32 */
    uint16_t nr_ringid;                  /* 34 */
    uint32_t nr_mode;                    /* 36 */
    uint32_t nr_extra_bufs;              /* 40 */
    uint64_t nr_flags;                   /* 48 */
};
#define NR_MONITOR_TX       0x100
#define NR_MONITOR_RX       0x200
#define NR_ZCOPY_MON        0x400
#define NR_EXCLUSIVE        0x800
#define NR_RX_RINGS_ONLY    0x2000
#define NR_TX_RINGS_ONLY    0x4000
#define NR_ACCEPT_VNET_HDR  0x8000
#define NR_DO_RX_POLL       0x10000
#define NR_NO_TX_POLL       0x20000

enum {
    NR_REG_DEFAULT = 0, NR_REG_ALL_NIC = 1, NR_REG_SW = 2, NR_REG_NIC_SW = 3, NR_REG_ONE_NIC = 4,
    NR_REG_PIPE_MASTER = 5, NR_REG_PIPE_SLAVE = 6, NR_REG_NULL = 7, NR_REG_ONE_SW = 8,
};

struct nmreq_port_info_get {             /* 32 bytes */
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t pad[3];
};

struct nmreq_vale_attach { struct nmreq_register reg; uint32_t port_index; uint32_t pad1; };
struct nmreq_vale_detach { uint32_t port_index; uint32_t pad1; };
struct nmreq_vale_list { uint16_t nr_bridge_idx; uint16_t pad1; uint32_t nr_port_idx; };
struct nmreq_port_hdr { uint32_t nr_hdr_len; uint32_t pad1; };
struct nmreq_vale_newif {
    uint32_t nr_tx_slots; uint32_t nr_rx_slots; uint16_t nr_tx_rings; uint16_t nr_rx_rings;
    uint16_t nr_mem_id; uint16_t pad1;
};
struct nmreq_pools_info {                /* 64 bytes */
    uint64_t nr_memsize;
    uint16_t nr_mem_id;
    uint16_t pad1[3];
    uint64_t nr_if_pool_offset;
    uint32_t nr_if_pool_objtotal;
    uint32_t nr_if_pool_objsize;
    uint64_t nr_ring_pool_offset;
    uint32_t nr_ring_pool_objtotal;
    uint32_t nr_ring_pool_objsize;
    uint64_t nr_buf_pool_offset;
    uint32_t nr_buf_pool_objtotal;
    uint32_t nr_buf_pool_objsize;
};

/* ---- the legacy request (NIOCGINFO, NIOCREGIF) ---- */

struct nmreq {                           /* 60 bytes */
    char     nr_name[NM_IFNAMSZ];        /* 0 */
    uint32_t nr_version;                 /* 16 */
    uint32_t nr_offset;                  /* 20 */
    uint32_t nr_memsize;                 /* 24 */
    uint32_t nr_tx_slots;                /* 28 */
    uint32_t nr_rx_slots;                /* 32 */
    uint16_t nr_tx_rings;                /* 36 */
    uint16_t nr_rx_rings;                /* 38 */
    uint16_t nr_ringid;                  /* 40 */
    uint16_t nr_cmd;                     /* 42 */
    uint16_t nr_arg1;                    /* 44 */
    uint16_t nr_arg2;                    /* 46: memory allocator id */
    uint32_t nr_arg3;                    /* 48: extra buffers */
    uint32_t nr_flags;                   /* 52: NR_REG_* in the low 4 bits */
    uint32_t spare2[1];                  /* 56 */
};
#define NETMAP_HW_RING      0x4000
#define NETMAP_SW_RING      0x2000
#define NETMAP_RING_MASK    0x0fff
#define NETMAP_NO_TX_POLL   0x1000
#define NETMAP_DO_RX_POLL   0x8000
#define NR_REG_MASK         0xf
#define NETMAP_BDG_ATTACH   1
#define NETMAP_BDG_HOST 1 /* nr_arg1 of NETMAP_BDG_ATTACH: the host stack too (vale-ctl -h) */
#define NETMAP_BDG_DETACH   2
#define NETMAP_BDG_LIST     4
#define NETMAP_BDG_VNET_HDR 5   /* legacy PORT_HDR_SET, length in nr_arg1 */
#define NETMAP_BDG_NEWIF    6
#define NETMAP_BDG_DELIF    7
#define NETMAP_VNET_HDR_GET 12  /* legacy PORT_HDR_GET, length back in nr_arg1 */

/* ---- ioctl numbers ---- */

#define NIOCGINFO   _IOWR('i', 145, struct nmreq)
#define NIOCREGIF   _IOWR('i', 146, struct nmreq)
#define NIOCTXSYNC  _IO('i', 148)
#define NIOCRXSYNC  _IO('i', 149)
#define NIOCCTRL    _IOWR('i', 151, struct nmreq_header)

/* ---- netmap_user.h's helpers ---- */

#define NETMAP_IF(base, ofs)        ((struct netmap_if *)(void *)((char *)(base) + (ofs)))
#define NETMAP_TXRING(nifp, i)      ((struct netmap_ring *)(void *)((char *)(nifp) + (nifp)->ring_ofs[i]))
#define NETMAP_RXRING(nifp, i)      ((struct netmap_ring *)(void *)((char *)(nifp) + \
                                     (nifp)->ring_ofs[(i) + (nifp)->ni_tx_rings + (nifp)->ni_host_tx_rings]))
#define NETMAP_BUF(ring, index)     ((char *)(ring) + (ring)->buf_ofs + ((size_t)(index) * (ring)->nr_buf_size))
#define NETMAP_BUF_IDX(ring, buf)   ((((char *)(buf)) - ((char *)(ring) + (ring)->buf_ofs)) / (ring)->nr_buf_size)

static inline uint32_t nm_ring_next(struct netmap_ring *r, uint32_t i)
{
    return i + 1 == r->num_slots ? 0 : i + 1;
}

static inline uint32_t nm_ring_space(struct netmap_ring *r)
{
    int n = (int)r->tail - (int)r->cur;
    return (uint32_t)(n < 0 ? n + (int)r->num_slots : n);
}

static inline int nm_ring_empty(struct netmap_ring *r)
{
    return r->head == r->tail;
}

static inline int nm_tx_pending(struct netmap_ring *r)
{
    return nm_ring_next(r, r->tail) != r->head;
}

#endif /* HYPERNF_NETMAP_ABI_H */
