"""Data sets from the Hugging Face hub (``hf:<name>``) or from disk (``path:<dir-or-file>``), as arrays.

Both go through 🤗 ``datasets``, the library flwr-datasets' ``FederatedDataset`` is built on:
``load_dataset(name)`` for the hub (cached as ``datasets`` caches), ``load_from_disk`` for a
``save_to_disk`` folder, the ``parquet`` and ``csv`` builders for such files, and ``imagefolder``
for a folder with one subfolder per class. The ``train`` split (or the only one) is the pool
that fedkd cuts into private, public and validation rows; a ``test`` split is the test set.

Inputs are an image column (converted once to float32 channels x height x width with values
x / 255 - 0.5, and cached by ``fedkd.data.cache``), a column of fixed-length number lists, or
else every numeric column besides the label's, taken as they are. Every problem is a
``ConfigError`` naming the flag, the value and what was found, raised before any training.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fedkd.config import ConfigError
from fedkd.data.cache import cached_arrays

PREFIXES = ("hf:", "path:")
LABEL_NAMES = ("label", "labels", "fine_label", "target", "class", "y")  # tried in this order
IMAGE_RAW_MAX = 255.0  # 8-bit images; x / 255 - 0.5 puts them on the scale of the built-in digits
TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class Columns:
    """Which columns hold what ("" = detect)."""

    input: str = ""
    label: str = ""
    group: str = ""  # the natural id a partition may follow (e.g. a writer id)


def is_external(name: str) -> bool:
    return name.startswith(PREFIXES)


def short_name(name: str) -> str:
    """A data set's name fit for a folder or a title: the last part of a hub name or path."""
    if not is_external(name):
        return name
    tail = name.partition(":")[2].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail) or "data"


@lru_cache(maxsize=4)
def load_external(source: str, columns: Columns, key: str = "dataset") -> dict[str, np.ndarray]:
    """Arrays ``x``, ``y`` (the pool), optional ``test_x``, ``test_y``, ``groups``, and
    ``num_classes`` / ``raw_max`` (0-d), read from ``source`` and cached on disk."""
    splits = _open(source, key)
    pool = splits.get("train") or next(iter(splits.values()))
    test = splits.get("test") if "train" in splits else None
    label = _label_column(pool, columns.label, source, key)
    inputs = _input_columns(pool, columns, label, source, key)
    if columns.group and columns.group not in pool.column_names:
        raise ConfigError("partition-column", columns.group,
                          f"{source} has no such column; columns: {', '.join(pool.column_names)}")

    def build() -> dict[str, np.ndarray]:
        x, raw_max = _inputs(pool, inputs, source, key)
        y = _labels(pool, label, source, key)
        arrays = {"x": x, "y": y, "raw_max": np.array(raw_max)}
        classes = int(y.max()) + 1
        if test is not None:
            arrays["test_x"], _ = _inputs(test, inputs, source, key)
            arrays["test_y"] = _labels(test, label, source, key)
            if arrays["test_x"].shape[1:] != x.shape[1:]:
                raise ConfigError(key, source, f"test inputs have shape {arrays['test_x'].shape[1:]}, "
                                  f"train inputs {x.shape[1:]}")
            classes = max(classes, int(arrays["test_y"].max()) + 1)
        feature = pool.features[label]
        arrays["num_classes"] = np.array(getattr(feature, "num_classes", None) or classes)
        if columns.group:
            arrays["groups"] = np.unique(np.asarray(pool[columns.group]).astype(str), return_inverse=True)[1]
        return arrays

    return cached_arrays(f"external-{fingerprint(source, columns)}", build)


def _open(source: str, key: str) -> dict:
    """The data set's splits by name (``datasets.Dataset`` each)."""
    import datasets

    kind, _, where = source.partition(":")
    if not where:
        raise ConfigError(key, source, f"name the data set after '{kind}:'")
    try:
        if kind == "hf":  # a download shows datasets' progress bars
            loaded = datasets.load_dataset(where)
        else:
            datasets.disable_progress_bars()  # local files load in seconds
            try:
                loaded = _open_path(Path(where).expanduser(), source, key)
            finally:
                datasets.enable_progress_bars()
    except ConfigError:
        raise
    except Exception as err:  # datasets raises many kinds (missing hub repo, bad files, no network)
        raise ConfigError(key, source, f"cannot be loaded: {type(err).__name__}: {str(err).splitlines()[0]}") \
            from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if not splits or any(len(s) == 0 for s in splits.values()):
        raise ConfigError(key, source, "has an empty split")
    return splits


