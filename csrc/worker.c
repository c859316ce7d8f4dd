/* worker.c — the dataplane threads.
 *
 * Pipeline (each arrow a batch: EF_BATCH reads or datagrams, up to EF_TX_MAX inner
 * packets once TSO super-packets are cut; no allocation per packet):
 *
 *   TX thread(s):  TUN --read x N--> (vnet TUN: finish checksums, cut TSO
 *                  super-packets into segments) --> [rdlock: parse inner IP, route to
 *                  outbound SA by (dst, src) longest prefix, take sequence number, seal
 *                  in place] --sendmmsg, equal-sized runs as UDP GSO--> UDP 4500
 *                  (SAs with plain ESP: --sendmmsg, no GSO--> raw IP protocol 50 socket)
 *   RX thread(s):  UDP 4500 (and the raw ESP sockets, taking turns to read first)
 *                  --recvmmsg (UDP GRO: split by segment size; raw: outer IPv4 header
 *                  checked and stripped, raw.h)--> [rdlock:
 *                  classify (keepalive / IKE / ESP), SPI -> SA, framing and (plain ESP)
 *                  source checked against the SA, replay check, open in
 *                  place, replay update, selector check] --write x N (vnet TUN: runs of
 *                  one TCP flow coalesced into one writev)--> TUN;
 *                  IKE --> ike_fd (Python polls it)
 *
 * One worker (the default on machines with up to 3 CPUs) runs both pipelines in one
 * thread by default (dp->duplex, duplex_main): a TX round, then an RX round, sleeping
 * only when neither has work. Under one-way bulk traffic the other direction carries
 * little but TCP ACKs, and with a thread per direction each of those woke a thread of
 * its own at both ends; on 2 CPUs one thread per end took 4-10 % less CPU per byte for
 * the same throughput, one way or both ways at once (README, "One thread or two"). The
 * price: under a backlog, packets of one direction wait for the other's round, at most
 * EF_BATCH reads (TX: TSO super-packets of up to 64 KB, a few ms of sealing). `duplex =
 * false` keeps a TX and an RX thread, which run in parallel on different cores: better
 * for bulk traffic both ways, or latency beside it, with cores to spare.
 *
 * With more than one worker per direction
 * the threads share the fds and keep the order of the batches they read: each takes a
 * ticket as it reads (a mutex around the non-blocking read), runs its crypto in parallel
 * with the others, and sends (TX) or writes to TUN (RX) only when every earlier ticket
 * has (struct ef_order) — so one TCP flow is never reordered by the dataplane. TX also
 * numbers its packets in ticket order (a second turn, tx_seq, held from a batch's first
 * flush to its last; the sealing after it runs in parallel), so each SA's sequence
 * numbers leave in order. RX checks and updates the replay window in parallel, each
 * worker taking at most EF_RX_MT_MSGS messages a call, which bounds how far the others
 * can move the window ahead of a batch (worker.h). Per SA, the sequence counter (CAS)
 * and the replay window (a spinlock around check and update) are the only other serial
 * points, and each thread has its own keyed EVP contexts in every SA. The SA table's rwlock is held for reading
 * across one batch's crypto, never across a blocking system call (only the rare IKE
 * hand-over, MSG_DONTWAIT, happens under it), so add/remove from Python waits at most
 * one batch. Counters: per thread globally, atomics per SA.
 *
 * Why shared fds and ordered tickets rather than one TUN queue (IFF_MULTI_QUEUE) and one
 * SO_REUSEPORT socket per worker: both steer by flow hash, and all ESP between two
 * gateways is one UDP flow, so REUSEPORT would hand every datagram from one peer to one
 * socket, i.e. one RX worker; the tickets let all workers share one peer's traffic and
 * still deliver it in order (the design of wireguard-go's per-peer queues).
 *
 * Latency: nothing waits for a batch to fill (reads stop at EAGAIN and the batch goes at
 * once; TCP coalescing only merges what one recvmmsg returned). An idle round trip wakes
 * a sleeping thread from poll() at each hop: with a thread per direction four (a's TX,
 * b's RX, b's TX, a's RX); duplex three, since b's thread finds the reply on its TUN
 * device right after writing the request there (the kernel answers inside the write). On
 * this shared 2-CPU machine a wake-up costs some 30-80 us, hence ~0.15-0.35 ms idle ping
 * RTT against ~0.04 ms on bare veth (wireguard-go ~0.4-0.5, strongSwan libipsec
 * ~0.4-0.6), and less when the threads are busy.
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "offload.h"
#include "raw.h"
#include "tun.h"

#define ST_ADD(w, field, n) \
	__atomic_store_n(&(w)->st.field, (w)->st.field + (n), __ATOMIC_RELAXED)

static int running(const struct ef_dp *dp)
{
	return __atomic_load_n(&dp->running, __ATOMIC_ACQUIRE);
}

uint64_t ef_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ef_order_init(struct ef_order *o)
{
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->turn, NULL);
	o->next = o->done = 0;
}

void ef_order_reset(struct ef_order *o)
{
	o->next = o->done = 0;
}

void ef_order_wake(struct ef_order *o)
{
	pthread_mutex_lock(&o->lock);
	pthread_cond_broadcast(&o->turn);
	pthread_mutex_unlock(&o->lock);
}

void ef_order_destroy(struct ef_order *o)
{
	pthread_cond_destroy(&o->turn);
	pthread_mutex_destroy(&o->lock);
}

/* Several workers: the read that fills a batch happens between order_enter and
 * order_take, which hands the batch a ticket when it holds anything. One worker: no-ops. */
