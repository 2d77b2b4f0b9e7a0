"""The opt-in allocator setting of the ``multiscale`` command (:mod:`multiscale.allocator`).

Each case runs in its own interpreter (``mallopt`` changes the whole process) and reads
glibc's own account, ``mallinfo2``: where a freed 40 MB array went.
"""

import subprocess
import sys

import pytest
from conftest import subprocess_environment

PROBE = """
import ctypes
import numpy as np
from multiscale.allocator import tune_allocator

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
applied = tune_allocator()
a = np.ones(5_000_000)  # 40 MB
mapped = libc.mallinfo2().hblkhd  # bytes in blocks mapped on their own
del a
kept = libc.mallinfo2().fordblks  # free bytes the heap keeps for reuse
print(applied, mapped, kept)
"""


def _probe(**env):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=dict(subprocess_environment(), **env),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    applied, mapped, kept = proc.stdout.split()
    return applied == "True", int(mapped), int(kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reuse_keeps_a_freed_large_array_in_the_heap_and_is_off_by_default():
    applied, mapped, kept = _probe(MULTISCALE_MALLOC="reuse")
    assert applied
    assert mapped < 40_000_000 and kept >= 40_000_000, (mapped, kept)
    # by default glibc's own settings: the block is mapped on its own and handed back
    default, mapped, kept = _probe()
    assert not default
    assert mapped >= 40_000_000 and kept < 40_000_000, (mapped, kept)
    own, _, _ = _probe(MULTISCALE_MALLOC="reuse", MALLOC_TRIM_THRESHOLD_="1000000")
    assert not own  # the user's own glibc setting wins
