/* udp.c — batched UDP I/O; see udp.h. */
#include "udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

int ef_batch_init(struct ef_batch *b, size_t slot)
{
	memset(b, 0, sizeof(*b));
	b->slot = slot;
	/* Large and untouched until used: the kernel backs only the pages we write. */
	b->mem = malloc((size_t)EF_BATCH * slot);
	return b->mem ? 0 : -1;
}

int ef_udp_enable_gro(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof(one));
}

size_t ef_udp_gso_size(const struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
		if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
			int v;

			memcpy(&v, CMSG_DATA(c), sizeof(v));
			return v > 0 ? (size_t)v : 0;
		}
	}
	return 0;
}

void ef_udp_set_gso(struct msghdr *mh, union ef_gso_ctrl *ctrl, uint16_t seg)
{
	struct cmsghdr *c = &ctrl->align;

	mh->msg_control = ctrl->buf;
	mh->msg_controllen = sizeof(ctrl->buf);
	c->cmsg_level = IPPROTO_UDP;
	c->cmsg_type = UDP_SEGMENT;
	c->cmsg_len = CMSG_LEN(sizeof(seg));
	memcpy(CMSG_DATA(c), &seg, sizeof(seg));
}

void ef_batch_free(struct ef_batch *b)
{
	free(b->mem);
	b->mem = NULL;
}

int ef_wait_any(const int *fds, int nfds, short events, int stop_fd, int kick_fd)
{
	struct pollfd p[2 + EF_WAIT_MAX];
	int np = 0;

	if (nfds < 1 || nfds > EF_WAIT_MAX)
		return 1;
	p[np++] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
	p[np++] = (struct pollfd){.fd = kick_fd, .events = kick_fd >= 0 ? POLLIN : 0};
	for (int i = 0; i < nfds; i++)
		p[np++] = (struct pollfd){.fd = fds[i], .events = events};
	for (;;) {
		int r = poll(p, (nfds_t)np, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || p[0].revents)
			return 1;
		for (int i = 2; i < np; i++)
			if (p[i].revents)
				return 0;
		if (p[1].revents)
			return 2;
	}
}

int ef_wait(int fd, short events, int stop_fd, int kick_fd)
{
	return ef_wait_any(&fd, 1, events, stop_fd, kick_fd);
}

int ef_udp_recv(int fd, struct ef_batch *b, int max)
{
	return ef_udp_recv_at(fd, b, 0, max);
}

int ef_udp_recv_at(int fd, struct ef_batch *b, int first, int max)
{
	int n;

	if (first < 0 || first >= EF_BATCH)
		return 0;
	if (max < 1 || max > EF_BATCH - first)
		max = EF_BATCH - first;
	for (int i = first; i < first + max; i++) {
		b->iov[i].iov_base = ef_slot(b, i);
		b->iov[i].iov_len = b->slot;
		b->msg[i].msg_hdr = (struct msghdr){
			.msg_name = &b->addr[i],
			.msg_namelen = sizeof(b->addr[i]),
			.msg_iov = &b->iov[i],
			.msg_iovlen = 1,
			.msg_control = b->ctrl[i].buf,
			.msg_controllen = sizeof(b->ctrl[i].buf),
		};
	}
	do {
		n = recvmmsg(fd, b->msg + first, (unsigned)max, MSG_DONTWAIT, NULL);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	return n;
}

/* One datagram per iovec of a refused GSO message; 0 when all went. */
static int send_unsegmented(int fd, struct msghdr *mh)
{
	int failed = 0;

	for (size_t k = 0; k < mh->msg_iovlen; k++) {
		struct msghdr one = {
			.msg_name = mh->msg_name,
			.msg_namelen = mh->msg_namelen,
			.msg_iov = &mh->msg_iov[k],
			.msg_iovlen = 1,
		};
		ssize_t r;

		do {
			r = sendmsg(fd, &one, 0);
		} while (r < 0 && errno == EINTR);
		if (r < 0)
			failed = 1;
	}
	return failed;
}

int ef_udp_send(int fd, struct mmsghdr *msg, int n, int stop_fd, int *gso_max)
{
	int i = 0, failed = 0;

	while (i < n) {
		int r = sendmmsg(fd, msg + i, (unsigned)(n - i), MSG_DONTWAIT);

		if (r > 0) {
			i += r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (ef_wait(fd, POLLOUT, stop_fd, -1) == 0)
				continue;
			for (; i < n; i++, failed++)
				msg[i].msg_len = 0;
			break;
		}
		if (msg[i].msg_hdr.msg_controllen) {
			/* GSO refused: a segment above the path MTU (EINVAL, EMSGSIZE) means
			 * no GSO at this size from now on; anything else, no GSO at all. */
			int seg = (int)msg[i].msg_hdr.msg_iov[0].iov_len;
			int lim = errno == EINVAL || errno == EMSGSIZE ? seg - 1 : 0;

			if (__atomic_load_n(gso_max, __ATOMIC_RELAXED) > lim)
				__atomic_store_n(gso_max, lim, __ATOMIC_RELAXED);
			if (send_unsegmented(fd, &msg[i].msg_hdr) == 0) {
				msg[i].msg_len = 1;
				i++;
				continue;
			}
		}
		/* This message cannot go (e.g. no route to the peer): skip it. */
		msg[i].msg_len = 0;
		failed++;
		i++;
	}
	return failed;
}
