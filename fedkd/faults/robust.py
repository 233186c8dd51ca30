"""Robust aggregation of knowledge (``--aggregator``): the rule that combines the
parties' payloads on the round's public ids when some of them may be Byzantine.

Every rule maps a list of equally shaped arrays (one per party) to one float64
array (callers choose the dtype that travels):

- ``mean``: the unweighted mean, each strategy's own rule (FedMD's consensus).
- ``median``: the coordinate-wise median (Yin et al., ICML 2018).
- ``trimmed-mean``: per coordinate, drop the ``robust-frac`` largest and smallest
  values, average the rest (Yin et al., 2018).
- ``krum``: Multi-Krum on whole payloads (Blanchard et al., NeurIPS 2017): each
  party is scored by the squared distances to its n - f - 2 nearest others
  (f = ``robust-frac`` x n); the n - f best-scored payloads are averaged. Like
  Cronus (Chang et al., 2019), it filters whole predictions that sit far from the
  bulk instead of trimming coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from fedkd.config import Registry

Combine = Callable[[list[np.ndarray]], np.ndarray]


def mean(arrays: list[np.ndarray]) -> np.ndarray:
    """Unweighted mean of several parties' payloads (FedMD's consensus, FedDF's AVGLOGITS)."""
    return np.mean(np.stack(arrays), axis=0, dtype=np.float64)


def median(arrays: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(arrays).astype(np.float64), axis=0)


def trimmed_mean(arrays: list[np.ndarray], frac: float) -> np.ndarray:
    from scipy import stats  # a second to import: only runs that trim pay it

    return stats.trim_mean(np.stack(arrays).astype(np.float64), frac, axis=0)


def krum_selection(arrays: list[np.ndarray], frac: float) -> np.ndarray:
    """Indices of the n - f payloads Multi-Krum keeps, best score first."""
    n = len(arrays)
    f = int(frac * n)
    flat = np.stack([a.ravel() for a in arrays]).astype(np.float64)
    sq = (flat ** 2).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0.0)
    neighbours = max(1, n - f - 2)
    scores = np.sort(dist, axis=1)[:, 1:neighbours + 1].sum(1)  # column 0: the distance to itself
    return np.argsort(scores, kind="stable")[:n - f]


def krum(arrays: list[np.ndarray], frac: float) -> np.ndarray:
    if len(arrays) < 3:  # no neighbours to score against
        return mean(arrays)
    return mean([arrays[i] for i in krum_selection(arrays, frac)])


AGGREGATORS: Registry = Registry("aggregator", {
    "mean": lambda arrays, frac: mean(arrays), "median": lambda arrays, frac: median(arrays),
    "trimmed-mean": trimmed_mean, "krum": krum})


def combiner(rule: str, frac: float) -> Combine:
    """The aggregation rule ``rule`` with ``frac`` the assumed share of Byzantine parties."""
    return partial(AGGREGATORS[rule], frac=frac)
