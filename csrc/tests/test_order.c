/* test_order.c — several workers keep one flow in order: dataplane A (4 workers) seals
 * packets read from its "TUN" (a socketpair) and sends them to dataplane B (4 workers),
 * which opens them and writes them to its own "TUN". The inner packets carry 1, 2, 3, ...
 * in their IPv4 identification field; whatever reaches B's TUN (a full socketpair may
 * drop some) must come in strictly increasing order, and no packet may be refused as a
 * replay by the default 1024-packet window. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctest.h"
#include "dataplane.h"

#define ORDER_PACKETS 4000
#define ORDER_WORKERS 4

struct reader {
	int fd;
	int stop;
	int got, out_of_order, last;
};

static void *read_main(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[2048];

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
		int id;

		if (poll(&pfd, 1, 50) <= 0 || recv(r->fd, buf, sizeof(buf), 0) < 20)
			continue;
		id = buf[4] << 8 | buf[5];
		if (id <= r->last)
			r->out_of_order++;
		r->last = id;
		r->got++;
	}
	return NULL;
}

/* Dataplanes A and B (ORDER_WORKERS workers each), their "TUN"s and IKE fds socketpairs,
 * UDP sockets on loopback. */
struct pair {
	int tun_a[2], tun_b[2], ike_a[2], ike_b[2];
	struct sockaddr_in addr_a, addr_b;
	int udp_a, udp_b;
	ef_dp *a, *b;
};

static int pair_open(struct pair *pr)
{
	int err = 0;

	pr->udp_a = ct_udp_socket(&pr->addr_a);
	pr->udp_b = ct_udp_socket(&pr->addr_b);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->tun_a) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->tun_b) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->ike_a) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->ike_b) == 0);
	pr->a = ef_dp_new(pr->tun_a[1], pr->udp_a, pr->ike_a[1], ORDER_WORKERS, 0, &err);
	pr->b = ef_dp_new(pr->tun_b[1], pr->udp_b, pr->ike_b[1], ORDER_WORKERS, 0, &err);
	CHECK(pr->a && pr->b);
	return pr->a && pr->b;
}

static void pair_close(struct pair *pr)
{
	ef_dp_free(pr->a);
	ef_dp_free(pr->b);
	for (int i = 0; i < 2; i++) {
		close(pr->tun_a[i]);
		close(pr->tun_b[i]);
		close(pr->ike_a[i]);
		close(pr->ike_b[i]);
	}
	close(pr->udp_a);
	close(pr->udp_b);
}

void test_order(void)
{
	struct pair pr;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {9, 8, 7};
	struct ef_sa_params p;
	struct ef_sa_stats st = {0};
	struct ct_pump f = {.count = ORDER_PACKETS, .pause_every = 256};
	struct reader r = {0};
	pthread_t tf, tr;
	ef_dp *a, *b;

	if (!pair_open(&pr))
		goto out;
	a = pr.a, b = pr.b;
	ct_sa_params(&p, 0x1dd0, EF_DIR_OUT, &any, key, &pr.addr_b);
	CHECK(ef_dp_add_sa(a, &p) == EF_OK);
	ct_sa_params(&p, 0x1dd0, EF_DIR_IN, &any, key, NULL);
	/* The default window: A's sequence numbers leave in order, and B's 4 workers move
	 * the window ahead of each other by at most 3 * 256 (EF_RX_MT_MSGS, worker.h). */
	p.replay_window = 1024;
	CHECK(ef_dp_add_sa(b, &p) == EF_OK);
	CHECK(ef_dp_start(a) == EF_OK && ef_dp_start(b) == EF_OK);
	f.fd = pr.tun_a[0];
	r.fd = pr.tun_b[0];
	pthread_create(&tr, NULL, read_main, &r);
	pthread_create(&tf, NULL, ct_pump_main, &f);
	pthread_join(tf, NULL);
	for (int wait = 0; wait < 200; wait++) {
		CHECK(ef_dp_sa_stats(b, 0x1dd0, EF_DIR_IN, &st) == EF_OK);
		if (st.packets + st.replay_drops >= (uint64_t)f.sent)
			break;
		usleep(10000);
	}
	usleep(50000);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tr, NULL);
	ef_dp_stop(a);
	ef_dp_stop(b);
	CHECK(f.sent == ORDER_PACKETS);
	CHECK(ef_dp_sa_stats(b, 0x1dd0, EF_DIR_IN, &st) == EF_OK);
	CHECK(st.replay_drops == 0);
	CHECK(st.packets > ORDER_PACKETS / 2); /* most of them crossed */
	CHECK(r.got > 100);                     /* and enough reached B's TUN to tell */
	CHECK(r.out_of_order == 0);
	/* Start, stop, start again: tickets start afresh, traffic still flows in order. */
	CHECK(ef_dp_start(a) == EF_OK && ef_dp_start(b) == EF_OK);
	ef_dp_stop(a);
	ef_dp_stop(b);
out:
	pair_close(&pr);
}

/* The same flow, but B's inbound SA comes while the packets are arriving (as a peer sends
 * on a new SA before our IKE has installed it): the first ones are held (struct ef_park)
 * and go out once it comes, ahead of everything after them, with 4 RX workers. */
void test_order_park(void)
{
	struct pair pr;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {9, 8, 7};
	struct ef_sa_params p;
	struct ef_stats st = {0};
	struct ct_pump f = {.count = ORDER_PACKETS, .pause_every = 16};
	struct reader r = {0};
	pthread_t tf, tr;

	if (!pair_open(&pr))
		goto out;
	ct_sa_params(&p, 0x1dd1, EF_DIR_OUT, &any, key, &pr.addr_b);
	CHECK(ef_dp_add_sa(pr.a, &p) == EF_OK);
	CHECK(ef_dp_start(pr.a) == EF_OK && ef_dp_start(pr.b) == EF_OK);
	f.fd = pr.tun_a[0];
	r.fd = pr.tun_b[0];
	pthread_create(&tr, NULL, read_main, &r);
	pthread_create(&tf, NULL, ct_pump_main, &f);
	for (int wait = 0; wait < 500 && (ef_dp_stats(pr.b, &st), st.spi_held < 100); wait++)
		usleep(1000); /* until many are held */
	ct_sa_params(&p, 0x1dd1, EF_DIR_IN, &any, key, NULL);
	p.replay_window = 1024;
	CHECK(ef_dp_add_sa(pr.b, &p) == EF_OK);
	pthread_join(tf, NULL);
	usleep(200000);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tr, NULL);
	ef_dp_stop(pr.a);
	ef_dp_stop(pr.b);
	ef_dp_stats(pr.b, &st);
	CHECK(st.spi_late > 0); /* some were held and let out */
	CHECK(r.got > 100);
	CHECK(r.out_of_order == 0);
out:
	pair_close(&pr);
}
