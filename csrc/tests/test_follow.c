/* test_follow.c — following a peer on authenticated ESP (ef_sa_params.follow): a packet
 * that passes its ICV and the replay window from a new source is reported once on ike_fd
 * (EF_IKE_MOVED, with the SPI); one failing its ICV, a replay, a packet from the known
 * source and any packet for an SA without follow report nothing. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctest.h"
#include "dataplane.h"
#include "proto.h"
#include "sa.h"
#include "worker.h"

#define INNER 60

/* ESP for `sealer` (an outbound twin of the SA under test) with sequence number `seq`
 * into esp; returns its length. */
static size_t seal(struct ef_sa *sealer, uint8_t *esp, size_t cap)
{
	uint8_t buf[EF_HEADROOM + INNER + EF_TAILROOM] = {0}, *inner = buf + EF_HEADROOM, *out;
	long n;

	inner[0] = 0x45, inner[3] = INNER, inner[8] = 64, inner[9] = 17;
	inner[12] = 198, inner[13] = 19, inner[14] = 1, inner[15] = 1;
	inner[16] = 198, inner[17] = 19, inner[18] = 2, inner[19] = 1;
	n = ef_sa_encap(sealer, 0, inner, INNER, &out);
	CHECK(n > 0 && (size_t)n <= cap);
	if (n <= 0 || (size_t)n > cap)
		return 0;
	memcpy(esp, out, (size_t)n);
	return (size_t)n;
}

/* What the dataplane said on ike_fd within `ms`: the notice's length (0: nothing). */
static ssize_t notice(int fd, uint8_t *buf, size_t cap, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	if (poll(&pfd, 1, ms) != 1)
		return 0;
	return recv(fd, buf, cap, MSG_DONTWAIT);
}

/* Waits until inbound SA `spi` counted `packets` good packets and `bad` failures. */
static void settle(ef_dp *dp, uint32_t spi, uint64_t packets, uint64_t bad)
{
	struct ef_sa_stats st;

	for (int wait = 0; wait < 300; wait++) {
		ef_dp_sa_stats(dp, spi, EF_DIR_IN, &st);
		if (st.packets >= packets && st.auth_failures + st.replay_drops >= bad)
			return;
		usleep(10000);
	}
	CHECK(!"the dataplane did not count the packets in time");
}

static void send_from(int fd, const uint8_t *p, size_t len, const struct sockaddr_in *to)
{
	CHECK(sendto(fd, p, len, 0, (const struct sockaddr *)to, sizeof(*to)) == (ssize_t)len);
}

static void follow_one(int follow)
{
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {9, 8, 7}, esp[3][256], got[128];
	size_t len[3];
	struct sockaddr_in a_addr, b_addr, c_addr;
	int tun[2], ike[2], err = 0;
	int a_udp = ct_udp_socket(&a_addr), b_udp = ct_udp_socket(&b_addr);
	int c_udp = ct_udp_socket(&c_addr);
	struct ef_sa_params p;
	struct ef_sa *sealer;
	ef_dp *dp;
	ssize_t n;

	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, tun) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, ike) == 0);
	dp = ef_dp_new(tun[1], a_udp, ike[1], 2, 0, &err);
	CHECK(dp != NULL);
	if (!dp)
		return;
	ct_sa_params(&p, 8000, EF_DIR_OUT, &any, key, &a_addr);
	sealer = ef_sa_new(&p, 1, &err);
	CHECK(sealer != NULL);
	if (!sealer)
		return;
	for (int i = 0; i < 3; i++)
		len[i] = seal(sealer, esp[i], sizeof(esp[i]));
	ct_sa_params(&p, 8000, EF_DIR_IN, &any, key, NULL);
	p.peer = &b_addr; /* where the peer is known to be */
	p.peer_len = sizeof(b_addr);
	p.follow = follow;
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	CHECK(ef_dp_start(dp) == EF_OK);

	send_from(b_udp, esp[0], len[0], &a_addr); /* from where it is: nothing to say */
	settle(dp, 8000, 1, 0);
	CHECK(notice(ike[0], got, sizeof(got), 50) == 0);
	esp[1][len[1] - 1] ^= 1; /* from c, failing its ICV */
	send_from(c_udp, esp[1], len[1], &a_addr);
	esp[1][len[1] - 1] ^= 1;
	send_from(c_udp, esp[0], len[0], &a_addr); /* from c, a replay */
	settle(dp, 8000, 1, 2);
	CHECK(notice(ike[0], got, sizeof(got), 50) == 0);
	send_from(c_udp, esp[1], len[1], &a_addr); /* from c, authenticated: it moved */
	settle(dp, 8000, 2, 2);
	n = notice(ike[0], got, sizeof(got), follow ? 2000 : 50);
	if (follow) {
		struct ef_ike_hdr h;

		CHECK(n == (ssize_t)(sizeof(h) + 4));
		memcpy(&h, got, sizeof(h));
		CHECK(h.family == (4 | EF_IKE_MOVED));
		CHECK(h.port == ntohs(c_addr.sin_port));
		CHECK(!memcmp(h.addr, &c_addr.sin_addr, 4));
		CHECK(ef_get32(got + sizeof(h)) == 8000);
	} else {
		CHECK(n == 0);
	}
	send_from(c_udp, esp[2], len[2], &a_addr); /* from c again: said once only */
	settle(dp, 8000, 3, 2);
	CHECK(notice(ike[0], got, sizeof(got), 50) == 0);
	ef_dp_stop(dp);
	ef_sa_free(sealer);
	ef_dp_free(dp);
	close(tun[0]);
	close(tun[1]);
	close(ike[0]);
	close(ike[1]);
	close(a_udp);
	close(b_udp);
	close(c_udp);
}

void test_follow(void)
{
	follow_one(1);
	follow_one(0);
}
