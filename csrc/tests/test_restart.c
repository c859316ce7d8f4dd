/* test_restart.c — an SA that resumes after a restart (espfast static's state file):
 * an inbound SA starts above a replay floor, an outbound one at a given sequence number
 * and under a limit its owner raises. */
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "replay.h"
#include "sa.h"

/* The floor through the replay window alone: nothing at or below it, everything above
 * it once, whatever the floor's place in its 64-bit block and the window size. */
static void floor_window(uint32_t window, uint64_t floor)
{
	struct ef_replay r;
	int ok = 1;

	CHECK(ef_replay_init(&r, window) == 0);
	ef_replay_set_floor(&r, floor);
	CHECK(r.top == floor);
	for (uint64_t d = 0; d < (uint64_t)window + 130 && d < floor; d++)
		ok &= ef_replay_check(&r, floor - d) != EF_REPLAY_OK;
	CHECK(ok);
	/* Out of order above the floor, in its block and the next ones: each once. */
	CHECK(ef_replay_update(&r, floor + 3) == EF_REPLAY_OK);
	if (window >= 4) {
		CHECK(ef_replay_update(&r, floor + 1) == EF_REPLAY_OK);
		CHECK(ef_replay_update(&r, floor + 1) == EF_REPLAY_SEEN);
		CHECK(ef_replay_update(&r, floor + 2) == EF_REPLAY_OK);
	}
	CHECK(ef_replay_update(&r, floor + 200) == EF_REPLAY_OK);
	if (window > 200)
		CHECK(ef_replay_update(&r, floor + 100) == EF_REPLAY_OK);
	ok = 1;
	for (uint64_t d = 0; d < 64 && d < floor; d++)
		ok &= ef_replay_check(&r, floor - d) != EF_REPLAY_OK;
	CHECK(ok);
	ef_replay_free(&r);
}

static void sa_params(struct ef_sa_params *p, int dir, int esn, uint64_t initial,
		      uint64_t limit, struct ef_prefix *any, const uint8_t *key)
{
	memset(p, 0, sizeof(*p));
	p->spi = 0x1234;
	p->dir = dir;
	p->transform = 0; /* aes128gcm16 */
	p->enc_key = key;
	p->enc_key_len = 20;
	p->local_ts = p->remote_ts = any;
	p->n_local = p->n_remote = 1;
	p->esn = esn;
	p->replay_window = 1024;
	p->initial_seq = initial;
	p->seq_limit = limit;
}

/* A sealed packet resumed at 1000 by a restarted sender is accepted by a receiver that
 * resumed with floor 1000; the one numbered 1000 (sent before the restart) is not. */
static void resume_pair(int esn, uint64_t at)
{
	static uint8_t slot[2][EF_HEADROOM + 200 + EF_TAILROOM];
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {9, 8, 7};
	struct ef_sa_params p;
	struct ef_sa *out, *before, *in;
	struct ef_sa_stats st;
	uint8_t *esp[2], *inner;
	long n[2];
	int err = 0;

	sa_params(&p, EF_DIR_OUT, esn, at - 1, 0, &any, key);
	before = ef_sa_new(&p, 1, &err);
	sa_params(&p, EF_DIR_OUT, esn, at, at + 2, &any, key);
	out = ef_sa_new(&p, 1, &err);
	sa_params(&p, EF_DIR_IN, esn, at, 0, &any, key);
	in = ef_sa_new(&p, 1, &err);
	CHECK(before && out && in);
	if (!before || !out || !in)
		goto out;
	for (int i = 0; i < 2; i++) {
		uint8_t *ip = slot[i] + EF_HEADROOM;

		memset(ip, 0, 200);
		ip[0] = 0x45, ip[3] = 200, ip[8] = 64, ip[9] = 17;
		n[i] = ef_sa_encap(i ? out : before, 0, ip, 200, &esp[i]);
		CHECK(n[i] > 0);
	}
	CHECK(ef_get32(esp[0] + 4) == (uint32_t)at);       /* sent before the restart */
	CHECK(ef_get32(esp[1] + 4) == (uint32_t)(at + 1)); /* the first after it */
	CHECK(ef_sa_decap(in, 0, esp[0], (size_t)n[0], &inner) == -EF_E_REPLAY);
	CHECK(ef_sa_decap(in, 0, esp[1], (size_t)n[1], &inner) == 200);
	/* The limit: at + 2 is the last number; then drops (counted) until it is raised,
	 * and the SA is not exhausted. */
	CHECK(ef_sa_next_seq(out) == at + 2);
	CHECK(ef_sa_next_seq(out) == 0);
	ef_sa_read_stats(out, &st);
	CHECK(st.seq_exhausted == 1 && !st.exhausted && st.seq == at + 2);
	ef_sa_set_seq_limit(out, at + 10);
	CHECK(ef_sa_next_seq(out) == at + 3);
	ef_sa_set_seq_limit(out, 0); /* lifted: up to the real end */
	ef_sa_read_stats(out, &st);
	CHECK(out->seq_limit == (esn ? UINT64_MAX : UINT32_MAX));
out:
	ef_sa_free(before);
	ef_sa_free(out);
	ef_sa_free(in);
}

void test_restart(void)
{
	static const uint32_t windows[] = {1, 64, 65, 128, 1024, 65536};
	static const uint64_t floors[] = {0, 1, 62, 63, 64, 1000, 4095, 1ULL << 32, 0xfffffff0ULL};

	for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++)
		for (size_t f = 0; f < sizeof(floors) / sizeof(floors[0]); f++)
			floor_window(windows[w], floors[f]);
	resume_pair(0, 1000);
	resume_pair(0, 63);
	resume_pair(1, (1ULL << 32) + 5); /* ESN: the floor's high half infers the epoch */
}
