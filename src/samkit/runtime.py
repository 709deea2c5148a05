"""Process-wide settings that make samkit's CPU work faster.

:func:`tune_allocator` keeps freed memory in the process for reuse. glibc's malloc hands large
blocks back to the kernel on free and maps fresh pages on the next allocation, so every big
intermediate tensor pays a page fault per 4 KiB page on first touch: the mask decoder's
per-prompt tensors spent much of their time there (see the performance page). samkit's command
line, server and batch workers call it; library users may call it once at start-up. The cost: the process keeps
its peak heap instead of shrinking after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# below this size, allocations come from the reusable heap rather than fresh mappings
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2 << 30

_tuned = False


def tune_allocator() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning it to the kernel (Linux only;
    elsewhere, or on another C library, nothing happens). Returns whether it took effect; calling
    it again is harmless."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned
