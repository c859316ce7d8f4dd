/* raw.c — plain ESP framing for raw sockets; see raw.h. */
#include "raw.h"

#include <netinet/in.h>
#include <string.h>

#include "proto.h"

/* RFC 791 §3.1: the fixed part of the header, as far as we read it. */
#define V4_TOTLEN 2
#define V4_FRAG 6
#define V4_PROTO 9
#define V4_SRC 12
#define V4_MF 0x2000
#define V4_OFFSET 0x1fff

static int parse_v4(const uint8_t *p, size_t n, struct ef_prefix *src, size_t *off,
		    size_t *len)
{
	size_t ihl, tot;

	if (n < EF_IPV4_HDR_MIN || (p[0] >> 4) != 4)
		return -EF_E_MALFORMED;
	ihl = (size_t)(p[0] & 0x0f) * 4;
	tot = ef_get16(p + V4_TOTLEN);
	/* The kernel hands us whole datagrams (reassembled); anything else is not ours. */
	if (ihl < EF_IPV4_HDR_MIN || ihl > n || tot < ihl || tot > n)
		return -EF_E_MALFORMED;
	if (p[V4_PROTO] != EF_IPPROTO_ESP || (ef_get16(p + V4_FRAG) & (V4_MF | V4_OFFSET)))
		return -EF_E_MALFORMED;
	memset(src, 0, sizeof(*src));
	src->family = 4;
	src->plen = 32;
	memcpy(src->addr, p + V4_SRC, 4);
	*off = ihl;
	*len = tot - ihl;
	return 0;
}

int ef_raw_parse(const uint8_t *p, size_t n, int family, const struct sockaddr_storage *from,
		 socklen_t fromlen, struct ef_prefix *src, size_t *off, size_t *len)
{
	const struct sockaddr_in6 *a6 = (const void *)from;

	if (family == AF_INET)
		return parse_v4(p, n, src, off, len);
	if (family != AF_INET6 || !from || from->ss_family != AF_INET6 ||
	    fromlen < (socklen_t)sizeof(*a6))
		return -EF_E_MALFORMED;
	memset(src, 0, sizeof(*src));
	src->family = 6;
	src->plen = 128;
	memcpy(src->addr, &a6->sin6_addr, 16);
	*off = 0;
	*len = n;
	return 0;
}

int ef_raw_peer(const struct sockaddr_storage *peer, socklen_t peer_len,
		struct sockaddr_storage *to, socklen_t *to_len, struct ef_prefix *addr)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct sockaddr_in *t4 = (void *)to;
	struct sockaddr_in6 *t6 = (void *)to;

	memset(to, 0, sizeof(*to));
	memset(addr, 0, sizeof(*addr));
	if (peer->ss_family == AF_INET && peer_len == sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a = (const void *)peer;

		t4->sin_family = AF_INET;
		t4->sin_addr = a->sin_addr;
	} else if (peer->ss_family == AF_INET6 && peer_len == sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a = (const void *)peer;

		if (memcmp(&a->sin6_addr, v4mapped, sizeof(v4mapped)) == 0) {
			t4->sin_family = AF_INET;
			memcpy(&t4->sin_addr, (const uint8_t *)&a->sin6_addr + 12, 4);
		} else {
			/* the port stays 0: Linux takes a non-zero one as the protocol */
			t6->sin6_family = AF_INET6;
			t6->sin6_addr = a->sin6_addr;
			t6->sin6_scope_id = a->sin6_scope_id;
		}
	} else {
		return -EF_E_INVAL;
	}
	if (to->ss_family == AF_INET) {
		*to_len = sizeof(*t4);
		addr->family = 4;
		addr->plen = 32;
		memcpy(addr->addr, &t4->sin_addr, 4);
	} else {
		*to_len = sizeof(*t6);
		addr->family = 6;
		addr->plen = 128;
		memcpy(addr->addr, &t6->sin6_addr, 16);
	}
	return 0;
}
