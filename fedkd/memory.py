"""Memory of this process and everything it started (Ray's processes included).

Proportional set size (PSS): a page shared by several processes (Ray's object
store, shared libraries) counts once in the sum, not once per process as RSS would.
"""

from __future__ import annotations

import psutil


def process_tree_mb() -> float:
    """PSS of this process and all its descendants, in MiB."""
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:  # ended between listing and reading, or not readable
            pass
    return total / 2**20
