"""The C allocator's settings of a ``multiscale`` process (glibc ``mallopt``).

A committee evaluation, a neighbour list or a Newton step allocates arrays of tens of MB,
frees them and allocates them again at the next call. With glibc's defaults those arrays
are handed back to the operating system when freed (large blocks are mapped and unmapped;
the top of the heap is trimmed past twice the mapping threshold), so every call pays a page
fault and the zeroing of every page again: about a seventh of a committee's force call at
10⁴ atoms on one core. :func:`tune_allocator` keeps freed memory in the process for reuse
instead:

=====================  ============  ==========================================================
``mallopt`` parameter  value         effect
=====================  ============  ==========================================================
``M_MMAP_THRESHOLD``   64 MiB        blocks below it come from the heap and are reused
``M_TRIM_THRESHOLD``   512 MiB       free memory at the top of the heap up to this stays
=====================  ============  ==========================================================

The peak memory is that of the live arrays, as before; a process whose arrays shrink keeps
up to 512 MiB more resident than before until it exits. Where the environment already sets
glibc's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``, or sets
``MULTISCALE_MALLOC=default``, nothing is changed; on a C library other than glibc neither.
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
    """Apply the settings of the module docstring; True where they were applied."""
    if os.environ.get("MULTISCALE_MALLOC", "").strip().lower() == "default":
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
