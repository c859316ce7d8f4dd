/* test_keymem.c — key slots: zeroed, cleansed and reused, in pages the kernel marks
 * "dd" (MADV_DONTDUMP) in /proc/self/smaps; an SA's salt lives in one. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "keymem.h"
#include "sa.h"

/* Whether the mapping holding `p` has the "dd" VmFlag (never dumped). */
static int dontdump(const void *p)
{
	uintptr_t a = (uintptr_t)p, lo = 0, hi = 0;
	char line[512];
	int inside = 0, dd = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) { /* a mapping's first line */
			lo = s, hi = e;
			inside = a >= lo && a < hi;
		} else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			dd = strstr(line, " dd") != NULL;
			break;
		}
	}
	fclose(f);
	return dd;
}

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

void test_keymem(void)
{
	unsigned char *k[200];
	struct ef_prefix any = {.family = 4, .plen = 0};
	static const uint8_t key[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
					0xde, 0xad, 0xbe, 0xef};
	struct ef_sa_params p = {
		.spi = 0x1000, .dir = EF_DIR_IN, .transform = 0, .enc_key = key,
		.enc_key_len = 20, .local_ts = &any, .n_local = 1, .remote_ts = &any,
		.n_remote = 1, .replay_window = 64,
	};
	struct ef_sa *sa;
	int err, ok = 1;

	CHECK(!dontdump(&ok)); /* the stack is dumped: the probe tells the two apart */
	CHECK(ef_keymem_alloc(0) == NULL);
	CHECK(ef_keymem_alloc(EF_KEYMEM_SLOT + 1) == NULL);
	ef_keymem_free(NULL);
	/* More slots than one page holds: every one zeroed, marked, distinct. */
	for (int i = 0; i < 200; i++) {
		k[i] = ef_keymem_alloc(EF_KEYMEM_SLOT);
		if (!k[i] || !all_zero(k[i], EF_KEYMEM_SLOT) || !dontdump(k[i]))
			ok = 0;
		else
			memset(k[i], 0xa5, EF_KEYMEM_SLOT);
	}
	CHECK(ok);
	CHECK(k[0] != k[1] && k[198] != k[199]);
	/* Freed slots are cleansed; the next allocation reuses one, zeroed. */
	for (int i = 0; i < 200; i++)
		ef_keymem_free(k[i]);
	k[0] = ef_keymem_alloc(16);
	CHECK(k[0] == k[199]);
	CHECK(k[0] && all_zero(k[0], EF_KEYMEM_SLOT));
	ef_keymem_free(k[0]);
	/* An AEAD SA keeps its salt in such a slot. */
	sa = ef_sa_new(&p, 1, &err);
	CHECK(sa != NULL);
	if (sa) {
		CHECK(memcmp(sa->salt, key + 16, 4) == 0);
		CHECK(dontdump(sa->salt));
		ef_sa_free(sa);
	}
}
