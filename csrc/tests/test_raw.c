/* test_raw.c — plain ESP framing (raw.h): the outer IPv4 header check, table-driven, and
 * raw peer addresses; then a dataplane that sends and receives plain ESP through a raw
 * IPPROTO_ESP socket on loopback (needs CAP_NET_RAW, as the daemon does), with the source
 * check and the framing check counted. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctest.h"
#include "dataplane.h"
#include "proto.h"
#include "raw.h"
#include "worker.h"

/* A 20-byte IPv4 header (proto ESP, 198.18.0.1 -> 198.18.0.2) and `esp` bytes after it. */
static size_t v4(uint8_t *p, size_t esp)
{
	memset(p, 0, 20 + esp);
	p[0] = 0x45;
	ef_put16(p + 2, (uint16_t)(20 + esp));
	p[8] = 64;
	p[9] = EF_IPPROTO_ESP;
	p[12] = 198, p[13] = 18, p[15] = 1;
	p[16] = 198, p[17] = 18, p[19] = 2;
	return 20 + esp;
}

static void parse_table(void)
{
	uint8_t p[256];
	struct ef_prefix src;
	size_t off = 0, len = 0, n;
	struct sockaddr_storage from;
	struct sockaddr_in6 *a6 = (void *)&from;

	n = v4(p, 40);
	CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == 0);
	CHECK(off == 20 && len == 40 && src.family == 4 && src.addr[0] == 198 && src.addr[3] == 1);
	/* options: IHL 6 */
	n = v4(p, 44);
	p[0] = 0x46;
	CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == 0 && off == 24 &&
	      len == 40);
	/* trailing bytes beyond the total length are not ESP */
	n = v4(p, 40);
	CHECK(ef_raw_parse(p, n + 8, AF_INET, NULL, 0, &src, &off, &len) == 0 && len == 40);
	/* every truncation of the header */
	for (size_t k = 0; k < 20; k++)
		CHECK(ef_raw_parse(p, k, AF_INET, NULL, 0, &src, &off, &len) == -EF_E_MALFORMED);
	struct {
		int at, val;
	} bad[] = {
		{0, 0x65}, /* version 6 on an IPv4 socket */
		{0, 0x44}, /* IHL 4 */
		{0, 0x4f}, /* IHL 15: 60 bytes, more than arrived */
		{9, 17},   /* UDP, not ESP */
		{6, 0x20}, /* MF */
		{7, 0x01}, /* fragment offset */
		{6, 0x1f}, /* fragment offset, high bits */
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		n = v4(p, 20);
		p[bad[k].at] = (uint8_t)bad[k].val;
		CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == -EF_E_MALFORMED);
	}
	/* DF alone is fine */
	n = v4(p, 20);
	p[6] = 0x40;
	CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == 0);
	/* total length above what arrived, below the header */
	n = v4(p, 20);
	ef_put16(p + 2, (uint16_t)(n + 1));
	CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == -EF_E_MALFORMED);
	ef_put16(p + 2, 19);
	CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == -EF_E_MALFORMED);
	ef_put16(p + 2, 0xffff);
	CHECK(ef_raw_parse(p, n, AF_INET, NULL, 0, &src, &off, &len) == -EF_E_MALFORMED);
	/* IPv6: no header, the source from the socket address */
	memset(&from, 0, sizeof(from));
	a6->sin6_family = AF_INET6;
	a6->sin6_addr.s6_addr[0] = 0x20;
	a6->sin6_addr.s6_addr[15] = 7;
	CHECK(ef_raw_parse(p, 30, AF_INET6, &from, sizeof(*a6), &src, &off, &len) == 0 &&
	      off == 0 && len == 30 && src.family == 6 && src.addr[15] == 7);
	CHECK(ef_raw_parse(p, 30, AF_INET6, NULL, 0, &src, &off, &len) == -EF_E_MALFORMED);
	CHECK(ef_raw_parse(p, 30, AF_INET6, &from, 8, &src, &off, &len) == -EF_E_MALFORMED);
	from.ss_family = AF_INET;
	CHECK(ef_raw_parse(p, 30, AF_INET6, &from, sizeof(*a6), &src, &off, &len) ==
	      -EF_E_MALFORMED);
	CHECK(ef_raw_parse(p, 30, AF_UNIX, &from, sizeof(from), &src, &off, &len) ==
	      -EF_E_MALFORMED);
}

