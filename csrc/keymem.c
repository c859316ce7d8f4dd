/* keymem.c — page-aligned, never-dumped slots for key bytes; see keymem.h. */
#include "keymem.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18 /* linux/mman.h, Linux 4.14 */
#endif

struct slot {
	union {
		struct slot *next; /* while free */
		unsigned char bytes[EF_KEYMEM_SLOT];
	};
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *free_slots;

/* A new page cut into slots onto the free list; -1 if it cannot be had or marked. */
static int grow(void)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = page > 0 ? (size_t)page : 4096;
	struct slot *s = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (s == MAP_FAILED)
		return -1;
	if (madvise(s, len, MADV_DONTDUMP)) {
		munmap(s, len);
		return -1;
	}
	(void)madvise(s, len, MADV_WIPEONFORK); /* best effort: older kernels lack it */
	/* Best effort too: kept out of swap while RLIMIT_MEMLOCK allows (a page holds 64 keys). */
	(void)mlock(s, len);
	for (size_t i = 0; i < len / sizeof(*s); i++) {
		s[i].next = free_slots;
		free_slots = &s[i];
	}
	return 0;
}

void *ef_keymem_alloc(size_t len)
{
	struct slot *s = NULL;

	if (len == 0 || len > EF_KEYMEM_SLOT)
		return NULL;
	pthread_mutex_lock(&lock);
	if (free_slots || grow() == 0) {
		s = free_slots;
		free_slots = s->next;
	}
	pthread_mutex_unlock(&lock);
	if (s)
		memset(s, 0, sizeof(*s));
	return s;
}

void ef_keymem_free(void *p)
{
	struct slot *s = p;

	if (!s)
		return;
	OPENSSL_cleanse(s, sizeof(*s));
	pthread_mutex_lock(&lock);
	s->next = free_slots;
	free_slots = s;
	pthread_mutex_unlock(&lock);
}
