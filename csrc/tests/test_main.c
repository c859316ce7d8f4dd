/* test_main.c — runs every C unit test; prints "N passed, N failed". */
#include <stdio.h>
#include <string.h>

#include "dataplane.h"

int main(void)
{
	int passed = 0, failed = 0;
	if (strncmp(ef_version(), "espfast", 7) == 0)
		passed++;
	else
		failed++;
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
