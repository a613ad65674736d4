"""Keep freed memory from piling up in the C allocator (glibc only; elsewhere nothing changes).

Two glibc behaviours made a run's peak RSS grow with time rather than with what it holds: each
thread that contends for the allocator gets an arena of its own, and torch's intra-op threads
allocate and free activation-sized buffers from all of them, freed memory staying in its arena;
and buffers under the mmap threshold (which glibc raises as large blocks are freed, up to 32 MB)
come from the heap, where a batch's freed tensors leave holes the next batch's do not fit.
Measured on SmolLM2-135M with a 2^14-latent SAE, one process scoring it and computing its text
metrics peaked at 1.92 GB with glibc's defaults and at 1.56 GB with one arena and a fixed 4 MB
threshold, 6% slower (1 MB: 1.49 GB, 28% slower); tests/benchmarks/bench_wide.py."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 << 20


def bound_allocator() -> bool:
    """One arena and a fixed mmap threshold from now on; True when the C library took both."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, 1)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
