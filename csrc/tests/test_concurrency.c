/* test_concurrency.c — one SA hammered from every worker at once, the way N dataplane
 * workers share it: THREADS threads seal packets through one outbound SA (each with its
 * own crypto context, sharing the CAS sequence counter), across the 2^32 ESN boundary;
 * then THREADS threads open them through one inbound SA (sharing the spinlocked replay
 * window), in an order with bounded reordering and with every 16th packet delivered
 * twice back to back, so that the two copies race through check, decrypt and update.
 *
 * Expected, exactly: the wire carries every sequence number once (no duplicate, none
 * skipped); every original is accepted (the reordering stays inside the window, so a
 * replay drop would be a false one); every duplicate is refused as a replay. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "esp.h"
#include "sa.h"

#define THREADS 4
#define PER_THREAD 3000
#define TOTAL (THREADS * PER_THREAD)
#define SLOT 512
#define INNER 100
#define WINDOW 32768 /* above TOTAL: no reordering a scheduler makes can leave it */
#define DUP_EVERY 16
#define START (0xffffffffull - TOTAL / 2) /* the sequence numbers cross 2^32 */

struct sealed {
	uint8_t buf[SLOT];
	uint32_t off, len;
};

struct job {
	struct ef_sa *sa;
	int idx;
	struct sealed *pkts; /* seal: this thread's PER_THREAD slots */
	/* open: the shared delivery queue */
	struct sealed **order;
	int norder, *next;
	int accepted, replayed, other;
};

static void *seal_main(void *arg)
{
	struct job *j = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		struct sealed *s = &j->pkts[i];
		uint8_t *inner = s->buf + EF_HEADROOM, *esp;
		long r;

		memset(inner, 0, INNER);
		inner[0] = 0x45;
		inner[3] = INNER;
		inner[9] = 17;
		inner[12] = 198, inner[13] = 19, inner[14] = 1, inner[15] = (uint8_t)(j->idx + 1);
		inner[16] = 198, inner[17] = 19, inner[18] = 2, inner[19] = 1;
		r = ef_sa_encap(j->sa, j->idx, inner, INNER, &esp);
		s->off = (uint32_t)(esp - s->buf);
		s->len = r > 0 ? (uint32_t)r : 0;
	}
	return NULL;
}

static void *open_main(void *arg)
{
	struct job *j = arg;

	for (;;) {
		int k = __atomic_fetch_add(j->next, 1, __ATOMIC_RELAXED);
		uint8_t *inner;
		long r;

		if (k >= j->norder)
			break;
		r = ef_sa_decap(j->sa, j->idx, j->order[k]->buf + j->order[k]->off,
				j->order[k]->len, &inner);
		if (r == INNER)
			j->accepted++;
		else if (r == -EF_E_REPLAY)
			j->replayed++;
		else
			j->other++;
	}
	return NULL;
}

static uint32_t wire_seq(const struct sealed *s)
{
	return ef_get32(s->buf + s->off + 4);
}

static int by_seq(const void *a, const void *b)
{
	uint32_t x = wire_seq(*(struct sealed *const *)a) - (uint32_t)START;
	uint32_t y = wire_seq(*(struct sealed *const *)b) - (uint32_t)START;

	return x < y ? -1 : x > y;
}

void test_concurrency(void)
{
	static struct sealed pkts[TOTAL], dups[TOTAL / DUP_EVERY];
	static struct sealed *sorted[TOTAL], *order[TOTAL + TOTAL / DUP_EVERY];
	uint8_t ekey[16 + 4];
	struct ef_prefix ts = {.family = 4, .plen = 16, .addr = {198, 19}};
	struct ef_sa_params p = {
		.spi = 0x600d,
		.transform = EF_T_AES128GCM16,
		.enc_key = ekey,
		.enc_key_len = sizeof(ekey),
		.local_ts = &ts,
		.n_local = 1,
		.remote_ts = &ts,
		.n_remote = 1,
		.esn = 1,
		.replay_window = WINDOW,
		.initial_seq = START,
	};
	struct job jobs[THREADS];
	pthread_t th[THREADS];
	struct ef_sa_stats st;
	struct ef_sa *out, *in;
	int err = 0, n = 0, next = 0, accepted = 0, replayed = 0, other = 0, ok = 1;

	for (size_t i = 0; i < sizeof(ekey); i++)
		ekey[i] = (uint8_t)(0x31 * i + 7);
	p.dir = EF_DIR_OUT;
	out = ef_sa_new(&p, THREADS, &err);
	p.dir = EF_DIR_IN;
	in = ef_sa_new(&p, THREADS, &err);
	CHECK(out && in);
	if (!out || !in)
		goto done;

	/* All threads seal through one SA at once. */
	for (int t = 0; t < THREADS; t++) {
		jobs[t] = (struct job){.sa = out, .idx = t, .pkts = pkts + t * PER_THREAD};
		pthread_create(&th[t], NULL, seal_main, &jobs[t]);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int i = 0; i < TOTAL; i++) {
		ok &= pkts[i].len > 0;
		sorted[i] = &pkts[i];
	}
	CHECK(ok);
	/* Sorted by distance from START, the wire numbers must be START+1 ... START+TOTAL:
	 * each exactly once. */
	qsort(sorted, TOTAL, sizeof(sorted[0]), by_seq);
	for (int i = 0; i < TOTAL; i++)
		ok &= wire_seq(sorted[i]) == (uint32_t)(START + 1 + (uint64_t)i);
	CHECK(ok);
	ef_sa_read_stats(out, &st);
	CHECK(st.seq == START + TOTAL && st.packets == TOTAL);

	/* Delivery order: blocks of 8 reversed (bounded reordering), every 16th packet
	 * followed at once by a copy of itself. */
	for (int b = 0; b < TOTAL; b += 8) {
		for (int i = b + 7; i >= b; i--) {
			order[n++] = sorted[i];
			if (i % DUP_EVERY == 0) {
				struct sealed *d = &dups[i / DUP_EVERY];

				*d = *sorted[i];
				order[n++] = d;
			}
		}
	}
	for (int t = 0; t < THREADS; t++) {
		jobs[t] = (struct job){.sa = in, .idx = t, .order = order, .norder = n, .next = &next};
		pthread_create(&th[t], NULL, open_main, &jobs[t]);
	}
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		accepted += jobs[t].accepted;
		replayed += jobs[t].replayed;
		other += jobs[t].other;
	}
	CHECK(accepted == TOTAL);
	CHECK(replayed == TOTAL / DUP_EVERY);
	CHECK(other == 0);
	ef_sa_read_stats(in, &st);
	CHECK(st.packets == TOTAL && st.replay_drops == TOTAL / DUP_EVERY);
	CHECK(st.seq == START + TOTAL);
	CHECK(st.auth_failures == 0);
done:
	ef_sa_free(out);
	ef_sa_free(in);
}
