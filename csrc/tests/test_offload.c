/* test_offload.c — TCP coalescing for vnet-header TUN writes: which runs merge, and the
 * headers of the merged packet (checked with an independent checksum routine). */
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "offload.h"
#include "proto.h"

/* RFC 1071, written out separately from offload.c's helpers. */
static uint16_t ref_csum(const uint8_t *parts[], const size_t lens[], int n)
{
	uint64_t sum = 0;

	for (int k = 0; k < n; k++)
		for (size_t i = 0; i < lens[k]; i++)
			sum += (i & 1) ? parts[k][i] : (uint64_t)parts[k][i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint16_t tcp_csum(const uint8_t *ip, int v6, size_t tcp_len)
{
	uint8_t pseudo[40];
	size_t plen;
	const uint8_t *parts[2];
	size_t lens[2];

	memset(pseudo, 0, sizeof(pseudo));
	if (v6) {
		memcpy(pseudo, ip + 8, 32);
		ef_put32(pseudo + 32, (uint32_t)tcp_len);
		pseudo[39] = 6;
		plen = 40;
	} else {
		memcpy(pseudo, ip + 12, 8);
		pseudo[9] = 6;
		ef_put16(pseudo + 10, (uint16_t)tcp_len);
		plen = 12;
	}
	parts[0] = pseudo;
	lens[0] = plen;
	parts[1] = ip + (v6 ? 40 : 20);
	lens[1] = tcp_len;
	return ref_csum(parts, lens, 2);
}

/* A TCP segment with 12 bytes of options (timestamps) and a valid checksum. */
static uint32_t make_tcp(uint8_t *p, int v6, uint32_t seq, size_t payload, uint8_t flags,
			 uint16_t sport)
{
	size_t iphl = v6 ? 40 : 20, len = iphl + 32 + payload;

	memset(p, 0, len);
	if (v6) {
		p[0] = 0x60;
		ef_put16(p + 4, (uint16_t)(len - 40));
		p[6] = 6;
		p[7] = 64;
		p[8] = 0x20, p[9] = 0x01, p[23] = 1;
		p[24] = 0x20, p[25] = 0x01, p[39] = 2;
	} else {
		const uint8_t *parts[1] = {p};
		size_t lens[1] = {20};

		p[0] = 0x45;
		ef_put16(p + 2, (uint16_t)len);
		p[6] = 0x40; /* DF */
		p[8] = 64;
		p[9] = 6;
		p[12] = 198, p[13] = 19, p[14] = 1, p[15] = 1;
		p[16] = 198, p[17] = 19, p[18] = 2, p[19] = 1;
		ef_put16(p + 10, ref_csum(parts, lens, 1));
	}
	ef_put16(p + iphl, sport);
	ef_put16(p + iphl + 2, 5201);
	ef_put32(p + iphl + 4, seq);
	ef_put32(p + iphl + 8, 777);
	p[iphl + 12] = 8 << 4;
	p[iphl + 13] = flags;
	ef_put16(p + iphl + 14, 512);
	p[iphl + 20] = 1, p[iphl + 21] = 1, p[iphl + 22] = 8, p[iphl + 23] = 10;
	ef_put32(p + iphl + 24, 12345);
	for (size_t i = 0; i < payload; i++)
		p[iphl + 32 + i] = (uint8_t)(seq + i);
	ef_put16(p + iphl + 16, tcp_csum(p, v6, len - iphl));
	return (uint32_t)len;
}

static uint8_t bufs[80][1600];
static uint8_t *pkts[80];
static uint32_t lens[80];

/* n segments: payload sizes from `sizes`, consecutive sequence numbers. */
static void stream(int v6, int n, const size_t *sizes, const uint8_t *flags)
{
	uint32_t seq = 1000;

	for (int i = 0; i < n; i++) {
		pkts[i] = bufs[i];
		lens[i] = make_tcp(bufs[i], v6, seq, sizes[i], flags ? flags[i] : 0x10, 40000);
		seq += (uint32_t)sizes[i];
	}
}

/* The merged packet's headers, and its partial checksum completed over the merged bytes
 * (as the kernel would) equals an independent checksum of the merged segment. */
static void check_merged(int v6, int k, const struct ef_vnet_hdr *h)
{
	static uint8_t merged[70000];
	const uint8_t *parts[1] = {pkts[0]};
	size_t iphl = v6 ? 40 : 20, hl = h->hdr_len, off = lens[0], lens1[1] = {20};
	struct ef_vnet_hdr rd = *h;

	memcpy(merged, pkts[0], lens[0]);
	for (int i = 1; i < k; i++) {
		memcpy(merged + off, pkts[i] + hl, lens[i] - hl);
		off += lens[i] - hl;
	}
	if (v6) {
		CHECK(ef_get16(merged + 4) == off - 40);
	} else {
		CHECK(ef_get16(merged + 2) == off);
		CHECK(ref_csum(parts, lens1, 1) == 0); /* IPv4 header checksum */
	}
	CHECK(ef_vnet_complete(h, merged, off) == -1); /* a GSO header is not for reads */
	rd.gso_type = EF_VNET_GSO_NONE;
	CHECK(ef_vnet_complete(&rd, merged, off) == 0);
	CHECK(tcp_csum(merged, v6, off - iphl) == 0);
}

/* A TSO super-packet as the kernel hands it over: cut, every segment checked. */
static void tso_cut(int v6, size_t mss, size_t payload, uint8_t flags)
{
	static uint8_t super[70000], segbuf[4096], joined[70000];
	size_t iphl = v6 ? 40 : 20, hl = iphl + 32, off = 0;
	struct ef_vnet_hdr h = {0};
	struct ef_tso t;
	int ok = 1;

	make_tcp(super, v6, 5000, 0, flags, 40000); /* headers; payload follows */
	for (size_t i = 0; i < payload; i++)
		super[hl + i] = (uint8_t)(i * 7);
	if (v6)
		ef_put16(super + 4, (uint16_t)(32 + payload));
	else
		ef_put16(super + 2, (uint16_t)(hl + payload));
	h.gso_type = v6 ? EF_VNET_GSO_TCPV6 : EF_VNET_GSO_TCPV4;
	h.gso_size = (uint16_t)mss;
	h.flags = EF_VNET_F_NEEDS_CSUM;
	CHECK(ef_tso_init(&t, &h, super, hl + payload, sizeof(segbuf)) == 0);
	CHECK(t.nseg == (int)((payload + mss - 1) / mss));
	for (int k = 0; k < t.nseg; k++) {
		size_t n = ef_tso_build(&t, super, k, segbuf), seg = n - hl;
		const uint8_t *parts[1] = {segbuf};
		size_t l20[1] = {20};
		int last = k == t.nseg - 1;

		ok &= seg == (last ? payload - (size_t)k * mss : mss);
		ok &= ef_get32(segbuf + iphl + 4) == 5000 + (uint32_t)(k * mss);
		ok &= tcp_csum(segbuf, v6, n - iphl) == 0;
		ok &= ((segbuf[iphl + 13] & 0x09) != 0) == (last && (flags & 0x09));
		if (v6) {
			ok &= ef_get16(segbuf + 4) == n - 40;
		} else {
			ok &= ef_get16(segbuf + 2) == n && ref_csum(parts, l20, 1) == 0;
			ok &= ef_get16(segbuf + 4) == (uint16_t)k;
		}
		memcpy(joined + off, segbuf + hl, seg);
		off += seg;
	}
	CHECK(ok);
	CHECK(off == payload && memcmp(joined, super + hl, payload) == 0);
}

/* Random packets (often with plausible IPv4/IPv6/TCP headers) through the planner and
 * the cutter: they must never read or write out of bounds (ASan watches). */
static void fuzz(void)
{
	static uint8_t seg[4096];
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	int cut = 0, planned = 0;

	for (int iter = 0; iter < 20000; iter++) {
		struct ef_vnet_hdr h;
		struct ef_tso t;
		int n = 1 + (int)(iter % 4);

		for (int i = 0; i < n; i++) {
			size_t len;

			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			len = (size_t)(x % 1600);
			for (size_t j = 0; j < len; j++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				bufs[i][j] = (uint8_t)x;
			}
			if (len && (x & 1))
				bufs[i][0] = (x & 2) ? 0x45 : 0x60;
			if (len > 9 && (x & 4))
				bufs[i][9] = 6, bufs[i][6] = 6;
			pkts[i] = bufs[i];
			lens[i] = (uint32_t)len;
		}
		planned += ef_gro_plan(pkts, lens, n, &h) > 1;
		h.gso_type = (uint8_t)((x >> 8) & 1 ? EF_VNET_GSO_TCPV4 : EF_VNET_GSO_TCPV6);
		h.gso_size = (uint16_t)((x >> 16) % 2000);
		if (ef_tso_init(&t, &h, pkts[0], lens[0], sizeof(seg)) == 0 && ++cut)
			for (int k = 0; k < t.nseg; k++)
				ef_tso_build(&t, pkts[0], k, seg);
		h.flags = EF_VNET_F_NEEDS_CSUM;
		h.gso_type = EF_VNET_GSO_NONE;
		h.csum_start = (uint16_t)(x >> 24) % 1700;
		h.csum_offset = (uint16_t)(x >> 40) % 64;
		ef_vnet_complete(&h, pkts[0], lens[0]);
	}
	/* the generator reached the cutter; random segments never pass the checksum */
	CHECK(cut > 100);
	CHECK(planned == 0);
}

/* NEEDS_CSUM over UDP/IPv6 where the complement comes out 0: written 0xffff, as the
 * kernel does (0 is invalid over IPv6, "no checksum" over IPv4); still verifies. */
static void udp_csum_zero(void)
{
	uint8_t p[40 + 8 + 6] = {0x60}, pseudo[40] = {0};
	const uint8_t *parts[2] = {pseudo, p + 40};
	size_t lens2[2] = {40, 14}, ulen = 14;
	struct ef_vnet_hdr h = {.flags = EF_VNET_F_NEEDS_CSUM, .csum_start = 40, .csum_offset = 6};
	uint16_t s;

	ef_put16(p + 4, (uint16_t)ulen);
	p[6] = 17, p[7] = 64;
	p[8] = 0x20, p[9] = 0x01, p[23] = 1;
	p[24] = 0x20, p[25] = 0x01, p[39] = 2;
	ef_put16(p + 40, 4500), ef_put16(p + 42, 4500), ef_put16(p + 44, (uint16_t)ulen);
	memcpy(pseudo, p + 8, 32);
	ef_put32(pseudo + 32, (uint32_t)ulen);
	pseudo[39] = 17;
	/* The field holds the pseudo-header sum (as the kernel leaves it); pick the last
	 * payload word so that the whole sum is 0xffff, i.e. the complement is 0. */
	ef_put16(p + 46, (uint16_t)~ref_csum((const uint8_t *[]){pseudo}, (size_t[]){40}, 1));
	ef_put16(p + 52, 0);
	s = (uint16_t)~ref_csum((const uint8_t *[]){p + 40}, (size_t[]){14}, 1);
	ef_put16(p + 52, (uint16_t)~s);
	CHECK(ef_vnet_complete(&h, p + 0, sizeof(p)) == 0);
	CHECK(ef_get16(p + 46) == 0xffff);
	CHECK(ref_csum(parts, lens2, 2) == 0); /* verifies */
}

/* Segments whose TCP byte 12 differs (reserved bits, AccECN's AE) are not merged. */
static void gro_byte12(void)
{
	size_t s2[2] = {1000, 1000};
	struct ef_vnet_hdr h;

	for (int v6 = 0; v6 < 2; v6++) {
		size_t iphl = v6 ? 40 : 20;

		stream(v6, 2, s2, NULL);
		bufs[1][iphl + 12] |= 0x01; /* AE */
		ef_put16(bufs[1] + iphl + 16, 0);
		ef_put16(bufs[1] + iphl + 16, tcp_csum(bufs[1], v6, lens[1] - iphl));
		CHECK(ef_gro_plan(pkts, lens, 2, &h) == 1);
		bufs[0][iphl + 12] |= 0x01; /* both alike: merged */
		ef_put16(bufs[0] + iphl + 16, 0);
		ef_put16(bufs[0] + iphl + 16, tcp_csum(bufs[0], v6, lens[0] - iphl));
		CHECK(ef_gro_plan(pkts, lens, 2, &h) == 2);
	}
}

/* ef_csum_add against the byte-by-byte reference at every length and alignment (its
 * fast loop takes 32 bytes a round, then 8, 2 and 1). */
static void csum_lengths(void)
{
	static uint8_t buf[4200];
	int ok = 1;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 151 + (i >> 5) * 7 + 0xa5);
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len + off < sizeof(buf); len += len < 300 ? 1 : 97) {
			const uint8_t *parts[1] = {buf + off};
			size_t ls[1] = {len};

			uint16_t got = ef_csum_fold(ef_csum_add(0, buf + off, len));
			uint16_t want = ref_csum(parts, ls, 1);

			ok &= (got ^ want) == 0xffff;
		}
	}
	memset(buf, 0xff, sizeof(buf)); /* the largest words: no carry may be lost */
	{
		const uint8_t *parts[1] = {buf};
		size_t ls[1] = {sizeof(buf)};

		uint16_t got = ef_csum_fold(ef_csum_add(0, buf, sizeof(buf)));

		ok &= (got ^ ref_csum(parts, ls, 1)) == 0xffff;
	}
	CHECK(ok);
}

