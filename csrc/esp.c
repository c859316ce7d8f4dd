/* esp.c — ESP seal/open in place through per-SA keyed EVP contexts; see esp.h. */
#include "esp.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>

static const struct ef_transform transforms[EF_T_COUNT] = {
	[EF_T_AES128GCM16] = {"aes128gcm16", "AES-128-GCM", NULL, 1, 16 + 4, 0, 8, 16, 4},
	[EF_T_AES256GCM16] = {"aes256gcm16", "AES-256-GCM", NULL, 1, 32 + 4, 0, 8, 16, 4},
	[EF_T_CHACHA20POLY1305] = {"chacha20poly1305", "ChaCha20-Poly1305", NULL, 1, 32 + 4, 0,
				   8, 16, 4},
	[EF_T_AES128_SHA256] = {"aes128-sha256", "AES-128-CBC", "SHA256", 0, 16, 32, 16, 16, 16},
	[EF_T_AES256_SHA256] = {"aes256-sha256", "AES-256-CBC", "SHA256", 0, 32, 32, 16, 16, 16},
	[EF_T_AES128_SHA384] = {"aes128-sha384", "AES-128-CBC", "SHA384", 0, 16, 48, 16, 24, 16},
	[EF_T_AES256_SHA384] = {"aes256-sha384", "AES-256-CBC", "SHA384", 0, 32, 48, 16, 24, 16},
	[EF_T_AES128_SHA512] = {"aes128-sha512", "AES-128-CBC", "SHA512", 0, 16, 64, 16, 32, 16},
	[EF_T_AES256_SHA512] = {"aes256-sha512", "AES-256-CBC", "SHA512", 0, 32, 64, 16, 32, 16},
};

const struct ef_transform *ef_transform_get(int id)
{
	if (id < 0 || id >= EF_T_COUNT)
		return NULL;
	return &transforms[id];
}

size_t ef_esp_min_len(const struct ef_transform *t)
{
	/* AEADs: at least the trailer; CBC: at least one block. */
	return EF_ESP_HDR_LEN + t->iv_len + (t->aead ? EF_ESP_TRAILER_LEN : t->align) +
	       t->icv_len;
}

int ef_cctx_init(struct ef_cctx *c, const struct ef_transform *t, int encrypt,
		 const uint8_t *enc_key, const uint8_t *integ_key)
{
	EVP_CIPHER *cipher = NULL;
	EVP_MAC *mac = NULL;
	int ret = -1;

	c->cipher = NULL;
	c->mac = NULL;
	c->ivinv = 0;
	c->ivfull = c->chacha = c->reinit = 0;
	c->ivpos = EF_IVPOOL;
	cipher = EVP_CIPHER_fetch(NULL, t->cipher, NULL);
	c->cipher = EVP_CIPHER_CTX_new();
	if (!cipher || !c->cipher)
		goto out;
	/* The key is scheduled here, once; per packet only the IV is set. */
	if (!EVP_CipherInit_ex(c->cipher, cipher, NULL, enc_key, NULL, encrypt))
		goto out;
	c->chacha = t->aead && strstr(t->cipher, "ChaCha") != NULL;
	c->ivfull = t->aead && (encrypt || c->chacha);
	if (t->aead && !encrypt && strstr(t->cipher, "GCM")) {
		memcpy(c->salt, enc_key + t->enc_key_len - EF_AEAD_SALT_LEN, EF_AEAD_SALT_LEN);
		c->ivinv = EVP_CIPHER_CTX_ctrl(c->cipher, EVP_CTRL_GCM_SET_IV_FIXED,
					       EF_AEAD_SALT_LEN, c->salt) == 1;
	}
	if (!t->aead) {
		char digest[16];
		OSSL_PARAM params[2];

		EVP_CIPHER_CTX_set_padding(c->cipher, 0);
		snprintf(digest, sizeof(digest), "%s", t->digest);
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
		params[1] = OSSL_PARAM_construct_end();
		mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		if (!mac)
			goto out;
		c->mac = EVP_MAC_CTX_new(mac);
		if (!c->mac || !EVP_MAC_init(c->mac, integ_key, t->integ_key_len, params))
			goto out;
	}
	ret = 0;
out:
	EVP_CIPHER_free(cipher);
	EVP_MAC_free(mac);
	if (ret)
		ef_cctx_free(c);
	return ret;
}

