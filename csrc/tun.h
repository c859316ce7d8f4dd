/* tun.h — TUN device I/O: one packet per read/write (IFF_TUN | IFF_NO_PI). Any fd that
 * keeps packet boundaries (a SOCK_DGRAM socketpair in tests) works the same way. */
#ifndef EF_TUN_H
#define EF_TUN_H

#include <stddef.h>
#include <stdint.h>

#include "udp.h"

/* Reads up to EF_BATCH packets without blocking, each into its slot at offset `off`
 * with at most `cap` bytes; b->data[i] and b->len[i] describe them. Returns the count
 * (0 when nothing is waiting) or -1 on an error other than EAGAIN. */
int ef_tun_read_batch(int fd, struct ef_batch *b, size_t off, size_t cap);

/* Writes one packet; 0 or -1 (errno). */
int ef_tun_write(int fd, const uint8_t *p, size_t len);

int ef_set_nonblock(int fd);

#endif
