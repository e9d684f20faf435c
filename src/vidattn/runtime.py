"""Process-level settings that make CPU inference and training faster.

`tune_cpu_allocator()`: glibc's malloc serves every allocation above its mmap threshold (128 KiB at start,
adapting up to 32 MiB) with a fresh `mmap` and returns it to the kernel on `free`; a video network allocates
and frees tens of such feature maps per forward (a layer1 map of an 8x224 clip is 25.7 MB), so every one is
page-faulted in again on first touch. Raising the mmap and trim thresholds keeps freed memory in the heap for
reuse. Measured on the 2-core VM (docs/performance.md): ResNet-50 over 8x224 frames 614 -> 558 ms, kernel
time per forward cut ~8x, same peak RSS. It is what `MALLOC_MMAP_THRESHOLD_`/`MALLOC_TRIM_THRESHOLD_` or
linking jemalloc/tcmalloc do, set from inside the process. Linux/glibc only; a no-op elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
_MMAP_THRESHOLD = 1 << 30  # allocations below 1 GiB come from the heap
_TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of freed heap instead of returning it (a C int)
_TOP_PAD = 64 << 20
_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep large freed blocks in glibc's heap (see module docstring). Idempotent; True if applied.

    Skipped when `VIDATTN_CPU_ALLOCATOR=system` is set, when the user already set `MALLOC_MMAP_THRESHOLD_`,
    or off glibc (macOS, Windows, musl), where it returns False.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("VIDATTN_CPU_ALLOCATOR", "").lower() == "system" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # older glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB): fall back to that
    ok = any(libc.mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in (_MMAP_THRESHOLD, 32 << 20))
    if ok:
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        libc.mallopt(_M_TOP_PAD, _TOP_PAD)
    _tuned = ok
    logger.debug("glibc malloc thresholds %s", "raised" if ok else "unchanged (mallopt refused)")
    return ok
