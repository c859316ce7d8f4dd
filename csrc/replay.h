/* replay.h — anti-replay window (RFC 6479 ring of 64-bit blocks) with 64-bit sequence
 * numbers, and ESN reconstruction (RFC 4303 Appendix A3).
 *
 *   ef_replay_check()   read-only, before decryption
 *   ef_replay_update()  after the ICV verified; re-checks, so a racing duplicate loses
 *
 * Sequence number 0 is never valid (RFC 4303 §3.3.3: the first packet sent is 1).
 */
#ifndef EF_REPLAY_H
#define EF_REPLAY_H

#include <stdint.h>

#define EF_REPLAY_WINDOW_MAX 65536u

enum ef_replay_result {
	EF_REPLAY_OK = 0,
	EF_REPLAY_TOO_OLD = 1, /* left of the window (or unrepresentable ESN) */
	EF_REPLAY_SEEN = 2,    /* inside the window, already received */
};

struct ef_replay {
	uint64_t top;      /* highest authenticated sequence number (0: none yet) */
	uint32_t window;   /* accepted: top - window < seq */
	uint32_t mask;     /* nblocks - 1; nblocks is a power of two */
	uint64_t *bitmap;  /* nblocks 64-bit blocks; bit (seq & 63) of block (seq >> 6) */
};

/* 0 on success, -1 if window is 0 or above EF_REPLAY_WINDOW_MAX or on no memory. */
int ef_replay_init(struct ef_replay *r, uint32_t window);
void ef_replay_free(struct ef_replay *r);

/* The full 64-bit number for a received low half (RFC 4303 A3). Returns 0 (invalid)
 * when the guess would fall below 0 or above 2^64 - 1. */
uint64_t ef_replay_esn(const struct ef_replay *r, uint32_t seq_lo);

/* Start above a floor: every sequence number up to and including `floor` counts as
 * already received (a restarted receiver must not accept again what it accepted before:
 * the floor is its last persisted top). Only on a fresh window. */
void ef_replay_set_floor(struct ef_replay *r, uint64_t floor);

enum ef_replay_result ef_replay_check(const struct ef_replay *r, uint64_t seq);
enum ef_replay_result ef_replay_update(struct ef_replay *r, uint64_t seq);

#endif