static void order_enter(struct ef_worker *w, struct ef_order *o)
{
	if (w->dp->nworkers > 1)
		pthread_mutex_lock(&o->lock);
}

static void order_take(struct ef_worker *w, struct ef_order *o, int n)
{
	if (w->dp->nworkers == 1)
		return;
	if (n > 0)
		w->ticket = o->next++;
	w->has_turn = w->has_seq_turn = w->seq_passed = 0;
	pthread_mutex_unlock(&o->lock);
}

/* Waits until every earlier batch has passed this stage (or the dataplane stops); *has
 * says whether this batch has the turn. */
static void order_turn(struct ef_worker *w, struct ef_order *o, int *has)
{
	if (w->dp->nworkers == 1 || *has)
		return;
	pthread_mutex_lock(&o->lock);
	while (o->done != w->ticket && running(w->dp))
		pthread_cond_wait(&o->turn, &o->lock);
	*has = o->done == w->ticket;
	pthread_mutex_unlock(&o->lock);
}

/* The batch has passed this stage: the next ticket's turn. */
static void order_done(struct ef_worker *w, struct ef_order *o, int *has)
{
	if (w->dp->nworkers == 1)
		return;
	order_turn(w, o, has);
	if (!*has)
		return; /* stopping */
	pthread_mutex_lock(&o->lock);
	o->done++;
	pthread_cond_broadcast(&o->turn);
	pthread_mutex_unlock(&o->lock);
	*has = 0;
}

static void count_decap_error(struct ef_worker *w, long err)
{
	switch (-err) {
	case EF_E_REPLAY:
		ST_ADD(w, replay_drops, 1);
		break;
	case EF_E_AUTH:
		ST_ADD(w, auth_failures, 1);
		break;
	case EF_E_PADDING:
		ST_ADD(w, bad_padding, 1);
		break;
	case EF_E_POLICY:
		ST_ADD(w, policy_drops, 1);
		break;
	default:
		ST_ADD(w, malformed, 1);
		break;
	}
}

static int same_addr(const struct ef_prefix *a, const struct ef_prefix *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, a->family == 4 ? 4 : 16) == 0;
}

static int same_peer(const struct ef_worker *w, int i, int j)
{
	return w->seg_fd[i] == w->seg_fd[j] && w->seg_addr_len[i] == w->seg_addr_len[j] &&
	       memcmp(&w->seg_addr[i], &w->seg_addr[j], w->seg_addr_len[i]) == 0;
}

/* Groups the nseg sealed packets into messages: with GSO, a run of packets to one peer
 * where all but the last have the same length becomes one message. */
static int build_messages(struct ef_worker *w, int nseg)
{
	size_t gso_max = (size_t)__atomic_load_n(&w->dp->gso_max, __ATOMIC_RELAXED);
	int n = 0;

	for (int i = 0; i < nseg;) {
		size_t seglen = w->seg[i].iov_len, total = seglen;
		int j = i + 1;

		/* no GSO on a raw socket: one packet a message */
		while (seglen <= gso_max && w->seg_fd[i] == w->dp->udp_fd && j < nseg &&
		       j - i < EF_GSO_MAX_SEGS && w->seg[j - 1].iov_len == seglen && w->seg[j].iov_len <= seglen &&
		       total + w->seg[j].iov_len <= EF_GSO_MAX_BYTES && same_peer(w, i, j))
			total += w->seg[j++].iov_len;
		w->out[n].msg_hdr = (struct msghdr){
			.msg_name = &w->seg_addr[i],
			.msg_namelen = w->seg_addr_len[i],
			.msg_iov = &w->seg[i],
			.msg_iovlen = (size_t)(j - i),
		};
		if (j - i > 1) {
			ef_udp_set_gso(&w->out[n].msg_hdr, &w->out_ctrl[n], (uint16_t)seglen);
			ST_ADD(w, tx_gso, 1);
		}
		w->out_first[n] = (uint16_t)i;
		n++;
		i = j;
	}
	return n;
}

