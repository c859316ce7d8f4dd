/* sa.c — SA objects, per-packet SA processing and the SA table; see sa.h. */
#include "sa.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "keymem.h"
#include "raw.h"

#define CNT_ADD(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define EF_MAX_TS 256

static int prefix_valid(const struct ef_prefix *p)
{
	int bits;

	if (p->family == 4)
		bits = 32;
	else if (p->family == 6)
		bits = 128;
	else
		return 0;
	if (p->plen > bits)
		return 0;
	/* Host bits must be zero (a prefix, not an address with a length). */
	for (int i = p->plen; i < 128; i++)
		if (p->addr[i / 8] & (0x80 >> (i % 8)))
			return 0;
	return 1;
}

int ef_prefix_contains(const struct ef_prefix *net, const struct ef_prefix *addr)
{
	unsigned full = net->plen / 8, rest = net->plen % 8;

	if (net->family != addr->family)
		return 0;
	if (memcmp(net->addr, addr->addr, full) != 0)
		return 0;
	if (rest) {
		uint8_t m = (uint8_t)(0xFF << (8 - rest));

		if ((net->addr[full] ^ addr->addr[full]) & m)
			return 0;
	}
	return 1;
}

static int in_any(const struct ef_prefix *nets, size_t n, const struct ef_prefix *addr)
{
	for (size_t i = 0; i < n; i++)
		if (ef_prefix_contains(&nets[i], addr))
			return 1;
	return 0;
}

int ef_ip_parse(const uint8_t *p, size_t len, struct ef_prefix *src, struct ef_prefix *dst,
		size_t *ip_len)
{
	if (len < 1)
		return -1;
	switch (p[0] >> 4) {
	case 4: {
		size_t ihl = (size_t)(p[0] & 15) * 4, tot;

		if (len < EF_IPV4_HDR_MIN || ihl < EF_IPV4_HDR_MIN)
			return -1;
		tot = (size_t)p[2] << 8 | p[3];
		if (tot < ihl || tot > len)
			return -1;
		src->family = dst->family = 4;
		src->plen = dst->plen = 32;
		memcpy(src->addr, p + 12, 4);
		memcpy(dst->addr, p + 16, 4);
		*ip_len = tot;
		return 4;
	}
	case 6: {
		size_t tot;

		if (len < EF_IPV6_HDR_LEN)
			return -1;
		tot = EF_IPV6_HDR_LEN + ((size_t)p[4] << 8 | p[5]);
		if (tot > len)
			return -1;
		src->family = dst->family = 6;
		src->plen = dst->plen = 128;
		memcpy(src->addr, p + 8, 16);
		memcpy(dst->addr, p + 24, 16);
		*ip_len = tot;
		return 6;
	}
	default:
		return -1;
	}
}

int ef_sa_set_peer(struct ef_sa *sa, const void *addr, uint32_t len)
{
	const struct sockaddr *a = addr;

	if (!addr || len < sizeof(sa_family_t) || len > sizeof(sa->peer))
		return EF_E_INVAL;
	if (!((a->sa_family == AF_INET && len == sizeof(struct sockaddr_in)) ||
	      (a->sa_family == AF_INET6 && len == sizeof(struct sockaddr_in6))))
		return EF_E_INVAL;
	memcpy(&sa->peer, addr, len);
	sa->peer_len = len;
	return ef_raw_peer(&sa->peer, sa->peer_len, &sa->raw_peer, &sa->raw_peer_len,
			   &sa->peer_addr) ? EF_E_INVAL : EF_OK;
}

static struct ef_prefix *copy_ts(const struct ef_prefix *ts, size_t n, int *err)
{
	struct ef_prefix *out;

	if (!ts || n == 0 || n > EF_MAX_TS) {
		*err = EF_E_INVAL;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!prefix_valid(&ts[i])) {
			*err = EF_E_INVAL;
			return NULL;
		}
	}
	out = calloc(n, sizeof(*out));
	if (!out) {
		*err = EF_E_NOMEM;
		return NULL;
	}
	memcpy(out, ts, n * sizeof(*out));
	return out;
}

struct ef_sa *ef_sa_new(const struct ef_sa_params *p, int nctx, int *err)
{
	const struct ef_transform *t = ef_transform_get(p->transform);
	const uint8_t *key = p->enc_key;
	struct ef_sa *sa;