static void peers(void)
{
	struct sockaddr_storage in, out;
	struct sockaddr_in *i4 = (void *)&in, *o4 = (void *)&out;
	struct sockaddr_in6 *i6 = (void *)&in, *o6 = (void *)&out;
	socklen_t ol = 0;
	struct ef_prefix a;

	memset(&in, 0, sizeof(in));
	i4->sin_family = AF_INET;
	i4->sin_port = htons(4500);
	i4->sin_addr.s_addr = htonl(0xc6120002);
	CHECK(ef_raw_peer(&in, sizeof(*i4), &out, &ol, &a) == 0 && ol == sizeof(*o4) &&
	      o4->sin_port == 0 && o4->sin_addr.s_addr == i4->sin_addr.s_addr &&
	      a.family == 4 && a.addr[0] == 0xc6 && a.addr[3] == 2);
	/* v4-mapped (a dual-stack UDP socket's peer): an IPv4 raw destination */
	memset(&in, 0, sizeof(in));
	i6->sin6_family = AF_INET6;
	i6->sin6_port = htons(4500);
	i6->sin6_addr.s6_addr[10] = i6->sin6_addr.s6_addr[11] = 0xff;
	i6->sin6_addr.s6_addr[12] = 198, i6->sin6_addr.s6_addr[13] = 18;
	i6->sin6_addr.s6_addr[15] = 9;
	CHECK(ef_raw_peer(&in, sizeof(*i6), &out, &ol, &a) == 0 && ol == sizeof(*o4) &&
	      out.ss_family == AF_INET && a.family == 4 && a.addr[0] == 198 && a.addr[3] == 9);
	i6->sin6_addr.s6_addr[10] = 0;
	i6->sin6_addr.s6_addr[0] = 0x20;
	CHECK(ef_raw_peer(&in, sizeof(*i6), &out, &ol, &a) == 0 && ol == sizeof(*o6) &&
	      o6->sin6_port == 0 && a.family == 6 && a.addr[0] == 0x20);
	CHECK(ef_raw_peer(&in, sizeof(*i4), &out, &ol, &a) == -EF_E_INVAL);
	in.ss_family = AF_UNIX;
	CHECK(ef_raw_peer(&in, sizeof(in), &out, &ol, &a) == -EF_E_INVAL);
}

static int raw_socket(uint32_t addr)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(addr)};
	int fd = socket(AF_INET, SOCK_RAW, EF_IPPROTO_ESP);

	if (fd < 0) {
		fprintf(stderr, "test_raw: raw ESP socket: %s (needs CAP_NET_RAW)\n",
			strerror(errno));
		return -1;
	}
	CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	return fd;
}

static ssize_t recv_wait(int fd, uint8_t *buf, size_t cap)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (poll(&p, 1, 2000) <= 0)
		return -1;
	return recv(fd, buf, cap, MSG_DONTWAIT);
}

/* The dataplane on 127.0.0.2 (raw) with one plain-ESP SA pair to 127.0.0.3, where the
 * test holds a raw socket and standalone SAs with the same keys. */
