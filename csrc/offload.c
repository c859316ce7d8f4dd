/* offload.c — virtio-net header handling and TCP coalescing for TUN; see offload.h. */
#include "offload.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define IPPROTO_TCP_NUM 6

#if defined(__x86_64__)
#include <immintrin.h>

/* 32-bit words of n32 * 32 bytes into four 64-bit lanes (no carry is lost below 2^32
 * words a lane), 32 bytes a round: about four times the scalar loop's speed. */
__attribute__((target("avx2"))) static uint64_t sum32_avx2(const uint8_t *p, size_t n32)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i acc = zero;
	uint64_t lane[4];

	for (size_t i = 0; i < n32; i++, p += 32) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);

		acc = _mm256_add_epi64(acc, _mm256_unpacklo_epi32(v, zero));
		acc = _mm256_add_epi64(acc, _mm256_unpackhi_epi32(v, zero));
	}
	_mm256_storeu_si256((__m256i *)(void *)lane, acc);
	return lane[0] + lane[1] + lane[2] + lane[3];
}

static int have_avx2(void)
{
	static int cached = -1;
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);

	if (v < 0) {
		__builtin_cpu_init();
		v = __builtin_cpu_supports("avx2") ? 1 : 0;
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}
#endif

uint32_t ef_csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	uint64_t s = 0;
	uint32_t folded;

	/* Sum in the machine's byte order, 32-bit words into a 64-bit sum; one's complement
	 * sums are byte-order independent up to a final swap (RFC 1071 §2 (B)). Packets are
	 * summed once on the way out (TSO segments) and once on the way in (coalescing):
	 * with AVX2, 32 bytes a round. */
#if defined(__x86_64__)
	if (len >= 64 && have_avx2()) {
		size_t n32 = len / 32;

		s = sum32_avx2(p, n32);
		p += n32 * 32;
		len -= n32 * 32;
	}
#endif
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		s += (uint32_t)w;
		s += w >> 32;
	}
	for (; len >= 2; p += 2, len -= 2) {
		uint16_t w;

		memcpy(&w, p, 2);
		s += w;
	}
	if (len) {
		uint8_t last[2] = {p[0], 0};
		uint16_t w;

		memcpy(&w, last, 2);
		s += w;
	}
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	folded = (uint32_t)s;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	folded = ((folded & 0xff) << 8) | (folded >> 8);
#endif
	return sum + folded;
}

uint16_t ef_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

int ef_vnet_complete(const struct ef_vnet_hdr *h, uint8_t *pkt, size_t len)
{
	uint16_t c;

	if (h->gso_type != EF_VNET_GSO_NONE)
		return -1;
	if (!(h->flags & EF_VNET_F_NEEDS_CSUM))
		return 0;
	if ((size_t)h->csum_start + h->csum_offset + 2 > len)
		return -1;
	/* The field holds the pseudo-header sum; sum the rest and store its complement.
	 * A complement of 0 goes out as 0xffff, as the kernel does (skb_checksum_help): the
	 * same in one's complement for TCP, but 0 means "no checksum" in UDP over IPv4
	 * and is invalid in UDP over IPv6 (RFC 768, RFC 8200 §8.1). */
	c = (uint16_t)~ef_csum_fold(ef_csum_add(0, pkt + h->csum_start, len - h->csum_start));
	if (c == 0)
		c = 0xffff;
	ef_put16(pkt + h->csum_start + h->csum_offset, c);
	return 0;
}

/* Pseudo-header sum (RFC 793 §3.1, RFC 8200 §8.1) for a TCP segment of tcp_len bytes. */
static uint32_t pseudo_at(const uint8_t *ip, int v6, size_t tcp_len)
{
	uint8_t tail[8] = {0};
	uint32_t sum;

	if (v6) {
		sum = ef_csum_add(0, ip + 8, 32);
		ef_put32(tail, (uint32_t)tcp_len);
	} else {
		sum = ef_csum_add(0, ip + 12, 8);
		ef_put16(tail + 2, (uint16_t)tcp_len);
	}
	tail[7] = IPPROTO_TCP_NUM;
	return ef_csum_add(sum, tail, 8);
}

