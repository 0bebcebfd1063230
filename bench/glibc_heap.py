"""The C heap as glibc sees it, for the memory tools of the benchmark.

C{mallinfo2()} (glibc 2.33 and later) counts what C{malloc} has handed out
and not taken back, which is where OpenSSL's per-connection memory lives;
Python's own allocations are in it too.
"""

import ctypes
import gc


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def c_heap(collect=True):
    """Bytes in use from C{malloc}: small blocks plus C{mmap}ed ones.

    @param collect: run Python's garbage collector first, so objects
        waiting for it do not count.
    """
    if collect:
        gc.collect()
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd
