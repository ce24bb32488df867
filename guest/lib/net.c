/* Checksums, the pkt-gen frame format, the sequence tracker and the latency histogram
 * (declared and explained in hnf_net.h). Shared by the guest and the host tests. */
#include "hnf_net.h"

uint64_t hnf_csum_add(const void *data, size_t len, uint64_t sum)
{
    const uint8_t *p = data;
    size_t i = 0;
    for (; i + 2 <= len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (i < len) sum += (uint32_t)p[i] << 8;
    return sum;
}

uint16_t hnf_csum_fold(uint64_t sum)
{
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

uint16_t hnf_csum_update16(uint16_t csum, uint16_t old_word, uint16_t new_word)
{
    /* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') */
    uint64_t sum = (uint16_t)~csum + (uint64_t)(uint16_t)~old_word + new_word;
    return hnf_csum_fold(sum);
}

void hnf_pkt_set_endpoints(uint8_t *frame, uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port)
{
    uint8_t *ip = frame + PKT_IP_OFS;
    hnf_put_be32(ip + 12, src_ip);
    hnf_put_be32(ip + 16, dst_ip);
    hnf_put_be16(frame + PKT_UDP_OFS, src_port);
    hnf_put_be16(frame + PKT_UDP_OFS + 2, dst_port);
    ip[10] = ip[11] = 0;
    hnf_put_be16(ip + 10, hnf_csum_fold(hnf_csum_add(ip, 20, 0)));
}

void hnf_pkt_write(uint8_t *buf, uint32_t first_len, uint32_t frame_len, const uint8_t dst[6], const uint8_t src[6],
                   uint32_t src_ip, uint16_t src_port, uint32_t dst_ip, uint16_t dst_port)
{
    memset(buf, 0, first_len);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    hnf_put_be16(buf + 12, ETH_P_IPV4);
    uint8_t *ip = buf + PKT_IP_OFS;
    ip[0] = 0x45;
    hnf_put_be16(ip + 2, (uint16_t)(frame_len - ETH_HLEN));
    hnf_put_be16(ip + 6, 0x4000); /* DF */
    ip[8] = 64;
    ip[9] = IPPROTO_UDP_;
    hnf_put_be16(buf + PKT_UDP_OFS + 4, (uint16_t)(frame_len - PKT_UDP_OFS));
    hnf_put_be16(buf + PKT_MAGIC_OFS, PKT_MAGIC);
    hnf_pkt_set_endpoints(buf, src_ip, src_port, dst_ip, dst_port);
}

void hnf_pkt_default_mac(const char *name, size_t n, uint8_t mac[6])
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n && name[i]; i++) h = (h ^ (uint8_t)name[i]) * 16777619u;
    mac[0] = 0x02;
    mac[1] = 0x00;
    mac[2] = (uint8_t)h;
    mac[3] = (uint8_t)(h >> 8);
    mac[4] = (uint8_t)(h >> 16);
    mac[5] = (uint8_t)(h >> 24);
}

enum hnf_pkt_status hnf_pkt_check(const uint8_t *f, uint32_t first_len, uint32_t frame_len, uint64_t *seq, int64_t *ts)
{
    /* The shape PacketFormat.TryRead requires. */
    if (first_len < PKT_MIN_LEN || hnf_be16(f + 12) != ETH_P_IPV4 || f[PKT_IP_OFS] != 0x45 ||
        f[PKT_IP_OFS + 9] != IPPROTO_UDP_ || hnf_be16(f + PKT_MAGIC_OFS) != PKT_MAGIC)
        return PKT_FOREIGN;
    *seq = hnf_be64(f + PKT_SEQ_OFS);
    *ts = (int64_t)hnf_be64(f + PKT_TS_OFS);
    /* Beyond it: what the sender wrote must have arrived intact. */
    if (hnf_csum_fold(hnf_csum_add(f + PKT_IP_OFS, 20, 0)) != 0) return PKT_BAD;
    if (hnf_be16(f + PKT_IP_OFS + 2) + (uint32_t)ETH_HLEN != frame_len) return PKT_BAD;
    if (hnf_be16(f + PKT_UDP_OFS + 4) + (uint32_t)PKT_UDP_OFS != frame_len) return PKT_BAD;
    for (uint32_t i = PKT_MIN_LEN; i < first_len; i++)
        if (f[i] != 0) return PKT_BAD;
    return PKT_OK;
}