int ef_tso_init(struct ef_tso *t, const struct ef_vnet_hdr *h, const uint8_t *pkt, size_t len,
		size_t max_seg)
{
	int type = h->gso_type & 0x7f; /* without VIRTIO_NET_HDR_GSO_ECN */
	size_t thl;

	memset(t, 0, sizeof(*t));
	if (type == EF_VNET_GSO_TCPV4 && len >= EF_IPV4_HDR_MIN && (pkt[0] >> 4) == 4 &&
	    pkt[9] == IPPROTO_TCP_NUM) {
		t->iphl = (size_t)(pkt[0] & 15) * 4;
	} else if (type == EF_VNET_GSO_TCPV6 && len >= EF_IPV6_HDR_LEN && (pkt[0] >> 4) == 6 &&
		   pkt[6] == IPPROTO_TCP_NUM) {
		t->v6 = 1;
		t->iphl = EF_IPV6_HDR_LEN;
	} else {
		return -1;
	}
	if (t->iphl < EF_IPV4_HDR_MIN || len < t->iphl + 20)
		return -1;
	thl = (size_t)(pkt[t->iphl + 12] >> 4) * 4;
	t->hl = t->iphl + thl;
	t->mss = h->gso_size;
	if (thl < 20 || len <= t->hl || !t->mss || t->hl + t->mss > max_seg)
		return -1;
	t->payload = len - t->hl;
	t->nseg = (int)((t->payload + t->mss - 1) / t->mss);
	return 0;
}

size_t ef_tso_build(const struct ef_tso *t, const uint8_t *pkt, int k, uint8_t *out)
{
	size_t off = (size_t)k * t->mss, seg = t->payload - off < t->mss ? t->payload - off : t->mss;
	uint8_t *tcp = out + t->iphl;
	uint16_t c;

	memcpy(out, pkt, t->hl);
	memcpy(out + t->hl, pkt + t->hl + off, seg);
	if (t->v6) {
		ef_put16(out + 4, (uint16_t)(t->hl - EF_IPV6_HDR_LEN + seg));
	} else {
		ef_put16(out + 2, (uint16_t)(t->hl + seg));
		ef_put16(out + 4, (uint16_t)(ef_get16(pkt + 4) + k)); /* IP ID, one per segment */
		ef_put16(out + 10, 0);
		ef_put16(out + 10, (uint16_t)~ef_csum_fold(ef_csum_add(0, out, t->iphl)));
	}
	ef_put32(tcp + 4, ef_get32(pkt + t->iphl + 4) + (uint32_t)off);
	if (k != t->nseg - 1)
		tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH); /* only the last carries these */
	if (k != 0)
		tcp[13] &= (uint8_t)~0x80; /* CWR only on the first */
	ef_put16(tcp + 16, 0);
	c = (uint16_t)~ef_csum_fold(
		ef_csum_add(pseudo_at(out, t->v6, t->hl - t->iphl + seg), tcp, t->hl - t->iphl + seg));
	ef_put16(tcp + 16, c);
	return t->hl + seg;
}

/* What coalescing needs to know about one inner TCP segment. */
struct seg {
	int v6;
	size_t iphl, thl, payload;
	uint32_t seq;
	uint8_t flags;
	const uint8_t *ip, *tcp;
};

static uint32_t pseudo_sum(const struct seg *s, size_t tcp_len)
{
	return pseudo_at(s->ip, s->v6, tcp_len);
}

/* A TCP segment we may coalesce: plain IPv4 (no options, not a fragment) or IPv6 with
 * TCP as the next header, only ACK/PSH set, some payload, and a correct checksum. */
static int parse_seg(const uint8_t *p, size_t len, struct seg *s)
{
	size_t tcp_len;

	memset(s, 0, sizeof(*s));
	s->ip = p;
	if (len >= EF_IPV4_HDR_MIN && p[0] == 0x45) {
		if (p[9] != IPPROTO_TCP_NUM || (ef_get16(p + 6) & 0x3fff) ||
		    ef_get16(p + 2) != len || ef_csum_fold(ef_csum_add(0, p, 20)) != 0xffff)
			return 0; /* not TCP, a fragment, or a bad header checksum */
		s->iphl = 20;
	} else if (len >= EF_IPV6_HDR_LEN && (p[0] >> 4) == 6) {
		if (p[6] != IPPROTO_TCP_NUM || (size_t)ef_get16(p + 4) + 40 != len)
			return 0;
		s->v6 = 1;
		s->iphl = 40;
	} else {
		return 0;
	}
	if (len < s->iphl + 20)
		return 0;
	s->tcp = p + s->iphl;
	s->thl = (size_t)(s->tcp[12] >> 4) * 4;
	if (s->thl < 20 || len < s->iphl + s->thl)
		return 0;
	s->payload = len - s->iphl - s->thl;
	s->seq = ef_get32(s->tcp + 4);
	s->flags = s->tcp[13];
	if (!s->payload || (s->flags & ~(TCP_ACK | TCP_PSH)) || !(s->flags & TCP_ACK))
		return 0;
	tcp_len = len - s->iphl;
	/* Verified here because the merged packet is handed up as checksum-complete. */
	return ef_csum_fold(ef_csum_add(pseudo_sum(s, tcp_len), s->tcp, tcp_len)) == 0xffff;
}

