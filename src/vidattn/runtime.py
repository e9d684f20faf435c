"""Process-level settings that make CPU inference and training faster.

`tune_cpu_allocator()`: glibc's malloc serves every allocation above its mmap threshold (128 KiB at start,
adapting up to 32 MiB) with a fresh `mmap` and returns it to the kernel on `free`; a video network allocates
and frees tens of such feature maps per forward (a layer1 map of an 8x224 clip is 25.7 MB), so every one is
page-faulted in again on first touch. Raising the mmap and trim thresholds keeps freed memory in the heap for
reuse. Measured on the 2-core VM (docs/performance.md): ResNet-50 over 8x224 frames 614 -> 558 ms, kernel
time per forward cut ~8x, same peak RSS. It is what `MALLOC_MMAP_THRESHOLD_`/`MALLOC_TRIM_THRESHOLD_` or
linking jemalloc/tcmalloc do, set from inside the process. Linux/glibc only; a no-op elsewhere.

It changes malloc for the whole process, so it is opt-in at the process level, never a side effect of a
library call: a program opts in by calling `tune_cpu_allocator()` itself, by setting the environment variable
`VIDATTN_CPU_ALLOCATOR=tuned`, or by running `vidattn --tune-allocator ...`. Library entry points (the
Predictor, training, evaluation) call `apply_requested_cpu_settings()`, which tunes only when the environment
asked for it. Unset or `VIDATTN_CPU_ALLOCATOR=system`: glibc's allocator is left alone.
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
ENV_VAR = "VIDATTN_CPU_ALLOCATOR"
_CHOICES = ("system", "tuned")
_tuned: bool | None = None  # None: never attempted in this process


def allocator_requested() -> bool:
    """True if the environment opted this process in (`VIDATTN_CPU_ALLOCATOR=tuned`)."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value and value not in _CHOICES:
        logger.warning("%s=%r is not one of %s: glibc's allocator is left alone", ENV_VAR, value, "/".join(_CHOICES))
    return value == "tuned"


def request_tuned_allocator() -> bool:
    """Opt this process and its children in (what `vidattn --tune-allocator` does): sets
    `VIDATTN_CPU_ALLOCATOR=tuned`, so trial processes, DataLoader workers and torchrun ranks follow, and tunes
    now. True if applied."""
    os.environ[ENV_VAR] = "tuned"
    return tune_cpu_allocator()


def apply_requested_cpu_settings() -> bool:
    """What library entry points call: tunes the allocator only if the process opted in through the
    environment (see module docstring), else leaves it alone. True if the allocator is tuned."""
    if _tuned:
        return True
    return tune_cpu_allocator() if allocator_requested() else False


def cpu_allocator_tuned() -> bool:
    """True if `tune_cpu_allocator()` has changed glibc's thresholds in this process."""
    return bool(_tuned)


def tune_cpu_allocator() -> bool:
    """Keep large freed blocks in glibc's heap (see module docstring). Calling it is the process's opt-in.
    Idempotent; True if applied.

    Skipped when `VIDATTN_CPU_ALLOCATOR=system` is set, when the user already set `MALLOC_MMAP_THRESHOLD_`,
    or off glibc (macOS, Windows, musl), where it returns False.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get(ENV_VAR, "").strip().lower() == "system" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
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
