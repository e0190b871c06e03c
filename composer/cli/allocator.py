"""Keep freed tensor memory in the process (glibc malloc), so a CPU step does not page-fault it back in.

glibc serves blocks above its mmap threshold (128 KiB to start, moving up as big blocks are freed)
with fresh `mmap`s and returns them on `free`, and it trims the heap's top back to the OS. A CPU
training step allocates and frees the same activations of a few MiB every step, so each one is
mapped again and its pages are faulted in and zeroed by the kernel each time. Raising both
mmap threshold to 32 MiB (glibc's documented maximum) and the trim threshold to 2 GiB keeps those
blocks for reuse: a default step's minor page faults fell from about 20,000 to about 500, and the
step from 575 to 520-550 ms (docs/speed.md). Peak memory is the same (1.37 GB); memory freed late
in a run goes back to the OS at exit rather than at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # glibc's DEFAULT_MMAP_THRESHOLD_MAX: 32 MiB
TRIM_THRESHOLD = 2**31 - 1  # the largest an int carries: the heap's top is never trimmed during a run


def keep_freed_memory() -> bool:
    """Raise glibc's mmap threshold to 32 MiB and its trim threshold to 2 GiB; True if glibc took
    them (False off glibc Linux, where the allocator is left as it is)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