/* Same flow, same headers but for lengths, checksums and the sequence number. */
static int same_flow(const struct seg *a, const struct seg *b)
{
	/* Byte 12 whole: data offset, and the reserved bits with AccECN's AE, which the
	 * kernel's GRO also compares (tcp_flag_word) */
	if (a->v6 != b->v6 || a->tcp[12] != b->tcp[12])
		return 0;
	if (a->v6) {
		/* version, traffic class, flow label; addresses */
		if (memcmp(a->ip, b->ip, 4) || a->ip[7] != b->ip[7] ||
		    memcmp(a->ip + 8, b->ip + 8, 32))
			return 0;
	} else {
		/* TOS, flags (DF), TTL, protocol; addresses */
		if (a->ip[1] != b->ip[1] || a->ip[6] != b->ip[6] || a->ip[8] != b->ip[8] ||
		    memcmp(a->ip + 12, b->ip + 12, 8))
			return 0;
	}
	/* ports, ack number, window; then every option byte (timestamps included) */
	return memcmp(a->tcp, b->tcp, 4) == 0 && memcmp(a->tcp + 8, b->tcp + 8, 4) == 0 &&
	       memcmp(a->tcp + 14, b->tcp + 14, 2) == 0 &&
	       memcmp(a->tcp + 20, b->tcp + 20, a->thl - 20) == 0;
}

int ef_gro_plan(uint8_t *const *pkts, const uint32_t *lens, int n, struct ef_vnet_hdr *h)
{
	struct seg first, prev, cur;
	size_t total;
	uint8_t *ip, *tcp;
	int k = 1;

	memset(h, 0, sizeof(*h));
	if (n < 2 || !parse_seg(pkts[0], lens[0], &first) || (first.flags & TCP_PSH))
		return 1;
	prev = first;
	total = lens[0];
	while (k < n && k < EF_GRO_MAX_SEGS) {
		if (!parse_seg(pkts[k], lens[k], &cur) || !same_flow(&first, &cur) ||
		    cur.seq != prev.seq + (uint32_t)prev.payload || cur.payload > first.payload ||
		    prev.payload != first.payload || (prev.flags & TCP_PSH) ||
		    total + cur.payload > EF_GRO_MAX_LEN)
			break;
		total += cur.payload;
		prev = cur;
		k++;
	}
	if (k == 1)
		return 1;
	/* Rewrite the first packet's headers for the whole run. */
	ip = pkts[0];
	tcp = ip + first.iphl;
	if (first.v6) {
		ef_put16(ip + 4, (uint16_t)(total - 40));
	} else {
		ef_put16(ip + 2, (uint16_t)total);
		ef_put16(ip + 10, 0);
		ef_put16(ip + 10, (uint16_t)~ef_csum_fold(ef_csum_add(0, ip, 20)));
	}
	tcp[13] |= prev.flags & TCP_PSH;
	/* Partial checksum: the pseudo-header sum; the kernel completes it if it must. */
	ef_put16(tcp + 16, ef_csum_fold(pseudo_sum(&first, total - first.iphl)));
	h->flags = EF_VNET_F_NEEDS_CSUM;
	h->gso_type = first.v6 ? EF_VNET_GSO_TCPV6 : EF_VNET_GSO_TCPV4;
	h->hdr_len = (uint16_t)(first.iphl + first.thl);
	h->gso_size = (uint16_t)first.payload;
	h->csum_start = (uint16_t)first.iphl;
	h->csum_offset = 16;
	return k;
}

int ef_gro_write(int fd, uint8_t *const *pkts, const uint32_t *lens, int n, int coalesce,
		 int *writes, int *merged)
{
	struct iovec iov[EF_GRO_MAX_SEGS + 1];
	struct ef_vnet_hdr h;
	int failed = 0;

	for (int i = 0; i < n;) {
		int k = ef_gro_plan(pkts + i, lens + i, coalesce ? n - i : 1, &h);
		size_t want = sizeof(h);
		ssize_t r;

		iov[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof(h)};
		iov[1] = (struct iovec){.iov_base = pkts[i], .iov_len = lens[i]};
		want += lens[i];
		for (int j = 1; j < k; j++) {
			size_t hl = h.hdr_len;

			/* later segments contribute their payload only */
			iov[j + 1] = (struct iovec){.iov_base = pkts[i + j] + hl,
						    .iov_len = lens[i + j] - hl};
			want += lens[i + j] - hl;
		}
		do {
			r = writev(fd, iov, k + 1);
		} while (r < 0 && errno == EINTR);
		(*writes)++;
		if (r != (ssize_t)want)
			failed += k;
		else if (k > 1)
			*merged += k;
		i += k;
	}
	return failed;
}
