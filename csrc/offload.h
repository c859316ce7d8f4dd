/* offload.h — TUN devices opened with IFF_VNET_HDR: every packet carries a
 * struct virtio_net_hdr in front. We use it to write coalesced TCP segments ("GRO in
 * userspace"): consecutive decrypted segments of one TCP flow become one large packet
 * with gso_size set, written with one writev, so the kernel's TCP receive path runs
 * once per ~40 segments instead of once per segment. On reads we complete checksums the
 * kernel left partial.
 *
 *   ef_csum_*             Internet checksum helpers (RFC 1071)
 *   ef_vnet_complete()    finish a NEEDS_CSUM packet read from TUN
 *   ef_tso_*              cut a TCP super-packet read from TUN (TUNSETOFFLOAD TSO) into
 *                         MSS-sized segments, each with its own headers and checksum
 *   ef_gro_write()        write a batch of inner packets, coalescing TCP runs
 */
#ifndef EF_OFFLOAD_H
#define EF_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define EF_VNET_HDR_LEN 10
#define EF_GRO_MAX_SEGS 64
#define EF_GRO_MAX_LEN 65535

struct ef_vnet_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
} __attribute__((packed));

#define EF_VNET_F_NEEDS_CSUM 1
#define EF_VNET_GSO_NONE 0
#define EF_VNET_GSO_TCPV4 1
#define EF_VNET_GSO_TCPV6 4

uint32_t ef_csum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t ef_csum_fold(uint32_t sum);

/* Completes the checksum of a packet read with `h` in front. -1 if h is not usable
 * (GSO packets, offsets outside the packet). */
int ef_vnet_complete(const struct ef_vnet_hdr *h, uint8_t *pkt, size_t len);

struct ef_tso {
	int v6;
	size_t iphl, hl; /* IP header, IP + TCP headers */
	size_t mss, payload;
	int nseg;
};

/* Checks a GSO packet read from TUN; fills t. -1 if it is not a TCP super-packet we can
 * cut, or if a segment would need more than `max_seg` bytes. */
int ef_tso_init(struct ef_tso *t, const struct ef_vnet_hdr *h, const uint8_t *pkt, size_t len,
		size_t max_seg);
/* Builds segment k (0 <= k < t->nseg) at out; returns its length. */
size_t ef_tso_build(const struct ef_tso *t, const uint8_t *pkt, int k, uint8_t *out);

/* The next run of packets starting at pkts[0] that may be coalesced (1 when none);
 * fills `h` and rewrites the first packet's IP and TCP headers for the merged
 * packet when the run is longer than 1. */
int ef_gro_plan(uint8_t *const *pkts, const uint32_t *lens, int n, struct ef_vnet_hdr *h);

/* Writes n inner packets to a vnet-header TUN fd, coalescing TCP runs unless
 * `coalesce` is 0 (then one plain packet per write); returns the number of packets that
 * could not be written. *writes counts the write calls made, *merged the packets that
 * went in coalesced writes. */
int ef_gro_write(int fd, uint8_t *const *pkts, const uint32_t *lens, int n, int coalesce,
		 int *writes, int *merged);

#endif
