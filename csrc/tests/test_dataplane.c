/* test_dataplane.c — the worker threads under churn: traffic flows while the main
 * thread replaces the outbound SA (make-before-break) and adds/removes inbound SAs
 * hundreds of times. Run under ASan/UBSan this catches use-after-free in the SA
 * lifetime rules (rwlock per batch). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctest.h"
#include "dataplane.h"
#include "proto.h"
#include "worker.h"

#define PACKETS 3000

int ct_udp_socket(struct sockaddr_in *addr)
{
	socklen_t sl = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)addr, sizeof(*addr));
	getsockname(fd, (struct sockaddr *)addr, &sl);
	return fd;
}

void *ct_pump_main(void *arg)
{
	struct ct_pump *p = arg;
	uint8_t pkt[300] = {0x45, 0, 1, 44};

	pkt[8] = 64;
	pkt[9] = 17;
	pkt[12] = 198, pkt[13] = 19, pkt[14] = 1, pkt[15] = 1;
	pkt[16] = 198, pkt[17] = 19, pkt[18] = 2, pkt[19] = 1;
	for (int i = 1; i <= p->count; i++) {
		pkt[4] = (uint8_t)(i >> 8); /* IPv4 identification: 1, 2, 3, ... */
		pkt[5] = (uint8_t)i;
		if (send(p->fd, pkt, sizeof(pkt), 0) == (ssize_t)sizeof(pkt))
			p->sent++;
		if (p->pause_every && i % p->pause_every == 0)
			usleep(2000); /* let the far end drain */
	}
	return NULL;
}

struct sink {
	int fd;
	int stop;
	int got;
};

static void *sink_main(void *arg)
{
	struct sink *s = arg;
	uint8_t buf[70000];

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd = {.fd = s->fd, .events = POLLIN};

		if (poll(&pfd, 1, 50) > 0 && recv(s->fd, buf, sizeof(buf), 0) > 0)
			s->got++;
	}
	return NULL;
}

void ct_sa_params(struct ef_sa_params *p, uint32_t spi, int dir, struct ef_prefix *any,
		  const uint8_t *key, const struct sockaddr_in *peer)
{
	memset(p, 0, sizeof(*p));
	p->spi = spi;
	p->dir = dir;
	p->transform = 0; /* aes128gcm16 */
	p->enc_key = key;
	p->enc_key_len = 20;
	p->local_ts = any;
	p->n_local = 1;
	p->remote_ts = any;
	p->n_remote = 1;
	p->replay_window = 128;
	p->peer = dir == EF_DIR_OUT ? peer : NULL;
	p->peer_len = dir == EF_DIR_OUT ? sizeof(*peer) : 0;
}

/* A dataplane on a (a socketpair for TUN, a UDP socket) with 2 workers per direction,
 * and b's UDP socket to talk to it. */
struct rig {
	int tun[2], ike[2], a_udp, b_udp;
	struct sockaddr_in a_addr, b_addr;
	ef_dp *dp;
};

static ef_dp *rig_open(struct rig *r, unsigned disable)
{
	int err = 0;

	r->a_udp = ct_udp_socket(&r->a_addr);
	r->b_udp = ct_udp_socket(&r->b_addr);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, r->tun) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, r->ike) == 0);
	r->dp = ef_dp_new(r->tun[1], r->a_udp, r->ike[1], 2, disable, &err);
	CHECK(r->dp != NULL && err == EF_OK);
	return r->dp;
}

static void rig_close(struct rig *r)
{
	ef_dp_free(r->dp);
	close(r->tun[0]);
	close(r->tun[1]);
	close(r->ike[0]);
	close(r->ike[1]);
	close(r->a_udp);
	close(r->b_udp);
}

/* disable: EF_OFFLOAD_* bits to turn off (the UDP ones matter here: a socketpair has
 * no vnet header). */
