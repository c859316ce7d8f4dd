/* replay.c — RFC 6479 anti-replay ring; see replay.h. */
#include "replay.h"

#include <stdlib.h>

int ef_replay_init(struct ef_replay *r, uint32_t window)
{
	uint32_t need, n = 1;

	r->bitmap = NULL;
	if (window == 0 || window > EF_REPLAY_WINDOW_MAX)
		return -1;
	/* The window spans at most (window - 1) / 64 + 2 blocks; the ring needs one more
	 * so that the block being cleared for a new top never holds a live bit. */
	need = (window - 1) / 64 + 2;
	while (n < need)
		n <<= 1;
	r->bitmap = calloc(n, sizeof(uint64_t));
	if (!r->bitmap)
		return -1;
	r->top = 0;
	r->window = window;
	r->mask = n - 1;
	return 0;
}

void ef_replay_free(struct ef_replay *r)
{
	free(r->bitmap);
	r->bitmap = NULL;
}

uint64_t ef_replay_esn(const struct ef_replay *r, uint32_t seq_lo)
{
	uint32_t th = (uint32_t)(r->top >> 32), tl = (uint32_t)r->top;
	uint32_t bottom = tl - r->window + 1; /* modulo 2^32 on purpose */
	uint32_t sh;

	if (tl >= r->window - 1) {
		/* Window within one 2^32 epoch: below it means the next epoch. */
		if (seq_lo >= bottom) {
			sh = th;
		} else {
			if (th == UINT32_MAX)
				return 0;
			sh = th + 1;
		}
	} else {
		/* Window straddles the epoch boundary: high numbers belong to the old one. */
		if (seq_lo >= bottom) {
			if (th == 0)
				return 0;
			sh = th - 1;
		} else {
			sh = th;
		}
	}
	return (uint64_t)sh << 32 | seq_lo;
}

void ef_replay_set_floor(struct ef_replay *r, uint64_t floor)
{
	/* Every block of the ring holds numbers at or below the floor (the older blocks
	 * are cleared before they are reused for numbers above it); in the floor's own
	 * block only the bits up to the floor are set, so later numbers there stay new. */
	for (uint32_t i = 0; i <= r->mask; i++)
		r->bitmap[i] = ~0ULL;
	r->bitmap[(floor >> 6) & r->mask] = (floor & 63) == 63 ? ~0ULL : (2ULL << (floor & 63)) - 1;
	r->top = floor;
}

enum ef_replay_result ef_replay_check(const struct ef_replay *r, uint64_t seq)
{
	if (seq == 0)
		return EF_REPLAY_TOO_OLD;
	if (seq > r->top)
		return EF_REPLAY_OK;
	if (r->top - seq >= r->window)
		return EF_REPLAY_TOO_OLD;
	if (r->bitmap[(seq >> 6) & r->mask] & (1ULL << (seq & 63)))
		return EF_REPLAY_SEEN;
	return EF_REPLAY_OK;
}

enum ef_replay_result ef_replay_update(struct ef_replay *r, uint64_t seq)
{
	enum ef_replay_result res = ef_replay_check(r, seq);
	uint64_t *block;

	if (res != EF_REPLAY_OK)
		return res;
	if (seq > r->top) {
		uint64_t from = r->top >> 6, to = seq >> 6, n = to - from;

		if (n > (uint64_t)r->mask + 1)
			n = (uint64_t)r->mask + 1;
		for (uint64_t i = 1; i <= n; i++)
			r->bitmap[(from + i) & r->mask] = 0;
		r->top = seq;
	}
	block = &r->bitmap[(seq >> 6) & r->mask];
	*block |= 1ULL << (seq & 63);
	return EF_REPLAY_OK;
}