void test_offload(void)
{
	udp_csum_zero();
	gro_byte12();
	fuzz();
	csum_lengths();
	struct ef_vnet_hdr h;
	size_t s5[5] = {1000, 1000, 1000, 1000, 1000};
	size_t sshort[3] = {1000, 1000, 500}, smid[3] = {1000, 500, 1000};
	size_t s70[70];
	uint8_t psh[3] = {0x10, 0x18, 0x10}, syn[2] = {0x10, 0x12};

	/* Five in-order segments: one packet. */
	stream(0, 5, s5, NULL);
	CHECK(ef_gro_plan(pkts, lens, 5, &h) == 5);
	CHECK(h.gso_type == EF_VNET_GSO_TCPV4 && h.gso_size == 1000 && h.hdr_len == 52);
	CHECK(h.flags == EF_VNET_F_NEEDS_CSUM && h.csum_start == 20 && h.csum_offset == 16);
	check_merged(0, 5, &h);

	/* A shorter last segment joins; a shorter middle one ends the run. */
	stream(0, 3, sshort, NULL);
	CHECK(ef_gro_plan(pkts, lens, 3, &h) == 3);
	stream(0, 3, smid, NULL);
	CHECK(ef_gro_plan(pkts, lens, 3, &h) == 2);

	/* A sequence gap ends the run. */
	stream(0, 5, s5, NULL);
	ef_put32(bufs[2] + 24, 99999);
	ef_put16(bufs[2] + 36, 0);
	ef_put16(bufs[2] + 36, tcp_csum(bufs[2], 0, lens[2] - 20));
	CHECK(ef_gro_plan(pkts, lens, 5, &h) == 2);

	/* PSH ends the run and is carried by the merged header. */
	stream(0, 3, s5, psh);
	CHECK(ef_gro_plan(pkts, lens, 3, &h) == 2);
	CHECK(pkts[0][33] == 0x18);

	/* SYN, bad checksum, another flow, non-TCP: no merge. */
	stream(0, 2, s5, syn);
	CHECK(ef_gro_plan(pkts, lens, 2, &h) == 1);
	stream(0, 2, s5, NULL);
	bufs[1][100] ^= 1;
	CHECK(ef_gro_plan(pkts, lens, 2, &h) == 1);
	stream(0, 2, s5, NULL);
	lens[1] = make_tcp(bufs[1], 0, 2000, 1000, 0x10, 40001);
	CHECK(ef_gro_plan(pkts, lens, 2, &h) == 1);
	stream(0, 2, s5, NULL);
	bufs[1][8] = 63; /* TTL changed without fixing the IPv4 header checksum */
	CHECK(ef_gro_plan(pkts, lens, 2, &h) == 1);
	stream(0, 2, s5, NULL);
	bufs[0][9] = 17;
	CHECK(ef_gro_plan(pkts, lens, 2, &h) == 1);
	CHECK(ef_gro_plan(pkts, lens, 1, &h) == 1);

	/* IPv6. */
	stream(1, 5, s5, NULL);
	CHECK(ef_gro_plan(pkts, lens, 5, &h) == 5);
	CHECK(h.gso_type == EF_VNET_GSO_TCPV6 && h.hdr_len == 72 && h.csum_start == 40);
	check_merged(1, 5, &h);

	/* At most 64 segments and 65535 bytes per merged packet. */
	for (int i = 0; i < 70; i++)
		s70[i] = 500;
	stream(0, 70, s70, NULL);
	CHECK(ef_gro_plan(pkts, lens, 70, &h) == 64);
	check_merged(0, 64, &h);
	for (int i = 0; i < 70; i++)
		s70[i] = 1400;
	stream(0, 70, s70, NULL);
	CHECK(ef_gro_plan(pkts, lens, 70, &h) == 46); /* 52 + 46 * 1400 <= 65535 */
	check_merged(0, 46, &h);

	/* TSO: IPv4 and IPv6, exact multiple and a short last segment, PSH/FIN last only. */
	tso_cut(0, 1348, 1348 * 40, 0x18);
	tso_cut(0, 1348, 65000 - 52, 0x19);
	tso_cut(1, 1328, 20000, 0x10);
	tso_cut(1, 500, 501, 0x18);
	/* Not cuttable: no payload, no MSS, a segment above the slot, UDP. */
	{
		static uint8_t p[2000];
		struct ef_vnet_hdr hh = {.gso_type = EF_VNET_GSO_TCPV4, .gso_size = 1000};
		struct ef_tso t;
		uint32_t n = make_tcp(p, 0, 1, 0, 0x10, 1);

		CHECK(ef_tso_init(&t, &hh, p, n, 4096) == -1);
		n = make_tcp(p, 0, 1, 1500, 0x10, 1);
		CHECK(ef_tso_init(&t, &hh, p, n, 4096) == 0 && t.nseg == 2);
		CHECK(ef_tso_init(&t, &hh, p, n, 1000) == -1);
		hh.gso_size = 0;
		CHECK(ef_tso_init(&t, &hh, p, n, 4096) == -1);
		hh.gso_size = 1000;
		hh.gso_type = EF_VNET_GSO_TCPV6;
		CHECK(ef_tso_init(&t, &hh, p, n, 4096) == -1);
		hh.gso_type = 3; /* UDP */
		CHECK(ef_tso_init(&t, &hh, p, n, 4096) == -1);
	}
}
