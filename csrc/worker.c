/* worker.c — the dataplane threads.
 *
 * Pipeline (each arrow a batch of up to EF_BATCH packets; no allocation per packet):
 *
 *   TX thread(s):  TUN --read x N--> [rdlock: parse inner IP, route to outbound SA by
 *                  (dst, src) longest prefix, take sequence number, seal in place]
 *                  --sendmmsg--> UDP 4500
 *   RX thread(s):  UDP 4500 --recvmmsg--> [rdlock: classify (keepalive / IKE / ESP),
 *                  SPI -> SA, replay check, open in place, replay update, selector
 *                  check] --write x N--> TUN;  IKE --> ike_fd (Python polls it)
 *
 * TX and RX run in parallel on different cores. With more than one worker per direction
 * the threads share the fds; per SA, the sequence counter (CAS) and the replay window
 * (a spinlock around check and update) are the only serial points, and each thread has
 * its own keyed EVP contexts in every SA. The SA table's rwlock is held for reading
 * across one batch's crypto, never across a system call, so add/remove from Python
 * waits at most one batch. Counters: per thread globally, atomics per SA.
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tun.h"

#define ST_ADD(w, field, n) \
	__atomic_store_n(&(w)->st.field, (w)->st.field + (n), __ATOMIC_RELAXED)

static int running(const struct ef_dp *dp)
{
	return __atomic_load_n(&dp->running, __ATOMIC_ACQUIRE);
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

static void tx_batch(struct ef_worker *w, int n)
{
	struct ef_dp *dp = w->dp;
	struct ef_batch *b = &w->batch;
	struct ef_prefix src, dst, last_src = {0}, last_dst = {0};
	struct ef_sa *sa = NULL;
	int nout = 0, failed;

	pthread_rwlock_rdlock(&dp->lock);
	for (int i = 0; i < n; i++) {
		uint8_t *esp;
		size_t iplen;
		long r;

		if (ef_ip_parse(b->data[i], b->len[i], &src, &dst, &iplen) < 0) {
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
			continue;
		}
		r = ef_sa_encap(sa, w->idx, b->data[i], iplen, &esp);
		if (r < 0) {
			if (r == -EF_E_SEQ_EXHAUSTED)
				ST_ADD(w, seq_exhausted, 1);
			else
				ST_ADD(w, tx_errors, 1);
			continue;
		}
		w->out_iov[nout] = (struct iovec){.iov_base = esp, .iov_len = (size_t)r};
		memcpy(&w->out_addr[nout], &sa->peer, sa->peer_len);
		w->out[nout].msg_hdr = (struct msghdr){
			.msg_name = &w->out_addr[nout],
			.msg_namelen = sa->peer_len,
			.msg_iov = &w->out_iov[nout],
			.msg_iovlen = 1,
		};
		b->len[nout] = (uint32_t)iplen;
		nout++;
	}
	pthread_rwlock_unlock(&dp->lock);
	if (!nout)
		return;
	failed = ef_udp_send(dp->udp_fd, w->out, nout, dp->stop_fd);
	if (failed) {
		ST_ADD(w, tx_errors, (uint64_t)failed);
		for (int i = 0; i < nout; i++)
			if (w->out[i].msg_len == 0)
				b->len[i] = 0;
	}
	for (int i = 0; i < nout; i++) {
		if (b->len[i]) {
			ST_ADD(w, tx_packets, 1);
			ST_ADD(w, tx_bytes, b->len[i]);
		}
	}
}

static void *tx_main(struct ef_worker *w)
{
	struct ef_dp *dp = w->dp;
	const size_t cap = EF_SLOT - EF_HEADROOM - EF_TAILROOM;

	while (running(dp)) {
		int n = ef_tun_read_batch(dp->tun_fd, &w->batch, EF_HEADROOM, cap);

		if (n < 0) {
			ST_ADD(w, tun_errors, 1);
			n = 0;
		}
		if (n == 0) {
			if (ef_wait(dp->tun_fd, POLLIN, dp->stop_fd))
				break;
			continue;
		}
		tx_batch(w, n);
	}
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

static void rx_batch(struct ef_worker *w, int n)
{
	struct ef_dp *dp = w->dp;
	struct ef_batch *b = &w->batch;
	struct ef_sa *sa = NULL;
	int nout = 0;

	pthread_rwlock_rdlock(&dp->lock);
	for (int i = 0; i < n; i++) {
		uint8_t *p = ef_slot(b, i), *inner;
		size_t len = b->msg[i].msg_len;
		uint32_t spi;
		long r;

		if (b->msg[i].msg_hdr.msg_flags & MSG_TRUNC) {
			ST_ADD(w, malformed, 1); /* larger than any packet we could carry */
			continue;
		}
		/* RFC 3948 §2.2, §2.3: keepalive, non-ESP marker, or ESP. */
		if (len == 1 && p[0] == EF_NAT_KEEPALIVE) {
			ST_ADD(w, keepalives, 1);
			continue;
		}
		if (len < EF_ESP_HDR_LEN) {
			if (len >= EF_NON_ESP_MARKER_LEN && ef_get32(p) == 0)
				forward_ike(w, &b->addr[i], p + 4, len - 4);
			else
				ST_ADD(w, malformed, 1);
			continue;
		}
		spi = ef_get32(p);
		if (spi == 0) {
			forward_ike(w, &b->addr[i], p + 4, len - 4);
			continue;
		}
		if (!sa || sa->spi != spi)
			sa = ef_table_find(&dp->table, spi, EF_DIR_IN);
		if (!sa) {
			ST_ADD(w, unknown_spi, 1);
			continue;
		}
		r = ef_sa_decap(sa, w->idx, p, len, &inner);
		if (r < 0) {
			count_decap_error(w, r);
			continue;
		}
		if (r == 0)
			continue; /* dummy packet */
		b->data[nout] = inner;
		b->len[nout] = (uint32_t)r;
		nout++;
	}
	pthread_rwlock_unlock(&dp->lock);
	for (int i = 0; i < nout; i++) {
		if (ef_tun_write(dp->tun_fd, b->data[i], b->len[i]) < 0) {
			ST_ADD(w, tun_errors, 1);
			continue;
		}
		ST_ADD(w, rx_packets, 1);
		ST_ADD(w, rx_bytes, b->len[i]);
	}
}

static void *rx_main(struct ef_worker *w)
{
	struct ef_dp *dp = w->dp;

	while (running(dp)) {
		int n = ef_udp_recv(dp->udp_fd, &w->batch);

		if (n < 0) {
			/* e.g. an ICMP error queued on the socket: counted, not fatal */
			ST_ADD(w, tx_errors, 1);
			n = 0;
		}
		if (n == 0) {
			if (ef_wait(dp->udp_fd, POLLIN, dp->stop_fd))
				break;
			continue;
		}
		rx_batch(w, n);
	}
	return NULL;
}

void *ef_worker_main(void *arg)
{
	struct ef_worker *w = arg;

	return w->kind == EF_WORKER_TX ? tx_main(w) : rx_main(w);
}