	if (!t) {
		*err = EF_E_TRANSFORM;
		return NULL;
	}
	if ((p->dir != EF_DIR_IN && p->dir != EF_DIR_OUT) || p->spi < EF_SPI_MIN || nctx < 1 ||
	    (!p->esn && p->initial_seq > UINT32_MAX) || (p->raw_esp && !p->peer) ||
	    (p->raw_esp != 0 && p->raw_esp != 1)) {
		*err = EF_E_INVAL;
		return NULL;
	}
	if (p->enc_key_len != t->enc_key_len || p->integ_key_len != t->integ_key_len || !key ||
	    (t->integ_key_len && !p->integ_key)) {
		*err = EF_E_KEYLEN;
		return NULL;
	}
	if (p->dir == EF_DIR_IN &&
	    (p->replay_window == 0 || p->replay_window > EF_REPLAY_WINDOW_MAX)) {
		*err = EF_E_INVAL;
		return NULL;
	}
	sa = calloc(1, sizeof(*sa));
	if (!sa) {
		*err = EF_E_NOMEM;
		return NULL;
	}
	sa->spi = p->spi;
	sa->dir = (uint8_t)p->dir;
	sa->esn = p->esn ? 1 : 0;
	sa->raw = (uint8_t)p->raw_esp;
	sa->t = t;
	sa->seq = p->initial_seq;
	sa->owner = p->owner;
	sa->group = p->group;
	sa->seq_limit = sa->esn ? UINT64_MAX : UINT32_MAX;
	if (p->seq_limit && p->seq_limit < sa->seq_limit)
		sa->seq_limit = p->seq_limit;
	pthread_spin_init(&sa->replay_lock, PTHREAD_PROCESS_PRIVATE);
	sa->local = copy_ts(p->local_ts, p->n_local, err);
	if (!sa->local)
		goto fail;
	sa->n_local = p->n_local;
	sa->remote = copy_ts(p->remote_ts, p->n_remote, err);
	if (!sa->remote)
		goto fail;
	sa->n_remote = p->n_remote;
	if (p->peer && (*err = ef_sa_set_peer(sa, p->peer, p->peer_len)) != EF_OK)
		goto fail;
	sa->follow = p->follow && p->dir == EF_DIR_IN;
	if (sa->dir == EF_DIR_IN) {
		if (ef_replay_init(&sa->replay, p->replay_window)) {
			*err = EF_E_NOMEM;
			goto fail;
		}
		ef_replay_set_floor(&sa->replay, p->initial_seq);
	}
	if (sa->dir == EF_DIR_OUT) {
		sa->routes = calloc(sa->n_remote, sizeof(*sa->routes));
		if (!sa->routes) {
			*err = EF_E_NOMEM;
			goto fail;
		}
		for (size_t i = 0; i < sa->n_remote; i++) {
			sa->routes[i].sa = sa;
			sa->routes[i].prefix = sa->remote[i];
		}
	}
	sa->salt = ef_keymem_alloc(EF_AEAD_SALT_LEN);
	if (!sa->salt) {
		*err = EF_E_NOMEM;
		goto fail;
	}
	if (t->aead)
		memcpy(sa->salt, key + t->enc_key_len - EF_AEAD_SALT_LEN, EF_AEAD_SALT_LEN);
	sa->ctx = calloc((size_t)nctx, sizeof(*sa->ctx));
	if (!sa->ctx) {
		*err = EF_E_NOMEM;
		goto fail;
	}
	for (int i = 0; i < nctx; i++) {
		if (ef_cctx_init(&sa->ctx[i], t, sa->dir == EF_DIR_OUT, key, p->integ_key)) {
			*err = EF_E_CRYPTO;
			goto fail;
		}
		sa->nctx = i + 1;
	}
	return sa;
fail:
	ef_sa_free(sa);
	return NULL;
}

void ef_sa_free(struct ef_sa *sa)
{
	if (!sa)
		return;
	for (int i = 0; i < sa->nctx; i++)
		ef_cctx_free(&sa->ctx[i]);
	free(sa->ctx);
	ef_keymem_free(sa->salt); /* cleansed */
	ef_replay_free(&sa->replay);
	pthread_spin_destroy(&sa->replay_lock);
	free(sa->local);
	free(sa->remote);
	free(sa->routes);
	free(sa);
}

