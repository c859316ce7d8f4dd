/* test_esp.c — known answers through the keyed contexts, ESP round trips for every
 * transform with and without ESN, and every kind of bad packet on decap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "dataplane.h"
#include "esp.h"
#include "sa.h"

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;

	for (; h[0] && h[1]; h += 2) {
		unsigned v;

		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* AES-GCM: McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", revised
 * submission to NIST, 2005, Appendix B, Test Cases 4 (AES-128) and 16 (AES-256). */
static void kat_gcm(const char *key, const char *ct_want, const char *tag_want, int id)
{
	const char *p = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
			"1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
	uint8_t k[36] = {0}, nonce[12], aad[20], buf[64], want[64], tag[16], twant[16];
	size_t klen = unhex(key, k), n = unhex(p, buf);
	struct ef_cctx c;

	unhex("cafebabefacedbaddecaf888", nonce);
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad);
	unhex(ct_want, want);
	unhex(tag_want, twant);
	(void)klen;
	CHECK(ef_cctx_init(&c, ef_transform_get(id), 1, k, NULL) == 0);
	CHECK(c.ivfull == 1); /* the nonce set in one parameter call (esp.h) */
	/* Through one keyed context, only the nonce set per packet: the known answer, then
	 * another nonce (another answer), the known answer again; then the same through
	 * EVP_EncryptInit_ex, the path taken when OpenSSL refuses the parameter. */
	for (int round = 0; round < 6; round++) {
		uint8_t other[12];

		memcpy(other, nonce, 12);
		other[11] ^= (uint8_t)(round % 3 == 1);
		if (round == 3) {
			CHECK(c.ivfull == 1);
			c.ivfull = 0;
		}
		unhex(p, buf);
		CHECK(ef_aead_crypt(&c, 1, other, aad, 20, buf, n, tag, 16) == 0);
		CHECK((memcmp(buf, want, n) == 0) == (round % 3 != 1));
		CHECK((memcmp(tag, twant, 16) == 0) == (round % 3 != 1));
	}
	CHECK(c.ivfull == 0);
	ef_cctx_free(&c);
	CHECK(ef_cctx_init(&c, ef_transform_get(id), 0, k, NULL) == 0);
	CHECK(ef_aead_crypt(&c, 0, nonce, aad, 20, buf, n, twant, 16) == 0);
	unhex(p, want);
	CHECK(memcmp(buf, want, n) == 0);
	twant[0] ^= 1;
	CHECK(ef_aead_crypt(&c, 0, nonce, aad, 20, buf, n, twant, 16) == -1);
	ef_cctx_free(&c);
}

/* ChaCha20-Poly1305: RFC 8439 §2.8.2 (the AEAD construction RFC 7634 uses); its
 * 12-byte AAD has the shape of an ESN ESP AAD and its nonce of salt || IV. */
