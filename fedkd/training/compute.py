"""How a process that trains students computes: the run's thread count and an allocator
that keeps the memory it touched.

PyTorch on a CPU allocates every tensor with ``malloc``, and glibc's defaults hand large
blocks back to the kernel when they are freed (``mmap`` above a threshold, heap trimming
past another), so each training step's few-megabyte activations land on fresh pages
and pay a page fault per 4 KiB on first touch. Keeping them (glibc's ``mallopt``, the
tunables PyTorch's CPU performance guide points to) made a cohort of 25 ``cnn-s``
students digest a round's teacher in 0.56 to 0.64 s instead of 0.79 to 0.98 s.
Elsewhere than glibc nothing changes but the thread count.
"""

from __future__ import annotations

import ctypes
import functools

import torch

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD = 512 << 20  # free memory the heap keeps before it gives any back
TOP_PAD = 64 << 20  # the heap grows in steps this large (untouched pages cost nothing)


def setup_process(threads: int) -> None:
    """Use ``threads`` threads for PyTorch's kernels, so metrics do not depend on the
    machine's cores (see README, Determinism), and keep freed memory in the heap."""
    torch.set_num_threads(threads)
    _keep_freed_memory()


@functools.cache  # once per process
def _keep_freed_memory() -> None:
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own symbols: libc's where glibc
    if mallopt is None:  # not glibc: its own allocator's defaults
        return
    for option, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                          (_M_TOP_PAD, TOP_PAD)):
        mallopt(option, value)