/* Tells Python (on ike_fd) that an inner packet to `dst` found no outbound SA: a trap
 * may want to negotiate one. Rate-limited per worker; a full socket drops the notice. */
static void notice_no_sa(struct ef_worker *w, const struct ef_prefix *dst)
{
	struct ef_ike_hdr h = {0};
	uint64_t now = ef_now_ns();

	if (w->no_sa_notice && now - w->no_sa_notice < EF_NO_SA_NOTICE_NS)
		return;
	w->no_sa_notice = now;
	h.family = (uint8_t)(dst->family | EF_IKE_NO_SA);
	memcpy(h.addr, dst->addr, dst->family == 4 ? 4 : 16);
	(void)send(w->dp->ike_fd, &h, sizeof(h), MSG_DONTWAIT);
}

/* Tells Python (on ike_fd) that authenticated ESP for inbound SA `spi` came from a new
 * source `from` (ef_sa_follow said so: once per change). A full socket drops it. */
static void notice_moved(struct ef_worker *w, uint32_t spi, const struct sockaddr_storage *from)
{
	struct ef_ike_hdr h = {0};
	uint8_t spi_be[4];
	struct iovec iov[2] = {{&h, sizeof(h)}, {spi_be, sizeof(spi_be)}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

	ef_put32(spi_be, spi);
	if (from->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)from;

		h.family = 4 | EF_IKE_MOVED;
		h.port = ntohs(a->sin_port);
		memcpy(h.addr, &a->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *a = (const void *)from;

		h.family = 6 | EF_IKE_MOVED;
		h.port = ntohs(a->sin6_port);
		memcpy(h.addr, &a->sin6_addr, 16);
	}
	(void)sendmsg(w->dp->ike_fd, &mh, MSG_DONTWAIT);
}

/* A batch moved packets: the EF_IKE_TRAFFIC notice, if one was asked for (api.cdef). */
static void traffic_seen(struct ef_dp *dp)
{
	struct ef_ike_hdr h = {.family = EF_IKE_TRAFFIC};

	/* One relaxed load per batch while nobody watches; the exchange lets one thread
	 * send the notice. A full socket: the next batch tries again. */
	if (!__atomic_load_n(&dp->traffic_watch, __ATOMIC_RELAXED) ||
	    !__atomic_exchange_n(&dp->traffic_watch, 0, __ATOMIC_ACQ_REL))
		return;
	if (send(dp->ike_fd, &h, sizeof(h), MSG_DONTWAIT) < 0)
		__atomic_store_n(&dp->traffic_watch, 1, __ATOMIC_RELEASE);
}

/* Encrypts and sends the staged inner packets (w->in_data / in_len), then empties the
 * stage. Several workers: the packets are numbered in ticket order (the seq turn, held
 * from a batch's first flush to its `last`), sealed in parallel, sent in ticket order —
 * so each SA's sequence numbers leave in order. No turn is awaited under the rwlock (a
 * waiting writer would block the turn's holder). */
static void tx_flush(struct ef_worker *w, int last)
{
	struct ef_dp *dp = w->dp;
	struct ef_prefix src, dst, last_src = {0}, last_dst = {0};
	struct ef_sa *sa = NULL;
	int nseg = 0, nmsg, nsealed = 0, fd;

	order_turn(w, &dp->tx_seq, &w->has_seq_turn);
	pthread_rwlock_rdlock(&dp->lock);
	for (int i = 0; i < w->nin; i++) {
		size_t iplen;
		uint64_t seq;

		if (ef_ip_parse(w->in_data[i], w->in_len[i], &src, &dst, &iplen) < 0) {
			ST_ADD(w, malformed, 1);
			continue;
		}
		/* A stream sends many packets in a row to one destination. */
		if (!sa || !same_addr(&dst, &last_dst) || !same_addr(&src, &last_src)) {
			sa = ef_table_route(&dp->table, &src, &dst);
			last_src = src;
			last_dst = dst;
		}
		if (!sa) {
			ST_ADD(w, no_sa, 1);
			notice_no_sa(w, &dst);
			continue;
		}
		seq = ef_sa_next_seq(sa);
		if (!seq) {
			ST_ADD(w, seq_exhausted, 1);
			continue;
		}
		w->in_data[nseg] = w->in_data[i];
		w->seg_inner[nseg] = (uint32_t)iplen;
		w->seg_sa[nseg] = sa;
		w->seg_seq[nseg] = seq;
		nseg++;
	}
	if (last) {
		order_done(w, &dp->tx_seq, &w->has_seq_turn); /* holds it: no wait */
		w->seq_passed = 1;
	}
	for (int i = 0; i < nseg; i++) {
		uint8_t *esp;
		long r = ef_sa_seal(w->seg_sa[i], w->idx, w->seg_seq[i], w->in_data[i],
				    w->seg_inner[i], &esp);

		sa = w->seg_sa[i];
		fd = sa->raw ? ef_raw_fd(dp, sa) : dp->udp_fd;
		if (r < 0 || fd < 0) {
			ST_ADD(w, tx_errors, 1);
			continue;
		}
		w->seg[nsealed] = (struct iovec){.iov_base = esp, .iov_len = (size_t)r};
		w->seg_fd[nsealed] = fd;
		if (sa->raw) {
			memcpy(&w->seg_addr[nsealed], &sa->raw_peer, sa->raw_peer_len);
			w->seg_addr_len[nsealed] = sa->raw_peer_len;
		} else {
			memcpy(&w->seg_addr[nsealed], &sa->peer, sa->peer_len);
			w->seg_addr_len[nsealed] = sa->peer_len;
		}
		w->seg_inner[nsealed] = w->seg_inner[i];
		nsealed++;
	}
	pthread_rwlock_unlock(&dp->lock);
	w->nin = 0;
	w->segused = 0;
	nseg = nsealed;
	if (!nseg)
		return;
	traffic_seen(dp); /* sealed: the SA's counters moved, whatever the send does */
	nmsg = build_messages(w, nseg);
	order_turn(w, &dp->tx_order, &w->has_turn);
	/* Runs of messages to one socket, in order. */
	for (int m = 0, k; m < nmsg; m = k) {
		fd = w->seg_fd[w->out_first[m]];
		for (k = m + 1; k < nmsg && w->seg_fd[w->out_first[k]] == fd; k++)
			;
		ef_udp_send(fd, w->out + m, k - m, dp->stop_fd, &dp->gso_max);
	}
	for (int m = 0; m < nmsg; m++) {
		int first = w->out_first[m], last_seg = first + (int)w->out[m].msg_hdr.msg_iovlen;

		for (int i = first; i < last_seg; i++) {
			if (w->out[m].msg_len == 0) {
				ST_ADD(w, tx_errors, 1);
				continue;
			}
			ST_ADD(w, tx_packets, 1);
			ST_ADD(w, tx_bytes, w->seg_inner[i]);
			if (w->seg_fd[i] != dp->udp_fd)
				ST_ADD(w, tx_raw, 1);
		}
	}
}

static void stage(struct ef_worker *w, uint8_t *p, size_t len)
{
	if (w->nin == EF_TX_MAX)
		tx_flush(w, 0);
	w->in_data[w->nin] = p;
	w->in_len[w->nin] = (uint32_t)len;
	w->nin++;
}

/* One packet read from TUN: with a virtio_net_hdr, finish its checksum or cut a TSO
 * super-packet into segments; then stage it. */
static void tx_read_one(struct ef_worker *w, uint8_t *p, size_t len)
{
	struct ef_vnet_hdr vh;
	struct ef_tso t;

	if (!w->dp->vnet) {
		stage(w, p, len);
		return;
	}
	if (len < EF_VNET_HDR_LEN) {
		ST_ADD(w, malformed, 1);
		return;
	}
	memcpy(&vh, p, sizeof(vh));
	p += EF_VNET_HDR_LEN;
	len -= EF_VNET_HDR_LEN;
	if (vh.gso_type == EF_VNET_GSO_NONE) {
		if (ef_vnet_complete(&vh, p, len))
			ST_ADD(w, malformed, 1);
		else
			stage(w, p, len);
		return;
	}
	if (!w->segmem ||
	    ef_tso_init(&t, &vh, p, len, EF_SLOT - EF_HEADROOM - EF_TAILROOM) < 0) {
		ST_ADD(w, malformed, 1);
		return;
	}
	ST_ADD(w, tun_tso, 1);
	for (int k = 0; k < t.nseg; k++) {
		uint8_t *seg;

		if (w->nin == EF_TX_MAX || w->segused == EF_TX_MAX)
			tx_flush(w, 0);
		seg = w->segmem + (size_t)w->segused++ * EF_SLOT + EF_HEADROOM;
		stage(w, seg, ef_tso_build(&t, p, k, seg));
	}
}

/* With a virtio_net_hdr the packet starts EF_VNET_HDR_LEN bytes later, at the same
 * place: EF_HEADROOM into the slot. */
static size_t tx_read_off(const struct ef_dp *dp)
{
	return dp->vnet ? EF_HEADROOM - EF_VNET_HDR_LEN : EF_HEADROOM;
}

/* One TX round: a batch read from TUN, sealed and sent. Returns how many packets were
 * read (0: TUN had none). */
static int tx_round(struct ef_worker *w)
{
	struct ef_dp *dp = w->dp;
	const size_t off = tx_read_off(dp);
	int n;

	order_enter(w, &dp->tx_order);
	n = ef_tun_read_batch(dp->tun_fd, &w->batch, off, w->batch.slot - off - EF_TAILROOM);
	order_take(w, &dp->tx_order, n);
	if (n < 0) {
		ST_ADD(w, tun_errors, 1);
		n = 0;
	}
	if (n == 0)
		return 0;
	for (int i = 0; i < n; i++)
		tx_read_one(w, w->batch.data[i], w->batch.len[i]);
	if (w->nin)
		tx_flush(w, 1);
	if (!w->seq_passed)
		order_done(w, &dp->tx_seq, &w->has_seq_turn);
	order_done(w, &dp->tx_order, &w->has_turn);
	return n;
}

static void *tx_main(struct ef_worker *w)
{
	struct ef_dp *dp = w->dp;

	while (running(dp))
		if (!tx_round(w) && ef_wait(dp->tun_fd, POLLIN, dp->stop_fd, -1))
			break;
	return NULL;
}

/* Hands an IKE message (non-ESP marker stripped) and its source up to Python. */
static void forward_ike(struct ef_worker *w, const struct sockaddr_storage *from,
			const uint8_t *msg, size_t len)
{
	struct ef_ike_hdr h = {0};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)msg, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

	if (from->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)from;

		h.family = 4;
		h.port = ntohs(a->sin_port);
		memcpy(h.addr, &a->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *a = (const void *)from;

		h.family = 6;
		h.port = ntohs(a->sin6_port);
		memcpy(h.addr, &a->sin6_addr, 16);
	}
	if (sendmsg(w->dp->ike_fd, &mh, MSG_DONTWAIT) < 0)
		ST_ADD(w, ike_dropped, 1);
	else
		ST_ADD(w, ike_forwarded, 1);
}