static void churn(unsigned disable)
{
	struct rig r;
	int ok = 1;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {1, 2, 3};
	struct ef_sa_params p;
	struct ef_stats st;
	struct ct_pump pump = {.count = PACKETS};
	struct sink sink;
	pthread_t tp, ts;
	ef_dp *dp = rig_open(&r, disable);

	if (!dp)
		return;
	sink = (struct sink){.fd = r.b_udp};
	/* This kernel has UDP GSO and GRO: in use unless disabled; no vnet header. */
	CHECK(ef_dp_offloads(dp) ==
	      ((EF_OFFLOAD_UDP_GSO | EF_OFFLOAD_UDP_GRO) & ~disable));
	ct_sa_params(&p, 1000, EF_DIR_OUT, &any, key, &r.b_addr);
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	CHECK(ef_dp_add_sa(dp, &p) == EF_E_EXISTS);
	CHECK(ef_dp_start(dp) == EF_OK);
	CHECK(ef_dp_start(dp) == EF_E_STATE);
	pump.fd = r.tun[0];
	pthread_create(&ts, NULL, sink_main, &sink);
	pthread_create(&tp, NULL, ct_pump_main, &pump);
	/* Churn: new outbound SA first, then the old one goes; inbound SAs come and go
	 * while B sends garbage ESP for them. */
	for (uint32_t i = 1; i <= 400; i++) {
		uint8_t junk[64] = {0};

		ct_sa_params(&p, 1000 + i, EF_DIR_OUT, &any, key, &r.b_addr);
		ok &= ef_dp_add_sa(dp, &p) == EF_OK;
		ok &= ef_dp_remove_sa(dp, 1000 + i - 1, EF_DIR_OUT) == EF_OK;
		ct_sa_params(&p, 5000 + i, EF_DIR_IN, &any, key, NULL);
		ok &= ef_dp_add_sa(dp, &p) == EF_OK;
		junk[0] = (uint8_t)((5000 + i) >> 24);
		junk[1] = (uint8_t)((5000 + i) >> 16);
		junk[2] = (uint8_t)((5000 + i) >> 8);
		junk[3] = (uint8_t)(5000 + i);
		junk[7] = 1;
		sendto(r.b_udp, junk, sizeof(junk), 0, (struct sockaddr *)&r.a_addr,
		       sizeof(r.a_addr));
		ok &= ef_dp_remove_sa(dp, 5000 + i, EF_DIR_IN) == EF_OK;
	}
	CHECK(ok);
	pthread_join(tp, NULL);
	/* Let the workers finish what is queued, then stop. */
	for (int wait = 0; wait < 200; wait++) {
		ef_dp_stats(dp, &st);
		if (st.tx_packets + st.no_sa + st.tx_errors >= (uint64_t)pump.sent &&
		    st.auth_failures + st.unknown_spi + st.malformed >= 400)
			break;
		usleep(10000);
	}
	ef_dp_stop(dp);
	__atomic_store_n(&sink.stop, 1, __ATOMIC_RELEASE);
	pthread_join(ts, NULL);
	ef_dp_stats(dp, &st);
	CHECK(pump.sent == PACKETS);
	CHECK(st.no_sa == 0); /* make-before-break: never without an SA */
	CHECK(st.tx_packets == PACKETS);
	CHECK(st.auth_failures + st.unknown_spi + st.malformed == 400);
	CHECK(sink.got > 0);
	CHECK(ef_dp_remove_sa(dp, 1400, EF_DIR_OUT) == EF_OK);
	CHECK(ef_dp_remove_sa(dp, 1400, EF_DIR_OUT) == EF_E_NOENT);
	rig_close(&r);
}

static void send_junk(int fd, const struct sockaddr_in *to, uint32_t spi)
{
	uint8_t junk[64] = {(uint8_t)(spi >> 24), (uint8_t)(spi >> 16), (uint8_t)(spi >> 8),
			    (uint8_t)spi, 0, 0, 0, 1};

	sendto(fd, junk, sizeof(junk), 0, (const struct sockaddr *)to, sizeof(*to));
}

