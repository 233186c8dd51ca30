"""Data sets from disk and the hub's own formats, written by the tests themselves (no network):
a ``save_to_disk`` folder with an Image feature, parquet files, a hub-layout repository,
an image folder; their errors; natural-id partitions; a public set from another data set."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fedkd import rules
from fedkd.config import ConfigError
from fedkd.data.datasets import dataset_spec, load_splits
from fedkd.data.partition import partition_indices
from fedkd.results.store import read_run_config, read_server_metrics, read_summary
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import load_script

CLASSES = 4


def _pixels(label: int, rng: np.random.Generator, size: int = 12, channels: int = 3) -> np.ndarray:
    """An 8-bit image whose brightness says its class (learnable in a few steps)."""
    base = 30 + 60 * label
    shape = (size, size, channels) if channels > 1 else (size, size)
    return np.clip(base + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % CLASSES


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> str:
    """``<root>/<class>/<i>.png``: 12x12 RGB images, 60 per class."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for i, label in enumerate(_labels(240)):
        (root / f"class{label}").mkdir(exist_ok=True)
        Image.fromarray(_pixels(label, rng)).save(root / f"class{label}" / f"{i}.png")
    return str(root)


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory) -> str:
    """A DatasetDict with an Image feature and a ClassLabel, saved with ``save_to_disk``."""
    import datasets

    rng = np.random.default_rng(1)
    features = datasets.Features({"img": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[f"c{k}" for k in range(CLASSES)])})

    def split(n):
        labels = _labels(n)
        return datasets.Dataset.from_dict({"img": [Image.fromarray(_pixels(k, rng, channels=1)) for k in labels],
                                           "label": labels}, features=features)

    root = tmp_path_factory.mktemp("saved") / "ds"
    datasets.DatasetDict({"train": split(200), "test": split(40)}).save_to_disk(str(root))
    return str(root)


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = _labels(n)
    frame = pd.DataFrame(rng.normal(size=(n, 6)) + y[:, None], columns=[f"f{i}" for i in range(6)])
    frame["writer"] = [f"w{i % 7}" for i in range(n)]
    frame["label"] = y
    return frame


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("parquet")
    _table(300, 2).to_parquet(root / "train.parquet")
    _table(60, 3).to_parquet(root / "test.parquet")
    return str(root)


@pytest.fixture(scope="module")
def hub_repo(tmp_path_factory) -> str:
    """A folder laid out as a hub repository: ``data/<split>-00000-of-00001.parquet``."""
    root = tmp_path_factory.mktemp("hub")
    (root / "data").mkdir()
    _table(300, 4).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    _table(50, 5).to_parquet(root / "data" / "test-00000-of-00001.parquet")
    return str(root)


def test_image_folder_gives_channels_first_images_on_the_documented_scale(image_folder):
    config = rules.load({"dataset": f"path:{image_folder}", "clients": 10})
    splits = load_splits(config)
    spec = dataset_spec(config)
    assert splits.input_shape == (3, 12, 12) and splits.num_classes == CLASSES and splits.raw_max == 255
    assert (spec.pool, spec.test, spec.public_pool, spec.val) == (240, 40, 40, 8)
    assert len(splits.private_y) + len(splits.test_y) + len(splits.public_y) + len(splits.val_y) == 240
    assert config.public_size == 32 and config.public_subset == 32 and config.models == "resnet8,cnn-m"
    brightness = splits.test_x.mean(axis=(1, 2, 3))  # x / 255 - 0.5 keeps the class's brightness
    np.testing.assert_allclose(brightness, (30 + 60 * splits.test_y) / 255 - 0.5, atol=0.02)


def test_saved_dataset_uses_its_own_test_split_and_grey_images_keep_one_channel(saved_dataset):
    config = rules.load({"dataset": f"path:{saved_dataset}", "clients": 5})
    splits = load_splits(config)
    assert splits.input_shape == (1, 12, 12) and len(splits.test_y) == 40
    assert len(splits.private_y) + config.public_size + len(splits.val_y) == 200
    assert config.models == "cnn-s,mlp-s"


def test_parquet_tables_and_a_hub_layout_repository_load_numeric_columns(parquet_dir, hub_repo):
    for source, test in ((f"path:{parquet_dir}", 60), (f"hf:{hub_repo}", 50)):
        config = rules.load({"dataset": source, "clients": 5})
        splits = load_splits(config)
        assert splits.input_shape == (1, 6) and len(splits.test_y) == test and splits.raw_max == 0
        assert config.models == "cnn-s,mlp-s"
    with pytest.raises(ConfigError, match="input-column='f2': rows of shape"):  # one number is not an input
        rules.load({"dataset": f"path:{parquet_dir}", "clients": 5, "input-column": "f2"})


def test_natural_partition_gives_each_client_one_writer(parquet_dir):
    config = rules.load({"dataset": f"path:{parquet_dir}", "clients": 7, "partition": "natural",
                         "partition-column": "writer"})
    splits = load_splits(config)
    parts = partition_indices(config)
    writers = [set(splits.private_groups[rows].tolist()) for rows in parts]
    assert all(len(w) == 1 for w in writers) and len(set().union(*writers)) == 7
    assert sum(len(rows) for rows in parts) == len(splits.private_y)
    with pytest.raises(ConfigError, match="has 7 values of writer, one client each; use 1..7"):
        rules.load({**config.to_run_config(), "clients": 8})