static void kat_chacha(void)
{
	const char *text = "Ladies and Gentlemen of the class of '99: If I could offer you "
			   "only one tip for the future, sunscreen would be it.";
	uint8_t k[36], nonce[12], aad[12], buf[128], tag[16], twant[16], head[16];
	size_t n = strlen(text);
	struct ef_cctx c;

	for (int i = 0; i < 32; i++)
		k[i] = (uint8_t)(0x80 + i);
	unhex("070000004041424344454647", nonce);
	unhex("50515253c0c1c2c3c4c5c6c7", aad);
	unhex("1ae10b594f09e26a7e902ecbd0600691", twant);
	unhex("d31a8d34648e60db7b86afbc53ef7ec2", head);
	CHECK(ef_cctx_init(&c, ef_transform_get(EF_T_CHACHA20POLY1305), 1, k, NULL) == 0);
	CHECK(c.ivfull == 1 && c.chacha == 1);
	/* As for AES-GCM (kat_gcm): the known answer, another nonce, the known answer, on the
	 * one-call nonce path and then on the EVP_EncryptInit_ex path. */
	for (int round = 0; round < 6; round++) {
		uint8_t other[12];

		memcpy(other, nonce, 12);
		other[11] ^= (uint8_t)(round % 3 == 1);
		if (round == 3) {
			CHECK(c.ivfull == 1); /* OpenSSL took the parameter each time */
			c.ivfull = 0;
		}
		memcpy(buf, text, n);
		CHECK(ef_aead_crypt(&c, 1, other, aad, 12, buf, n, tag, 16) == 0);
		CHECK((memcmp(buf, head, 16) == 0) == (round % 3 != 1));
		CHECK((memcmp(tag, twant, 16) == 0) == (round % 3 != 1));
	}
	ef_cctx_free(&c);
	/* Opening: the known answer, a forged tag (refused, and the context is fine after
	 * it), another nonce's packet, the known answer again; both paths. */
	CHECK(ef_cctx_init(&c, ef_transform_get(EF_T_CHACHA20POLY1305), 0, k, NULL) == 0);
	CHECK(c.ivfull == 1);
	for (int round = 0; round < 8; round++) {
		uint8_t other[12], ct[128], t2[16];
		struct ef_cctx s;

		memcpy(other, nonce, 12);
		other[11] ^= (uint8_t)(round % 4 == 2);
		if (round == 4) {
			CHECK(c.ivfull == 1);
			c.ivfull = 0;
		}
		CHECK(ef_cctx_init(&s, ef_transform_get(EF_T_CHACHA20POLY1305), 1, k, NULL) == 0);
		memcpy(ct, text, n);
		CHECK(ef_aead_crypt(&s, 1, other, aad, 12, ct, n, t2, 16) == 0);
		ef_cctx_free(&s);
		t2[5] ^= (uint8_t)(round % 4 == 1);
		CHECK(ef_aead_crypt(&c, 0, other, aad, 12, ct, n, t2, 16) == (round % 4 == 1 ? -1 : 0));
		if (round % 4 != 1)
			CHECK(memcmp(ct, text, n) == 0);
	}
	ef_cctx_free(&c);
}

/* HMAC-SHA2: RFC 4868 §2.7.2, test cases AUTH256-1, AUTH384-1, AUTH512-1 (key 0x0b
 * repeated, data "Hi There"), checked at the transform's truncated ICV length, twice
 * through one keyed context. */
static void kat_hmac(int id, const char *want_hex)
{
	const struct ef_transform *t = ef_transform_get(id);
	uint8_t ekey[32] = {0}, ikey[64], md[64], want[64];
	struct ef_cctx c;

	memset(ikey, 0x0b, sizeof(ikey));
	unhex(want_hex, want);
	CHECK(ef_cctx_init(&c, t, 1, ekey, ikey) == 0);
	for (int round = 0; round < 2; round++) {
		CHECK(ef_hmac(&c, (const uint8_t *)"Hi ", 3, (const uint8_t *)"There", 5, md) == 0);
		CHECK(memcmp(md, want, t->icv_len) == 0);
	}
	ef_cctx_free(&c);
}

static void make_params(struct ef_sa_params *p, int transform, int dir, int esn,
			uint8_t *ekey, uint8_t *ikey, struct ef_prefix *ts)
{
	const struct ef_transform *t = ef_transform_get(transform);

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < 36; i++)
		ekey[i] = (uint8_t)(i * 7 + transform);
	for (int i = 0; i < 64; i++)
		ikey[i] = (uint8_t)(i * 13 + 1);
	memset(ts, 0, 2 * sizeof(*ts));
	ts[0].family = 4; /* 0.0.0.0/0 */
	ts[1].family = 6; /* ::/0 */
	p->spi = 0x1234;
	p->dir = dir;
	p->transform = transform;
	p->enc_key = ekey;
	p->enc_key_len = t->enc_key_len;
	p->integ_key = ikey;
	p->integ_key_len = t->integ_key_len;
	p->local_ts = ts;
	p->n_local = 2;
	p->remote_ts = ts;
	p->n_remote = 2;
	p->esn = esn;
	p->replay_window = 64;
}

/* A minimal IPv4 (or IPv6) packet of `len` bytes from src to dst. */
static size_t make_ip(uint8_t *p, size_t len, int v6)
{
	memset(p, 0xab, len);
	if (v6) {
		memset(p, 0, 40);
		p[0] = 0x60;
		p[4] = (uint8_t)((len - 40) >> 8);
		p[5] = (uint8_t)(len - 40);
		p[6] = 17;
		p[8] = 0x20;
		p[24] = 0x20;
		return len;
	}
	memset(p, 0, 20);
	p[0] = 0x45;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	p[9] = 17;
	p[12] = 198, p[13] = 18, p[14] = 1, p[15] = 1;
	p[16] = 198, p[17] = 18, p[18] = 2, p[19] = 1;
	return len;
}

