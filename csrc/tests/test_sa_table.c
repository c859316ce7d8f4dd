/* test_sa_table.c — SPI lookup, longest-prefix routing with many /32s, make-before-break
 * (the newest SA with equal selectors wins), removal; owners: an SA never takes over
 * the route of another owner's SA. */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "dataplane.h"
#include "sa.h"

static struct ef_prefix pfx4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t plen)
{
	struct ef_prefix p;

	memset(&p, 0, sizeof(p));
	p.family = 4;
	p.plen = plen;
	p.addr[0] = a, p.addr[1] = b, p.addr[2] = c, p.addr[3] = d;
	return p;
}

static struct ef_sa *new_grouped(uint32_t spi, struct ef_prefix local, struct ef_prefix remote,
				 uint64_t owner, uint64_t group)
{
	static uint8_t key[20];
	struct ef_sa_params p = {
		.spi = spi, .dir = EF_DIR_OUT, .transform = 0, .enc_key = key,
		.enc_key_len = 20, .local_ts = &local, .n_local = 1, .remote_ts = &remote,
		.n_remote = 1, .owner = owner, .group = group,
	};
	int err;

	return ef_sa_new(&p, 1, &err);
}

static struct ef_sa *new_owned(uint32_t spi, struct ef_prefix local, struct ef_prefix remote,
			       uint64_t owner)
{
	return new_grouped(spi, local, remote, owner, 0);
}

static struct ef_sa *new_out(uint32_t spi, struct ef_prefix remote)
{
	return new_owned(spi, pfx4(0, 0, 0, 0, 0), remote, 0);
}

/* A road warrior (owner 2) asks for the /32 another client (owner 1) holds: refused, the
 * victim keeps its route; the victim's own rekey (owner 1) takes over as before; other
 * prefixes, more specific ones, and disjoint local selectors are no conflict. */
static void test_owners(void)
{
	struct ef_table tb;
	struct ef_prefix gw = pfx4(198, 19, 2, 0, 24), src = pfx4(198, 19, 2, 1, 32);
	struct ef_prefix victim = pfx4(198, 19, 100, 1, 32), dst = victim;
	struct ef_sa *v, *thief, *rekeyed, *other, *site, *inner;

	CHECK(ef_table_init(&tb) == 0);
	v = new_owned(3000, gw, victim, 1);
	CHECK(ef_table_add(&tb, v) == 0);
	thief = new_owned(3001, gw, victim, 2);
	CHECK(ef_table_add(&tb, thief) == EF_E_CONFLICT);
	CHECK(ef_table_find(&tb, 3001, EF_DIR_OUT) == NULL);
	ef_sa_free(thief);
	/* Wider local selectors overlap too. */
	thief = new_owned(3002, pfx4(0, 0, 0, 0, 0), victim, 2);
	CHECK(ef_table_add(&tb, thief) == EF_E_CONFLICT);
	ef_sa_free(thief);
	CHECK(ef_table_route(&tb, &src, &dst) == v);
	rekeyed = new_owned(3003, gw, victim, 1);
	CHECK(ef_table_add(&tb, rekeyed) == 0);
	CHECK(ef_table_route(&tb, &src, &dst) == rekeyed);
	/* Another client's own address; a disjoint local side; a wider prefix holding the
	 * victim's (longest prefix match keeps the victim's traffic with the victim). */
	other = new_owned(3004, gw, pfx4(198, 19, 100, 2, 32), 2);
	CHECK(ef_table_add(&tb, other) == 0);
	site = new_owned(3005, pfx4(198, 19, 3, 0, 24), victim, 2);
	CHECK(ef_table_add(&tb, site) == 0);
	inner = new_owned(3006, gw, pfx4(198, 19, 100, 0, 24), 2);
	CHECK(ef_table_add(&tb, inner) == 0);
	CHECK(ef_table_route(&tb, &src, &dst) == rekeyed);
	/* Once the victim's SAs are gone the address is free for whoever leases it next. */
	CHECK(ef_table_remove(&tb, 3000, EF_DIR_OUT) == v);
	CHECK(ef_table_remove(&tb, 3003, EF_DIR_OUT) == rekeyed);
	ef_sa_free(v);
	ef_sa_free(rekeyed);
	thief = new_owned(3007, gw, victim, 2);
	CHECK(ef_table_add(&tb, thief) == 0);
	CHECK(ef_table_route(&tb, &src, &dst) == thief);
	ef_table_destroy(&tb);
}

/* Peers of one connection (group 7) never nest: a site's /24 (owner 1) is neither cut
 * into by another peer's /25 nor swallowed by its /16. Another connection (group 8) may
 * route a more specific prefix (a split tunnel beside a full one). */
