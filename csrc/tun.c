/* tun.c — TUN device I/O; see tun.h. */
#include "tun.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int ef_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

int ef_tun_read_batch(int fd, struct ef_batch *b, size_t off, size_t cap)
{
	int n = 0;

	while (n < EF_BATCH) {
		uint8_t *p = ef_slot(b, n) + off;
		ssize_t r = read(fd, p, cap);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return n ? n : -1;
		}
		/* r == 0 is a zero-length packet (datagram fds); the caller drops it. */
		b->data[n] = p;
		b->len[n] = (uint32_t)r;
		n++;
	}
	return n;
}

int ef_tun_write(int fd, const uint8_t *p, size_t len)
{
	ssize_t r;

	do {
		r = write(fd, p, len);
	} while (r < 0 && errno == EINTR);
	return r == (ssize_t)len ? 0 : -1;
}
