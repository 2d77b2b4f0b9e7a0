"""Keep freed memory in the process (glibc), so large temporaries do not page-fault each step.

PyTorch has no caching allocator on the CPU: every pair-sized temporary (tens of MB at 10⁵
atoms) is an ``mmap`` that is returned to the system when freed and faulted in again on the
next step, and faulting fresh pages in costs more than the arithmetic done on them. Turning
off ``mmap`` for ``malloc`` and never trimming the heap keeps the pages: the process keeps
its peak memory instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap and never trim it. Idempotent.

    Returns:
        True if the setting is in force (Linux with glibc), False where it does not apply.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