void ef_park_expire(struct ef_park *pk, uint64_t now, int all)
{
	while (pk->n && (all || now - pk->slot[pk->head].when > EF_PARK_NS)) {
		pk->head = (pk->head + 1) % EF_PARK_SLOTS;
		pk->n--;
		pk->expired++;
	}
	__atomic_store_n(&pk->held, pk->n, __ATOMIC_RELEASE);
}

/* Holds an ESP datagram whose SPI is not known (yet): see struct ef_park. */
static void park(struct ef_worker *w, uint32_t spi, const uint8_t *p, size_t len,
		 const struct ef_prefix *raw_src)
{
	struct ef_park *pk = &w->dp->park;
	struct ef_parked *s;
	uint64_t now = ef_now_ns();

	if (len > EF_PARK_LEN) {
		ST_ADD(w, unknown_spi, 1);
		return;
	}
	pthread_mutex_lock(&pk->lock);
	ef_park_expire(pk, now, 0);
	if (pk->n == EF_PARK_SLOTS) { /* full: the oldest gives way */
		pk->head = (pk->head + 1) % EF_PARK_SLOTS;
		pk->n--;
		pk->expired++;
	}
	s = &pk->slot[(pk->head + pk->n) % EF_PARK_SLOTS];
	s->when = now;
	s->ticket = w->ticket;
	s->spi = spi;
	s->len = (uint32_t)len;
	s->raw = raw_src != NULL;
	if (raw_src)
		s->src = *raw_src;
	memcpy(s->data, p, len);
	pk->n++;
	__atomic_store_n(&pk->held, pk->n, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&pk->lock);
}

