/* udp.h — batched UDP I/O (recvmmsg/sendmmsg) over a packet batch.
 *
 *   ef_batch_init/free   EF_BATCH slots of EF_SLOT bytes plus their msghdrs
 *   ef_udp_recv()        one recvmmsg into the slots (non-blocking)
 *   ef_udp_send()        sendmmsg until every message went or failed; waits for room
 *   ef_wait()            poll one fd and the stop fd
 */
#ifndef EF_UDP_H
#define EF_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define EF_BATCH 64
#define EF_SLOT 16384

struct ef_batch {
	uint8_t *mem; /* EF_BATCH * EF_SLOT */
	struct mmsghdr msg[EF_BATCH];
	struct iovec iov[EF_BATCH];
	struct sockaddr_storage addr[EF_BATCH];
	uint32_t len[EF_BATCH];   /* bytes in each slot (TUN reads) or inner bytes (sends) */
	uint8_t *data[EF_BATCH];  /* where each slot's payload starts */
};

static inline uint8_t *ef_slot(struct ef_batch *b, int i)
{
	return b->mem + (size_t)i * EF_SLOT;
}

int ef_batch_init(struct ef_batch *b);
void ef_batch_free(struct ef_batch *b);

/* Returns the number of datagrams (>0), 0 when none is waiting, -1 on error (errno). */
int ef_udp_recv(int fd, struct ef_batch *b);

/* Sends msg[0..n); messages that fail get msg_len = 0. Returns the number that failed.
 * Gives up (failing the rest) when stop_fd becomes readable. */
int ef_udp_send(int fd, struct mmsghdr *msg, int n, int stop_fd);

/* Waits until fd has `events` (returns 0) or stop_fd is readable (returns 1). */
int ef_wait(int fd, short events, int stop_fd);

#endif
