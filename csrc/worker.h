/* worker.h — the dataplane's threads and the instance they share. */
#ifndef EF_WORKER_H
#define EF_WORKER_H

#include <pthread.h>

#include "api.h"
#include "sa.h"
#include "udp.h"

enum ef_worker_kind { EF_WORKER_TX, EF_WORKER_RX };

/* Inner packets one RX batch can deliver: the kernel's UDP GRO merges at most 64
 * datagrams into one buffer, so EF_BATCH buffers hold at most EF_BATCH * 64. (Should
 * that ever change, the excess is counted in tun_errors, not written.) */
#define EF_RX_OUT_MAX (EF_BATCH * 64)
/* Several RX workers check and update one SA's replay window in parallel, each with its
 * own batch, so a batch's packets may find the window moved on by the other workers'
 * batches: at most (workers - 1) * EF_RX_MT_MSGS * 64 (UDP GRO) sequence numbers. With
 * 4 messages a call that is 256 a worker: the default 1024-packet window holds it for up
 * to 4 workers. One worker reads EF_BATCH messages a call. */
#define EF_RX_MT_MSGS 4
/* Inner packets one TX round encrypts and sends (TSO super-packets are cut into many). */
#define EF_TX_MAX 256

struct ef_dp;

/* ESP datagrams whose SPI is not known (yet) wait here a moment: a peer may send on a
 * new SA as soon as it has answered the exchange that made it, before our IKE (Python)
 * has read that answer and installed the SA. When an inbound SA is added, the RX
 * workers try them again (in front of their next batch; an idle one is woken); after
 * EF_PARK_NS, or pushed out by newer ones, they count as unknown_spi. Datagrams larger
 * than EF_PARK_LEN are not held. */
/* 256: a responder that sends on a new SA the moment it answers (charon does, for the
 * Child SA of an IKE_AUTH) gets half a round trip ahead of us: at 100 ms and ~1,000
 * packets/s of a small flow, 32 slots lost a burst, 256 hold it (512 KiB, and as much per
 * RX worker to try them again). */
#define EF_PARK_SLOTS 256
#define EF_PARK_LEN 2048
#define EF_PARK_NS 500000000ull
struct ef_parked {
	uint64_t when;   /* CLOCK_MONOTONIC_COARSE ns */
	uint64_t ticket; /* of the batch it came in (several workers) */
	uint32_t spi;
	uint32_t len;
	uint8_t raw;          /* came as plain ESP, from src */
	struct ef_prefix src;
	uint8_t data[EF_PARK_LEN];
};
struct ef_park {
	pthread_mutex_t lock;
	int n, head;      /* held: slot[head], slot[head + 1], ... (a ring), oldest first */
	int held;         /* n, for a look without the lock */
	uint64_t expired; /* given up: counted in unknown_spi */
	struct ef_parked slot[EF_PARK_SLOTS];
};

/* With several workers per direction: tickets in the order batches were read (under
 * `lock`), and the I/O that leaves a batch (sendmmsg, TUN writes) done in ticket order;
 * the crypto in between runs in parallel. */
struct ef_order {
	pthread_mutex_t lock;
	pthread_cond_t turn;
	uint64_t next; /* the next ticket to hand out */
	uint64_t done; /* tickets finished: the holder of ticket `done` has the turn */
};