/* Whether held datagrams may have found their SA since this worker last looked (an
 * inbound SA was added since: the generation is bumped under the table's write lock). */
static int park_pending(const struct ef_worker *w)
{
	return __atomic_load_n(&w->dp->in_gen, __ATOMIC_ACQUIRE) != w->park_gen &&
	       __atomic_load_n(&w->dp->park.held, __ATOMIC_ACQUIRE) > 0;
}

/* Moves the held datagrams whose inbound SA now exists, oldest first, into w->unpark
 * (lengths in `lens`, plain ESP's sources in `srcs`/`raws`); returns how many. Called with the turn (rx_batch), so that every
 * batch read before this one has gone out: held datagrams of those batches go out now,
 * ahead of this batch's. Those of a later batch stay for a later turn (they are newer
 * than this batch's), and this worker looks again next time. The caller holds the
 * table's read lock. */
static int take_parked(struct ef_worker *w, uint32_t *lens, struct ef_prefix *srcs,
		       uint8_t *raws)
{
	struct ef_dp *dp = w->dp;
	struct ef_park *pk = &dp->park;
	int k = 0, kept = 0, later = 0;

	w->park_gen = __atomic_load_n(&dp->in_gen, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&pk->lock);
	ef_park_expire(pk, ef_now_ns(), 0);
	for (int i = 0; i < pk->n; i++) {
		struct ef_parked *s = &pk->slot[(pk->head + i) % EF_PARK_SLOTS];

		if (ef_table_find(&dp->table, s->spi, EF_DIR_IN)) {
			if (dp->nworkers == 1 || s->ticket <= w->ticket) {
				memcpy(w->unpark[k], s->data, s->len);
				srcs[k] = s->src;
				raws[k] = s->raw;
				lens[k++] = s->len;
				continue;
			}
			later = 1;
		}
		if (kept != i)
			pk->slot[(pk->head + kept) % EF_PARK_SLOTS] = *s;
		kept++;
	}
	pk->n = kept;
	__atomic_store_n(&pk->held, pk->n, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&pk->lock);
	if (later)
		w->park_gen--; /* not all taken: look again at the next batch */
	return k;
}

