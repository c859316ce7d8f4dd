/* proto.h — wire constants from the specs, in one place. */
#ifndef EF_PROTO_H
#define EF_PROTO_H

#include <stdint.h>
#include <string.h>

/* RFC 4303 §2: SPI (4) + Sequence Number (4). */
#define EF_ESP_HDR_LEN 8
/* RFC 4303 §2.4: Pad Length (1) + Next Header (1). */
#define EF_ESP_TRAILER_LEN 2
/* RFC 4303 §2.6: next header 59 marks a dummy packet. */
#define EF_NH_IPV4 4
#define EF_NH_IPV6 41
#define EF_NH_DUMMY 59

/* RFC 4106 §3.1 / RFC 7634 §2: 8-byte explicit IV, 4-byte salt, 16-byte ICV. */
#define EF_AEAD_IV_LEN 8
#define EF_AEAD_SALT_LEN 4
#define EF_AEAD_ICV_LEN 16
/* RFC 3602 §3: AES-CBC IV is one block. */
#define EF_CBC_IV_LEN 16
#define EF_AES_BLOCK 16

/* Largest IV and ICV of any transform (HMAC-SHA2-512-256 truncates to 32 bytes). */
#define EF_MAX_IV_LEN 16
#define EF_MAX_ICV_LEN 32

/* RFC 3948 §2.2: NAT-keepalive is one 0xFF byte; §2.2 non-ESP marker is 4 zero bytes. */
#define EF_NAT_KEEPALIVE 0xFF
#define EF_NON_ESP_MARKER_LEN 4

/* RFC 4303 §2.1: SPI values 1..255 are reserved by IANA; 0 is for local use. */
#define EF_SPI_MIN 256

/* IP headers (RFC 791, RFC 8200) — only the fields the dataplane reads. */
#define EF_IPV4_HDR_MIN 20
#define EF_IPV6_HDR_LEN 40

/* Room an ESP encap needs around the inner packet (in place). */
#define EF_HEADROOM 32 /* >= EF_ESP_HDR_LEN + EF_MAX_IV_LEN, keeps alignment */
#define EF_TAILROOM 64 /* >= 15 pad + 2 trailer + EF_MAX_ICV_LEN */

static inline uint16_t ef_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void ef_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint32_t ef_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void ef_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void ef_put64(uint8_t *p, uint64_t v)
{
	ef_put32(p, (uint32_t)(v >> 32));
	ef_put32(p + 4, (uint32_t)v);
}

static inline uint64_t ef_get64(const uint8_t *p)
{
	return (uint64_t)ef_get32(p) << 32 | ef_get32(p + 4);
}

#endif
