/* fuzz_decap.c — libFuzzer harness for the inbound ESP path: ef_sa_decap (parse, replay
 * check, ICV, decryption, padding, inner packet and selector checks, window update), and
 * an inbound SA resumed after a restart (the replay floor espfast static persists).
 *
 * Input: a 12-byte head, then records of [kind u8][len u16 BE][len bytes].
 *   head[0]   transform (mod EF_T_COUNT; mod 3, an AEAD, in seal mode)
 *   head[1]   bit 0: ESN; bit 1: seal mode; bit 2: narrow selectors (the peer's inner
 *             sources 198.19.1.0/24 and 2001:2:0:1::/64, ours 198.19.2.0/24 and
 *             2001:2:0:2::/64) instead of everything
 *   head[2:4] replay window - 1 (mod 4096)
 *   head[4:12] floor of the first SA (32 bits without ESN)
 *   raw mode:  a record is an ESP packet, decapsulated as received
 *   seal mode: a record is [seq u64 BE][ESP plaintext: inner || padding || pad len || nh],
 *              sealed here with OpenSSL's AEAD directly (not through esp.c) so that the
 *              fuzzer reaches everything after the ICV
 *   kind bit 0: first restart the SA: a new one whose floor is the old one's top (what
 *              a clean stop writes to the state file)
 *
 * Oracles: in seal mode without ESN, an independent model of RFC 4303 §3.4.3 (window,
 * floor, the numbers seen) and of the padding decides replay / padding / accept exactly;
 * every accepted packet's inner bytes are the plaintext's and its addresses are inside
 * the selectors (read here from the raw header), a policy drop's are not; after a restart no packet
 * accepted before it is accepted again; an accepted packet sent twice is a replay.
 * Seeds: csrc/fuzz/make_corpus.py (ESP from our own dataplane under the keys below). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "api.h"
#include "esp.h"
#include "proto.h"
#include "sa.h"

#define SPI 0x1000
#define MAX_REC 128
#define MAX_KEEP 32
#define BUF (EF_HEADROOM + 70000 + EF_TAILROOM)

#define ASSERT(c)                                                                     \
	do {                                                                          \
		if (!(c))                                                             \
			__builtin_trap();                                             \
	} while (0)

/* The keys make_corpus.py uses: byte i of the encryption key is 7i + 1, of the
 * integrity key 11i + 3. */
static void fixed_keys(uint8_t *enc, uint8_t *integ)
{
	for (int i = 0; i < 64; i++) {
		enc[i] = (uint8_t)(7 * i + 1);
		integ[i] = (uint8_t)(11 * i + 3);
	}
}

struct model {
	uint64_t floor, top;
	uint32_t window;
	int n;
	uint64_t seen[MAX_REC];
};

static int model_ok(const struct model *m, uint64_t seq)
{
	if (seq == 0 || seq <= m->floor)
		return 0;
	if (seq <= m->top && m->top - seq >= m->window)
		return 0;
	for (int i = 0; i < m->n; i++)
		if (m->seen[i] == seq)
			return 0;
	return 1;
}

static void model_add(struct model *m, uint64_t seq)
{
	if (m->n < MAX_REC)
		m->seen[m->n++] = seq;
	if (seq > m->top)
		m->top = seq;
}

struct rig {
	int transform, esn, seal, narrow;
	uint32_t window;
	struct ef_prefix any[2], remote[2], local[2];
	uint8_t enc[64], integ[64];
	struct ef_sa *sa;
	struct model m;
	/* accepted packets, to replay after a restart */
	int nkeep;
	size_t keep_len[MAX_KEEP];
	uint8_t *keep[MAX_KEEP];
};

static struct ef_sa *new_sa(struct rig *r, uint64_t floor)
{
	const struct ef_transform *t = ef_transform_get(r->transform);
	struct ef_sa_params p;
	struct ef_sa *sa;
	int err = 0;

	memset(&p, 0, sizeof(p));
	p.spi = SPI;
	p.dir = EF_DIR_IN;
	p.transform = r->transform;
	p.enc_key = r->enc;
	p.enc_key_len = t->enc_key_len;
	p.integ_key = t->integ_key_len ? r->integ : NULL;
	p.integ_key_len = t->integ_key_len;
	p.local_ts = r->narrow ? r->local : r->any;
	p.remote_ts = r->narrow ? r->remote : r->any;
	p.n_local = p.n_remote = 2;
	p.esn = r->esn;
	p.replay_window = r->window;
	p.initial_seq = floor;
	sa = ef_sa_new(&p, 1, &err);
	ASSERT(sa != NULL);
	return sa;
}

