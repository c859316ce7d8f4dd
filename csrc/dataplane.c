/* dataplane.c — lifecycle of a dataplane instance and the standalone SA API (api.cdef). */
#include "dataplane.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_tun.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "offload.h"
#include "raw.h"
#include "sa.h"
#include "tun.h"
#include "worker.h"

#define EF_MAX_WORKERS 16
/* api.cdef promises EF_INNER_MAX: what fits a TX read slot without TUN TSO (the RX slots
 * are larger). The config refuses an MTU above it. */
_Static_assert(EF_INNER_MAX == EF_SLOT - EF_HEADROOM - EF_TAILROOM, "EF_INNER_MAX");
#define EF_SOCKET_BUFFER (8 << 20)

const char *ef_version(void)
{
	return "espfast-dataplane 0.2";
}

const char *ef_strerror(int err)
{
	static const char *const msg[] = {
		[EF_OK] = "ok",
		[EF_E_NOMEM] = "out of memory",
		[EF_E_INVAL] = "invalid parameter",
		[EF_E_TRANSFORM] = "unknown transform",
		[EF_E_KEYLEN] = "wrong key length for the transform",
		[EF_E_EXISTS] = "SPI already in use in this direction",
		[EF_E_NOENT] = "no such SA",
		[EF_E_CRYPTO] = "OpenSSL failure",
		[EF_E_SYS] = "system call failed",
		[EF_E_MALFORMED] = "malformed packet",
		[EF_E_REPLAY] = "replayed or too old",
		[EF_E_AUTH] = "integrity check failed",
		[EF_E_PADDING] = "bad padding",
		[EF_E_POLICY] = "inner packet outside the traffic selectors",
		[EF_E_SEQ_EXHAUSTED] = "sequence numbers exhausted",
		[EF_E_NOSPACE] = "buffer too small",
		[EF_E_STATE] = "wrong state",
		[EF_E_CONFLICT] = "another owner's SA holds these outbound selectors",
	};

	if (err < 0)
		err = -err;
	if (err >= (int)(sizeof(msg) / sizeof(msg[0])) || !msg[err])
		return "unknown error";
	return msg[err];
}

/* Bursts of a whole batch (or of a TCP window) must not overflow the socket: ask for
 * large buffers, beyond net.core.[rw]mem_max when we may (CAP_NET_ADMIN). */
static void set_buffers(int fd)
{
	int size = EF_SOCKET_BUFFER;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/* A TUN device opened with IFF_VNET_HDR (and the default 10-byte header)? Any other fd
 * (a socketpair in tests) is used as a plain packet fd. */
static int tun_has_vnet_hdr(int fd)
{
	struct ifreq ifr;
	int sz = 0;

	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0 || !(ifr.ifr_flags & IFF_VNET_HDR))
		return 0;
	if (ioctl(fd, TUNGETVNETHDRSZ, &sz) < 0 || sz != EF_VNET_HDR_LEN) {
		/* only the plain virtio_net_hdr is supported: set it */
		sz = EF_VNET_HDR_LEN;
		if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0)
			return -1;
	}
	return 1;
}

/* Does the kernel know UDP_SEGMENT (Linux 4.18)? getsockopt fails with ENOPROTOOPT where
 * it does not. */
static int have_udp_gso(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);

	return getsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &v, &l) == 0;
}