static struct ef_stats stats_when(ef_dp *dp, uint64_t unknown, uint64_t auth)
{
	struct ef_stats st;

	for (int wait = 0; wait < 300; wait++) {
		ef_dp_stats(dp, &st);
		if (st.unknown_spi >= unknown && st.auth_failures >= auth)
			break;
		usleep(10000);
	}
	return st;
}

/* ESP ahead of its SA (struct ef_park): held, tried again when an inbound SA comes (the
 * junk then fails its ICV: it was tried), given up after EF_PARK_NS or when pushed out
 * of a full park, all given up at stop. Two RX workers. */
static void park(void)
{
	struct rig r;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {4, 5, 6};
	struct ef_sa_params p;
	struct ef_stats st;
	ef_dp *dp = rig_open(&r, 0);
	int b_udp = r.b_udp;
	const struct sockaddr_in *a_addr = &r.a_addr;

	if (!dp)
		return;
	CHECK(ef_dp_start(dp) == EF_OK);
	send_junk(b_udp, a_addr, 7000);
	for (int wait = 0; wait < 300 && (ef_dp_stats(dp, &st), st.spi_held == 0); wait++)
		usleep(10000); /* until it is held */
	CHECK(st.spi_held == 1);
	ct_sa_params(&p, 7000, EF_DIR_IN, &any, key, NULL);
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	st = stats_when(dp, 0, 1);
	CHECK(st.auth_failures == 1 && st.unknown_spi == 0 && st.spi_held == 0);
	send_junk(b_udp, a_addr, 7001); /* never comes: given up after EF_PARK_NS */
	st = stats_when(dp, 1, 1);
	CHECK(st.unknown_spi == 1);
	for (int i = 0; i < EF_PARK_SLOTS + 8; i++) /* more than the park holds */
		send_junk(b_udp, a_addr, 7002);
	st = stats_when(dp, 9, 1);
	CHECK(st.unknown_spi == 9);
	ef_dp_stop(dp);
	ef_dp_stats(dp, &st);
	CHECK(st.unknown_spi == 1 + EF_PARK_SLOTS + 8 && st.auth_failures == 1);
	rig_close(&r);
}

/* The largest inner packet the config allows as MTU (EF_INNER_MAX) is carried without
 * TUN offloads: sealed and sent, ESP length as expected; one byte more is not. */
static void inner_max(void)
{
	static uint8_t pkt[EF_INNER_MAX + 1], esp[EF_INNER_MAX + 200];
	struct rig r;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {7, 7, 7};
	struct ef_sa_params p;
	struct ef_stats st;
	struct pollfd pfd;
	ssize_t got = -1;
	ef_dp *dp = rig_open(&r, 0);

	if (!dp)
		return;
	ct_sa_params(&p, 9000, EF_DIR_OUT, &any, key, &r.b_addr);
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	CHECK(ef_dp_start(dp) == EF_OK);
	for (size_t len = EF_INNER_MAX; len <= EF_INNER_MAX + 1; len++) {
		memset(pkt, 0, sizeof(pkt));
		pkt[0] = 0x45, pkt[8] = 64, pkt[9] = 17;
		ef_put16(pkt + 2, (uint16_t)len);
		pkt[12] = 198, pkt[13] = 19, pkt[14] = 1, pkt[15] = 1;
		pkt[16] = 198, pkt[17] = 19, pkt[18] = 2, pkt[19] = 1;
		CHECK(send(r.tun[0], pkt, len, 0) == (ssize_t)len);
	}
	pfd = (struct pollfd){.fd = r.b_udp, .events = POLLIN};
	if (poll(&pfd, 1, 5000) == 1)
		got = recv(r.b_udp, esp, sizeof(esp), 0);
	/* ESP header, IV, the packet, 2 bytes of pad (to 4), trailer, ICV */
	CHECK(got == (ssize_t)(8 + 8 + EF_INNER_MAX + 2 + 2 + 16));
	for (int wait = 0; wait < 300 && (ef_dp_stats(dp, &st), st.malformed == 0); wait++)
		usleep(10000);
	ef_dp_stop(dp);
	ef_dp_stats(dp, &st);
	CHECK(st.tx_packets == 1 && st.malformed == 1);
	rig_close(&r);
}

