/* dataplane.h — what Python calls through cffi: see api.cdef for the declarations. */
#ifndef EF_DATAPLANE_H
#define EF_DATAPLANE_H

#include "api.h"

#endif