/* ---- sequence tracker ---- */

#define SEQ_MASK (HNF_SEQ_WINDOW - 1)

static int seq_isset(const struct hnf_seq *t, uint64_t s) { return (t->seen[(s & SEQ_MASK) >> 6] >> (s & 63)) & 1; }
static void seq_set(struct hnf_seq *t, uint64_t s) { t->seen[(s & SEQ_MASK) >> 6] |= 1ull << (s & 63); }

static void seq_clear(struct hnf_seq *t, uint64_t from, uint64_t count)
{
    if (count >= HNF_SEQ_WINDOW) {
        memset(t->seen, 0, sizeof t->seen);
        return;
    }
    uint64_t i = from & SEQ_MASK;
    while (count > 0) {
        if ((i & 63) == 0 && count >= 64) {
            t->seen[i >> 6] = 0;
            i = (i + 64) & SEQ_MASK;
            count -= 64;
            continue;
        }
        t->seen[i >> 6] &= ~(1ull << (i & 63));
        i = (i + 1) & SEQ_MASK;
        count--;
    }
}

void hnf_seq_reset(struct hnf_seq *t) { memset(t, 0, sizeof *t); }

void hnf_seq_add(struct hnf_seq *t, uint64_t s)
{
    if (!t->started) {
        t->started = 1;
        t->lowest = t->highest = s;
        seq_set(t, s);
        t->distinct = 1;
        return;
    }
    if (s > t->highest) {
        seq_clear(t, t->highest + 1, s - t->highest);
        seq_set(t, s);
        t->highest = s;
        t->distinct++;
        return;
    }
    if (t->highest - s < HNF_SEQ_WINDOW) {
        if (seq_isset(t, s)) {
            t->duplicates++;
            return;
        }
        seq_set(t, s);
    }
    t->distinct++;
    t->reordered++;
    if (s < t->lowest) t->lowest = s;
}

int64_t hnf_seq_lost(const struct hnf_seq *t)
{
    if (!t->started) return 0;
    int64_t span = (int64_t)(t->highest - t->lowest + 1);
    return span > t->distinct ? span - t->distinct : 0;
}

/* ---- histogram ---- */

#define LINEAR_LIMIT (2 << HNF_HIST_SUB_BITS)

static int log2_u64(uint64_t v) { return 63 - __builtin_clzll(v); }

static uint32_t hist_index(uint64_t v)
{
    if (v < LINEAR_LIMIT) return (uint32_t)v;
    int e = log2_u64(v);
    int shift = e - HNF_HIST_SUB_BITS;
    return ((uint32_t)(e - HNF_HIST_SUB_BITS + 1) << HNF_HIST_SUB_BITS) + (uint32_t)((v >> shift) - (1u << HNF_HIST_SUB_BITS));
}

static uint64_t hist_highest(uint32_t index)
{
    if (index < LINEAR_LIMIT) return index;
    int e = (int)(index >> HNF_HIST_SUB_BITS) + HNF_HIST_SUB_BITS - 1;
    uint64_t sub = (index & ((1u << HNF_HIST_SUB_BITS) - 1)) + (1u << HNF_HIST_SUB_BITS);
    return ((sub + 1) << (e - HNF_HIST_SUB_BITS)) - 1;
}

void hnf_hist_reset(struct hnf_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hnf_hist_record(struct hnf_hist *h, int64_t ns)
{
    uint64_t v = ns < 0 ? 0 : (uint64_t)ns; /* a clock that went backwards counts as 0 */
    h->counts[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

uint64_t hnf_hist_percentile(const struct hnf_hist *h, uint32_t per_mille)
{
    if (h->count == 0) return 0;
    if (per_mille > 1000) per_mille = 1000;
    uint64_t target = (h->count * per_mille + 999) / 1000; /* ceil */
    if (target == 0) target = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HNF_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= target) {
            uint64_t v = hist_highest(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}
