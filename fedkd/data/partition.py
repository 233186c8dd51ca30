"""Splitting the private pool across clients with flwr-datasets partitioners.

The partitioners run over a ``datasets.Dataset`` built locally from the labels, row
indices and (partition natural) the natural ids, so no data leaves the machine and
flwr-datasets' own algorithms (and their seeds) decide who holds what.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from fedkd.config import Registry, RunConfig
from fedkd.data.cache import cached_arrays
from fedkd.data.datasets import MIN_PRIVATE_PER_CLIENT, data_tag, dataset_spec, load_splits


def min_partition_size(pool: int, clients: int) -> int:
    """Dirichlet's smallest shard: ``MIN_PRIVATE_PER_CLIENT``, or a third of the mean
    shard where shards are that small (digits' 1,077 rows over 100 clients), so the
    partitioner's retries can succeed."""
    return max(1, min(MIN_PRIVATE_PER_CLIENT, pool // clients // 3))


def _partitions(c: RunConfig, columns: dict, pool: int) -> list[np.ndarray]:
    """Each partition's rows; where Dirichlet's retries cannot give every shard its smallest
    size (10,000 shards: some shard comes out short in every draw), the size halves."""
    import datasets

    smallest = min_partition_size(pool, c.clients)
    while True:
        partitioner = PARTITIONERS[c.partition](c.clients, c.alpha, c.classes_per_client, c.seed, smallest)
        partitioner.dataset = datasets.Dataset.from_dict(columns)
        try:
            with warnings.catch_warnings():  # retries are reported once, by the caller, if they fail
                warnings.simplefilter("ignore", UserWarning)
                return [np.asarray(partitioner.load_partition(i)["row"], dtype=np.int64) for i in range(c.clients)]
        except ValueError:
            if c.partition != "dirichlet" or smallest == 1:
                raise
            smallest //= 2


def _iid(clients: int, alpha: float, classes_per_client: int, seed: int, smallest: int):
    from flwr_datasets.partitioner import IidPartitioner

    return IidPartitioner(num_partitions=clients)


def _dirichlet(clients: int, alpha: float, classes_per_client: int, seed: int, smallest: int):
    from flwr_datasets.partitioner import DirichletPartitioner

    return DirichletPartitioner(
        num_partitions=clients, partition_by="label", alpha=alpha,
        min_partition_size=smallest, self_balancing=True, seed=seed,
    )


def _pathological(clients: int, alpha: float, classes_per_client: int, seed: int, smallest: int):
    from flwr_datasets.partitioner import PathologicalPartitioner

    return PathologicalPartitioner(
        num_partitions=clients, partition_by="label",
        num_classes_per_partition=classes_per_client,
        class_assignment_mode="first-deterministic", seed=seed,
    )


def _natural(clients: int, alpha: float, classes_per_client: int, seed: int, smallest: int):
    from flwr_datasets.partitioner import NaturalIdPartitioner

    return NaturalIdPartitioner(partition_by="group")  # one partition per natural id; clients take the first


PARTITIONERS = Registry("partition", {"iid": _iid, "dirichlet": _dirichlet, "pathological": _pathological,
                                      "natural": _natural})


def partition_indices(config: RunConfig) -> list[np.ndarray]:
    """Row indices into the private pool, one array per partition id."""
    return list(_partition_indices(RunConfig(**{f: getattr(config, f) for f in PARTITION_FIELDS})))


PARTITION_FIELDS = ("dataset", "seed", "public_size", "input_column", "label_column", "public_dataset",
                    "partition", "partition_column", "clients", "alpha", "classes_per_client")


@lru_cache(maxsize=4)
def _partition_indices(config: RunConfig):
    """Cached per process on ``PARTITION_FIELDS`` and on disk: flwr-datasets takes
    seconds for 100 partitions."""
    c = config
    pool = dataset_spec(c).private
    smallest = min_partition_size(pool, c.clients)
    param = {"dirichlet": f"-a{c.alpha}" + (f"-m{smallest}" if smallest != MIN_PRIVATE_PER_CLIENT else ""),
             "pathological": f"-k{c.classes_per_client}", "natural": f"-{c.partition_column}"}.get(c.partition, "")

    def build():
        splits = load_splits(c)
        columns = {"label": splits.private_y, "row": np.arange(len(splits.private_y))}
        if c.partition == "natural":
            columns["group"] = splits.private_groups
        parts = _partitions(c, columns, pool)
        return {"rows": np.concatenate(parts), "sizes": np.array([len(p) for p in parts])}

    name = f"partition-{data_tag(c)}{pool}-seed{c.seed}-{c.partition}-n{c.clients}{param}"
    arrays = cached_arrays(name, build)
    return tuple(np.split(arrays["rows"], np.cumsum(arrays["sizes"])[:-1]))


def label_histograms(config: RunConfig) -> np.ndarray:
    """(clients, classes) counts of private labels; the experimenter's view, never sent."""
    splits = load_splits(config)
    return np.stack([
        np.bincount(splits.private_y[idx], minlength=splits.num_classes)
        for idx in partition_indices(config)
    ])
