/* esp.h — ESP transforms (RFC 4303) over OpenSSL 3 EVP.
 *
 *   ef_transform_get()   static description of a transform (key sizes, ICV, IV)
 *   ef_cctx_init/free    one keyed context per SA and worker; only the IV changes per packet
 *   ef_esp_seal()        encrypt an inner packet in place into its head- and tailroom
 *   ef_esp_open()        verify and decrypt in place, check the self-describing padding
 *
 * AEADs (AES-GCM RFC 4106, ChaCha20-Poly1305 RFC 7634): nonce = salt || IV, the IV is the
 * 64-bit sequence number, AAD = SPI || seq (|| with ESN: SPI || seq_hi || seq_lo).
 * AES-CBC (RFC 3602) + HMAC-SHA2 (RFC 4868): random IV, ICV over SPI..ciphertext, and
 * with ESN seq_hi is appended for the ICV only (RFC 4303 §2.2.1).
 */
#ifndef EF_ESP_H
#define EF_ESP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "proto.h"

enum ef_transform_id {
	EF_T_AES128GCM16 = 0,
	EF_T_AES256GCM16,
	EF_T_CHACHA20POLY1305,
	EF_T_AES128_SHA256,
	EF_T_AES256_SHA256,
	EF_T_AES128_SHA384,
	EF_T_AES256_SHA384,
	EF_T_AES128_SHA512,
	EF_T_AES256_SHA512,
	EF_T_COUNT
};

struct ef_transform {
	const char *name;     /* strongSwan keyword */
	const char *cipher;   /* OpenSSL cipher name */
	const char *digest;   /* OpenSSL digest for HMAC, NULL for AEADs */
	uint8_t aead;
	uint8_t enc_key_len;  /* as configured: AEADs include the 4-byte salt */
	uint8_t integ_key_len;
	uint8_t iv_len;
	uint8_t icv_len;
	uint8_t align;        /* ciphertext alignment: 4 for AEADs, 16 for CBC */
};

const struct ef_transform *ef_transform_get(int id);

#define EF_IVPOOL 1024

/* A keyed context for one direction of one SA, used by one thread at a time. */
struct ef_cctx {
	EVP_CIPHER_CTX *cipher;
	EVP_MAC_CTX *mac;
	/* AES-GCM opening: the salt is set once as the nonce's fixed part, and each packet
	 * gives only its 8-byte IV and tag in one parameter call (OpenSSL's TLS 1.2 GCM
	 * mechanism) instead of a re-initialisation and a tag control: ~140 ns less a packet */
	uint8_t ivinv;
	/* AES-GCM sealing, ChaCha20-Poly1305 both ways: each packet's whole nonce is set as
	 * the TLS "fixed IV" (GCM: of length -1, OpenSSL's way to restore a full TLS IV;
	 * ChaCha20-Poly1305: all 12 bytes), with the tag when opening, in one parameter call
	 * instead of EVP_*Init_ex and its parameter look-ups; cleared if OpenSSL refuses it.
	 * After a failed operation the next one takes the full init (`reinit`). */
	uint8_t ivfull;
	uint8_t chacha;
	uint8_t reinit;
	uint8_t salt[EF_AEAD_SALT_LEN];
	unsigned ivpos;
	uint8_t ivpool[EF_IVPOOL]; /* random CBC IVs, refilled in one RAND_bytes call */
};

/* Keys as configured (AEAD: key || salt). 0 on success, -1 on an OpenSSL failure. */
int ef_cctx_init(struct ef_cctx *c, const struct ef_transform *t, int encrypt,
		 const uint8_t *enc_key, const uint8_t *integ_key);
void ef_cctx_free(struct ef_cctx *c);

/* One AEAD operation (12-byte nonce) in place with a keyed context; 0, or -1 (when
 * decrypting: the tag did not verify). */
int ef_aead_crypt(struct ef_cctx *c, int encrypt, const uint8_t *nonce, const uint8_t *aad,
		  size_t aadlen, uint8_t *buf, size_t len, uint8_t *tag, size_t taglen);
/* HMAC of d1 || d2 with a keyed context (full digest into md); 0 or -1. */
int ef_hmac(struct ef_cctx *c, const uint8_t *d1, size_t l1, const uint8_t *d2, size_t l2,
	    uint8_t *md);

struct ef_esp_hdr {
	uint32_t spi;
	uint64_t seq;  /* full sequence number (the wire carries the low 32 bits) */
	int esn;
	const uint8_t *salt; /* 4 bytes for AEADs */
};

/* Encrypt `len` bytes at `inner` (EF_HEADROOM before it and EF_TAILROOM after it are
 * writable). On success sets *out to the ESP header and returns the ESP length (>0);
 * -1 on an OpenSSL failure. */
long ef_esp_seal(const struct ef_transform *t, struct ef_cctx *c, const struct ef_esp_hdr *h,
		 uint8_t nh, uint8_t *inner, size_t len, uint8_t **out);

/* Smallest ESP packet (header, IV, trailer or one CBC block, ICV) for a transform. */
size_t ef_esp_min_len(const struct ef_transform *t);

enum ef_open_result {
	EF_OPEN_OK = 0,
	EF_OPEN_MALFORMED, /* length not possible for this transform */
	EF_OPEN_AUTH,      /* ICV mismatch */
	EF_OPEN_PADDING,   /* authenticated but the padding is not 1, 2, 3, ... */
};

/* Verify and decrypt the ESP packet `pkt` (`len` bytes) in place. On success the payload
 * (padding removed) is at *inner with *inner_len bytes and *nh is the next header. */
enum ef_open_result ef_esp_open(const struct ef_transform *t, struct ef_cctx *c,
				const struct ef_esp_hdr *h, uint8_t *pkt, size_t len,
				uint8_t **inner, size_t *inner_len, uint8_t *nh);

#endif