static void test_groups(void)
{
	struct ef_table tb;
	struct ef_prefix gw = pfx4(198, 19, 2, 0, 24), src = pfx4(198, 19, 2, 1, 32);
	struct ef_prefix site = pfx4(198, 19, 1, 0, 24), dst = pfx4(198, 19, 1, 1, 32);
	struct ef_sa *v, *sa;

	CHECK(ef_table_init(&tb) == 0);
	v = new_grouped(4000, gw, site, 1, 7);
	CHECK(ef_table_add(&tb, v) == 0);
	sa = new_grouped(4001, gw, pfx4(198, 19, 1, 0, 25), 2, 7);
	CHECK(ef_table_add(&tb, sa) == EF_E_CONFLICT);
	ef_sa_free(sa);
	sa = new_grouped(4002, gw, pfx4(198, 19, 0, 0, 16), 2, 7);
	CHECK(ef_table_add(&tb, sa) == EF_E_CONFLICT);
	ef_sa_free(sa);
	sa = new_grouped(4003, gw, pfx4(198, 19, 3, 0, 24), 2, 7); /* its own site */
	CHECK(ef_table_add(&tb, sa) == 0);
	CHECK(ef_table_route(&tb, &src, &dst) == v);
	sa = new_grouped(4004, gw, pfx4(198, 19, 1, 0, 25), 3, 8);
	CHECK(ef_table_add(&tb, sa) == 0);
	CHECK(ef_table_route(&tb, &src, &dst) == sa);
	sa = new_grouped(4005, gw, site, 3, 8); /* but never the same prefix */
	CHECK(ef_table_add(&tb, sa) == EF_E_CONFLICT);
	ef_sa_free(sa);
	ef_table_destroy(&tb);
}

void test_sa_table(void)
{
	struct ef_table tb;
	struct ef_prefix src = pfx4(198, 18, 1, 1, 32), dst;
	struct ef_sa *wide, *mid, *newer, *sa;
	int ok = 1;

	CHECK(ef_table_init(&tb) == 0);
	wide = new_out(1000, pfx4(198, 18, 0, 0, 15));
	mid = new_out(1001, pfx4(198, 19, 2, 0, 24));
	CHECK(ef_table_add(&tb, wide) == 0);
	CHECK(ef_table_add(&tb, mid) == 0);
	sa = new_out(1000, pfx4(10, 0, 0, 0, 8));
	CHECK(ef_table_add(&tb, sa) == EF_E_EXISTS);
	ef_sa_free(sa);
	/* 5000 host routes 198.19.x.y/32 (grows the tables several times). */
	for (uint32_t i = 0; i < 5000; i++)
		CHECK(ef_table_add(&tb, new_out(2000 + i, pfx4(198, 19, (uint8_t)(i >> 8) + 100,
								(uint8_t)i, 32))) == 0);
	for (uint32_t i = 0; i < 5000; i++) {
		dst = pfx4(198, 19, (uint8_t)(i >> 8) + 100, (uint8_t)i, 32);
		sa = ef_table_route(&tb, &src, &dst);
		ok &= sa && sa->spi == 2000 + i;
		ok &= ef_table_find(&tb, 2000 + i, EF_DIR_OUT) == sa;
	}
	CHECK(ok);
	dst = pfx4(198, 19, 2, 77, 32);
	CHECK(ef_table_route(&tb, &src, &dst) == mid);
	dst = pfx4(198, 19, 3, 77, 32);
	CHECK(ef_table_route(&tb, &src, &dst) == wide);
	dst = pfx4(10, 1, 1, 1, 32);
	CHECK(ef_table_route(&tb, &src, &dst) == NULL);
	CHECK(ef_table_find(&tb, 1001, EF_DIR_IN) == NULL);
	/* Rekey: a new SA with the same selectors takes over; removing it restores the old. */
	newer = new_out(1002, pfx4(198, 19, 2, 0, 24));
	CHECK(ef_table_add(&tb, newer) == 0);
	dst = pfx4(198, 19, 2, 77, 32);
	CHECK(ef_table_route(&tb, &src, &dst) == newer);
	CHECK(ef_table_remove(&tb, 1001, EF_DIR_OUT) == mid);
	ef_sa_free(mid);
	CHECK(ef_table_route(&tb, &src, &dst) == newer);
	CHECK(ef_table_remove(&tb, 1002, EF_DIR_OUT) == newer);
	ef_sa_free(newer);
	CHECK(ef_table_route(&tb, &src, &dst) == wide);
	CHECK(ef_table_remove(&tb, 1002, EF_DIR_OUT) == NULL);
	/* Remove the host routes: /32 no longer probed. */
	for (uint32_t i = 0; i < 5000; i++)
		ef_sa_free(ef_table_remove(&tb, 2000 + i, EF_DIR_OUT));
	CHECK(tb.n_plens[0] == 1 && tb.plens[0][0] == 15);
	ef_table_destroy(&tb);
	test_owners();
	test_groups();
}
