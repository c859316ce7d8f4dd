/* raw.h — plain ESP (IP protocol 50, RFC 4303 without the RFC 3948 UDP header) through
 * raw sockets: what an SA with ef_sa_params.raw_esp sends and receives.
 *
 *   ef_raw_parse()     a datagram a raw IPPROTO_ESP socket handed us -> where its ESP
 *                      starts, how long it is, and its source address. An AF_INET raw
 *                      socket delivers the IPv4 header (checked defensively here: version,
 *                      IHL, total length, protocol, no fragment); an AF_INET6 one delivers
 *                      the payload only, the source comes from the socket address.
 *   ef_raw_peer()      an SA's peer (sockaddr_in, sockaddr_in6 or v4-mapped sockaddr_in6
 *                      from a dual-stack UDP socket) -> the address a raw socket sends to
 *                      (port 0, the family the address really is) and as a prefix.
 */
#ifndef EF_RAW_H
#define EF_RAW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "api.h"

#define EF_IPPROTO_ESP 50

/* Returns 0 with *off / *len the ESP packet inside p[0..n) and *src its outer source,
 * or -EF_E_MALFORMED. `family`: the raw socket's (AF_INET or AF_INET6). */
int ef_raw_parse(const uint8_t *p, size_t n, int family, const struct sockaddr_storage *from,
		 socklen_t fromlen, struct ef_prefix *src, size_t *off, size_t *len);

/* Returns 0, or -EF_E_INVAL for anything but an AF_INET / AF_INET6 address. */
int ef_raw_peer(const struct sockaddr_storage *peer, socklen_t peer_len,
		struct sockaddr_storage *to, socklen_t *to_len, struct ef_prefix *addr);

#endif
