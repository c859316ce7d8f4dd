/* udp.h — batched UDP I/O (recvmmsg/sendmmsg) over a packet batch, with UDP GSO on
 * send (UDP_SEGMENT: equal-sized ESP packets to one peer leave as one super-datagram)
 * and UDP GRO on receive (UDP_GRO: the kernel may hand us many datagrams of one flow
 * in one buffer, with their segment size).
 *
 *   ef_batch_init/free   EF_BATCH slots of `slot` bytes plus their msghdrs
 *   ef_udp_enable_gro()  ask for GRO on a socket (0 when granted)
 *   ef_udp_recv()        one recvmmsg into the slots (non-blocking)
 *   ef_udp_gso_size()    a received message's segment size (0: one datagram)
 *   ef_udp_send()        sendmmsg until every message went or failed; waits for room
 *   ef_wait()            poll one fd (or several), the stop fd and (optionally) a kick fd
 */
#ifndef EF_UDP_H
#define EF_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define EF_BATCH 64
#define EF_SLOT 16384          /* one inner packet with head- and tailroom */
#define EF_GRO_SLOT (65536 + 128) /* a GRO super-datagram, a TSO super-packet */
#define EF_GSO_MAX_SEGS 64
#define EF_GSO_MAX_BYTES 65000

struct ef_batch {
	uint8_t *mem; /* EF_BATCH * slot */
	size_t slot;
	struct mmsghdr msg[EF_BATCH];
	struct iovec iov[EF_BATCH];
	struct sockaddr_storage addr[EF_BATCH];
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(int))];
	} ctrl[EF_BATCH];
	uint32_t len[EF_BATCH];   /* bytes in each slot (TUN reads) or inner bytes (sends) */
	uint8_t *data[EF_BATCH];  /* where each slot's payload starts */
};

static inline uint8_t *ef_slot(struct ef_batch *b, int i)
{
	return b->mem + (size_t)i * b->slot;
}

int ef_batch_init(struct ef_batch *b, size_t slot);
void ef_batch_free(struct ef_batch *b);

int ef_udp_enable_gro(int fd);

/* Receives up to `max` (1..EF_BATCH) messages. Returns the number of messages (>0), 0
 * when none is waiting, -1 on error (errno). */
int ef_udp_recv(int fd, struct ef_batch *b, int max);
/* The same into slots first, first + 1, ... (at most max, and no further than the last);
 * works on any datagram socket (the raw ESP ones too). */
int ef_udp_recv_at(int fd, struct ef_batch *b, int first, int max);
size_t ef_udp_gso_size(const struct msghdr *mh);

/* The control message that makes one sendmsg a GSO send of `seg`-byte datagrams. */
union ef_gso_ctrl {
	struct cmsghdr align;
	uint8_t buf[CMSG_SPACE(sizeof(uint16_t))];
};
void ef_udp_set_gso(struct msghdr *mh, union ef_gso_ctrl *ctrl, uint16_t seg);

/* Sends msg[0..n); messages that fail get msg_len = 0. Returns the number that failed.
 * Gives up (failing the rest) when stop_fd becomes readable. A GSO message the kernel
 * refuses is sent again one datagram at a time, and *gso_max (the largest segment size
 * to send with GSO; 0: none) is lowered below its segment size, or to 0 when the
 * refusal was not about size. */
int ef_udp_send(int fd, struct mmsghdr *msg, int n, int stop_fd, int *gso_max);

/* Waits until fd has `events` (returns 0), stop_fd is readable (returns 1) or kick_fd
 * is (returns 2; -1: no kick fd). */
int ef_wait(int fd, short events, int stop_fd, int kick_fd);
/* The same for any of nfds (1..EF_WAIT_MAX) fds: 0 as soon as one has `events`. */
#define EF_WAIT_MAX 4
int ef_wait_any(const int *fds, int nfds, short events, int stop_fd, int kick_fd);

#endif
