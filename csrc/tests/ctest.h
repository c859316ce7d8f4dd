/* ctest.h — a minimal check macro for the C unit tests. */
#ifndef EF_CTEST_H
#define EF_CTEST_H

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

void test_replay(void);
void test_esp(void);
void test_sa_table(void);
void test_offload(void);
void test_dataplane(void);
void test_concurrency(void);
void test_order(void);

#endif