/* The restart: a new SA above the old one's top; nothing accepted before gets in. */
static void restart(struct rig *r)
{
	static uint8_t buf[BUF];
	struct ef_sa_stats st;
	uint8_t *inner;

	ef_sa_read_stats(r->sa, &st);
	ef_sa_free(r->sa);
	r->sa = new_sa(r, st.seq);
	r->m.floor = r->m.top = st.seq;
	r->m.n = 0;
	for (int i = 0; i < r->nkeep; i++) {
		long got;

		memcpy(buf + EF_HEADROOM, r->keep[i], r->keep_len[i]);
		got = ef_sa_decap(r->sa, 0, buf + EF_HEADROOM, r->keep_len[i], &inner);
		/* With ESN an old number may be read as the next epoch: then the ICV fails. */
		ASSERT(got == -EF_E_REPLAY || (r->esn && got == -EF_E_AUTH));
	}
}

static void keep(struct rig *r, const uint8_t *esp, size_t len)
{
	if (r->nkeep == MAX_KEEP)
		return;
	r->keep[r->nkeep] = malloc(len);
	ASSERT(r->keep[r->nkeep] != NULL);
	memcpy(r->keep[r->nkeep], esp, len);
	r->keep_len[r->nkeep++] = len;
}

/* ESP around `pt` under the fixed AEAD key: header, IV = seq, ciphertext, tag. */
static size_t seal(const struct rig *r, uint64_t seq, const uint8_t *pt, size_t n, uint8_t *out)
{
	static const char *names[] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
	const struct ef_transform *t = ef_transform_get(r->transform);
	size_t klen = t->enc_key_len - EF_AEAD_SALT_LEN;
	uint8_t nonce[12], aad[12];
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, names[r->transform], NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl = 0, aadlen = r->esn ? 12 : 8;

	ASSERT(c && ctx);
	ef_put32(out, SPI);
	ef_put32(out + 4, (uint32_t)seq);
	ef_put64(out + 8, seq);
	memcpy(nonce, r->enc + klen, EF_AEAD_SALT_LEN);
	ef_put64(nonce + 4, seq);
	ef_put32(aad, SPI);
	if (r->esn)
		ef_put64(aad + 4, seq);
	else
		ef_put32(aad + 4, (uint32_t)seq);
	ASSERT(EVP_EncryptInit_ex2(ctx, c, r->enc, nonce, NULL) == 1);
	ASSERT(EVP_EncryptUpdate(ctx, NULL, &outl, aad, aadlen) == 1);
	ASSERT(EVP_EncryptUpdate(ctx, out + 16, &outl, pt, (int)n) == 1);
	ASSERT(EVP_EncryptFinal_ex(ctx, out + 16 + n, &outl) == 1);
	ASSERT(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + 16 + n) == 1);
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(c);
	return 16 + n + 16;
}

/* The narrow selectors: 198.19.{1,2}.0/24, 2001:2:0:{1,2}::/64. */
static void narrow(struct ef_prefix *remote, struct ef_prefix *local)
{
	for (int side = 0; side < 2; side++) {
		struct ef_prefix *p = side ? local : remote;

		memset(p, 0, 2 * sizeof(*p));
		p[0].family = 4, p[0].plen = 24;
		p[0].addr[0] = 198, p[0].addr[1] = 19, p[0].addr[2] = (uint8_t)(1 + side);
		p[1].family = 6, p[1].plen = 64;
		p[1].addr[0] = 0x20, p[1].addr[1] = 0x01, p[1].addr[3] = 2;
		p[1].addr[7] = (uint8_t)(1 + side);
	}
}

/* An inner packet's addresses inside the selectors, read straight from its header. */
static int inside(const struct rig *r, const uint8_t *ip, size_t len)
{
	if (!r->narrow)
		return 1;
	if ((ip[0] >> 4) == 4 && len >= 20)
		return !memcmp(ip + 12, "\xc6\x13\x01", 3) && !memcmp(ip + 16, "\xc6\x13\x02", 3);
	if ((ip[0] >> 4) == 6 && len >= 40)
		return !memcmp(ip + 8, "\x20\x01\x00\x02\x00\x00\x00\x01", 8) &&
		       !memcmp(ip + 24, "\x20\x01\x00\x02\x00\x00\x00\x02", 8);
	return 0;
}

static int padding_ok(const uint8_t *pt, size_t n, size_t *inner_len)
{
	size_t pl;

	if (n < 2)
		return 0;
	pl = pt[n - 2];
	if (pl + 2 > n)
		return 0;
	for (size_t i = 0; i < pl; i++)
		if (pt[n - 2 - pl + i] != (uint8_t)(i + 1))
			return 0;
	*inner_len = n - 2 - pl;
	return 1;
}

