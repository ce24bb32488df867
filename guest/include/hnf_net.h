/*
 * hnf_net.h: packets for guest NFs (guest/lib/net.c): Internet checksums, the pkt-gen
 * frame format of the C# pkt-gen (src/HyperNF/Tools/PacketFormat.cs, byte for byte),
 * and the receiver's loss/reordering tracker and latency histogram (the same algorithms
 * as SequenceTracker.cs and LatencyHistogram.cs, so both report the same figures).
 */
#ifndef HNF_NET_H
#define HNF_NET_H

#include "hnf.h"

#define ETH_HLEN 14
#define ETH_P_IPV4 0x0800
#define ETH_P_VLAN 0x8100
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

/* RFC 1071 over data (big-endian 16-bit words, odd tail padded), added to sum; fold with
 * hnf_csum_fold. A header is valid when the folded sum over it (checksum included) is 0. */
uint64_t hnf_csum_add(const void *data, size_t len, uint64_t sum);
uint16_t hnf_csum_fold(uint64_t sum); /* ~(folded sum) */
/* RFC 1624 incremental update: checksum after a 16-bit word changes from old to new. */
uint16_t hnf_csum_update16(uint16_t csum, uint16_t old_word, uint16_t new_word);

/* ---- pkt-gen frames: Ethernet, IPv4 (DF, TTL 64), UDP (checksum 0), then magic (16 bits),
 * sequence (64) and send timestamp (64, CLOCK_MONOTONIC ns), all big-endian; the rest of
 * the first buffer is zero. 60 bytes minimum. ---- */
#define PKT_MIN_LEN 60
#define PKT_IP_OFS 14
#define PKT_UDP_OFS 34
#define PKT_MAGIC_OFS 42
#define PKT_SEQ_OFS 44
#define PKT_TS_OFS 52
#define PKT_MAGIC 0x4847 /* "HG" */

/* Writes the headers of a frame_len-byte frame into buf (first_len bytes: the first
 * fragment) and zeroes the rest of it. Sequence and timestamp are 0 until stamped. */
void hnf_pkt_write(uint8_t *buf, uint32_t first_len, uint32_t frame_len, const uint8_t dst[6], const uint8_t src[6],
                   uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port);
/* Addresses and ports, with the IPv4 header checksum recomputed. */
void hnf_pkt_set_endpoints(uint8_t *frame, uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port);
static inline void hnf_pkt_stamp(uint8_t *frame, uint64_t seq, uint64_t ts_ns)
{
    hnf_put_be64(frame + PKT_SEQ_OFS, seq);
    hnf_put_be64(frame + PKT_TS_OFS, ts_ns);
}

/* The C# pkt-gen's default source MAC for a port name (at most n bytes, NUL-terminated
 * or not): 02:00 and the FNV-1a hash of the name, low byte first. */
void hnf_pkt_default_mac(const char *name, size_t n, uint8_t mac[6]);

/* What a receiver makes of a frame (first fragment: first_len bytes; whole frame: frame_len). */
enum hnf_pkt_status {
    PKT_OK = 0,      /* ours, consistent: seq and ts are valid */
    PKT_FOREIGN = 1, /* not a pkt-gen frame (no IPv4/UDP shape or no magic) */
    PKT_BAD = 2,     /* has the magic but a wrong IPv4 checksum, inconsistent lengths or a non-zero pad */
};
enum hnf_pkt_status hnf_pkt_check(const uint8_t *frame, uint32_t first_len, uint32_t frame_len, uint64_t *seq, int64_t *ts);

/* ---- loss and reordering (SequenceTracker.cs) ---- */
#define HNF_SEQ_WINDOW_BITS 16
#define HNF_SEQ_WINDOW (1ull << HNF_SEQ_WINDOW_BITS)
struct hnf_seq {
    uint64_t seen[HNF_SEQ_WINDOW / 64];
    int started;
    uint64_t lowest, highest;
    int64_t distinct, reordered, duplicates;
};
void hnf_seq_reset(struct hnf_seq *t);
void hnf_seq_add(struct hnf_seq *t, uint64_t seq);
int64_t hnf_seq_lost(const struct hnf_seq *t);

/* ---- latency histogram (LatencyHistogram.cs: exact below 256 ns, then 128 buckets per
 * power of two, within 0.8 %) ---- */
#define HNF_HIST_SUB_BITS 7
#define HNF_HIST_BUCKETS (((62 - HNF_HIST_SUB_BITS + 1) << HNF_HIST_SUB_BITS) + (1 << HNF_HIST_SUB_BITS))
struct hnf_hist {
    uint64_t counts[HNF_HIST_BUCKETS];
    uint64_t count, min, max, sum;
};
void hnf_hist_reset(struct hnf_hist *h);
void hnf_hist_record(struct hnf_hist *h, int64_t ns);
/* The value at or below which per_mille / 1000 of the values lie (bucket top, clamped to
 * [min, max]); 0 when empty. 500 = p50, 990 = p99, 999 = p99.9. */
uint64_t hnf_hist_percentile(const struct hnf_hist *h, uint32_t per_mille);

#endif /* HNF_NET_H */
