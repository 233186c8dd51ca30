"""Memory readings: PSS of the process tree, and a recent reading reused."""

import time

import numpy as np

from fedkd.results.memory import PeakMemory, process_tree_mb


def test_a_recent_reading_is_reused_and_a_fresh_one_sees_new_pages():
    before = process_tree_mb()
    block = np.ones(256 * 2**20 // 8)  # 256 MiB, every page touched: far above other processes' drift
    assert process_tree_mb(max_age_s=60) == before  # the reading above, not a new one
    assert process_tree_mb() > before + 192
    del block


def test_peak_memory_keeps_the_largest_reading():
    with PeakMemory(interval_s=0.05) as memory:
        block = np.ones(256 * 2**20 // 8)
        time.sleep(0.3)  # sampled with the block
        del block
        time.sleep(0.3)
    assert memory.peak > process_tree_mb() + 192  # the block's pages, given back since