struct pair {
	ef_esp_sa *out, *in;
};

static int make_pair(struct pair *pr, int transform, int esn, uint64_t initial_seq)
{
	uint8_t ekey[36], ikey[64];
	struct ef_prefix ts[2];
	struct ef_sa_params p;
	int err = 0;

	make_params(&p, transform, EF_DIR_OUT, esn, ekey, ikey, ts);
	p.initial_seq = initial_seq;
	pr->out = ef_esp_sa_new(&p, &err);
	make_params(&p, transform, EF_DIR_IN, esn, ekey, ikey, ts);
	p.initial_seq = initial_seq;
	pr->in = ef_esp_sa_new(&p, &err);
	return pr->out && pr->in ? 0 : -1;
}

static void free_pair(struct pair *pr)
{
	ef_esp_sa_free(pr->out);
	ef_esp_sa_free(pr->in);
}

static void roundtrip(int transform, int esn)
{
	uint8_t in[1500], esp[1600], out[1600];
	struct ef_sa_stats st;
	struct pair pr;
	int ok = 1;

	CHECK(make_pair(&pr, transform, esn, esn ? 0xFFFFFFF0ULL : 0) == 0);
	for (size_t len = 20; len <= 1400; len += 37) {
		int v6 = len >= 40 && (len % 2);
		long n, m;

		make_ip(in, len, v6);
		n = ef_esp_sa_encap(pr.out, in, len, esp, sizeof(esp));
		m = n > 0 ? ef_esp_sa_decap(pr.in, esp, (size_t)n, out, sizeof(out)) : -1;
		ok &= n > 0 && m == (long)len && memcmp(in, out, len) == 0;
		ok &= ef_esp_sa_decap(pr.in, esp, (size_t)n, out, sizeof(out)) == -EF_E_REPLAY;
	}
	CHECK(ok);
	ef_esp_sa_stats(pr.in, &st);
	CHECK(st.packets == 38 && st.replay_drops == 38);
	if (esn)
		CHECK(st.seq > 0xFFFFFFFFULL); /* crossed 2^32 */
	free_pair(&pr);
}

/* Every malformed input on decap, each with its counter. */
static void bad_input(int transform)
{
	const struct ef_transform *t = ef_transform_get(transform);
	uint8_t in[200], esp[400], bad[400], out[400];
	struct ef_sa_stats st;
	struct pair pr;
	long n;

	CHECK(make_pair(&pr, transform, 0, 0) == 0);
	make_ip(in, 100, 0);
	n = ef_esp_sa_encap(pr.out, in, 100, esp, sizeof(esp));
	CHECK(n > 0);

	/* Truncated: every length below the full packet fails and nothing crashes. */
	for (long k = 0; k < n; k++) {
		long r = ef_esp_sa_decap(pr.in, esp, (size_t)k, out, sizeof(out));

		if (r >= 0 || (r != -EF_E_MALFORMED && r != -EF_E_AUTH))
			CHECK(0);
	}
	/* Bad ICV. */
	memcpy(bad, esp, (size_t)n);
	bad[n - 1] ^= 0x40;
	CHECK(ef_esp_sa_decap(pr.in, bad, (size_t)n, out, sizeof(out)) == -EF_E_AUTH);
	/* Flipped ciphertext bit. */
	memcpy(bad, esp, (size_t)n);
	bad[EF_ESP_HDR_LEN + t->iv_len + 3] ^= 1;
	CHECK(ef_esp_sa_decap(pr.in, bad, (size_t)n, out, sizeof(out)) == -EF_E_AUTH);
	/* Unknown SPI (standalone SA reports it as malformed). */
	memcpy(bad, esp, (size_t)n);
	bad[0] ^= 0x80;
	CHECK(ef_esp_sa_decap(pr.in, bad, (size_t)n, out, sizeof(out)) == -EF_E_MALFORMED);
	/* The good one still passes after all that, once. */
	CHECK(ef_esp_sa_decap(pr.in, esp, (size_t)n, out, sizeof(out)) == 100);
	CHECK(ef_esp_sa_decap(pr.in, esp, (size_t)n, out, sizeof(out)) == -EF_E_REPLAY);
	ef_esp_sa_stats(pr.in, &st);
	CHECK(st.auth_failures >= 2);
	CHECK(st.replay_drops == 1);
	CHECK(st.packets == 1);
	free_pair(&pr);
}