void ef_cctx_free(struct ef_cctx *c)
{
	/* Both free functions cleanse the key schedule they hold. */
	EVP_CIPHER_CTX_free(c->cipher);
	EVP_MAC_CTX_free(c->mac);
	c->cipher = NULL;
	c->mac = NULL;
	c->ivinv = 0;
	c->ivfull = c->chacha = c->reinit = 0;
	OPENSSL_cleanse(c->salt, sizeof(c->salt));
	OPENSSL_cleanse(c->ivpool, sizeof(c->ivpool));
}

static int next_cbc_iv(struct ef_cctx *c, uint8_t *iv)
{
	if (c->ivpos + EF_CBC_IV_LEN > EF_IVPOOL) {
		if (RAND_bytes(c->ivpool, EF_IVPOOL) != 1)
			return -1;
		c->ivpos = 0;
	}
	memcpy(iv, c->ivpool + c->ivpos, EF_CBC_IV_LEN);
	c->ivpos += EF_CBC_IV_LEN;
	return 0;
}

/* AAD for the AEADs: RFC 4106 §5 (also RFC 7634 §2.1). */
static size_t aead_aad(const struct ef_esp_hdr *h, uint8_t aad[12])
{
	ef_put32(aad, h->spi);
	if (h->esn) {
		ef_put64(aad + 4, h->seq);
		return 12;
	}
	ef_put32(aad + 4, (uint32_t)h->seq);
	return 8;
}

int ef_hmac(struct ef_cctx *c, const uint8_t *d1, size_t l1, const uint8_t *d2, size_t l2,
	    uint8_t *md)
{
	size_t mdlen;

	/* A NULL key re-initialises with the key set in ef_cctx_init (no key schedule). */
	if (!EVP_MAC_init(c->mac, NULL, 0, NULL) || !EVP_MAC_update(c->mac, d1, l1) ||
	    (l2 && !EVP_MAC_update(c->mac, d2, l2)) ||
	    !EVP_MAC_final(c->mac, md, &mdlen, EVP_MAX_MD_SIZE))
		return -1;
	return 0;
}

/* The nonce (and when opening the tag) in one parameter call (see struct ef_cctx);
 * 0 when OpenSSL refused it (then the caller re-initialises). */
static int set_nonce(struct ef_cctx *c, int encrypt, const uint8_t *nonce, uint8_t *tag,
		     size_t taglen)
{
	OSSL_PARAM p[3];
	int ok;

	if (!c->ivfull || c->reinit)
		return 0;
	p[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED,
						 (void *)nonce, c->chacha ? 12 : (size_t)-1);
	p[1] = OSSL_PARAM_construct_end();
	if (!encrypt) {
		p[1] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, taglen);
		p[2] = OSSL_PARAM_construct_end();
	}
	ok = EVP_CIPHER_CTX_set_params(c->cipher, p);
	c->ivfull = (uint8_t)ok;
	return ok;
}

static int aead_seal(struct ef_cctx *c, const uint8_t *nonce, const uint8_t *aad,
		     size_t aadlen, uint8_t *buf, size_t len, uint8_t *tag, size_t taglen)
{
	OSSL_PARAM p[2];
	int outl, finl;

	/* NULL cipher and key: the context keeps its key schedule, only the nonce changes. */
	if (!set_nonce(c, 1, nonce, NULL, 0) &&
	    !EVP_EncryptInit_ex(c->cipher, NULL, NULL, NULL, nonce))
		return -1;
	p[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, taglen);
	p[1] = OSSL_PARAM_construct_end();
	return EVP_EncryptUpdate(c->cipher, NULL, &outl, aad, (int)aadlen) &&
		       EVP_EncryptUpdate(c->cipher, buf, &outl, buf, (int)len) &&
		       EVP_EncryptFinal_ex(c->cipher, buf + outl, &finl) &&
		       EVP_CIPHER_CTX_get_params(c->cipher, p)
	       ? 0
	       : -1;
}