/* One received datagram (a whole one, or one GRO segment): keepalive, IKE, or ESP; or,
 * with raw_src (its outer source address), a plain ESP packet from a raw socket.
 * Returns the inner packet's length with *inner set, or 0 when nothing is delivered. */
static long rx_one(struct ef_worker *w, struct ef_sa **cache, uint8_t *p, size_t len,
		   const struct sockaddr_storage *from, const struct ef_prefix *raw_src,
		   uint8_t **inner)
{
	struct ef_sa *sa = *cache;
	uint32_t spi;
	long r;

	/* RFC 3948 §2.2, §2.3: keepalive, non-ESP marker, or ESP. Plain ESP is just ESP. */
	if (raw_src) {
		/* nothing to classify */
	} else if (len == 1 && p[0] == EF_NAT_KEEPALIVE) {
		ST_ADD(w, keepalives, 1);
		return 0;
	} else if (len >= EF_NON_ESP_MARKER_LEN && ef_get32(p) == 0) {
		forward_ike(w, from, p + 4, len - 4);
		return 0;
	}
	if (len < EF_ESP_HDR_LEN) {
		ST_ADD(w, malformed, 1);
		return 0;
	}
	spi = ef_get32(p);
	if (!sa || sa->spi != spi)
		sa = *cache = ef_table_find(&w->dp->table, spi, EF_DIR_IN);
	if (!sa) {
		park(w, spi, p, len, raw_src);
		return 0;
	}
	/* An SA takes ESP in its own framing only, plain ESP only from its peer's address
	 * (UDP-encapsulated ESP may come through a NAT that rebinds: any source). */
	if (raw_src ? !sa->raw || !same_addr(raw_src, &sa->peer_addr) : sa->raw) {
		ST_ADD(w, wrong_source, 1);
		return 0;
	}
	r = ef_sa_decap(sa, w->idx, p, len, inner);
	if (r < 0) {
		count_decap_error(w, r);
		return 0;
	}
	/* Authenticated (ICV and replay window passed): a peer that moved may be followed. */
	if (sa->follow && from && ef_sa_follow(sa, from))
		notice_moved(w, sa->spi, from);
	if (raw_src)
		ST_ADD(w, rx_raw, 1);
	return r; /* 0: a dummy packet */
}

/* Message i of the batch, from a raw ESP socket: outer header checked (raw.h), then ESP. */
static long rx_raw(struct ef_worker *w, struct ef_sa **cache, int i, uint8_t **inner)
{
	struct ef_batch *b = &w->batch;
	struct ef_prefix src;
	size_t off, len;

	if (ef_raw_parse(ef_slot(b, i), b->msg[i].msg_len, w->rx_from[i], &b->addr[i],
			 b->msg[i].msg_hdr.msg_namelen, &src, &off, &len) < 0) {
		ST_ADD(w, raw_bad_header, 1);
		return 0;
	}
	return rx_one(w, cache, ef_slot(b, i) + off, len, NULL, &src, inner);
}

/* With the turn: the held datagrams whose SA has come (take_parked) decapsulated and put
 * in front of the batch's `nout` inner packets (they are older); returns the new count. */
