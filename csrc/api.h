/* api.h — C view of api.cdef (the declarations live there, once). */
#ifndef EF_API_H
#define EF_API_H

#include <stddef.h>
#include <stdint.h>

#include "api.cdef"

#endif