/* Whether an EF_IKE_TRAFFIC notice is waiting on the daemon's end of ike_fd (within
 * `ms`); counts them all. */
static int traffic_notices(int fd, int ms)
{
	struct ef_ike_hdr h;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int n = 0;

	while (poll(&pfd, 1, ms) == 1 && recv(fd, &h, sizeof(h), MSG_DONTWAIT) > 0) {
		n += h.family == EF_IKE_TRAFFIC;
		ms = 0;
	}
	return n;
}

static void send_inner(int fd)
{
	uint8_t pkt[100] = {0x45, 0, 0, 100, 0, 0, 0, 0, 64, 17, 0, 0, 198, 19, 1, 1,
			    198, 19, 2, 1};

	CHECK(send(fd, pkt, sizeof(pkt), 0) == (ssize_t)sizeof(pkt));
}

/* ef_dp_watch_traffic: nothing on ike_fd while nobody watches; one notice (not one per
 * packet) for the first packet sealed after the call, and again for the first one
 * opened after the next call. Two workers per direction. */
static void traffic_notice(void)
{
	struct rig r;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {8, 8, 8}, esp[512], inner[512];
	struct ef_sa_params p;
	struct pollfd pfd;
	ssize_t got = -1;
	ef_dp *dp = rig_open(&r, 0);

	if (!dp)
		return;
	/* The same key both ways: what a sends to b, b can send back as ESP for a. */
	ct_sa_params(&p, 9100, EF_DIR_OUT, &any, key, &r.b_addr);
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	ct_sa_params(&p, 9100, EF_DIR_IN, &any, key, NULL);
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	CHECK(ef_dp_start(dp) == EF_OK);
	send_inner(r.tun[0]);
	pfd = (struct pollfd){.fd = r.b_udp, .events = POLLIN};
	CHECK(poll(&pfd, 1, 5000) == 1 && recv(r.b_udp, esp, sizeof(esp), 0) > 0);
	CHECK(traffic_notices(r.ike[0], 50) == 0); /* nobody asked */
	ef_dp_watch_traffic(dp);
	for (int i = 0; i < 3; i++)
		send_inner(r.tun[0]);
	for (int i = 0; i < 3; i++) {
		pfd = (struct pollfd){.fd = r.b_udp, .events = POLLIN};
		if (poll(&pfd, 1, 5000) == 1)
			got = recv(r.b_udp, esp, sizeof(esp), 0);
	}
	CHECK(got > 0);
	CHECK(traffic_notices(r.ike[0], 1000) == 1);
	ef_dp_watch_traffic(dp);
	CHECK(traffic_notices(r.ike[0], 50) == 0); /* asking is not moving */
	/* The last ESP packet back to a: opened and written to TUN. */
	CHECK(sendto(r.b_udp, esp, (size_t)got, 0, (struct sockaddr *)&r.a_addr,
		     sizeof(r.a_addr)) == got);
	pfd = (struct pollfd){.fd = r.tun[0], .events = POLLIN};
	CHECK(poll(&pfd, 1, 5000) == 1 && recv(r.tun[0], inner, sizeof(inner), 0) == 100);
	CHECK(traffic_notices(r.ike[0], 1000) == 1);
	ef_dp_stop(dp);
	rig_close(&r);
}

void test_dataplane(void)
{
	traffic_notice();
	inner_max();
	park();
	churn(0);
	churn(EF_OFFLOAD_TUN_TSO | EF_OFFLOAD_TUN_GRO | EF_OFFLOAD_UDP_GSO | EF_OFFLOAD_UDP_GRO);
}
