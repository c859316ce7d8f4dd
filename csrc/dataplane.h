/* dataplane.h — the C dataplane's public API (what Python calls through cffi).
 * Keep in step with api.cdef. */
#ifndef EF_DATAPLANE_H
#define EF_DATAPLANE_H

const char *ef_version(void);

#endif
