/* sa.h — a Child SA in one direction, and the table that finds SAs.
 *
 *   ef_sa_new/ef_sa_free      keys enter once, are cleansed when the SA goes
 *   ef_sa_encap/ef_sa_decap   one packet through an SA (sequence numbers, replay window,
 *                             crypto, inner-packet and selector checks); the workers and
 *                             the standalone Python API both use these
 *   ef_table_*                inbound SPI -> SA (hash); outbound inner (dst, src) -> SA by
 *                             longest prefix: one hash per prefix length in use, probed
 *                             longest first, so many /32s stay O(1)
 *
 * Locking is the caller's: the dataplane holds its rwlock for reading per batch and for
 * writing while it changes the table. Counters are atomics (workers may share an SA).
 */
#ifndef EF_SA_H
#define EF_SA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "api.h"
#include "esp.h"
#include "replay.h"

struct ef_route {
	struct ef_route *next;
	struct ef_sa *sa;
	struct ef_prefix prefix; /* masked */
};

struct ef_sa {
	struct ef_sa *next_spi; /* SPI hash chain */
	uint32_t spi;
	uint8_t dir;
	uint8_t esn;
	uint8_t exhausted; /* outbound: the sequence number space is used up */
	const struct ef_transform *t;
	uint8_t *salt; /* EF_AEAD_SALT_LEN bytes in keymem (never dumped) */
	int nctx;
	struct ef_cctx *ctx; /* one per worker */
	uint64_t seq;        /* outbound: last sequence number used */
	uint64_t seq_limit;  /* outbound: the last one we may use (ef_sa_set_seq_limit) */
	struct ef_replay replay;
	pthread_spinlock_t replay_lock;
	size_t n_local, n_remote;
	struct ef_prefix *local, *remote;
	struct ef_route *routes; /* outbound: one per remote prefix */
	struct sockaddr_storage peer; /* inbound: with follow, the last authenticated source */
	socklen_t peer_len;
	uint8_t follow;               /* inbound: see ef_sa_params.follow */
	/* Plain ESP (ef_sa_params.raw_esp): the raw socket's destination for `peer` (port 0,
	 * v4-mapped unmapped) and the peer's address, which inbound plain ESP must come from. */
	uint8_t raw;
	struct sockaddr_storage raw_peer;
	socklen_t raw_peer_len;
	struct ef_prefix peer_addr;
	uint64_t owner, group; /* see ef_sa_params.owner */
	struct ef_sa_stats cnt;
};

/* Validates everything; returns NULL and sets *err (EF_E_*) on failure. */
struct ef_sa *ef_sa_new(const struct ef_sa_params *p, int nctx, int *err);
void ef_sa_free(struct ef_sa *sa);
int ef_sa_set_peer(struct ef_sa *sa, const void *addr, uint32_t len);
void ef_sa_read_stats(const struct ef_sa *sa, struct ef_sa_stats *st);

/* Returns the ESP length (>0) with *out at the ESP header, or -EF_E_* (SEQ_EXHAUSTED,
 * CRYPTO, MALFORMED for an inner packet that is not IP). `inner` needs EF_HEADROOM and
 * EF_TAILROOM around it. Counts into the SA. */
long ef_sa_encap(struct ef_sa *sa, int ctx, uint8_t *inner, size_t len, uint8_t **out);
/* ef_sa_encap in two steps, for workers that number packets in one order and seal them
 * in parallel: the next sequence number (0: exhausted, counted), then the sealing. */
uint64_t ef_sa_next_seq(struct ef_sa *sa);
long ef_sa_seal(struct ef_sa *sa, int ctx, uint64_t seq, uint8_t *inner, size_t len,
		uint8_t **out);
/* Outbound: numbers above `limit` are refused (counted as seq_exhausted, the SA stays
 * usable) until the limit is raised; 0 lifts it (up to the ESN / non-ESN maximum). */
void ef_sa_set_seq_limit(struct ef_sa *sa, uint64_t limit);

/* Returns the inner packet length (>=0) with *inner set, or -EF_E_* (MALFORMED, REPLAY,
 * AUTH, PADDING, POLICY). Counts into the SA. ESP packet at `pkt`, modified in place. */
long ef_sa_decap(struct ef_sa *sa, int ctx, uint8_t *pkt, size_t len, uint8_t **inner);

/* The two halves of the inbound replay window as decap runs them, under the SA's
 * spinlock: the check before decryption returns the full sequence number for the wire's
 * low 32 bits (0: replayed or too old, counted); the update after the ICV verified
 * returns 0, or -1 when a racing duplicate got there first (counted). */
uint64_t ef_sa_replay_check(struct ef_sa *sa, uint32_t seq_lo);
int ef_sa_replay_update(struct ef_sa *sa, uint64_t seq);
/* Inbound with follow, after a packet from `from` was authenticated: 1 if `from` is a new
 * source (it is remembered; the caller tells the daemon), 0 if not. Under the spinlock:
 * workers racing on one SA report a change once. */
int ef_sa_follow(struct ef_sa *sa, const struct sockaddr_storage *from);

/* Inner IP packet: version, lengths; source and destination addresses. */
int ef_ip_parse(const uint8_t *p, size_t len, struct ef_prefix *src, struct ef_prefix *dst,
		size_t *ip_len);
int ef_prefix_contains(const struct ef_prefix *net, const struct ef_prefix *addr);

struct ef_table {
	struct ef_sa **spi[2]; /* [EF_DIR_IN], [EF_DIR_OUT] */
	uint32_t spi_mask[2];
	size_t n_sa[2];
	struct ef_route **routes;
	uint32_t route_mask;
	size_t n_routes;
	uint32_t plen_refs[2][129]; /* [IPv4, IPv6][prefix length] */
	uint8_t plens[2][129];      /* lengths in use, longest first */
	int n_plens[2];
};

int ef_table_init(struct ef_table *tb);
void ef_table_destroy(struct ef_table *tb); /* frees every SA */
/* EF_E_EXISTS; EF_E_CONFLICT for an outbound SA that would shadow another owner's SA
 * (see ef_sa_params.owner). */
int ef_table_add(struct ef_table *tb, struct ef_sa *sa);
struct ef_sa *ef_table_find(const struct ef_table *tb, uint32_t spi, int dir);
struct ef_sa *ef_table_remove(struct ef_table *tb, uint32_t spi, int dir);
struct ef_sa *ef_table_route(const struct ef_table *tb, const struct ef_prefix *src,
			     const struct ef_prefix *dst);

#endif