static int aead_open(struct ef_cctx *c, const uint8_t *nonce, const uint8_t *aad,
		     size_t aadlen, uint8_t *buf, size_t len, uint8_t *tag, size_t taglen)
{
	int outl, finl;

	if (c->ivinv && memcmp(nonce, c->salt, EF_AEAD_SALT_LEN) == 0) {
		OSSL_PARAM p[3];

		p[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_SET_IV_INV,
							 (void *)(nonce + EF_AEAD_SALT_LEN),
							 12 - EF_AEAD_SALT_LEN);
		p[1] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, taglen);
		p[2] = OSSL_PARAM_construct_end();
		if (!EVP_CIPHER_CTX_set_params(c->cipher, p))
			return -1;
	} else if (!set_nonce(c, 0, nonce, tag, taglen) &&
		   !(EVP_DecryptInit_ex(c->cipher, NULL, NULL, NULL, nonce) &&
		     EVP_CIPHER_CTX_ctrl(c->cipher, EVP_CTRL_AEAD_SET_TAG, (int)taglen, tag))) {
		return -1;
	}
	return EVP_DecryptUpdate(c->cipher, NULL, &outl, aad, (int)aadlen) &&
		       EVP_DecryptUpdate(c->cipher, buf, &outl, buf, (int)len) &&
		       EVP_DecryptFinal_ex(c->cipher, buf + outl, &finl) > 0
	       ? 0
	       : -1;
}

int ef_aead_crypt(struct ef_cctx *c, int encrypt, const uint8_t *nonce, const uint8_t *aad,
		  size_t aadlen, uint8_t *buf, size_t len, uint8_t *tag, size_t taglen)
{
	int r = encrypt ? aead_seal(c, nonce, aad, aadlen, buf, len, tag, taglen)
			: aead_open(c, nonce, aad, aadlen, buf, len, tag, taglen);

	/* A failed operation (a forged packet, mostly) may leave the context mid-way: the
	 * next one starts from a full init, which resets everything. */
	c->reinit = r != 0;
	return r;
}

/* HMAC over the ESP packet (SPI .. ciphertext) and, with ESN, seq_hi (RFC 4303 §2.2.1). */
static int compute_icv(struct ef_cctx *c, const struct ef_esp_hdr *h, const uint8_t *pkt,
		       size_t len, uint8_t *md)
{
	uint8_t hi[4];

	ef_put32(hi, (uint32_t)(h->seq >> 32));
	return ef_hmac(c, pkt, len, hi, h->esn ? 4 : 0, md);
}

