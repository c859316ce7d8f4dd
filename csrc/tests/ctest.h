/* ctest.h — a minimal check macro for the C unit tests. */
#ifndef EF_CTEST_H
#define EF_CTEST_H

#include <stdint.h>
#include <stdio.h>

extern int ct_passed, ct_failed;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (cond) {                                                          \
			ct_passed++;                                                 \
		} else {                                                             \
			ct_failed++;                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
				#cond);                                              \
		}                                                                    \
	} while (0)

struct sockaddr_in;

/* A UDP socket bound to a free loopback port; *addr gets its address. */
int ct_udp_socket(struct sockaddr_in *addr);

/* A thread that sends `count` 300-byte IPv4/UDP packets 198.19.1.1 -> 198.19.2.1 into
 * fd, numbered 1, 2, 3, ... in the IPv4 identification field, pausing 2 ms after every
 * `pause_every` (0: never); `sent` counts those that went. */
struct ct_pump {
	int fd;
	int count;
	int pause_every;
	int sent;
};
void *ct_pump_main(void *arg);

/* An AES-GCM-128 SA (20-byte key) between 0.0.0.0/0 selectors (`any`), 128-packet
 * replay window; `peer` for an outbound one. */
struct ef_sa_params;
struct ef_prefix;
void ct_sa_params(struct ef_sa_params *p, uint32_t spi, int dir, struct ef_prefix *any,
		  const uint8_t *key, const struct sockaddr_in *peer);

void test_replay(void);
void test_esp(void);
void test_sa_table(void);
void test_offload(void);
void test_dataplane(void);
void test_concurrency(void);
void test_order(void);
void test_order_park(void);
void test_duplex(void);
void test_keymem(void);
void test_restart(void);
void test_follow(void);
void test_raw(void);

#endif