static void dataplane_raw(void)
{
	struct ef_prefix any = {.family = 4};
	uint8_t key[20] = {7, 7, 7}, buf[2048], esp[2048];
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(4500),
				   .sin_addr.s_addr = htonl(0x7f000003)};
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000002)};
	struct sockaddr_in udp_addr;
	struct ef_sa_params p;
	struct ef_stats st;
	ef_esp_sa *dec, *enc;
	int tun[2], ike[2], err = 0, udp = ct_udp_socket(&udp_addr);
	int a_raw = raw_socket(0x7f000002), b_raw = raw_socket(0x7f000003);
	int spoof = raw_socket(0x7f000004);
	uint8_t inner[100] = {0x45, 0, 0, 100, 0, 0, 0, 0, 64, 17};
	ssize_t n;
	long m;
	ef_dp *dp;

	CHECK(a_raw >= 0 && b_raw >= 0 && spoof >= 0);
	if (a_raw < 0 || b_raw < 0 || spoof < 0)
		goto out_fds;
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, tun) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, ike) == 0);
	dp = ef_dp_new(tun[1], udp, ike[1], 1, EF_OFFLOAD_UDP_GRO | EF_OFFLOAD_UDP_GSO, &err);
	CHECK(dp != NULL);
	if (!dp)
		goto out;
	/* not a raw ESP socket; a second one of a family */
	CHECK(ef_dp_add_raw(dp, udp) == EF_E_INVAL);
	CHECK(ef_dp_add_raw(dp, a_raw) == EF_OK);
	CHECK(ef_dp_add_raw(dp, a_raw) == EF_E_EXISTS);
	/* plain ESP needs a peer in both directions */
	ct_sa_params(&p, 0x3000, EF_DIR_IN, &any, key, NULL);
	p.raw_esp = 1;
	CHECK(ef_dp_add_sa(dp, &p) == EF_E_INVAL);
	p.peer = &peer, p.peer_len = sizeof(peer);
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	ct_sa_params(&p, 0x4000, EF_DIR_OUT, &any, key, &peer);
	p.raw_esp = 1;
	CHECK(ef_dp_add_sa(dp, &p) == EF_OK);
	p.raw_esp = 2;
	p.spi = 0x4001;
	CHECK(ef_dp_add_sa(dp, &p) == EF_E_INVAL);
	CHECK(ef_dp_start(dp) == EF_OK);
	CHECK(ef_dp_add_raw(dp, b_raw) == EF_E_STATE);

	/* TX: an inner packet from TUN leaves as IPv4 protocol 50 to 127.0.0.3 */
	inner[12] = 198, inner[13] = 19, inner[15] = 1;
	inner[16] = 198, inner[17] = 19, inner[19] = 2;
	ct_sa_params(&p, 0x4000, EF_DIR_IN, &any, key, NULL);
	dec = ef_esp_sa_new(&p, &err);
	ct_sa_params(&p, 0x3000, EF_DIR_OUT, &any, key, &peer);
	enc = ef_esp_sa_new(&p, &err);
	CHECK(dec && enc);
	if (!dec || !enc)
		goto stop;
	CHECK(send(tun[0], inner, sizeof(inner), 0) == (ssize_t)sizeof(inner));
	n = recv_wait(b_raw, buf, sizeof(buf));
	CHECK(n > 28 && buf[9] == EF_IPPROTO_ESP && buf[12] == 127 && buf[15] == 2);
	if (n > 28) {
		CHECK(ef_get32(buf + 20) == 0x4000 && ef_get32(buf + 24) == 1);
		m = ef_esp_sa_decap(dec, buf + 20, (size_t)n - 20, esp, sizeof(esp));
		CHECK(m == (long)sizeof(inner) && memcmp(esp, inner, sizeof(inner)) == 0);
	}

	/* RX: plain ESP from the peer reaches TUN; the same from another source does not */
	m = ef_esp_sa_encap(enc, inner, sizeof(inner), esp, sizeof(esp));
	CHECK(m > 0);
	CHECK(sendto(b_raw, esp, (size_t)m, 0, (struct sockaddr *)&me, sizeof(me)) == m);
	n = recv_wait(tun[0], buf, sizeof(buf));
	CHECK(n == (ssize_t)sizeof(inner) && memcmp(buf, inner, sizeof(inner)) == 0);
	m = ef_esp_sa_encap(enc, inner, sizeof(inner), esp, sizeof(esp));
	CHECK(sendto(spoof, esp, (size_t)m, 0, (struct sockaddr *)&me, sizeof(me)) == m);
	/* ... nor the same SA's ESP in UDP (the wrong framing) */
	m = ef_esp_sa_encap(enc, inner, sizeof(inner), esp, sizeof(esp));
	CHECK(sendto(udp, esp, (size_t)m, 0, (struct sockaddr *)&udp_addr, sizeof(udp_addr)) == m);
	/* ... nor a runt */
	CHECK(sendto(b_raw, esp, 5, 0, (struct sockaddr *)&me, sizeof(me)) == 5);
	for (int i = 0; i < 200; i++) {
		ef_dp_stats(dp, &st);
		if (st.wrong_source >= 2 && st.malformed >= 1)
			break;
		usleep(10000);
	}
	ef_dp_stats(dp, &st);
	CHECK(st.tx_raw == 1 && st.tx_packets == 1 && st.rx_raw == 1 && st.rx_packets == 1);
	CHECK(st.wrong_source == 2 && st.malformed == 1 && st.auth_failures == 0);

	/* the SA moves to UDP (a NAT appeared): its ESP now goes to the UDP peer */
	CHECK(ef_dp_update_peer(dp, 0x4000, EF_DIR_OUT, &udp_addr, sizeof(udp_addr), 0) == EF_OK);
	CHECK(ef_dp_update_peer(dp, 0x4000, EF_DIR_OUT, &udp_addr, sizeof(udp_addr), 3) ==
	      EF_E_INVAL);
	CHECK(send(tun[0], inner, sizeof(inner), 0) == (ssize_t)sizeof(inner));
	n = recv_wait(udp, buf, sizeof(buf));
	CHECK(n > 8 && ef_get32(buf) == 0x4000 && ef_get32(buf + 4) == 2);
stop:
	ef_esp_sa_free(dec);
	ef_esp_sa_free(enc);
	ef_dp_free(dp);
out:
	close(tun[0]);
	close(tun[1]);
	close(ike[0]);
	close(ike[1]);
out_fds:
	close(udp);
	if (a_raw >= 0)
		close(a_raw);
	if (b_raw >= 0)
		close(b_raw);
	if (spoof >= 0)
		close(spoof);
}

void test_raw(void)
{
	parse_table();
	peers();
	dataplane_raw();
}
