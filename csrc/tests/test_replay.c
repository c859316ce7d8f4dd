/* test_replay.c — the anti-replay window as a table, in the style of the WireGuard
 * kernel selftest (drivers/net/wireguard/selftest/counter.c): each row is one received
 * sequence number and the verdict expected after all the rows above it. */
#include <stdint.h>

#include "ctest.h"
#include "replay.h"

#define OK EF_REPLAY_OK
#define OLD EF_REPLAY_TOO_OLD
#define SEEN EF_REPLAY_SEEN

struct row {
	uint64_t seq;
	enum ef_replay_result want;
};

static void run_table(uint32_t window, const struct row *rows, int n)
{
	struct ef_replay r;

	CHECK(ef_replay_init(&r, window) == 0);
	for (int i = 0; i < n; i++) {
		enum ef_replay_result got = ef_replay_update(&r, rows[i].seq);

		if (got != rows[i].want)
			fprintf(stderr, "window %u row %d: seq %llu got %d want %d\n", window, i,
				(unsigned long long)rows[i].seq, got, rows[i].want);
		CHECK(got == rows[i].want);
	}
	ef_replay_free(&r);
}

static void test_table_128(void)
{
	/* W = 128: the ring has 4 blocks of 64. */
	static const struct row rows[] = {
		{0, OLD},     /* sequence number 0 is never sent */
		{1, OK},      {1, SEEN},   {2, OK},      {3, OK},      {2, SEEN},
		{200, OK},    {73, OK},    /* 200 - 73 = 127 < W */
		{72, OLD},                 /* 200 - 72 = 128 */
		{73, SEEN},   {200, SEEN}, {199, OK},    {129, OK},    {128, OK},
		{191, OK},    {192, OK},   {193, OK},    {193, SEEN},
		{356, OK},    /* moves across two block boundaries */
		{257, OK},    /* a block reused from the ring is cleared */
		{229, OK},    {228, OLD},  {300, OK},    {300, SEEN},
		{100000, OK}, /* far beyond the ring: everything cleared */
		{356, OLD},   {99873, OK}, {99872, OLD}, {99999, OK},  {100000, SEEN},
		{99936, OK},  {99935, OK}, {99935, SEEN},
	};
	run_table(128, rows, (int)(sizeof(rows) / sizeof(rows[0])));
}

static void test_table_1(void)
{
	/* W = 1: only strictly increasing numbers pass. */
	static const struct row rows[] = {
		{1, OK}, {1, SEEN}, {3, OK}, {2, OLD}, {4, OK}, {1000, OK}, {999, OLD},
	};
	run_table(1, rows, (int)(sizeof(rows) / sizeof(rows[0])));
}

static void test_table_esn_boundary(void)
{
	/* Across 2^32 with 64-bit numbers (W = 1024). */
	const uint64_t b = 1ULL << 32;
	const struct row rows[] = {
		{b - 2, OK},    {b - 1, OK},    {b, OK},       {b + 1, OK},    {b - 1, SEEN},
		{b - 3, OK},    {b + 1, SEEN},  {b + 2000, OK}, {b + 977, OK}, {b + 976, OLD},
		{b - 2, OLD},   {UINT64_MAX, OK}, {UINT64_MAX, SEEN}, {UINT64_MAX - 1023, OK},
		{UINT64_MAX - 1024, OLD},
	};
	run_table(1024, rows, (int)(sizeof(rows) / sizeof(rows[0])));
}

static void test_full_window(void)
{
	/* Every number of a full 8192 window arrives in reverse order, then all again. */
	struct ef_replay r;
	const uint32_t w = 8192;
	int ok = 1, seen = 1;

	CHECK(ef_replay_init(&r, w) == 0);
	for (uint64_t s = 10000; s > 10000 - w; s--)
		ok &= ef_replay_update(&r, s) == OK;
	for (uint64_t s = 10000; s > 10000 - w; s--)
		seen &= ef_replay_update(&r, s) == SEEN;
	CHECK(ok);
	CHECK(seen);
	CHECK(ef_replay_update(&r, 10000 - w) == OLD);
	ef_replay_free(&r);
	CHECK(ef_replay_init(&r, 0) == -1);
	CHECK(ef_replay_init(&r, EF_REPLAY_WINDOW_MAX + 1) == -1);
}

static void test_esn_inference(void)
{
	struct ef_replay r;
	const uint64_t b = 1ULL << 32;

	CHECK(ef_replay_init(&r, 128) == 0);
	/* Fresh SA: small numbers are epoch 0, numbers "behind" 0 cannot exist. */
	CHECK(ef_replay_esn(&r, 5) == 5);
	CHECK(ef_replay_esn(&r, UINT32_MAX) == 0);
	/* Top just below 2^32 (RFC 4303 A3 case A): low numbers are the next epoch. */
	CHECK(ef_replay_update(&r, b - 16) == OK);
	CHECK(ef_replay_esn(&r, 3) == b + 3);
	CHECK(ef_replay_esn(&r, (uint32_t)(b - 100)) == b - 100);
	/* Top just above 2^32 (case B): high numbers are the previous epoch. */
	CHECK(ef_replay_update(&r, b + 16) == OK);
	CHECK(ef_replay_esn(&r, UINT32_MAX - 10) == b - 11);
	CHECK(ef_replay_esn(&r, 20) == b + 20);
	CHECK(ef_replay_esn(&r, 0x80000000u) == b + 0x80000000u);
	/* The last epoch has no successor. */
	CHECK(ef_replay_update(&r, UINT64_MAX - 5) == OK);
	CHECK(ef_replay_esn(&r, 3) == 0);
	ef_replay_free(&r);
}

void test_replay(void)
{
	test_table_128();
	test_table_1();
	test_table_esn_boundary();
	test_full_window();
	test_esn_inference();
}
