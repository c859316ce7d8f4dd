"""cffi build script for espfast._dataplane (out-of-line API mode).

setup.py names this file in ``cffi_modules``; ``make ext`` rebuilds it in place. The cdef
below is the whole C surface Python may call: coarse calls (open, add/remove SA, stats),
never one per packet.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "api.cdef").read_text())
ffibuilder.set_source(
    "espfast._dataplane",
    '#include "dataplane.h"',
    sources=sorted(str(p.relative_to(HERE.parent)) for p in HERE.glob("*.c")),
    include_dirs=[str(HERE)],
    libraries=["crypto", "pthread"],
    extra_compile_args=["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
