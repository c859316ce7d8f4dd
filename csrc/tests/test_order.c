/* test_order.c — several workers keep one flow in order: dataplane A (4 workers) seals
 * packets read from its "TUN" (a socketpair) and sends them to dataplane B (4 workers),
 * which opens them and writes them to its own "TUN". The inner packets carry 1, 2, 3, ...
 * in their IPv4 identification field; whatever reaches B's TUN (a full socketpair may
 * drop some) must come in strictly increasing order, and no packet may be refused as a
 * replay by the default 1024-packet window. */
#include <arpa/inet.h>
#include <dirent.h>
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

/* Dataplanes A and B (`workers` each; with `duplex`, one thread each for both
 * directions), their "TUN"s and IKE fds socketpairs, UDP sockets on loopback. */
struct pair {
	int tun_a[2], tun_b[2], ike_a[2], ike_b[2];
	struct sockaddr_in addr_a, addr_b;
	int udp_a, udp_b;
	ef_dp *a, *b;
};

static int pair_open_with(struct pair *pr, int workers, int duplex)
{
	int err = 0;

	pr->udp_a = ct_udp_socket(&pr->addr_a);
	pr->udp_b = ct_udp_socket(&pr->addr_b);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->tun_a) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->tun_b) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->ike_a) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pr->ike_b) == 0);
	pr->a = ef_dp_new(pr->tun_a[1], pr->udp_a, pr->ike_a[1], workers, 0, &err);
	pr->b = ef_dp_new(pr->tun_b[1], pr->udp_b, pr->ike_b[1], workers, 0, &err);
	CHECK(pr->a && pr->b);
	if (!pr->a || !pr->b)
		return 0;
	CHECK(ef_dp_set_duplex(pr->a, duplex) == EF_OK && ef_dp_set_duplex(pr->b, duplex) == EF_OK);
	return 1;
}

static int pair_open(struct pair *pr)
{
	return pair_open_with(pr, ORDER_WORKERS, 0);
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
 * and go out once it comes, ahead of everything after them: with 4 RX workers, and with
 * one duplex thread (woken by the kick when it sleeps). */
static void order_park(int workers, int duplex)
{
	struct pair pr;
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {9, 8, 7};
	struct ef_sa_params p;
	struct ef_stats st = {0};
	struct ct_pump f = {.count = ORDER_PACKETS, .pause_every = 16};
	struct reader r = {0};
	pthread_t tf, tr;

	if (!pair_open_with(&pr, workers, duplex))
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

void test_order_park(void)
{
	order_park(ORDER_WORKERS, 0);
	order_park(1, 1);
}

/* Threads of this process now (/proc/self/task). */
static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Duplex (ef_dp_set_duplex): one thread per dataplane carries both directions. Flows go
 * A -> B and B -> A at the same time; each arrives complete enough, in order, with no
 * replay drop, while each dataplane runs one thread. Refused with several workers or
 * while running. */
void test_duplex(void)
{
	struct pair pr;
	struct ef_prefix any = {.family = 4};
	uint8_t key_ab[20] = {3, 1, 4}, key_ba[20] = {2, 7, 1};
	struct ef_sa_params p;
	struct ef_sa_stats st_ab = {0}, st_ba = {0};
	struct ct_pump fa = {.count = ORDER_PACKETS, .pause_every = 128};
	struct ct_pump fb = {.count = ORDER_PACKETS, .pause_every = 128};
	struct reader ra = {0}, rb = {0};
	pthread_t tfa, tfb, tra, trb;
	int before;

	if (!pair_open_with(&pr, ORDER_WORKERS, 0))
		goto out;
	CHECK(ef_dp_set_duplex(pr.a, 1) == EF_E_INVAL); /* several workers: no */
	pair_close(&pr);
	if (!pair_open_with(&pr, 1, 1))
		goto out;
	ct_sa_params(&p, 0x1dab, EF_DIR_OUT, &any, key_ab, &pr.addr_b);
	CHECK(ef_dp_add_sa(pr.a, &p) == EF_OK);
	ct_sa_params(&p, 0x1dba, EF_DIR_OUT, &any, key_ba, &pr.addr_a);
	CHECK(ef_dp_add_sa(pr.b, &p) == EF_OK);
	ct_sa_params(&p, 0x1dab, EF_DIR_IN, &any, key_ab, NULL);
	CHECK(ef_dp_add_sa(pr.b, &p) == EF_OK);
	ct_sa_params(&p, 0x1dba, EF_DIR_IN, &any, key_ba, NULL);
	CHECK(ef_dp_add_sa(pr.a, &p) == EF_OK);
	before = count_threads();
	CHECK(ef_dp_start(pr.a) == EF_OK);
	CHECK(count_threads() == before + 1); /* one thread, not a TX and an RX one */
	CHECK(ef_dp_set_duplex(pr.a, 0) == EF_E_STATE);
	CHECK(ef_dp_start(pr.b) == EF_OK);
	fa.fd = pr.tun_a[0];
	fb.fd = pr.tun_b[0];
	ra.fd = pr.tun_a[0];
	rb.fd = pr.tun_b[0];
	pthread_create(&tra, NULL, read_main, &ra);
	pthread_create(&trb, NULL, read_main, &rb);
	pthread_create(&tfa, NULL, ct_pump_main, &fa);
	pthread_create(&tfb, NULL, ct_pump_main, &fb);
	pthread_join(tfa, NULL);
	pthread_join(tfb, NULL);
	for (int wait = 0; wait < 200; wait++) {
		CHECK(ef_dp_sa_stats(pr.b, 0x1dab, EF_DIR_IN, &st_ab) == EF_OK);
		CHECK(ef_dp_sa_stats(pr.a, 0x1dba, EF_DIR_IN, &st_ba) == EF_OK);
		if (st_ab.packets + st_ab.replay_drops >= (uint64_t)fa.sent &&
		    st_ba.packets + st_ba.replay_drops >= (uint64_t)fb.sent)
			break;
		usleep(10000);
	}
	usleep(50000);
	__atomic_store_n(&ra.stop, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&rb.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tra, NULL);
	pthread_join(trb, NULL);
	ef_dp_stop(pr.a);
	ef_dp_stop(pr.b);
	CHECK(fa.sent == ORDER_PACKETS && fb.sent == ORDER_PACKETS);
	CHECK(ef_dp_sa_stats(pr.b, 0x1dab, EF_DIR_IN, &st_ab) == EF_OK);
	CHECK(ef_dp_sa_stats(pr.a, 0x1dba, EF_DIR_IN, &st_ba) == EF_OK);
	CHECK(st_ab.replay_drops == 0 && st_ba.replay_drops == 0);
	CHECK(st_ab.packets > ORDER_PACKETS / 2 && st_ba.packets > ORDER_PACKETS / 2);
	CHECK(ra.got > 100 && rb.got > 100);
	CHECK(ra.out_of_order == 0 && rb.out_of_order == 0);
	/* Stopped: it may go back to a thread per direction, and start again. */
	CHECK(ef_dp_set_duplex(pr.a, 0) == EF_OK);
	before = count_threads();
	CHECK(ef_dp_start(pr.a) == EF_OK);
	CHECK(count_threads() == before + 2);
	ef_dp_stop(pr.a);
out:
	pair_close(&pr);
}
