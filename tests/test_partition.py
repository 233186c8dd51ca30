import numpy as np
import pytest

from fedkd.config import RunConfig
from fedkd.data.datasets import DATASETS, load_splits
from fedkd.data.partition import label_histograms, partition_indices


def _digits(**kw) -> RunConfig:
    return RunConfig(dataset="digits", public_size=300, clients=10, **kw)


@pytest.mark.parametrize("partition", ["iid", "dirichlet", "pathological"])
def test_partitions_are_disjoint_cover_the_pool_and_repeat_with_the_seed(partition):
    config = _digits(partition=partition, alpha=0.5, classes_per_client=2)
    parts = partition_indices(config)
    rows = np.concatenate(parts)
    assert len(parts) == 10
    assert len(rows) == len(set(rows.tolist()))  # disjoint
    assert rows.max() < DATASETS["digits"].spec.private
    if partition != "pathological":  # pathological leaves out classes nobody was dealt
        assert len(rows) == DATASETS["digits"].spec.private
    again = partition_indices(config)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_iid_sizes_are_equal_within_one():
    sizes = [len(p) for p in partition_indices(_digits(partition="iid"))]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_depends_on_seed_and_respects_minimum_size():
    a = partition_indices(_digits(partition="dirichlet", alpha=0.3, seed=1))
    b = partition_indices(_digits(partition="dirichlet", alpha=0.3, seed=2))
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))
    assert min(len(p) for p in a) >= 10


def test_pathological_gives_each_client_its_classes():
    hist = label_histograms(_digits(partition="pathological", classes_per_client=2))
    assert ((hist > 0).sum(axis=1) == 2).all()


def test_small_alpha_is_more_skewed_than_large_alpha():
    def skew(alpha):
        h = label_histograms(_digits(partition="dirichlet", alpha=alpha)).astype(float)
        p = h / h.sum(1, keepdims=True)
        return np.abs(p - 0.1).sum(1).mean()
    assert skew(0.1) > skew(100.0)


def test_splits_are_disjoint_and_public_labels_are_separate():
    s = load_splits(RunConfig(dataset="digits", public_size=300))
    assert len(s.test_y) == 360 and len(s.public_y) == 300 and len(s.private_y) == 1077
    assert s.input_shape == (1, 8, 8)
    flat = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}
    assert not flat(s.public_x[:50]) & flat(s.private_x)


def test_mnist1d_is_generated_deterministically():
    from fedkd.data.datasets import _load_mnist1d

    x1, y1 = _load_mnist1d(3, 500)
    x2, y2 = _load_mnist1d(3, 500)  # from the disk cache this time
    assert x1.shape == (500, 1, 40) and x1.dtype == np.float32
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert set(np.unique(y1)) == set(range(10))


def test_mnist1d_grows_its_pool_for_more_clients_and_keeps_it_below():
    from fedkd.data.datasets import DATASETS, GROWN_PER_CLIENT, MNIST1D_SAMPLES, dataset_spec

    default = DATASETS["mnist1d"].spec
    assert dataset_spec(RunConfig(clients=1000)) == default  # today's data, unchanged
    grown = dataset_spec(RunConfig(clients=10_000))
    assert grown.pool == 8_000 + GROWN_PER_CLIENT * 10_000 > MNIST1D_SAMPLES and GROWN_PER_CLIENT == 32
    assert grown.private == GROWN_PER_CLIENT * 10_000 and grown.test == default.test
    assert dataset_spec(RunConfig(dataset="digits", clients=10_000)) == DATASETS["digits"].spec  # not generated
