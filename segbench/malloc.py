"""glibc's malloc, tuned and read: the CRF stage keeps the memory it frees, and ``bench``
reads the bytes in use. Both do nothing (or return None) off glibc."""

from __future__ import annotations

import ctypes
from typing import Callable

# glibc's mallopt parameters (malloc.h) and the values set: keep up to 512 MB of
# freed heap, and serve blocks up to 32 MB (glibc's maximum on 64-bit) from the heap.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES, _MMAP_BYTES = 512 << 20, 32 << 20


def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> None:
    """Let this process reuse the memory pydensecrf frees instead of returning it to the kernel.

    pydensecrf allocates about 110 MB per VOC-size image and frees it all at the end;
    by default glibc then trims the heap and unmaps the large blocks, so the next
    image faults about 28,000 fresh pages, each zeroed by the kernel: 10 % of the
    inference time in one process, and memory bandwidth taken from the other worker
    in two. With these thresholds the freed blocks are reused and an image faults
    none. The cost is that each CRF process keeps its peak heap.
    """
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33), field for field."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
        )
    ]


def heap_in_use_reader() -> Callable[[], int] | None:
    """A function returning the bytes malloc has handed out and not had back (heap chunks +
    mmapped chunks), or None off glibc or before 2.33 (no ``mallinfo2``)."""
    mallinfo2 = getattr(_glibc(), "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use
