"""Data-set registry: embedded data sets split into private pool, public proxy set and test set.

Nothing is fetched from a hub: MNIST-1D is generated from the templates inside the
``mnist1d`` package (and cached on disk by ``fedkd.data.cache``, since generation takes seconds), and
scikit-learn's digits ship inside scikit-learn. The same seed always gives the same
arrays and the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from fedkd.config import Registry
from fedkd.data.cache import cached_arrays

MIN_PRIVATE_PER_CLIENT = 5  # flwr-datasets Dirichlet min_partition_size; 1,000 MNIST-1D clients need < 10


@dataclass(frozen=True)
class Splits:
    """Arrays of one data set. ``public_y`` is kept aside for evaluation only; ``val``
    is the server's labelled validation split (early stopping of server models)."""

    private_x: np.ndarray
    private_y: np.ndarray
    public_x: np.ndarray
    public_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.private_x.shape[1:])


@dataclass(frozen=True)
class DatasetSpec:
    """How to build a data set and how large each split is."""

    load: Callable[[int], tuple[np.ndarray, np.ndarray]]  # seed -> (x float32, y int64)
    total: int
    test: int
    public_pool: int  # its last ``val`` samples are the server's validation split
    val: int
    num_classes: int
    description: str

    @property
    def private(self) -> int:
        return self.total - self.test - self.public_pool

    @property
    def public_max(self) -> int:
        return self.public_pool - self.val


MNIST1D_SAMPLES = 40_000


def _load_mnist1d(seed: int) -> tuple[np.ndarray, np.ndarray]:
    def build():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.train_split, args.seed = MNIST1D_SAMPLES, 1.0, seed
        state = np.random.get_state()  # make_dataset reseeds the global RNGs
        try:
            data = make_dataset(args)
        finally:
            np.random.set_state(state)
        return {"x": data["x"].astype(np.float32)[:, None, :], "y": data["y"].astype(np.int64)}

    arrays = cached_arrays(f"mnist1d-{MNIST1D_SAMPLES}-seed{seed}", build)
    return arrays["x"], arrays["y"]


def _load_digits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.5)[:, None, :, :]
    return x, digits.target.astype(np.int64)


DATASETS: Registry = Registry("dataset", {
    "mnist1d": DatasetSpec(_load_mnist1d, MNIST1D_SAMPLES, 3_000, 5_000, 1_000, 10,
                           "MNIST-1D, 40-step 1-D signals, generated locally"),
    "digits": DatasetSpec(_load_digits, 1_797, 360, 360, 60, 10,
                          "scikit-learn 8x8 digits (1,797 images)"),
})


@lru_cache(maxsize=4)
def load_splits(name: str, seed: int, public_size: int) -> Splits:
    """The data set shuffled by ``seed`` and cut into test | public pool | private pool;
    the public set is the head of the public pool and the validation split its tail."""
    spec = DATASETS[name]
    x, y = spec.load(seed)
    order = np.random.default_rng([seed, 1]).permutation(len(y))
    x, y = x[order], y[order]
    t, p = spec.test, spec.test + spec.public_pool
    return Splits(
        private_x=x[p:], private_y=y[p:],
        public_x=x[t:t + public_size], public_y=y[t:t + public_size],
        test_x=x[:t], test_y=y[:t],
        val_x=x[p - spec.val:p], val_y=y[p - spec.val:p],
        num_classes=spec.num_classes,
    )