static void sealed_record(struct rig *r, const uint8_t *d, size_t len)
{
	static uint8_t buf[BUF], sent[BUF];
	const struct ef_transform *t = ef_transform_get(r->transform);
	uint8_t *esp = buf + EF_HEADROOM, *inner;
	const uint8_t *pt = d + 8;
	size_t n = len - 8, esp_len, inner_len = 0;
	uint64_t seq = ef_get64(d);
	int expect_ok;
	long got;

	if (!r->esn)
		seq &= UINT32_MAX;
	esp_len = seal(r, seq, pt, n, esp);
	memcpy(sent, esp, esp_len);
	expect_ok = model_ok(&r->m, seq);
	got = ef_sa_decap(r->sa, 0, esp, esp_len, &inner);
	if (esp_len < ef_esp_min_len(t)) {
		ASSERT(got == -EF_E_MALFORMED);
		return;
	}
	if (got >= 0 || got == -EF_E_MALFORMED || got == -EF_E_POLICY) {
		/* authenticated and the padding was right: the window moved */
		ASSERT(expect_ok && padding_ok(pt, n, &inner_len));
		model_add(&r->m, seq);
		keep(r, sent, esp_len);
		if (got == -EF_E_POLICY)
			ASSERT(!inside(r, pt, inner_len));
		if (got == 0)
			ASSERT(pt[n - 1] == EF_NH_DUMMY);
		if (got > 0) {
			ASSERT((size_t)got <= inner_len && memcmp(inner, pt, (size_t)got) == 0);
			ASSERT((inner[0] >> 4) == (pt[n - 1] == EF_NH_IPV4 ? 4 : 6));
			ASSERT(inside(r, inner, (size_t)got));
		}
		return;
	}
	if (r->esn)
		return; /* the inferred number may differ from ours: only no false accept */
	if (!expect_ok)
		ASSERT(got == -EF_E_REPLAY);
	else
		ASSERT(got == -EF_E_PADDING && !padding_ok(pt, n, &inner_len));
}

static void raw_record(struct rig *r, const uint8_t *d, size_t len)
{
	static uint8_t buf[BUF], again[BUF];
	uint8_t *inner;
	long got;

	memcpy(buf + EF_HEADROOM, d, len);
	got = ef_sa_decap(r->sa, 0, buf + EF_HEADROOM, len, &inner);
	ASSERT(got >= 0 || got == -EF_E_MALFORMED || got == -EF_E_REPLAY || got == -EF_E_AUTH ||
	       got == -EF_E_PADDING || got == -EF_E_POLICY);
	if (got < 0)
		return;
	ASSERT(got == 0 || (inner >= buf + EF_HEADROOM && inner + got <= buf + EF_HEADROOM + len));
	ASSERT(got == 0 || inside(r, inner, (size_t)got));
	keep(r, d, len);
	/* the same packet again is a replay */
	memcpy(again + EF_HEADROOM, d, len);
	ASSERT(ef_sa_decap(r->sa, 0, again + EF_HEADROOM, len, &inner) == -EF_E_REPLAY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rig r;
	size_t off = 12;
	int nrec = 0;

	if (size < 12)
		return 0;
	memset(&r, 0, sizeof(r));
	r.seal = (data[1] >> 1) & 1;
	r.transform = data[0] % (r.seal ? 3 : EF_T_COUNT);
	r.esn = data[1] & 1;
	r.narrow = (data[1] >> 2) & 1;
	narrow(r.remote, r.local);
	r.window = (uint32_t)(ef_get16(data + 2) % 4096) + 1;
	r.m.floor = r.m.top = r.esn ? ef_get64(data + 4) : ef_get32(data + 8);
	r.m.window = r.window;
	r.any[0].family = 4;
	r.any[1].family = 6;
	fixed_keys(r.enc, r.integ);
	r.sa = new_sa(&r, r.m.floor);
	while (off + 3 <= size && nrec++ < MAX_REC) {
		uint8_t kind = data[off];
		size_t len = ef_get16(data + off + 1);

		off += 3;
		if (len > size - off)
			len = size - off;
		if (kind & 1)
			restart(&r);
		if (r.seal && len >= 8 + 1)
			sealed_record(&r, data + off, len);
		else if (!r.seal)
			raw_record(&r, data + off, len);
		off += len;
	}
	ef_sa_free(r.sa);
	for (int i = 0; i < r.nkeep; i++)
		free(r.keep[i]);
	return 0;
}
