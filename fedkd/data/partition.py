"""Splitting the private pool across clients with flwr-datasets partitioners.

The partitioners run over a ``datasets.Dataset`` built locally from the labels and
row indices, so no data leaves the machine and flwr-datasets' own algorithms (and
their seeds) decide who holds what.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from fedkd.config import Registry, RunConfig
from fedkd.data.cache import cached_arrays
from fedkd.data.datasets import DATASETS, MIN_PRIVATE_PER_CLIENT, load_splits


def _iid(clients: int, alpha: float, classes_per_client: int, seed: int):
    from flwr_datasets.partitioner import IidPartitioner

    return IidPartitioner(num_partitions=clients)


def _dirichlet(clients: int, alpha: float, classes_per_client: int, seed: int):
    from flwr_datasets.partitioner import DirichletPartitioner

    return DirichletPartitioner(
        num_partitions=clients, partition_by="label", alpha=alpha,
        min_partition_size=MIN_PRIVATE_PER_CLIENT, self_balancing=True, seed=seed,
    )


def _pathological(clients: int, alpha: float, classes_per_client: int, seed: int):
    from flwr_datasets.partitioner import PathologicalPartitioner

    return PathologicalPartitioner(
        num_partitions=clients, partition_by="label",
        num_classes_per_partition=classes_per_client,
        class_assignment_mode="first-deterministic", seed=seed,
    )


PARTITIONERS = Registry("partition", {"iid": _iid, "dirichlet": _dirichlet, "pathological": _pathological})


def partition_indices(config: RunConfig) -> list[np.ndarray]:
    """Row indices into the private pool, one array per partition id."""
    return list(_partition_indices(config.dataset, config.seed, config.public_size,
                                   config.partition, config.clients, config.alpha,
                                   config.classes_per_client))


@lru_cache(maxsize=4)
def _partition_indices(dataset, seed, public_size, partition, clients, alpha, classes_per_client):
    """Cached on disk: flwr-datasets takes seconds for 100 partitions, per process."""
    param = {"dirichlet": f"-a{alpha}", "pathological": f"-k{classes_per_client}"}.get(partition, "")

    def build():
        import datasets

        labels = load_splits(dataset, seed, public_size).private_y
        partitioner = PARTITIONERS[partition](clients, alpha, classes_per_client, seed)
        partitioner.dataset = datasets.Dataset.from_dict({"label": labels, "row": np.arange(len(labels))})
        with warnings.catch_warnings():  # retries are reported once, by the caller, if they fail
            warnings.simplefilter("ignore", UserWarning)
            parts = [np.asarray(partitioner.load_partition(i)["row"], dtype=np.int64) for i in range(clients)]
        return {"rows": np.concatenate(parts), "sizes": np.array([len(p) for p in parts])}

    pool = DATASETS[dataset].private
    arrays = cached_arrays(f"partition-{dataset}{pool}-seed{seed}-{partition}-n{clients}{param}", build)
    return tuple(np.split(arrays["rows"], np.cumsum(arrays["sizes"])[:-1]))


def label_histograms(config: RunConfig) -> np.ndarray:
    """(clients, classes) counts of private labels; the experimenter's view, never sent."""
    splits = load_splits(config.dataset, config.seed, config.public_size)
    return np.stack([
        np.bincount(splits.private_y[idx], minlength=splits.num_classes)
        for idx in partition_indices(config)
    ])