void ef_sa_read_stats(const struct ef_sa *sa, struct ef_sa_stats *st)
{
	st->packets = __atomic_load_n(&sa->cnt.packets, __ATOMIC_RELAXED);
	st->bytes = __atomic_load_n(&sa->cnt.bytes, __ATOMIC_RELAXED);
	st->auth_failures = __atomic_load_n(&sa->cnt.auth_failures, __ATOMIC_RELAXED);
	st->replay_drops = __atomic_load_n(&sa->cnt.replay_drops, __ATOMIC_RELAXED);
	st->policy_drops = __atomic_load_n(&sa->cnt.policy_drops, __ATOMIC_RELAXED);
	st->malformed = __atomic_load_n(&sa->cnt.malformed, __ATOMIC_RELAXED);
	st->bad_padding = __atomic_load_n(&sa->cnt.bad_padding, __ATOMIC_RELAXED);
	st->seq_exhausted = __atomic_load_n(&sa->cnt.seq_exhausted, __ATOMIC_RELAXED);
	if (sa->dir == EF_DIR_OUT) {
		st->seq = __atomic_load_n(&sa->seq, __ATOMIC_RELAXED);
	} else {
		pthread_spin_lock((pthread_spinlock_t *)&sa->replay_lock);
		st->seq = sa->replay.top;
		pthread_spin_unlock((pthread_spinlock_t *)&sa->replay_lock);
	}
	st->exhausted = __atomic_load_n(&sa->exhausted, __ATOMIC_RELAXED);
}