/* Wrong padding and policy, built with the sealing primitive so the ICV is valid. */
static void bad_padding_and_policy(int transform)
{
	const struct ef_transform *t = ef_transform_get(transform);
	uint8_t ekey[36], ikey[64], buf[512], *esp, out[512];
	struct ef_prefix ts[2], local;
	struct ef_sa_params p;
	struct ef_sa_stats st;
	struct ef_esp_hdr h;
	struct ef_cctx c;
	ef_esp_sa *in;
	int err;
	long n;

	make_params(&p, transform, EF_DIR_OUT, 0, ekey, ikey, ts);
	CHECK(ef_cctx_init(&c, t, 1, ekey, ikey) == 0);
	h.spi = 0x1234;
	h.esn = 0;
	h.salt = ekey + t->enc_key_len - 4;
	/* 1: padding bytes not 1, 2, 3... (inner length chosen so that padding is needed) */
	h.seq = 1;
	make_ip(buf + 64, 61, 0);
	n = ef_esp_seal(t, &c, &h, EF_NH_IPV4, buf + 64, 61, &esp);
	CHECK(n > 0);
	make_params(&p, transform, EF_DIR_IN, 0, ekey, ikey, ts);
	/* Inbound SA whose local selector is 198.19.0.0/16: the inner dst 198.18.2.1 is outside. */
	memset(&local, 0, sizeof(local));
	local.family = 4;
	local.plen = 16;
	local.addr[0] = 198;
	local.addr[1] = 19;
	p.local_ts = &local;
	p.n_local = 1;
	in = ef_esp_sa_new(&p, &err);
	CHECK(in != NULL);
	CHECK(ef_esp_sa_decap(in, esp, (size_t)n, out, sizeof(out)) == -EF_E_POLICY);

	/* Wrong padding under a valid ICV: the trailer says pad = 3 but the bytes are
	 * 1 2 9. Sealed by hand through the same keyed primitives. */
	{
		size_t ptlen = t->align == 4 ? 64 : 64, off = EF_ESP_HDR_LEN + t->iv_len;
		uint8_t *pt = buf + off;
		int outl;

		memset(buf, 0, sizeof(buf));
		ef_put32(buf, 0x1234);
		ef_put32(buf + 4, 3);
		make_ip(pt, ptlen - 5, 0);
		memcpy(pt + ptlen - 5, "\x01\x02\x09\x03\x04", 5);
		if (t->aead) {
			uint8_t nonce[12], aad[8];

			memcpy(aad, buf, 8);
			memcpy(nonce, h.salt, 4);
			memset(buf + EF_ESP_HDR_LEN, 0x11, 8);
			memcpy(nonce + 4, buf + EF_ESP_HDR_LEN, 8);
			CHECK(ef_aead_crypt(&c, 1, nonce, aad, 8, pt, ptlen, pt + ptlen, 16) == 0);
		} else {
			uint8_t md[64];

			memset(buf + EF_ESP_HDR_LEN, 0x22, 16);
			CHECK(EVP_EncryptInit_ex(c.cipher, NULL, NULL, NULL, buf + EF_ESP_HDR_LEN));
			CHECK(EVP_EncryptUpdate(c.cipher, pt, &outl, pt, (int)ptlen));
			CHECK(ef_hmac(&c, buf, off + ptlen, NULL, 0, md) == 0);
			memcpy(pt + ptlen, md, t->icv_len);
		}
		n = (long)(off + ptlen + t->icv_len);
		CHECK(ef_esp_sa_decap(in, buf, (size_t)n, out, sizeof(out)) == -EF_E_PADDING);
	}
	ef_esp_sa_stats(in, &st);
	CHECK(st.policy_drops == 1);
	CHECK(st.bad_padding == 1);
	ef_esp_sa_free(in);
	ef_cctx_free(&c);
}

/* The batch calls at the tightest stride, with the most padding and the largest ICV;
 * the buffer is exactly n * stride so that ASan sees any write past it. */