def test_public_set_from_another_data_set(saved_dataset):
    with pytest.raises(ConfigError, match=r"public-dataset.*shape \(1, 28, 28\).*\(1, 8, 8\)"):
        rules.load({"dataset": "digits", "public-dataset": "mnist-5k"})
    config = rules.load({"dataset": "mnist-5k", "public-dataset": f"path:{_grey28(saved_dataset)}", "clients": 10})
    splits = load_splits(config)
    assert config.public_size == 200 and len(splits.public_y) == 200 and not splits.public_labelled
    assert len(splits.val_y) == 200 and dataset_spec(config).public_pool == 200  # only validation rows stay
    with pytest.raises(ConfigError, match="public set's labels are 4 classes, mnist-5k's 10"):
        rules.load({**config.to_run_config(), "public-labels": 1})


def _grey28(saved_dataset: str) -> str:
    """The saved data set's train split as 28x28 grey images, saved next to it."""
    import datasets

    path = saved_dataset + "-28"
    ds = datasets.load_from_disk(saved_dataset)["train"]
    ds.map(lambda row: {"img": row["img"].resize((28, 28))}).save_to_disk(path)
    return path


def _write_bad(tmp_path, case: str) -> str:
    import datasets

    if case == "missing":
        return f"path:{tmp_path / 'absent'}"
    if case == "text-labels":
        frame = _table(40, 0)
        frame["label"] = [f"c{k}" for k in frame["label"]]
        frame.to_parquet(tmp_path / "train.parquet")
        return f"path:{tmp_path}"
    if case == "mixed-sizes":
        rng = np.random.default_rng(0)
        for i in range(20):
            (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
            Image.fromarray(_pixels(i % 2, rng, size=12 if i < 10 else 16)).save(tmp_path / f"c{i % 2}" / f"{i}.png")
        return f"path:{tmp_path}"
    if case == "no-label":
        datasets.Dataset.from_dict({"a": [1.0, 2.0] * 30, "b": [0.5, 1.5] * 30}).save_to_disk(str(tmp_path / "d"))
        return f"path:{tmp_path / 'd'}"
    raise ValueError(case)


@pytest.mark.parametrize("case, flags, words", [
    ("missing", [], "--dataset=path:{root}/absent: no such file or folder"),
    ("text-labels", [], "--label-column=label: path:{root}'s labels must be integer class ids"),
    ("mixed-sizes", [], "--dataset=path:{root}: images of mixed sizes (12x12, 16x16); resize them"),
    ("no-label", [], "--dataset=path:{root}/d: no label column found among a, b; pass --label-column"),
    ("no-label", ["--label-column=kind"], "--label-column=kind: path:{root}/d has no such column; columns: a, b"),
    ("no-label", ["--label-column=b", "--input-column=z"], "--input-column=z: path:{root}/d has no such column"),
])
def test_bad_data_exits_2_with_one_line_before_any_work(tmp_path, capsys, case, flags, words):
    source = _write_bad(tmp_path, case)
    capsys.readouterr()  # what writing the data printed
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        load_script("run").main([f"--dataset={source}", "--clients=4", f"--out={out}", *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert words.format(root=tmp_path) in err
    assert not out.exists()  # refused before anything was written


def test_flags_for_columns_and_natural_ids_need_a_data_set_that_has_them():
    with pytest.raises(ConfigError, match="label-column.*digits is built in"):
        rules.load({"dataset": "digits", "label-column": "y"})
    with pytest.raises(ConfigError, match="partition-column.*needs the column"):
        rules.load({"dataset": "digits", "partition": "natural"})
    with pytest.raises(ConfigError, match="allowed: mnist1d, digits, mnist-5k, hf:<hub name> or path:"):
        rules.load({"dataset": "cifar10"})
    with pytest.raises(ConfigError, match="augment.*shape \\(1, 40\\)"):
        rules.load({"dataset": "mnist1d", "augment": "crop"})


@pytest.mark.parametrize("loader", ["saved_dataset", "parquet_dir", "hub_repo"])
def test_each_loader_partitions_and_runs_two_rounds(loader, request, tmp_path):
    prefix = "hf" if loader == "hub_repo" else "path"
    config = rules.load({"dataset": f"{prefix}:{request.getfixturevalue(loader)}", "clients": 4, "rounds": 2,
                         "init-epochs": 3})
    summary = run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    assert list(server.index) == [0, 1, 2] and server["failed"].sum() == 0 and server["rejected"].sum() == 0
    assert summary["acc_mean_final"] > 1 / CLASSES  # classes differ in brightness or mean: learnable


@pytest.mark.slow
def test_an_image_folder_runs_end_to_end_with_its_defaults(image_folder, tmp_path, capsys):
    assert load_script("run").main([f"--dataset=path:{image_folder}", "--clients=10", "--rounds=2",
                                    f"--out={tmp_path}", "--quiet"]) == 0
    run_dir = next(tmp_path.iterdir())
    assert read_summary(run_dir)["rounds_completed"] == 2
    config = read_run_config(run_dir)
    assert config.models == "resnet8,cnn-m" and config.public_size == 32