long ef_esp_seal(const struct ef_transform *t, struct ef_cctx *c, const struct ef_esp_hdr *h,
		 uint8_t nh, uint8_t *inner, size_t len, uint8_t **out)
{
	size_t padded = (len + EF_ESP_TRAILER_LEN + t->align - 1) & ~(size_t)(t->align - 1);
	size_t pad = padded - len - EF_ESP_TRAILER_LEN;
	uint8_t *esp = inner - t->iv_len - EF_ESP_HDR_LEN;
	uint8_t *iv = esp + EF_ESP_HDR_LEN;
	int outl;

	ef_put32(esp, h->spi);
	ef_put32(esp + 4, (uint32_t)h->seq);
	/* RFC 4303 §2.4: padding bytes are 1, 2, 3, ... */
	for (size_t i = 0; i < pad; i++)
		inner[len + i] = (uint8_t)(i + 1);
	inner[len + pad] = (uint8_t)pad;
	inner[len + pad + 1] = nh;

	if (t->aead) {
		uint8_t nonce[12], aad[12];
		size_t aadlen = aead_aad(h, aad);

		ef_put64(iv, h->seq); /* unique per SA: the sequence number never repeats */
		memcpy(nonce, h->salt, EF_AEAD_SALT_LEN);
		memcpy(nonce + EF_AEAD_SALT_LEN, iv, EF_AEAD_IV_LEN);
		if (ef_aead_crypt(c, 1, nonce, aad, aadlen, inner, padded, inner + padded,
				  t->icv_len))
			return -1;
	} else {
		uint8_t md[EVP_MAX_MD_SIZE];

		if (next_cbc_iv(c, iv) ||
		    !EVP_EncryptInit_ex(c->cipher, NULL, NULL, NULL, iv) ||
		    !EVP_EncryptUpdate(c->cipher, inner, &outl, inner, (int)padded) ||
		    compute_icv(c, h, esp, EF_ESP_HDR_LEN + t->iv_len + padded, md))
			return -1;
		memcpy(inner + padded, md, t->icv_len);
	}
	*out = esp;
	return (long)(EF_ESP_HDR_LEN + t->iv_len + padded + t->icv_len);
}

enum ef_open_result ef_esp_open(const struct ef_transform *t, struct ef_cctx *c,
				const struct ef_esp_hdr *h, uint8_t *pkt, size_t len,
				uint8_t **inner, size_t *inner_len, uint8_t *nh)
{
	uint8_t *iv = pkt + EF_ESP_HDR_LEN, *ct = iv + t->iv_len, *icv;
	size_t ctlen, pad;
	int outl;

	if (len < ef_esp_min_len(t))
		return EF_OPEN_MALFORMED;
	ctlen = len - EF_ESP_HDR_LEN - t->iv_len - t->icv_len;
	/* CBC needs whole blocks. RFC 4303 §2.4 also asks senders to end AEAD ciphertext
	 * on a 4-byte boundary; old senders did not, and the ICV covers it anyway, so on
	 * receive we do not insist. */
	if (!t->aead && ctlen % t->align)
		return EF_OPEN_MALFORMED;
	icv = ct + ctlen;

	if (t->aead) {
		uint8_t nonce[12], aad[12];
		size_t aadlen = aead_aad(h, aad);

		memcpy(nonce, h->salt, EF_AEAD_SALT_LEN);
		memcpy(nonce + EF_AEAD_SALT_LEN, iv, EF_AEAD_IV_LEN);
		if (ef_aead_crypt(c, 0, nonce, aad, aadlen, ct, ctlen, icv, t->icv_len))
			return EF_OPEN_AUTH;
	} else {
		uint8_t md[EVP_MAX_MD_SIZE];

		if (compute_icv(c, h, pkt, EF_ESP_HDR_LEN + t->iv_len + ctlen, md) ||
		    CRYPTO_memcmp(md, icv, t->icv_len) != 0)
			return EF_OPEN_AUTH;
		if (!EVP_DecryptInit_ex(c->cipher, NULL, NULL, NULL, iv) ||
		    !EVP_DecryptUpdate(c->cipher, ct, &outl, ct, (int)ctlen))
			return EF_OPEN_AUTH;
	}

	pad = ct[ctlen - 2];
	*nh = ct[ctlen - 1];
	if (pad + EF_ESP_TRAILER_LEN > ctlen)
		return EF_OPEN_PADDING;
	for (size_t i = 0; i < pad; i++)
		if (ct[ctlen - EF_ESP_TRAILER_LEN - pad + i] != (uint8_t)(i + 1))
			return EF_OPEN_PADDING;
	*inner = ct;
	*inner_len = ctlen - EF_ESP_TRAILER_LEN - pad;
	return EF_OPEN_OK;
}
