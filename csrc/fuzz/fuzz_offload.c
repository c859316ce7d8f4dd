/* fuzz_offload.c — libFuzzer harness for the TUN offload paths (offload.c): checksum
 * completion of NEEDS_CSUM packets, TSO segmentation of super-packets, TCP coalescing
 * (GRO) of decrypted segments. Every result is checked against an RFC 1071 checksum
 * written out here, byte by byte, and against the rules the kernel's GRO applies.
 *
 * Input: data[0] % 3 picks the path, data[1] is a flags byte, the rest:
 *   0 checksum: a virtio_net_hdr (10 bytes, little-endian as the kernel writes it),
 *     then the packet
 *   1 TSO: gso_size u16 BE, then the super-packet (data[1] bit 0: IPv6 GSO type)
 *   2 GRO: records [len u16 BE][packet], up to 64; data[1] bit 0 set: the harness
 *     fixes each packet's IPv4 header and TCP checksums first (so that the fuzzer
 *     reaches the merge rules rather than the checksum check)
 * Seeds: csrc/fuzz/make_corpus.py. */
#include <stdint.h>
#include <string.h>

#include "offload.h"
#include "proto.h"

#define ASSERT(c)                                                                     \
	do {                                                                          \
		if (!(c))                                                             \
			__builtin_trap();                                             \
	} while (0)

/* RFC 1071 over several parts, one byte at a time; returns the folded sum (0xffff for
 * data that verifies). Parts are concatenated, so odd lengths carry over. */