static int rx_unpark(struct ef_worker *w, int nout)
{
	struct ef_dp *dp = w->dp;
	struct ef_sa *sa = NULL;
	uint32_t lens[EF_PARK_SLOTS];
	struct ef_prefix srcs[EF_PARK_SLOTS];
	uint8_t raws[EF_PARK_SLOTS];
	uint8_t *inner[EF_PARK_SLOTS];
	uint32_t ilen[EF_PARK_SLOTS];
	int k, m = 0;

	pthread_rwlock_rdlock(&dp->lock);
	k = take_parked(w, lens, srcs, raws);
	for (int i = 0; i < k; i++) {
		long r = rx_one(w, &sa, w->unpark[i], lens[i], NULL, raws[i] ? &srcs[i] : NULL,
				&inner[m]);

		if (r <= 0)
			continue;
		ST_ADD(w, spi_late, 1);
		ilen[m++] = (uint32_t)r;
	}
	pthread_rwlock_unlock(&dp->lock);
	if (m == 0)
		return nout;
	if (nout + m > EF_RX_OUT_MAX) { /* the batch's last ones give way, counted */
		ST_ADD(w, tun_errors, (uint64_t)(nout + m - EF_RX_OUT_MAX));
		nout = EF_RX_OUT_MAX - m;
	}
	memmove(&w->rx_data[m], w->rx_data, sizeof(w->rx_data[0]) * (size_t)nout);
	memmove(&w->rx_len[m], w->rx_len, sizeof(w->rx_len[0]) * (size_t)nout);
	memcpy(w->rx_data, inner, sizeof(inner[0]) * (size_t)m);
	memcpy(w->rx_len, ilen, sizeof(ilen[0]) * (size_t)m);
	return nout + m;
}

/* Decapsulates a batch of n received messages and writes them to TUN, after the held
 * datagrams whose SA has come (see take_parked). */
static void rx_batch(struct ef_worker *w, int n)
{
	struct ef_dp *dp = w->dp;
	struct ef_batch *b = &w->batch;
	struct ef_sa *sa = NULL;
	int nout = 0;

	pthread_rwlock_rdlock(&dp->lock);
	for (int i = 0; i < n; i++) {
		uint8_t *p = ef_slot(b, i), *inner;
		size_t len = b->msg[i].msg_len, seg = len;
		long r;

		if (b->msg[i].msg_hdr.msg_flags & MSG_TRUNC) {
			ST_ADD(w, malformed, 1); /* larger than any packet we could carry */
			continue;
		}
		if (w->rx_from[i]) {
			r = rx_raw(w, &sa, i, &inner);
			if (r <= 0)
				continue;
			w->rx_data[nout] = inner; /* one per message: nout < EF_RX_OUT_MAX */
			w->rx_len[nout] = (uint32_t)r;
			nout++;
			continue;
		}
		if (dp->gro) {
			seg = ef_udp_gso_size(&b->msg[i].msg_hdr);
			if (!seg || seg > len)
				seg = len;
			if (seg < len)
				ST_ADD(w, rx_gro, 1);
		}
		if (len == 0) {
			ST_ADD(w, malformed, 1);
			continue;
		}
		/* GRO: segments of `seg` bytes, the last one possibly shorter. */
		for (size_t off = 0; off < len; off += seg) {
			size_t l = len - off < seg ? len - off : seg;

			r = rx_one(w, &sa, p + off, l, &b->addr[i], NULL, &inner);
			if (r <= 0)
				continue;
			if (nout == EF_RX_OUT_MAX) {
				ST_ADD(w, tun_errors, 1);
				continue;
			}
			w->rx_data[nout] = inner;
			w->rx_len[nout] = (uint32_t)r;
			nout++;
		}
	}
	pthread_rwlock_unlock(&dp->lock);
	if (nout)
		traffic_seen(dp);
	order_turn(w, &dp->rx_order, &w->has_turn);
	if (park_pending(w))
		nout = rx_unpark(w, nout);
	if (dp->vnet) {
		int writes = 0, merged = 0, failed;

		failed = ef_gro_write(dp->tun_fd, w->rx_data, w->rx_len, nout,
				      dp->offloads & EF_OFFLOAD_TUN_GRO, &writes, &merged);
		ST_ADD(w, tun_errors, (uint64_t)failed);
		ST_ADD(w, tun_gro, (uint64_t)merged);
		for (int i = 0; i < nout; i++)
			ST_ADD(w, rx_bytes, w->rx_len[i]);
		ST_ADD(w, rx_packets, (uint64_t)(nout - failed));
		return;
	}
	for (int i = 0; i < nout; i++) {
		if (ef_tun_write(dp->tun_fd, w->rx_data[i], w->rx_len[i]) < 0) {
			ST_ADD(w, tun_errors, 1);
			continue;
		}
		ST_ADD(w, rx_packets, 1);
		ST_ADD(w, rx_bytes, w->rx_len[i]);
	}
}

