/* dataplane.c — lifecycle of a dataplane instance. */
#include "dataplane.h"

const char *ef_version(void)
{
	return "espfast-dataplane 0.1";
}