struct ef_worker {
	struct ef_dp *dp;
	int idx; /* which of the SA's per-worker crypto contexts this thread uses */
	enum ef_worker_kind kind;
	pthread_t thread;
	int started;
	uint64_t ticket; /* of the batch in hand (several workers only) */
	int has_turn;     /* for the batch's I/O (send / TUN write) */
	int has_seq_turn; /* TX: for numbering packets (tx_seq) ... */
	int seq_passed;   /* ... and the batch has passed that stage */
	struct ef_stats st; /* written by this thread only, read with relaxed atomics */
	uint64_t no_sa_notice; /* TX: CLOCK_MONOTONIC ns of the last no-SA notice to Python */
	uint64_t park_gen;     /* RX: dp->in_gen when it last tried the held datagrams */
	uint8_t (*unpark)[EF_PARK_LEN]; /* RX: EF_PARK_SLOTS copies of held datagrams */
	struct ef_batch batch;
	/* RX: which socket each message of the batch came from: 0 the UDP socket, else the
	 * raw one of that family (AF_INET, AF_INET6); which one this worker reads first. */
	uint8_t rx_from[EF_BATCH];
	int rx_first;
	/* TX: inner packets staged for one round (in read slots, or cut from a TSO
	 * super-packet into segmem) ... */
	uint8_t *in_data[EF_TX_MAX];
	uint32_t in_len[EF_TX_MAX];
	int nin;
	uint8_t *segmem; /* EF_TX_MAX slots of EF_SLOT bytes, only with TSO */
	int segused;
	/* ... then one iovec per ESP packet; a message per run of equal-sized packets to
	 * one peer (GSO), or per packet without GSO. */
	struct iovec seg[EF_TX_MAX];
	struct sockaddr_storage seg_addr[EF_TX_MAX];
	socklen_t seg_addr_len[EF_TX_MAX];
	uint32_t seg_inner[EF_TX_MAX];
	int seg_fd[EF_TX_MAX]; /* the UDP socket or a raw one (plain ESP) */
	struct ef_sa *seg_sa[EF_TX_MAX];
	uint64_t seg_seq[EF_TX_MAX];
	struct mmsghdr out[EF_TX_MAX];
	union ef_gso_ctrl out_ctrl[EF_TX_MAX];
	uint16_t out_first[EF_TX_MAX];
	/* RX: decapsulated packets waiting for their TUN write (GRO: many per message) */
	uint8_t *rx_data[EF_RX_OUT_MAX];
	uint32_t rx_len[EF_RX_OUT_MAX];
};

struct ef_dp {
	int tun_fd, udp_fd, ike_fd, stop_fd;
	int raw_fd[2]; /* plain ESP (raw.h): AF_INET, AF_INET6 raw sockets; -1: none */
	int udp_family;
	int running;
	int gso_max; /* largest ESP packet sent with UDP_SEGMENT (0: no GSO); see udp.h */
	int gro;    /* UDP_GRO is on: received buffers may hold many datagrams */
	int vnet;   /* the TUN fd has IFF_VNET_HDR: packets carry a virtio_net_hdr */
	int tso;    /* ... and TUNSETOFFLOAD TSO: reads may be TCP super-packets */
	unsigned offloads; /* EF_OFFLOAD_* in use (api.cdef), fixed at ef_dp_new */
	int nworkers;            /* per direction */
	int duplex;              /* one thread for both directions (one worker only) */
	struct ef_worker *w;     /* 2 * nworkers: TX first, then RX */
	pthread_rwlock_t lock;   /* readers: workers, per batch; writer: SA changes */
	struct ef_order tx_order, rx_order;
	struct ef_order tx_seq; /* sequence numbers taken in ticket order (its `next` unused) */
	struct ef_table table;
	struct ef_park park;
	uint64_t in_gen; /* inbound SAs added so far */
	uint64_t sa_conflicts; /* outbound SAs refused with EF_E_CONFLICT */
	int kick_fd;     /* eventfd: an inbound SA came while datagrams were held */
	int traffic_watch; /* ef_dp_watch_traffic: the next packet that moves sends a notice */
};

/* The raw socket a plain-ESP SA sends through (its peer's real family), or -1. */
static inline int ef_raw_fd(const struct ef_dp *dp, const struct ef_sa *sa)
{
	return dp->raw_fd[sa->raw_peer.ss_family == AF_INET ? 0 : 1];
}

void *ef_worker_main(void *arg);
void ef_order_init(struct ef_order *o);
void ef_order_reset(struct ef_order *o);
void ef_order_wake(struct ef_order *o); /* after `running` went to 0 */
void ef_order_destroy(struct ef_order *o);
uint64_t ef_now_ns(void);
/* Gives up held datagrams older than EF_PARK_NS (all with `all`); caller holds its lock. */
void ef_park_expire(struct ef_park *pk, uint64_t now, int all);

#endif