def _open_path(path: Path, source: str, key: str):
    import datasets

    if not path.exists():
        raise ConfigError(key, source, f"no such file or folder: {path}")
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        return datasets.load_from_disk(str(path))
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in TABLE_SUFFIXES)
    if files:
        builders = {TABLE_SUFFIXES.get(p.suffix) for p in files}
        if None in builders or len(builders) > 1:
            raise ConfigError(key, source, f"a file fedkd reads is one of {', '.join(TABLE_SUFFIXES)} "
                              f"(all of one kind), got {', '.join(sorted(p.name for p in files))}")
        test = [str(p) for p in files if "test" in p.stem]
        data_files = {"train": [str(p) for p in files if "test" not in p.stem], **({"test": test} if test else {})}
        return datasets.load_dataset(builders.pop(), data_files=data_files)
    if any(p.is_dir() for p in path.iterdir()):
        return datasets.load_dataset("imagefolder", data_dir=str(path))
    raise ConfigError(key, source, "not a data set fedkd reads: a save_to_disk folder, .parquet or .csv files, "
                      "or an image folder with one subfolder per class")


def _label_column(dataset, given: str, source: str, key: str) -> str:
    from datasets import ClassLabel

    names = dataset.column_names
    if given:
        if given not in names:
            raise ConfigError("label-column", given, f"{source} has no such column; columns: {', '.join(names)}")
        return given
    found = [n for n in LABEL_NAMES if n in names] or \
        [n for n, f in dataset.features.items() if isinstance(f, ClassLabel)]
    if not found:
        raise ConfigError(key, source, f"no label column found among {', '.join(names)}; pass --label-column")
    return found[0]


def _input_columns(dataset, columns: Columns, label: str, source: str, key: str) -> list[str]:
    from datasets import Array2D, Array3D, Image, LargeList, List, Value

    names = dataset.column_names
    if columns.input:
        if columns.input not in names:
            raise ConfigError("input-column", columns.input,
                              f"{source} has no such column; columns: {', '.join(names)}")
        return [columns.input]
    rest = {n: f for n, f in dataset.features.items() if n not in (label, columns.group)}
    arrays = [n for n, f in rest.items() if isinstance(f, (Image, List, LargeList, Array2D, Array3D))]
    if arrays:
        return arrays[:1]
    numeric = [n for n, f in rest.items() if isinstance(f, Value) and f.dtype.startswith(("int", "uint", "float"))]
    if not numeric:
        raise ConfigError(key, source, f"no input column found (an image, a list of numbers, or numeric "
                          f"columns) among {', '.join(names)}; pass --input-column")
    return numeric


def _inputs(dataset, names: list[str], source: str, key: str) -> tuple[np.ndarray, float]:
    """(float32 inputs of shape (n, C, H, W) or (n, 1, L), raw_max: 255 for images, 0 otherwise)."""
    from datasets import Image

    if len(names) == 1 and isinstance(dataset.features[names[0]], Image):
        return _images(dataset[names[0]], source, key), IMAGE_RAW_MAX
    if len(names) == 1:
        try:
            x = np.asarray(dataset.with_format("numpy")[names[0]], dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise ConfigError("input-column", names[0], f"its rows are not numbers of one shape ({err})") from None
        if x.ndim not in (2, 3, 4):
            raise ConfigError("input-column", names[0], f"rows of shape {x.shape[1:]}; expected numbers per row "
                              "of shape (L), (H, W) or (C, H, W)")
        x = x[:, None] if x.ndim in (2, 3) else x
    else:
        x = np.stack([np.asarray(dataset[n], dtype=np.float32) for n in names], axis=1)[:, None, :]
    if not np.isfinite(x).all():
        raise ConfigError(key, source, "inputs contain NaN or infinity")
    return x, 0.0


def _images(column, source: str, key: str) -> np.ndarray:
    """Images as (n, C, H, W) float32 in -0.5..0.5 (8-bit); grey if every image is grey."""
    grey = all(img.mode in ("L", "1") for img in column)
    mode = "L" if grey else "RGB"
    arrays = [np.asarray(img.convert(mode), dtype=np.uint8) for img in column]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise ConfigError(key, source, f"images of mixed sizes ({listed}); resize them to one size first")
    x = np.stack(arrays).astype(np.float32) / IMAGE_RAW_MAX - 0.5
    return x[:, None] if grey else x.transpose(0, 3, 1, 2)


def _labels(dataset, label: str, source: str, key: str) -> np.ndarray:
    y = np.asarray(dataset[label])
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError("label-column", label, f"{source}'s labels must be integer class ids, got "
                          f"{y.dtype} values such as {y[:3].tolist()}")
    if y.min() < 0:
        raise ConfigError("label-column", label, f"{source}'s labels must be class ids >= 0, got {y.min()}")
    return y.astype(np.int64)


def fingerprint(source: str, columns: Columns) -> str:
    """Names the cached arrays: the source and columns, and for local data every file's size and time."""
    parts = [source, columns.input, columns.label, columns.group]
    if source.startswith("path:"):
        root = Path(source[len("path:"):]).expanduser().resolve()
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        parts += [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]