uint64_t ef_sa_next_seq(struct ef_sa *sa)
{
	uint64_t hard = sa->esn ? UINT64_MAX : UINT32_MAX, limit, cur;

	/* RFC 4303 §3.3.3: the counter never cycles; the SA stops instead. Below that, the
	 * owner may hold it under a limit it raises as it persists a high-water mark
	 * (espfast static: a restart resumes above every number ever used). */
	cur = __atomic_load_n(&sa->seq, __ATOMIC_RELAXED);
	do {
		limit = __atomic_load_n(&sa->seq_limit, __ATOMIC_ACQUIRE);
		if (cur >= limit) {
			if (limit == hard)
				__atomic_store_n(&sa->exhausted, 1, __ATOMIC_RELAXED);
			CNT_ADD(sa->cnt.seq_exhausted, 1);
			return 0;
		}
	} while (!__atomic_compare_exchange_n(&sa->seq, &cur, cur + 1, 1, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return cur + 1;
}

void ef_sa_set_seq_limit(struct ef_sa *sa, uint64_t limit)
{
	uint64_t hard = sa->esn ? UINT64_MAX : UINT32_MAX;

	__atomic_store_n(&sa->seq_limit, !limit || limit > hard ? hard : limit, __ATOMIC_RELEASE);
}

long ef_sa_encap(struct ef_sa *sa, int ctx, uint8_t *inner, size_t len, uint8_t **out)
{
	uint64_t seq;

	if (len < 1)
		return -EF_E_MALFORMED;
	seq = ef_sa_next_seq(sa);
	if (!seq)
		return -EF_E_SEQ_EXHAUSTED;
	return ef_sa_seal(sa, ctx, seq, inner, len, out);
}

long ef_sa_seal(struct ef_sa *sa, int ctx, uint64_t seq, uint8_t *inner, size_t len,
		uint8_t **out)
{
	struct ef_esp_hdr h;
	uint8_t nh;
	long n;

	if (len < 1)
		return -EF_E_MALFORMED;
	nh = (inner[0] >> 4) == 6 ? EF_NH_IPV6 : EF_NH_IPV4;
	h.spi = sa->spi;
	h.seq = seq;
	h.esn = sa->esn;
	h.salt = sa->salt;
	n = ef_esp_seal(sa->t, &sa->ctx[ctx], &h, nh, inner, len, out);
	if (n < 0)
		return -EF_E_CRYPTO;
	CNT_ADD(sa->cnt.packets, 1);
	CNT_ADD(sa->cnt.bytes, len);
	return n;
}

uint64_t ef_sa_replay_check(struct ef_sa *sa, uint32_t seq_lo)
{
	enum ef_replay_result rr;
	uint64_t seq;

	pthread_spin_lock(&sa->replay_lock);
	seq = sa->esn ? ef_replay_esn(&sa->replay, seq_lo) : seq_lo;
	rr = ef_replay_check(&sa->replay, seq);
	pthread_spin_unlock(&sa->replay_lock);
	if (rr != EF_REPLAY_OK) {
		CNT_ADD(sa->cnt.replay_drops, 1);
		return 0;
	}
	return seq;
}

int ef_sa_replay_update(struct ef_sa *sa, uint64_t seq)
{
	enum ef_replay_result rr;

	pthread_spin_lock(&sa->replay_lock);
	rr = ef_replay_update(&sa->replay, seq);
	pthread_spin_unlock(&sa->replay_lock);
	if (rr != EF_REPLAY_OK) {
		CNT_ADD(sa->cnt.replay_drops, 1);
		return -1;
	}
	return 0;
}

static int same_source(const struct sockaddr_storage *a, socklen_t a_len,
		       const struct sockaddr_storage *b)
{
	if (!a_len || a->ss_family != b->ss_family)
		return 0;
	if (b->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (b->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	return 1; /* not an IP source: nothing to follow */
}

int ef_sa_follow(struct ef_sa *sa, const struct sockaddr_storage *from)
{
	int moved = 0;

	if (from->ss_family != AF_INET && from->ss_family != AF_INET6)
		return 0;
	pthread_spin_lock(&sa->replay_lock);
	if (!same_source(&sa->peer, sa->peer_len, from)) {
		sa->peer_len = from->ss_family == AF_INET ? sizeof(struct sockaddr_in)
							  : sizeof(struct sockaddr_in6);
		memcpy(&sa->peer, from, sa->peer_len);
		moved = 1;
	}
	pthread_spin_unlock(&sa->replay_lock);
	return moved;
}

long ef_sa_decap(struct ef_sa *sa, int ctx, uint8_t *pkt, size_t len, uint8_t **inner)
{
	struct ef_prefix src, dst;
	struct ef_esp_hdr h;
	enum ef_open_result orr;
	uint8_t *payload, nh;
	size_t plen, iplen;
	uint32_t seq_lo;
	int v;

	if (len < ef_esp_min_len(sa->t)) {
		CNT_ADD(sa->cnt.malformed, 1);
		return -EF_E_MALFORMED;
	}
	seq_lo = ef_get32(pkt + 4);
	/* Replay check before any crypto work (RFC 4303 §3.4.3). */
	h.seq = ef_sa_replay_check(sa, seq_lo);
	if (!h.seq)
		return -EF_E_REPLAY;
	h.spi = sa->spi;
	h.esn = sa->esn;
	h.salt = sa->salt;
	orr = ef_esp_open(sa->t, &sa->ctx[ctx], &h, pkt, len, &payload, &plen, &nh);
	switch (orr) {
	case EF_OPEN_OK:
		break;
	case EF_OPEN_MALFORMED:
		CNT_ADD(sa->cnt.malformed, 1);
		return -EF_E_MALFORMED;
	case EF_OPEN_AUTH:
		CNT_ADD(sa->cnt.auth_failures, 1);
		return -EF_E_AUTH;
	case EF_OPEN_PADDING:
		CNT_ADD(sa->cnt.bad_padding, 1);
		return -EF_E_PADDING;
	}
	/* Authenticated: now the window may move (a racing duplicate loses here). */
	if (ef_sa_replay_update(sa, h.seq))
		return -EF_E_REPLAY;
	if (nh == EF_NH_DUMMY) {
		/* RFC 4303 §2.6: traffic-flow-confidentiality dummy, discarded. */
		CNT_ADD(sa->cnt.packets, 1);
		return 0;
	}
	v = ef_ip_parse(payload, plen, &src, &dst, &iplen);
	if (v < 0 || (v == 4 && nh != EF_NH_IPV4) || (v == 6 && nh != EF_NH_IPV6)) {
		CNT_ADD(sa->cnt.malformed, 1);
		return -EF_E_MALFORMED;
	}
	/* Tunnel mode: the inner packet must fit this SA's traffic selectors. */
	if (!in_any(sa->remote, sa->n_remote, &src) || !in_any(sa->local, sa->n_local, &dst)) {
		CNT_ADD(sa->cnt.policy_drops, 1);
		return -EF_E_POLICY;
	}
	CNT_ADD(sa->cnt.packets, 1);
	CNT_ADD(sa->cnt.bytes, iplen);
	*inner = payload;
	return (long)iplen;
}

/* ---- the table ---- */

static uint32_t spi_hash(uint32_t spi)
{
	return (uint32_t)(((uint64_t)spi * 0x9E3779B97F4A7C15ULL) >> 32);
}

static uint32_t route_hash(const struct ef_prefix *p)
{
	uint64_t a, b, h;

	memcpy(&a, p->addr, 8);
	memcpy(&b, p->addr + 8, 8);
	h = (a ^ ((uint64_t)p->plen << 8 | p->family)) * 0x9E3779B97F4A7C15ULL;
	h ^= b * 0xC2B2AE3D27D4EB4FULL;
	h ^= h >> 29;
	return (uint32_t)(h ^ (h >> 32));
}

static void mask_prefix(const struct ef_prefix *in, unsigned plen, struct ef_prefix *out)
{
	unsigned full = plen / 8, rest = plen % 8;

	memset(out, 0, sizeof(*out));
	out->family = in->family;
	out->plen = (uint8_t)plen;
	memcpy(out->addr, in->addr, full);
	if (rest)
		out->addr[full] = in->addr[full] & (uint8_t)(0xFF << (8 - rest));
}

int ef_table_init(struct ef_table *tb)
{
	memset(tb, 0, sizeof(*tb));
	for (int d = 0; d < 2; d++) {
		tb->spi[d] = calloc(64, sizeof(*tb->spi[d]));
		tb->spi_mask[d] = 63;
	}
	tb->routes = calloc(64, sizeof(*tb->routes));
	tb->route_mask = 63;
	if (!tb->spi[0] || !tb->spi[1] || !tb->routes) {
		ef_table_destroy(tb);
		return EF_E_NOMEM;
	}
	return EF_OK;
}

void ef_table_destroy(struct ef_table *tb)
{
	for (int d = 0; d < 2; d++) {
		if (!tb->spi[d])
			continue;
		for (uint32_t i = 0; i <= tb->spi_mask[d]; i++) {
			struct ef_sa *sa = tb->spi[d][i], *next;

			for (; sa; sa = next) {
				next = sa->next_spi;
				ef_sa_free(sa);
			}
		}
		free(tb->spi[d]);
		tb->spi[d] = NULL;
	}
	free(tb->routes);
	tb->routes = NULL;
}

struct ef_sa *ef_table_find(const struct ef_table *tb, uint32_t spi, int dir)
{
	struct ef_sa *sa = tb->spi[dir][spi_hash(spi) & tb->spi_mask[dir]];

	while (sa && sa->spi != spi)
		sa = sa->next_spi;
	return sa;
}

/* Grow a chained table when it holds more entries than buckets; on no memory, keep the
 * old one (longer chains, still correct). */
static void grow_spi(struct ef_table *tb, int dir)
{
	uint32_t n = (tb->spi_mask[dir] + 1) * 2;
	struct ef_sa **nb;

	if (tb->n_sa[dir] <= tb->spi_mask[dir] + 1 || !(nb = calloc(n, sizeof(*nb))))
		return;
	for (uint32_t i = 0; i <= tb->spi_mask[dir]; i++) {
		struct ef_sa *sa = tb->spi[dir][i], *next;

		for (; sa; sa = next) {
			next = sa->next_spi;
			sa->next_spi = nb[spi_hash(sa->spi) & (n - 1)];
			nb[spi_hash(sa->spi) & (n - 1)] = sa;
		}
	}
	free(tb->spi[dir]);
	tb->spi[dir] = nb;
	tb->spi_mask[dir] = n - 1;
}

static void grow_routes(struct ef_table *tb)
{
	uint32_t n = (tb->route_mask + 1) * 2;
	struct ef_route **nb;

	if (tb->n_routes <= tb->route_mask + 1 || !(nb = calloc(n, sizeof(*nb))))
		return;
	/* Rehash bucket by bucket keeping each chain's order (newest first). */
	for (uint32_t i = 0; i <= tb->route_mask; i++) {
		struct ef_route *r = tb->routes[i], *next;

		for (; r; r = next) {
			struct ef_route **tail = &nb[route_hash(&r->prefix) & (n - 1)];

			next = r->next;
			while (*tail)
				tail = &(*tail)->next;
			r->next = NULL;
			*tail = r;
		}
	}
	free(tb->routes);
	tb->routes = nb;
	tb->route_mask = n - 1;
}

static void plen_ref(struct ef_table *tb, const struct ef_prefix *p, int delta)
{
	int fi = p->family == 6, k = 0;

	tb->plen_refs[fi][p->plen] += (uint32_t)delta;
	/* Rebuild the list of lengths in use, longest first (only on changes). */
	for (int l = 128; l >= 0; l--)
		if (tb->plen_refs[fi][l])
			tb->plens[fi][k++] = (uint8_t)l;
	tb->n_plens[fi] = k;
}

static int prefixes_overlap(const struct ef_prefix *a, size_t na, const struct ef_prefix *b,
			    size_t nb)
{
	for (size_t i = 0; i < na; i++)
		for (size_t k = 0; k < nb; k++)
			if (ef_prefix_contains(&a[i], &b[k]) || ef_prefix_contains(&b[k], &a[i]))
				return 1;
	return 0;
}

static int same_prefix(const struct ef_prefix *a, const struct ef_prefix *b)
{
	return a->family == b->family && a->plen == b->plen && memcmp(a->addr, b->addr, 16) == 0;
}

/* Whether route r (of another SA) and remote prefix p of `sa` conflict: see
 * ef_sa_params.owner. */
static int conflicts(const struct ef_route *r, const struct ef_sa *sa, const struct ef_prefix *p)
{
	const struct ef_sa *old = r->sa;

	if (old->owner == sa->owner || r->prefix.family != p->family)
		return 0;
	if (!same_prefix(&r->prefix, p) &&
	    !(sa->group && old->group == sa->group &&
	      (ef_prefix_contains(&r->prefix, p) || ef_prefix_contains(p, &r->prefix))))
		return 0;
	return prefixes_overlap(old->local, old->n_local, sa->local, sa->n_local);
}

/* Whether a route of `sa` would shadow another owner's SA. Equal prefixes share a
 * bucket; nested ones (only checked within a group) may be anywhere. */
static int shadows(const struct ef_table *tb, const struct ef_sa *sa)
{
	for (size_t i = 0; i < sa->n_remote; i++) {
		const struct ef_prefix *p = &sa->remote[i];
		uint32_t b = route_hash(p) & tb->route_mask, first = sa->group ? 0 : b;
		uint32_t last = sa->group ? tb->route_mask : b;

		for (uint32_t k = first; k <= last; k++)
			for (const struct ef_route *r = tb->routes[k]; r; r = r->next)
				if (conflicts(r, sa, p))
					return 1;
	}
	return 0;
}

int ef_table_add(struct ef_table *tb, struct ef_sa *sa)
{
	struct ef_sa **bucket;

	if (ef_table_find(tb, sa->spi, sa->dir))
		return EF_E_EXISTS;
	if (sa->dir == EF_DIR_OUT && shadows(tb, sa))
		return EF_E_CONFLICT;
	bucket = &tb->spi[sa->dir][spi_hash(sa->spi) & tb->spi_mask[sa->dir]];
	sa->next_spi = *bucket;
	*bucket = sa;
	tb->n_sa[sa->dir]++;
	grow_spi(tb, sa->dir);
	if (sa->dir == EF_DIR_OUT) {
		for (size_t i = 0; i < sa->n_remote; i++) {
			struct ef_route *r = &sa->routes[i];
			struct ef_route **rb = &tb->routes[route_hash(&r->prefix) & tb->route_mask];

			/* Newest first: a rekeyed SA with the same selectors takes over. */
			r->next = *rb;
			*rb = r;
			tb->n_routes++;
			plen_ref(tb, &r->prefix, 1);
		}
		grow_routes(tb);
	}
	return EF_OK;
}

struct ef_sa *ef_table_remove(struct ef_table *tb, uint32_t spi, int dir)
{
	struct ef_sa **pp = &tb->spi[dir][spi_hash(spi) & tb->spi_mask[dir]], *sa;

	while (*pp && (*pp)->spi != spi)
		pp = &(*pp)->next_spi;
	sa = *pp;
	if (!sa)
		return NULL;
	*pp = sa->next_spi;
	tb->n_sa[dir]--;
	if (dir == EF_DIR_OUT) {
		for (size_t i = 0; i < sa->n_remote; i++) {
			struct ef_route *r = &sa->routes[i];
			struct ef_route **rp = &tb->routes[route_hash(&r->prefix) & tb->route_mask];

			while (*rp && *rp != r)
				rp = &(*rp)->next;
			if (*rp)
				*rp = r->next;
			tb->n_routes--;
			plen_ref(tb, &r->prefix, -1);
		}
	}
	return sa;
}

struct ef_sa *ef_table_route(const struct ef_table *tb, const struct ef_prefix *src,
			     const struct ef_prefix *dst)
{
	int fi = dst->family == 6;

	for (int i = 0; i < tb->n_plens[fi]; i++) {
		struct ef_prefix key;
		struct ef_route *r;

		mask_prefix(dst, tb->plens[fi][i], &key);
		for (r = tb->routes[route_hash(&key) & tb->route_mask]; r; r = r->next) {
			if (r->prefix.family == key.family && r->prefix.plen == key.plen &&
			    memcmp(r->prefix.addr, key.addr, 16) == 0 &&
			    in_any(r->sa->local, r->sa->n_local, src))
				return r->sa;
		}
	}
	return NULL;
}
