"""An opt-in C allocator setting for a ``multiscale`` process (glibc ``mallopt``).

A committee evaluation, a neighbour list or a Newton step allocates arrays of tens of MB,
frees them and allocates them again at the next call. With glibc's defaults those arrays
are handed back to the operating system when freed (large blocks are mapped and unmapped;
the top of the heap is trimmed), and every call pays the page faults and the zeroing of
every page again. With ``MULTISCALE_MALLOC=reuse`` in the environment,
:func:`tune_allocator` keeps freed memory in the process for reuse instead:

=====================  ============  ==========================================================
``mallopt`` parameter  value         effect
=====================  ============  ==========================================================
``M_MMAP_THRESHOLD``   64 MiB        blocks below it come from the heap and are reused
``M_TRIM_THRESHOLD``   512 MiB       free memory at the top of the heap up to this stays
=====================  ============  ==========================================================

It is off by default: it keeps up to 512 MiB more resident in a process whose arrays
shrink, and once the committee's pair gradients were no longer zeroed before each call it
made no measurable difference to that call (``cases/potentials/README.md``). glibc's own
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the environment win over it; on
a C library other than glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def tune_allocator() -> bool:
    """Apply the settings of the module docstring where asked for; True where applied."""
    if os.environ.get("MULTISCALE_MALLOC", "").strip().lower() != "reuse":
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