static uint16_t ref_sum(const uint8_t *const *parts, const size_t *lens, int n)
{
	uint64_t sum = 0;
	size_t pos = 0;

	for (int k = 0; k < n; k++)
		for (size_t i = 0; i < lens[k]; i++, pos++)
			sum += (pos & 1) ? parts[k][i] : (uint64_t)parts[k][i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static uint16_t sum1(const uint8_t *p, size_t len)
{
	return ref_sum(&p, &len, 1);
}

/* The TCP checksum over pseudo-header and segment folds to 0xffff. */
static int tcp_ok(const uint8_t *ip, int v6, size_t iphl, size_t tcp_len)
{
	uint8_t ph[40] = {0};
	const uint8_t *parts[2] = {ph, ip + iphl};
	size_t lens[2] = {v6 ? 40 : 12, tcp_len};

	if (v6) {
		memcpy(ph, ip + 8, 32);
		ef_put32(ph + 32, (uint32_t)tcp_len);
		ph[39] = 6;
	} else {
		memcpy(ph, ip + 12, 8);
		ph[9] = 6;
		ef_put16(ph + 10, (uint16_t)tcp_len);
	}
	return ref_sum(parts, lens, 2) == 0xffff;
}

static void set_tcp_csum(uint8_t *ip, int v6, size_t iphl, size_t tcp_len)
{
	uint8_t ph[40] = {0};
	const uint8_t *parts[2] = {ph, ip + iphl};
	size_t lens[2] = {v6 ? 40 : 12, tcp_len};

	if (v6) {
		memcpy(ph, ip + 8, 32);
		ef_put32(ph + 32, (uint32_t)tcp_len);
		ph[39] = 6;
	} else {
		memcpy(ph, ip + 12, 8);
		ph[9] = 6;
		ef_put16(ph + 10, (uint16_t)tcp_len);
	}
	ef_put16(ip + iphl + 16, 0);
	ef_put16(ip + iphl + 16, (uint16_t)~ref_sum(parts, lens, 2));
}

static void csum_path(const uint8_t *d, size_t n)
{
	static uint8_t pkt[70000];
	struct ef_vnet_hdr h;
	size_t len;
	uint16_t want;
	int rc;

	if (n < EF_VNET_HDR_LEN)
		return;
	memcpy(&h, d, sizeof(h));
	len = n - EF_VNET_HDR_LEN;
	memcpy(pkt, d + EF_VNET_HDR_LEN, len);
	rc = ef_vnet_complete(&h, pkt, len);
	if (h.gso_type != EF_VNET_GSO_NONE) {
		ASSERT(rc == -1);
		return;
	}
	if (!(h.flags & EF_VNET_F_NEEDS_CSUM)) {
		ASSERT(rc == 0 && memcmp(pkt, d + EF_VNET_HDR_LEN, len) == 0);
		return;
	}
	if ((size_t)h.csum_start + h.csum_offset + 2 > len) {
		ASSERT(rc == -1);
		return;
	}
	ASSERT(rc == 0);
	/* The field held the pseudo-header sum: it gets the complement of the sum from
	 * csum_start on (so the whole verifies), never 0 (over UDP that means "no
	 * checksum" or is invalid: 0xffff instead, as the kernel writes); nothing else
	 * changes. */
	want = (uint16_t)~sum1(d + EF_VNET_HDR_LEN + h.csum_start, len - h.csum_start);
	ASSERT(ef_get16(pkt + h.csum_start + h.csum_offset) == (want ? want : 0xffff));
	ASSERT(memcmp(pkt, d + EF_VNET_HDR_LEN, (size_t)h.csum_start + h.csum_offset) == 0);
	ASSERT(memcmp(pkt, d + EF_VNET_HDR_LEN, (size_t)h.csum_start + h.csum_offset) == 0);
}

static void tso_path(const uint8_t *d, size_t n, int v6)
{
	static uint8_t seg[4096], joined[70000];
	struct ef_vnet_hdr h = {0};
	const uint8_t *pkt = d + 2;
	size_t len, off = 0;
	struct ef_tso t;

	if (n < 2)
		return;
	len = n - 2;
	h.gso_type = v6 ? EF_VNET_GSO_TCPV6 : EF_VNET_GSO_TCPV4;
	h.gso_size = ef_get16(d);
	h.flags = EF_VNET_F_NEEDS_CSUM;
	if (ef_tso_init(&t, &h, pkt, len, sizeof(seg)) < 0)
		return;
	ASSERT(t.nseg >= 1 && t.hl + t.mss <= sizeof(seg) && t.hl < len);
	for (int k = 0; k < t.nseg; k++) {
		size_t sl = ef_tso_build(&t, pkt, k, seg), pay = sl - t.hl;
		int last = k == t.nseg - 1;
		const uint8_t *tcp = seg + t.iphl, *otcp = pkt + t.iphl;

		ASSERT(sl > t.hl && sl <= t.hl + t.mss && (last || pay == t.mss));
		/* lengths, checksums, sequence numbers; headers otherwise unchanged */
		if (v6) {
			ASSERT(ef_get16(seg + 4) == sl - 40);
			ASSERT(memcmp(seg, pkt, 4) == 0 && memcmp(seg + 6, pkt + 6, 34) == 0);
		} else {
			ASSERT(ef_get16(seg + 2) == sl && sum1(seg, t.iphl) == 0xffff);
			ASSERT(ef_get16(seg + 4) == (uint16_t)(ef_get16(pkt + 4) + k));
			ASSERT(memcmp(seg, pkt, 2) == 0 && memcmp(seg + 6, pkt + 6, 4) == 0);
			ASSERT(memcmp(seg + 12, pkt + 12, t.iphl - 12) == 0);
		}
		ASSERT(tcp_ok(seg, v6, t.iphl, sl - t.iphl));
		ASSERT(ef_get32(tcp + 4) == ef_get32(otcp + 4) + (uint32_t)(k * t.mss));
		ASSERT(memcmp(tcp, otcp, 4) == 0 && memcmp(tcp + 8, otcp + 8, 5) == 0);
		ASSERT(memcmp(tcp + 14, otcp + 14, 2) == 0);
		ASSERT(memcmp(tcp + 18, otcp + 18, t.hl - t.iphl - 18) == 0);
		/* FIN and PSH only on the last segment, CWR only on the first */
		ASSERT((tcp[13] & 0x09) == (last ? (otcp[13] & 0x09) : 0));
		ASSERT((tcp[13] & 0x80) == (k == 0 ? (otcp[13] & 0x80) : 0));
		ASSERT((tcp[13] & 0x76) == (otcp[13] & 0x76));
		memcpy(joined + off, seg + t.hl, pay);
		off += pay;
	}
	ASSERT(off == len - t.hl && memcmp(joined, pkt + t.hl, off) == 0);
}

/* IPv4 (no options) or IPv6 carrying TCP: make the lengths and checksums right. */
static void fix(uint8_t *p, size_t len)
{
	size_t iphl;
	int v6;

	if (len >= 40 && (p[0] >> 4) == 6 && p[6] == 6) {
		v6 = 1, iphl = 40;
		ef_put16(p + 4, (uint16_t)(len - 40));
	} else if (len >= 20 && p[0] == 0x45 && p[9] == 6) {
		v6 = 0, iphl = 20;
		ef_put16(p + 2, (uint16_t)len);
		ef_put16(p + 10, 0);
		ef_put16(p + 10, (uint16_t)~sum1(p, 20));
	} else {
		return;
	}
	if (len >= iphl + 20)
		set_tcp_csum(p, v6, iphl, len - iphl);
}

static void gro_path(const uint8_t *d, size_t n, int fixup)
{
	static uint8_t bufs[EF_GRO_MAX_SEGS][2048], orig[EF_GRO_MAX_SEGS][2048];
	static uint8_t merged[EF_GRO_MAX_LEN + 2048];
	uint8_t *pkts[EF_GRO_MAX_SEGS];
	uint32_t lens[EF_GRO_MAX_SEGS];
	struct ef_vnet_hdr h;
	size_t off = 0, iphl, hl, total;
	int cnt = 0, k, v6;

	while (cnt < EF_GRO_MAX_SEGS && off + 2 <= n) {
		size_t l = ef_get16(d + off) % 2048;

		off += 2;
		if (l > n - off)
			l = n - off;
		memcpy(bufs[cnt], d + off, l);
		if (fixup)
			fix(bufs[cnt], l);
		memcpy(orig[cnt], bufs[cnt], l);
		pkts[cnt] = bufs[cnt];
		lens[cnt] = (uint32_t)l;
		off += l;
		cnt++;
	}
	if (!cnt)
		return;
	k = ef_gro_plan(pkts, lens, cnt, &h);
	ASSERT(k >= 1 && k <= cnt);
	if (k == 1) {
		ASSERT(memcmp(bufs[0], orig[0], lens[0]) == 0); /* untouched */
		return;
	}
	v6 = h.gso_type == EF_VNET_GSO_TCPV6;
	iphl = v6 ? 40 : 20;
	hl = h.hdr_len;
	ASSERT(h.csum_start == iphl && h.csum_offset == 16 && hl > iphl && hl <= lens[0]);
	ASSERT(h.gso_size == lens[0] - hl);
	for (int j = 0; j < k; j++) {
		const uint8_t *a = orig[0], *b = orig[j];

		/* each one a TCP segment whose checksums verify, only ACK (and PSH) set */
		ASSERT(tcp_ok(b, v6, iphl, lens[j] - iphl) && (b[iphl + 13] & ~0x08) == 0x10);
		if (!v6)
			ASSERT(sum1(b, 20) == 0xffff);
		/* the same flow and the same headers as the first but for lengths, checksums,
		 * IPv4 ID, sequence number and PSH: TCP bytes 12 (data offset, reserved bits,
		 * AccECN AE) and 13 as the kernel's GRO compares them (tcp_flag_word) */
		ASSERT(memcmp(a + iphl, b + iphl, 4) == 0 && memcmp(a + iphl + 8, b + iphl + 8, 5) == 0);
		ASSERT(((a[iphl + 13] ^ b[iphl + 13]) & ~0x08) == 0);
		ASSERT(memcmp(a + iphl + 14, b + iphl + 14, 2) == 0);
		ASSERT(memcmp(a + iphl + 20, b + iphl + 20, hl - iphl - 20) == 0);
		if (v6)
			ASSERT(memcmp(a, b, 4) == 0 && memcmp(a + 6, b + 6, 34) == 0);
		else
			ASSERT(a[1] == b[1] && a[6] == b[6] && a[8] == b[8] && a[9] == b[9] &&
			       memcmp(a + 12, b + 12, 8) == 0);
		/* consecutive; PSH only on the last; no segment longer than the first */
		if (j) {
			ASSERT(ef_get32(b + iphl + 4) ==
			       ef_get32(orig[j - 1] + iphl + 4) + (lens[j - 1] - hl));
			ASSERT(!(orig[j - 1][iphl + 13] & 0x08) && lens[j] <= lens[0]);
			ASSERT(j == k - 1 || lens[j] == lens[0]);
		}
	}
	/* The merged packet as the kernel would see it, its checksum completed. */
	memcpy(merged, pkts[0], lens[0]);
	total = lens[0];
	for (int j = 1; j < k; j++) {
		memcpy(merged + total, pkts[j] + hl, lens[j] - hl);
		total += lens[j] - hl;
	}
	ASSERT(total <= EF_GRO_MAX_LEN);
	if (v6) {
		ASSERT(ef_get16(merged + 4) == total - 40);
	} else {
		ASSERT(ef_get16(merged + 2) == total && sum1(merged, 20) == 0xffff);
	}
	h.gso_type = EF_VNET_GSO_NONE;
	ASSERT(ef_vnet_complete(&h, merged, total) == 0);
	ASSERT(tcp_ok(merged, v6, iphl, total - iphl));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	switch (data[0] % 3) {
	case 0:
		csum_path(data + 2, size - 2);
		break;
	case 1:
		tso_path(data + 2, size - 2, data[1] & 1);
		break;
	default:
		gro_path(data + 2, size - 2, data[1] & 1);
		break;
	}
	return 0;
}