static void batch_bounds(void)
{
	const size_t len = 1407, stride = len + EF_ENCAP_OVERHEAD, n = 3; /* 1407 + 2: pad 15 */
	uint8_t *bufs = malloc(n * stride);
	uint32_t offs[3], lens[3];
	struct pair pr;

	CHECK(make_pair(&pr, EF_T_AES256_SHA512, 1, 0) == 0);
	for (size_t i = 0; i < n; i++)
		make_ip(bufs + i * stride + EF_ENCAP_OVERHEAD / 2, len, 0);
	CHECK(ef_esp_sa_encap_batch(pr.out, bufs, stride, n, len, offs, lens) == (long)n);
	CHECK(lens[0] == 8 + 16 + 1424 + 32);
	CHECK(ef_esp_sa_encap_batch(pr.out, bufs, stride - 1, n, len, offs, lens) ==
	      -EF_E_NOSPACE);
	CHECK(ef_esp_sa_decap_batch(pr.in, bufs, stride, n, offs, lens) == (long)n);
	free(bufs);
	free_pair(&pr);
}

/* AES-GCM opening through the fixed salt + per-packet IV parameter: it takes packets in
 * any order, refuses a bad tag or a changed IV, and the next good packet opens after a
 * refusal (no state left behind); ChaCha20-Poly1305 and sealing keep the plain path. */
static void gcm_open_by_iv_param(void)
{
	const struct ef_transform *t = ef_transform_get(EF_T_AES128GCM16);
	uint8_t key[36], pkt[4][256], copy[256];
	long n[4];
	struct ef_cctx e, d, c;
	struct ef_esp_hdr h = {.spi = 0x77, .esn = 1, .salt = key + 16};
	uint8_t *inner, nh;
	size_t il;
	int ok = 1;

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(0x30 + i);
	CHECK(ef_cctx_init(&e, t, 1, key, NULL) == 0 && ef_cctx_init(&d, t, 0, key, NULL) == 0);
	CHECK(d.ivinv == 1 && e.ivinv == 0);
	CHECK(ef_cctx_init(&c, ef_transform_get(EF_T_CHACHA20POLY1305), 0, key, NULL) == 0);
	CHECK(c.ivinv == 0);
	for (int k = 0; k < 4; k++) {
		uint8_t *esp;

		h.seq = 100 + (uint64_t)k * 3;
		memset(pkt[k], 0, sizeof(pkt[k]));
		make_ip(pkt[k] + 64, 100, 0);
		n[k] = ef_esp_seal(t, &e, &h, EF_NH_IPV4, pkt[k] + 64, 100, &esp);
		ok &= n[k] > 0;
		memmove(pkt[k], esp, (size_t)n[k]);
	}
	for (int k = 3; k >= 0; k--) { /* out of order */
		h.seq = 100 + (uint64_t)k * 3;
		memcpy(copy, pkt[k], (size_t)n[k]);
		if (k == 2) {
			copy[n[k] - 1] ^= 1; /* tag */
			ok &= ef_esp_open(t, &d, &h, copy, (size_t)n[k], &inner, &il, &nh) ==
			      EF_OPEN_AUTH;
			memcpy(copy, pkt[k], (size_t)n[k]);
			copy[EF_ESP_HDR_LEN] ^= 1; /* the IV on the wire */
			ok &= ef_esp_open(t, &d, &h, copy, (size_t)n[k], &inner, &il, &nh) ==
			      EF_OPEN_AUTH;
			memcpy(copy, pkt[k], (size_t)n[k]);
		}
		ok &= ef_esp_open(t, &d, &h, copy, (size_t)n[k], &inner, &il, &nh) == EF_OPEN_OK &&
		      il == 100;
	}
	CHECK(ok);
	ef_cctx_free(&e);
	ef_cctx_free(&d);
	ef_cctx_free(&c);
}

void test_esp(void)
{
	batch_bounds();
	gcm_open_by_iv_param();
	kat_gcm("feffe9928665731c6d6a8f9467308308",
		"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
		"21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
		"5bc94fbc3221a5db94fae95ae7121a47", EF_T_AES128GCM16);
	kat_gcm("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
		"8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
		"76fc6ece0f4e1768cddf8853bb2d551b", EF_T_AES256GCM16);
	kat_chacha();
	kat_hmac(EF_T_AES128_SHA256,
		 "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7");
	kat_hmac(EF_T_AES256_SHA384, "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"
				     "7a959796489bddbc4c5df61d5b3297b4fb68dab9f1b582c2");
	kat_hmac(EF_T_AES128_SHA512,
		 "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"
		 "ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b");
	for (int t = 0; t < EF_T_COUNT; t++) {
		roundtrip(t, 0);
		roundtrip(t, 1);
		bad_input(t);
		bad_padding_and_policy(t);
	}
}
