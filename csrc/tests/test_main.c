/* test_main.c — runs every C unit test; prints "N passed, N failed". */
#include <stdio.h>

#include "ctest.h"

int ct_passed, ct_failed;

int main(void)
{
	test_replay();
	test_esp();
	test_sa_table();
	test_offload();
	test_dataplane();
	test_concurrency();
	test_order();
	test_order_park();
	test_duplex();
	test_keymem();
	test_restart();
	test_follow();
	test_raw();
	printf("%d passed, %d failed\n", ct_passed, ct_failed);
	return ct_failed ? 1 : 0;
}