/* One read round: up to `max` messages from the UDP socket and the raw ESP ones, each
 * round another socket first (none starves the others); w->rx_from says which. */
static int rx_read(struct ef_worker *w, const int *fds, const uint8_t *from, int nfds, int max)
{
	int n = 0;

	for (int k = 0; k < nfds && n < max; k++) {
		int i = (w->rx_first + k) % nfds;
		int r = ef_udp_recv_at(fds[i], &w->batch, n, max - n);

		if (r < 0) {
			/* e.g. an ICMP error queued on the socket: counted, not fatal */
			ST_ADD(w, tx_errors, 1);
			continue;
		}
		memset(w->rx_from + n, from[i], (size_t)r);
		n += r;
	}
	w->rx_first = (w->rx_first + 1) % nfds;
	return n;
}

/* The sockets an RX worker reads: the UDP one, then the raw ESP ones (rx_from codes). */
static int rx_fds(const struct ef_dp *dp, int *fds, uint8_t *from)
{
	int nfds = 1;

	fds[0] = dp->udp_fd;
	from[0] = 0;
	for (int i = 0; i < 2; i++) {
		if (dp->raw_fd[i] < 0)
			continue;
		from[nfds] = i ? AF_INET6 : AF_INET;
		fds[nfds++] = dp->raw_fd[i];
	}
	return nfds;
}

/* One RX round: a batch read from the sockets (and any held datagrams whose SA came),
 * opened and written to TUN. Returns 0 when there was nothing to do. */
static int rx_round(struct ef_worker *w, const int *fds, const uint8_t *from, int nfds)
{
	struct ef_dp *dp = w->dp;
	int n, unpark;

	order_enter(w, &dp->rx_order);
	n = rx_read(w, fds, from, nfds, dp->nworkers > 1 ? EF_RX_MT_MSGS : EF_BATCH);
	unpark = park_pending(w);
	order_take(w, &dp->rx_order, n + unpark);
	if (n == 0 && !unpark)
		return 0;
	rx_batch(w, n);
	order_done(w, &dp->rx_order, &w->has_turn);
	return 1;
}

/* Sleeps until one of fds is readable (0), a kick came (0, consumed), or the dataplane
 * stops (1). */
static int rx_sleep(struct ef_dp *dp, const int *fds, int nfds)
{
	int r = ef_wait_any(fds, nfds, POLLIN, dp->stop_fd, dp->kick_fd);
	uint64_t v;

	if (r == 2 && read(dp->kick_fd, &v, sizeof(v)) < 0) {
		/* another worker took the kick: it is non-blocking */
	}
	return r == 1;
}

static void *rx_main(struct ef_worker *w)
{
	struct ef_dp *dp = w->dp;
	int fds[EF_WAIT_MAX];
	uint8_t from[EF_WAIT_MAX];
	int nfds = rx_fds(dp, fds, from);

	while (running(dp))
		if (!rx_round(w, fds, from, nfds) && rx_sleep(dp, fds, nfds))
			break;
	return NULL;
}

/* One thread for both directions (dp->duplex, one worker each way): TX and RX rounds
 * take turns, and it sleeps only when neither has anything. Under a one-way bulk flow
 * the other direction carries little (TCP ACKs), and here the busy thread picks it up
 * between its batches instead of waking a second thread for each of those packets. */
static void *duplex_main(struct ef_worker *tx, struct ef_worker *rx)
{
	struct ef_dp *dp = tx->dp;
	int fds[EF_WAIT_MAX + 1], nfds;
	uint8_t from[EF_WAIT_MAX];

	nfds = rx_fds(dp, fds, from);
	fds[nfds] = dp->tun_fd; /* polled only, never read as an RX socket */
	while (running(dp)) {
		int moved = tx_round(tx);

		moved |= rx_round(rx, fds, from, nfds);
		if (!moved && rx_sleep(dp, fds, nfds + 1))
			break;
	}
	return NULL;
}

void *ef_worker_main(void *arg)
{
	struct ef_worker *w = arg;
	char name[16];

	/* ef-rx0, ef-tx0, ...: what /proc/self/task/N/comm says, so that the CPU time of
	 * each worker can be told apart (espfast/metrics.py, top -H). */
	snprintf(name, sizeof(name), "ef-%s%d", w->kind == EF_WORKER_TX ? "tx" : "rx", w->idx);
	if (w->dp->duplex)
		snprintf(name, sizeof(name), "ef-io%d", w->idx);
	pthread_setname_np(pthread_self(), name);
	if (w->dp->duplex)
		return duplex_main(w, w + w->dp->nworkers);
	return w->kind == EF_WORKER_TX ? tx_main(w) : rx_main(w);
}
