/* fuzz_raw.c — libFuzzer harness for the plain-ESP framing (raw.c): ef_raw_parse on what
 * a raw IPPROTO_ESP socket could hand over.
 *
 * Input: data[0] bit 0 picks the socket family (0: AF_INET, the IPv4 header comes with
 * the packet; 1: AF_INET6, the payload only, from a fixed source), bit 1 hands over no
 * source address; the rest is the datagram.
 *
 * Oracle: an independent reading of RFC 791 §3.1 decides acceptance exactly (version 4,
 * IHL 5..15 within what arrived, total length from the header to what arrived, protocol
 * 50, neither MF nor a fragment offset); an accepted packet's ESP lies inside the
 * datagram, right after the header, and its source is the header's (or the socket
 * address's). Seeds: csrc/fuzz/make_corpus.py. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "raw.h"

static int model_v4(const uint8_t *p, size_t n, size_t *off, size_t *len)
{
	size_t ihl, tot;

	if (n < 20 || p[0] >> 4 != 4)
		return 0;
	ihl = (size_t)(p[0] & 15) << 2;
	tot = (size_t)p[2] << 8 | p[3];
	if (ihl < 20 || ihl > n || tot < ihl || tot > n || p[9] != 50)
		return 0;
	if ((p[6] & 0x3f) || p[7])
		return 0;
	*off = ihl;
	*len = tot - ihl;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage from;
	struct sockaddr_in6 *a6 = (void *)&from;
	struct ef_prefix src;
	size_t off = 0, len = 0, moff = 0, mlen = 0, n;
	const uint8_t *p;
	int v6, nofrom, r, ok;

	if (size < 1)
		return 0;
	v6 = data[0] & 1;
	nofrom = data[0] & 2;
	p = data + 1;
	n = size - 1;
	memset(&from, 0, sizeof(from));
	a6->sin6_family = AF_INET6;
	a6->sin6_addr.s6_addr[0] = 0x20;
	a6->sin6_addr.s6_addr[15] = 9;
	r = ef_raw_parse(p, n, v6 ? AF_INET6 : AF_INET, nofrom ? NULL : &from,
			 nofrom ? 0 : sizeof(*a6), &src, &off, &len);
	if (r != 0 && r != -EF_E_MALFORMED)
		abort();
	if (v6)
		ok = !nofrom;
	else
		ok = model_v4(p, n, &moff, &mlen);
	if ((r == 0) != ok)
		abort();
	if (r)
		return 0;
	if (off > n || len > n - off)
		abort();
	if (v6 && (off != 0 || len != n || src.family != 6 || src.addr[15] != 9))
		abort();
	if (!v6 && (off != moff || len != mlen || src.family != 4 ||
		    memcmp(src.addr, p + 12, 4) != 0))
		abort();
	return 0;
}
