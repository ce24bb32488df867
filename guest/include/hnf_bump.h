/*
 * hnf_bump.h: the bump-in-the-wire loop of guest NFs (guest/lib/bump.c), the C twin of
 * src/HyperNF/Hypervisor/BumpInTheWire.cs. Frames that arrive on port 0 go to the NF and
 * out of port 1, and the other way round, zero-copy: the RX slot's buffer is swapped into
 * the TX slot (NS_BUF_CHANGED on both). A MOREFRAG chain is one frame (the NF sees its
 * first fragment and the total length). With one port, frames go back out of it.
 */
#ifndef HNF_BUMP_H
#define HNF_BUMP_H

#include "hnf.h"

enum hnf_verdict { HNF_FORWARD = 0, HNF_DROP = 1, HNF_REFLECT = 2 };

/* frame: the first fragment (first_len bytes, writable); frame_len: the whole chain. */
typedef enum hnf_verdict (*hnf_nf_fn)(void *ctx, uint8_t *frame, uint32_t first_len, uint32_t frame_len, int in_port);

struct hnf_bump_stats {
    uint64_t forwarded[2];    /* by input port */
    uint64_t dropped;         /* NF verdict drop */
    uint64_t reflected;
    uint64_t reflect_no_room; /* reflect verdicts the input port's TX ring had no room for (dropped) */
    uint64_t batches;
    uint64_t frames;          /* all frames handed to the NF */
};

struct hnf_bump_opts {
    const char *name;    /* prefix of console lines */
    uint64_t count;      /* return after this many frames (0: run until the domain is destroyed) */
    uint64_t report_ns;  /* a stats line this often (0: none) */
    void (*report)(void *ctx); /* NF counters, printed after the stats line and at the end */
};

/* Runs the loop; returns 0 after opts->count frames, or 2 when the ports are unusable
 * (the reason is printed). */
int hnf_bump_run(hnf_nf_fn fn, void *ctx, const struct hnf_bump_opts *opts, struct hnf_bump_stats *st);

/* "NAME: frames=N forwarded_0_to_1=N forwarded_1_to_0=N dropped=N reflected=N reflect_no_room=N batches=N" */
void hnf_bump_print(const char *name, const struct hnf_bump_stats *st);

#endif