ef_dp *ef_dp_new(int tun_fd, int udp_fd, int ike_fd, int workers, unsigned disable, int *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	pthread_rwlockattr_t attr;
	struct ef_dp *dp;

	*err = EF_E_INVAL;
	if (workers < 1 || workers > EF_MAX_WORKERS)
		return NULL;
	if (getsockname(udp_fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		return NULL;
	*err = EF_E_NOMEM;
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return NULL;
	dp->tun_fd = dp->udp_fd = dp->ike_fd = dp->stop_fd = dp->kick_fd = -1;
	dp->raw_fd[0] = dp->raw_fd[1] = -1;
	pthread_mutex_init(&dp->park.lock, NULL);
	dp->udp_family = ss.ss_family;
	dp->nworkers = workers;
	if (ef_table_init(&dp->table))
		goto fail_nolock;
	pthread_rwlockattr_init(&attr);
	/* Workers take the lock per batch, all the time: a waiting writer must win. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&dp->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	ef_order_init(&dp->tx_order);
	ef_order_init(&dp->tx_seq);
	ef_order_init(&dp->rx_order);
	dp->w = calloc((size_t)workers * 2, sizeof(*dp->w));
	if (!dp->w)
		goto fail;
	for (int i = 0; i < workers * 2; i++) {
		dp->w[i].dp = dp;
		dp->w[i].idx = i % workers;
		dp->w[i].kind = i < workers ? EF_WORKER_TX : EF_WORKER_RX;
		if (ef_batch_init(&dp->w[i].batch, i < workers ? EF_SLOT : EF_GRO_SLOT))
			goto fail;
		if (i >= workers) {
			dp->w[i].unpark = malloc(sizeof(*dp->w[i].unpark) * EF_PARK_SLOTS);
			if (!dp->w[i].unpark)
				goto fail;
		}
	}
	*err = EF_E_SYS;
	/* Our own descriptors: the caller may close theirs. */
	dp->tun_fd = fcntl(tun_fd, F_DUPFD_CLOEXEC, 0);
	dp->udp_fd = fcntl(udp_fd, F_DUPFD_CLOEXEC, 0);
	dp->ike_fd = fcntl(ike_fd, F_DUPFD_CLOEXEC, 0);
	dp->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dp->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dp->tun_fd < 0 || dp->udp_fd < 0 || dp->ike_fd < 0 || dp->stop_fd < 0 ||
	    dp->kick_fd < 0 ||
	    ef_set_nonblock(dp->tun_fd))
		goto fail;
	dp->vnet = tun_has_vnet_hdr(dp->tun_fd);
	if (dp->vnet < 0)
		goto fail;
	if (dp->vnet) {
		/* Let the kernel hand us TCP super-packets (we cut them, see offload.h) and
		 * leave checksums partial; TX workers need big read slots for that. */
		unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

		dp->offloads |= EF_OFFLOAD_VNET;
		if (!(disable & EF_OFFLOAD_TUN_GRO))
			dp->offloads |= EF_OFFLOAD_TUN_GRO;
		dp->tso = !(disable & EF_OFFLOAD_TUN_TSO) &&
			  ioctl(dp->tun_fd, TUNSETOFFLOAD, off) == 0;
		if (dp->tso)
			dp->offloads |= EF_OFFLOAD_TUN_TSO;
		for (int i = 0; dp->tso && i < workers; i++) {
			ef_batch_free(&dp->w[i].batch);
			dp->w[i].segmem = malloc((size_t)EF_TX_MAX * EF_SLOT);
			if (ef_batch_init(&dp->w[i].batch, EF_GRO_SLOT) || !dp->w[i].segmem)
				goto fail;
		}
	}
	set_buffers(dp->udp_fd);
	if (!(disable & EF_OFFLOAD_UDP_GSO) && have_udp_gso(dp->udp_fd)) {
		dp->gso_max = UINT16_MAX;
		dp->offloads |= EF_OFFLOAD_UDP_GSO;
	}
	dp->gro = !(disable & EF_OFFLOAD_UDP_GRO) && ef_udp_enable_gro(dp->udp_fd) == 0;
	if (dp->gro)
		dp->offloads |= EF_OFFLOAD_UDP_GRO;
	*err = EF_OK;
	return dp;
fail:
	ef_dp_free(dp);
	return NULL;
fail_nolock:
	pthread_mutex_destroy(&dp->park.lock);
	free(dp);
	return NULL;
}

unsigned ef_dp_offloads(ef_dp *dp)
{
	return dp->offloads;
}

int ef_dp_set_duplex(ef_dp *dp, int on)
{
	if (__atomic_load_n(&dp->running, __ATOMIC_ACQUIRE))
		return EF_E_STATE;
	if (on && dp->nworkers != 1)
		return EF_E_INVAL;
	dp->duplex = on != 0;
	return EF_OK;
}

int ef_dp_start(ef_dp *dp)
{
	sigset_t all, old;
	uint64_t v;
	int err = EF_OK;

	if (dp->running)
		return EF_E_STATE;
	/* Drain a stop signal left from a previous run. */
	while (read(dp->stop_fd, &v, sizeof(v)) > 0)
		;
	ef_order_reset(&dp->tx_order); /* no worker runs: nobody holds a ticket */
	ef_order_reset(&dp->tx_seq);
	ef_order_reset(&dp->rx_order);
	__atomic_store_n(&dp->running, 1, __ATOMIC_RELEASE);
	/* Signals (SIGINT, SIGTERM) belong to Python's main thread, not to the workers. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	/* duplex: the TX worker's thread runs both (worker.c: duplex_main) */
	for (int i = 0; i < (dp->duplex ? 1 : dp->nworkers * 2); i++) {
		if (pthread_create(&dp->w[i].thread, NULL, ef_worker_main, &dp->w[i])) {
			err = EF_E_SYS;
			break;
		}
		dp->w[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		ef_dp_stop(dp);
	return err;
}

void ef_dp_stop(ef_dp *dp)
{
	uint64_t one = 1;

	__atomic_store_n(&dp->running, 0, __ATOMIC_RELEASE);
	if (write(dp->stop_fd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one write per stop; nothing to do. */
	}
	ef_order_wake(&dp->tx_order); /* workers waiting for their turn see the stop */
	ef_order_wake(&dp->tx_seq);
	ef_order_wake(&dp->rx_order);
	for (int i = 0; i < dp->nworkers * 2; i++) {
		if (dp->w[i].started)
			pthread_join(dp->w[i].thread, NULL);
		dp->w[i].started = 0;
	}
}

void ef_dp_free(ef_dp *dp)
{
	if (!dp)
		return;
	if (dp->w) {
		ef_dp_stop(dp);
		for (int i = 0; i < dp->nworkers * 2; i++) {
			ef_batch_free(&dp->w[i].batch);
			free(dp->w[i].segmem);
			free(dp->w[i].unpark);
		}
		free(dp->w);
	}
	/* Hand the device back as we found it: no super-packets for whoever reads next. */
	if (dp->tso && dp->tun_fd >= 0)
		(void)ioctl(dp->tun_fd, TUNSETOFFLOAD, 0);
	ef_table_destroy(&dp->table); /* cleanses every key */
	pthread_rwlock_destroy(&dp->lock);
	ef_order_destroy(&dp->tx_order);
	ef_order_destroy(&dp->tx_seq);
	ef_order_destroy(&dp->rx_order);
	if (dp->tun_fd >= 0)
		close(dp->tun_fd);
	if (dp->udp_fd >= 0)
		close(dp->udp_fd);
	for (int i = 0; i < 2; i++)
		if (dp->raw_fd[i] >= 0)
			close(dp->raw_fd[i]);
	if (dp->ike_fd >= 0)
		close(dp->ike_fd);
	if (dp->stop_fd >= 0)
		close(dp->stop_fd);
	if (dp->kick_fd >= 0)
		close(dp->kick_fd);
	pthread_mutex_destroy(&dp->park.lock);
	free(dp);
}

int ef_dp_add_sa(ef_dp *dp, const struct ef_sa_params *p)
{
	struct ef_sa *sa;
	int err = EF_OK;

	if ((p->dir == EF_DIR_OUT || p->raw_esp) &&
	    (!p->peer || p->peer_len < sizeof(sa_family_t) ||
	     ((const struct sockaddr *)p->peer)->sa_family != dp->udp_family))
		return EF_E_INVAL;
	/* Keys are scheduled outside the lock; the workers wait only for the insert. */
	sa = ef_sa_new(p, dp->nworkers, &err);
	if (!sa)
		return err;
	if (sa->raw && ef_raw_fd(dp, sa) < 0) {
		ef_sa_free(sa);
		return EF_E_INVAL; /* plain ESP for a family we have no raw socket of */
	}
	pthread_rwlock_wrlock(&dp->lock);
	err = ef_table_add(&dp->table, sa);
	/* Held datagrams may be for it (see struct ef_park): the RX workers look. Bumped
	 * under the lock, so that a worker that finds the SA also sees the bump. */
	if (!err && p->dir == EF_DIR_IN)
		__atomic_add_fetch(&dp->in_gen, 1, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&dp->lock);
	if (err) {
		if (err == EF_E_CONFLICT)
			__atomic_add_fetch(&dp->sa_conflicts, 1, __ATOMIC_RELAXED);
		ef_sa_free(sa);
		return err;
	}
	if (p->dir == EF_DIR_IN) {
		uint64_t one = 1;

		/* an idle RX worker wakes up to look */
		if (__atomic_load_n(&dp->park.held, __ATOMIC_ACQUIRE) &&
		    write(dp->kick_fd, &one, sizeof(one)) < 0) {
			/* the eventfd is full of kicks already: the workers will look */
		}
	}
	return EF_OK;
}

int ef_dp_remove_sa(ef_dp *dp, uint32_t spi, int dir)
{
	struct ef_sa *sa;

	if (dir != EF_DIR_IN && dir != EF_DIR_OUT)
		return EF_E_INVAL;
	pthread_rwlock_wrlock(&dp->lock);
	sa = ef_table_remove(&dp->table, spi, dir);
	pthread_rwlock_unlock(&dp->lock);
	/* No worker can still hold it: they drop the read lock after every batch. */
	if (!sa)
		return EF_E_NOENT;
	ef_sa_free(sa);
	return EF_OK;
}

int ef_dp_update_peer(ef_dp *dp, uint32_t spi, int dir, const void *peer, uint32_t peer_len,
		      int raw_esp)
{
	struct ef_sa *sa;
	int err;

	if (!peer || peer_len < sizeof(sa_family_t) ||
	    ((const struct sockaddr *)peer)->sa_family != dp->udp_family ||
	    (dir != EF_DIR_IN && dir != EF_DIR_OUT) || raw_esp < -1 || raw_esp > 1)
		return EF_E_INVAL;
	pthread_rwlock_wrlock(&dp->lock);
	sa = ef_table_find(&dp->table, spi, dir);
	err = sa ? ef_sa_set_peer(sa, peer, peer_len) : EF_E_NOENT;
	if (!err && raw_esp >= 0)
		sa->raw = (uint8_t)raw_esp;
	if (!err && sa->raw && ef_raw_fd(dp, sa) < 0) {
		sa->raw = 0; /* no raw socket for the new address's family: stay in UDP */
		err = EF_E_INVAL;
	}
	pthread_rwlock_unlock(&dp->lock);
	return err;
}

int ef_dp_add_raw(ef_dp *dp, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int type = 0, proto = 0, i;
	socklen_t tl = sizeof(type), pl = sizeof(proto);

	if (__atomic_load_n(&dp->running, __ATOMIC_ACQUIRE))
		return EF_E_STATE;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) < 0 || type != SOCK_RAW ||
	    proto != EF_IPPROTO_ESP || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		return EF_E_INVAL;
	i = ss.ss_family == AF_INET ? 0 : 1;
	if (dp->raw_fd[i] >= 0)
		return EF_E_EXISTS;
	dp->raw_fd[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dp->raw_fd[i] < 0)
		return EF_E_SYS;
	if (ef_set_nonblock(dp->raw_fd[i])) {
		close(dp->raw_fd[i]);
		dp->raw_fd[i] = -1;
		return EF_E_SYS;
	}
	set_buffers(dp->raw_fd[i]);
	return EF_OK;
}

int ef_dp_set_seq_limit(ef_dp *dp, uint32_t spi, uint64_t limit)
{
	struct ef_sa *sa;

	pthread_rwlock_rdlock(&dp->lock);
	sa = ef_table_find(&dp->table, spi, EF_DIR_OUT);
	if (sa)
		ef_sa_set_seq_limit(sa, limit);
	pthread_rwlock_unlock(&dp->lock);
	return sa ? EF_OK : EF_E_NOENT;
}

int ef_dp_sa_stats(ef_dp *dp, uint32_t spi, int dir, struct ef_sa_stats *st)
{
	struct ef_sa *sa;

	if (dir != EF_DIR_IN && dir != EF_DIR_OUT)
		return EF_E_INVAL;
	pthread_rwlock_rdlock(&dp->lock);
	sa = ef_table_find(&dp->table, spi, dir);
	if (sa)
		ef_sa_read_stats(sa, st);
	pthread_rwlock_unlock(&dp->lock);
	return sa ? EF_OK : EF_E_NOENT;
}

void ef_dp_watch_traffic(ef_dp *dp)
{
	__atomic_store_n(&dp->traffic_watch, 1, __ATOMIC_RELEASE);
}

void ef_dp_stats(ef_dp *dp, struct ef_stats *st)
{
	enum { N = sizeof(struct ef_stats) / sizeof(uint64_t) };
	uint64_t *sum = (uint64_t *)st;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < dp->nworkers * 2; i++) {
		const uint64_t *c = (const uint64_t *)&dp->w[i].st;

		for (int k = 0; k < N; k++)
			sum[k] += __atomic_load_n(&c[k], __ATOMIC_RELAXED);
	}
	/* Held datagrams count once given up (see struct ef_park); stopped: all of them. */
	pthread_mutex_lock(&dp->park.lock);
	ef_park_expire(&dp->park, ef_now_ns(), !__atomic_load_n(&dp->running, __ATOMIC_ACQUIRE));
	st->unknown_spi += dp->park.expired;
	st->spi_held = (uint64_t)dp->park.n;
	pthread_mutex_unlock(&dp->park.lock);
	st->sa_conflicts = __atomic_load_n(&dp->sa_conflicts, __ATOMIC_RELAXED);
}

long ef_dp_encap_batch(ef_dp *dp, uint8_t *bufs, size_t stride, size_t n, size_t len,
		       uint32_t *offs, uint32_t *lens)
{
	const size_t off = EF_ENCAP_OVERHEAD / 2;
	long done = 0;

	if (__atomic_load_n(&dp->running, __ATOMIC_ACQUIRE))
		return -EF_E_STATE;
	if (stride < len + EF_ENCAP_OVERHEAD)
		return -EF_E_NOSPACE;
	pthread_rwlock_rdlock(&dp->lock);
	for (size_t i = 0; i < n; i++) {
		uint8_t *slot = bufs + i * stride, *esp;
		struct ef_prefix src, dst;
		struct ef_sa *sa;
		size_t iplen;
		long r = -1;

		if (ef_ip_parse(slot + off, len, &src, &dst, &iplen) > 0 &&
		    (sa = ef_table_route(&dp->table, &src, &dst)) != NULL)
			r = ef_sa_encap(sa, 0, slot + off, iplen, &esp);
		offs[i] = r > 0 ? (uint32_t)(esp - slot) : 0;
		lens[i] = r > 0 ? (uint32_t)r : 0;
		done += r > 0;
	}
	pthread_rwlock_unlock(&dp->lock);
	return done;
}

size_t ef_heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

long ef_dp_find_batch(ef_dp *dp, const uint32_t *spis, size_t n)
{
	long found = 0;

	if (__atomic_load_n(&dp->running, __ATOMIC_ACQUIRE))
		return -EF_E_STATE;
	pthread_rwlock_rdlock(&dp->lock);
	for (size_t i = 0; i < n; i++)
		found += ef_table_find(&dp->table, spis[i], EF_DIR_IN) != NULL;
	pthread_rwlock_unlock(&dp->lock);
	return found;
}

/* ---- standalone SA ---- */

struct ef_esp_sa {
	struct ef_sa *sa;
	uint8_t buf[EF_SLOT];
};

ef_esp_sa *ef_esp_sa_new(const struct ef_sa_params *p, int *err)
{
	struct ef_esp_sa *s = malloc(sizeof(*s));

	if (!s) {
		*err = EF_E_NOMEM;
		return NULL;
	}
	s->sa = ef_sa_new(p, 1, err);
	if (!s->sa) {
		free(s);
		return NULL;
	}
	return s;
}

void ef_esp_sa_free(ef_esp_sa *s)
{
	if (!s)
		return;
	ef_sa_free(s->sa);
	free(s);
}

long ef_esp_sa_encap(ef_esp_sa *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	uint8_t *esp;
	long r;

	if (s->sa->dir != EF_DIR_OUT)
		return -EF_E_STATE;
	if (len > EF_SLOT - EF_HEADROOM - EF_TAILROOM)
		return -EF_E_NOSPACE;
	memcpy(s->buf + EF_HEADROOM, in, len);
	r = ef_sa_encap(s->sa, 0, s->buf + EF_HEADROOM, len, &esp);
	if (r < 0)
		return r;
	if ((size_t)r > cap)
		return -EF_E_NOSPACE;
	memcpy(out, esp, (size_t)r);
	return r;
}

long ef_esp_sa_decap(ef_esp_sa *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	uint8_t *inner = NULL;
	long r;

	if (s->sa->dir != EF_DIR_IN)
		return -EF_E_STATE;
	if (len > EF_SLOT) {
		s->sa->cnt.malformed++;
		return -EF_E_MALFORMED;
	}
	memcpy(s->buf, in, len);
	if (len < EF_ESP_HDR_LEN || ef_get32(s->buf) != s->sa->spi) {
		s->sa->cnt.malformed++;
		return -EF_E_MALFORMED;
	}
	r = ef_sa_decap(s->sa, 0, s->buf, len, &inner);
	if (r <= 0)
		return r;
	if ((size_t)r > cap)
		return -EF_E_NOSPACE;
	memcpy(out, inner, (size_t)r);
	return r;
}

long ef_esp_sa_encap_batch(ef_esp_sa *s, uint8_t *bufs, size_t stride, size_t n, size_t len,
			   uint32_t *offs, uint32_t *lens)
{
	const size_t off = EF_ENCAP_OVERHEAD / 2;

	if (s->sa->dir != EF_DIR_OUT)
		return -EF_E_STATE;
	if (stride < len + EF_ENCAP_OVERHEAD)
		return -EF_E_NOSPACE;
	for (size_t i = 0; i < n; i++) {
		uint8_t *slot = bufs + i * stride, *esp;
		long r = ef_sa_encap(s->sa, 0, slot + off, len, &esp);

		if (r < 0)
			return r;
		offs[i] = (uint32_t)(esp - slot);
		lens[i] = (uint32_t)r;
	}
	return (long)n;
}

long ef_esp_sa_decap_batch(ef_esp_sa *s, uint8_t *bufs, size_t stride, size_t n,
			   const uint32_t *offs, const uint32_t *lens)
{
	if (s->sa->dir != EF_DIR_IN)
		return -EF_E_STATE;
	for (size_t i = 0; i < n; i++) {
		uint8_t *inner;
		long r;

		if ((size_t)offs[i] + lens[i] > stride)
			return -EF_E_NOSPACE;
		r = ef_sa_decap(s->sa, 0, bufs + i * stride + offs[i], lens[i], &inner);
		if (r < 0)
			return r;
	}
	return (long)n;
}

long ef_esp_sa_replay_batch(ef_esp_sa *s, const uint32_t *seqs, size_t n)
{
	long accepted = 0;

	if (s->sa->dir != EF_DIR_IN)
		return -EF_E_STATE;
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = ef_sa_replay_check(s->sa, seqs[i]);

		accepted += seq && ef_sa_replay_update(s->sa, seq) == 0;
	}
	return accepted;
}

void ef_esp_sa_stats(ef_esp_sa *s, struct ef_sa_stats *st)
{
	ef_sa_read_stats(s->sa, st);
}
