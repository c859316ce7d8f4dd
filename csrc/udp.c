/* udp.c — batched UDP I/O; see udp.h. */
#include "udp.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

int ef_batch_init(struct ef_batch *b)
{
	memset(b, 0, sizeof(*b));
	/* Large and untouched until used: the kernel backs only the pages we write. */
	b->mem = malloc((size_t)EF_BATCH * EF_SLOT);
	return b->mem ? 0 : -1;
}

void ef_batch_free(struct ef_batch *b)
{
	free(b->mem);
	b->mem = NULL;
}

int ef_wait(int fd, short events, int stop_fd)
{
	struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = stop_fd, .events = POLLIN}};

	for (;;) {
		int r = poll(p, 2, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || p[1].revents)
			return 1;
		if (p[0].revents)
			return 0;
	}
}

int ef_udp_recv(int fd, struct ef_batch *b)
{
	int n;

	for (int i = 0; i < EF_BATCH; i++) {
		b->iov[i].iov_base = ef_slot(b, i);
		b->iov[i].iov_len = EF_SLOT;
		b->msg[i].msg_hdr = (struct msghdr){
			.msg_name = &b->addr[i],
			.msg_namelen = sizeof(b->addr[i]),
			.msg_iov = &b->iov[i],
			.msg_iovlen = 1,
		};
	}
	do {
		n = recvmmsg(fd, b->msg, EF_BATCH, MSG_DONTWAIT, NULL);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	return n;
}

int ef_udp_send(int fd, struct mmsghdr *msg, int n, int stop_fd)
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
			if (ef_wait(fd, POLLOUT, stop_fd) == 0)
				continue;
			for (; i < n; i++, failed++)
				msg[i].msg_len = 0;
			break;
		}
		/* This message cannot go (e.g. no route to the peer): skip it. */
		msg[i].msg_len = 0;
		failed++;
		i++;
	}
	return failed;
}
