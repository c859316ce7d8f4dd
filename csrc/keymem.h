/* keymem.h — memory for the key bytes the dataplane owns (the AEAD salts, the key
 * buffers Python hands in): 64-byte slots in page-aligned mmap'd pages marked
 * MADV_DONTDUMP (never in a core dump, even one a debugger or a changed sysctl allows)
 * and MADV_WIPEONFORK (zero in a forked child), locked in memory where RLIMIT_MEMLOCK
 * allows (never swapped). A slot is cleansed when freed; pages
 * are kept for the next keys (bounded by the most SAs ever installed at once).
 * Thread-safe. OpenSSL's key schedules live in its own allocations: the process is
 * also non-dumpable (espfast/privs.py). */
#ifndef EF_KEYMEM_H
#define EF_KEYMEM_H

#include <stddef.h>

#define EF_KEYMEM_SLOT 64

/* `len` zeroed bytes (1..EF_KEYMEM_SLOT), or NULL (too long, or no memory). */
void *ef_keymem_alloc(size_t len);
/* Cleanses and frees a slot from ef_keymem_alloc; NULL is ignored. */
void ef_keymem_free(void *p);

#endif
