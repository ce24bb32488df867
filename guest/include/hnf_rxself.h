/*
 * hnf_rxself.h: rxsync of a self-served RX ring, the one copy of the rule shared by the guest
 * SDK (guest/lib/runtime.c, guest ABI 3) and the preload library (src/preload, protocol 2).
 * Freestanding: stdint only, and the netmap_ring offsets (facts of netmap's API 14) instead of
 * either side's struct, so both can include it.
 *
 * The ring's sem area holds two words: the release word (the user's head at its last rxsync)
 * and the publish word (advanced by the host's senders). rxsync releases what the user consumed
 * (release := head) and shows what was delivered (tail := publish). As netmap's rxsync prologue,
 * a head or cur outside [last release, tail] puts the ring back at the last release instead
 * (netmap_ring_reinit). The host checks the release word again on its side; this code only
 * keeps an honest program's ring consistent.
 */
#ifndef HNF_RXSELF_H
#define HNF_RXSELF_H

#include <stdint.h>

#define HNF_RING_NUM_SLOTS_OFS 8
#define HNF_RING_HEAD_OFS 20
#define HNF_RING_CUR_OFS 24
#define HNF_RING_TAIL_OFS 28
#define HNF_RING_RELEASE_OFS 128   /* sem[0..3] */
#define HNF_RING_PUBLISH_OFS 192   /* sem[64..67] */

static inline uint32_t hnf_ring_dist(uint32_t from, uint32_t to, uint32_t ns)
{
    return to >= from ? to - from : to + ns - from;
}

static inline void hnf_rxsync_self(void *ring)
{
    char *r = (char *)ring;
    uint32_t *head = (uint32_t *)(r + HNF_RING_HEAD_OFS), *cur = (uint32_t *)(r + HNF_RING_CUR_OFS);
    uint32_t *tail = (uint32_t *)(r + HNF_RING_TAIL_OFS);
    uint32_t *rel = (uint32_t *)(r + HNF_RING_RELEASE_OFS), *pub = (uint32_t *)(r + HNF_RING_PUBLISH_OFS);
    uint32_t ns = *(const uint32_t *)(r + HNF_RING_NUM_SLOTS_OFS);
    uint32_t h = __atomic_load_n(head, __ATOMIC_RELAXED), c = __atomic_load_n(cur, __ATOMIC_RELAXED);
    uint32_t t = __atomic_load_n(tail, __ATOMIC_RELAXED), old = __atomic_load_n(rel, __ATOMIC_RELAXED);
    uint32_t span = hnf_ring_dist(old, t, ns), dh = hnf_ring_dist(old, h, ns), dc = hnf_ring_dist(old, c, ns);
    if (h >= ns || c >= ns || old >= ns || span >= ns || dh > span || dc < dh || dc > span) {
        uint32_t back = old < ns ? old : 0;
        __atomic_store_n(head, back, __ATOMIC_RELAXED);
        __atomic_store_n(cur, back, __ATOMIC_RELAXED);
    } else if (h != old) {
        __atomic_store_n(rel, h, __ATOMIC_RELEASE); /* our reads of the released slots come first */
    }
    /* seq_cst: ordered after a poll's store of its waiting flag (the host's side is a full fence) */
    __atomic_store_n(tail, __atomic_load_n(pub, __ATOMIC_SEQ_CST), __ATOMIC_RELEASE);
}

#endif /* HNF_RXSELF_H */
