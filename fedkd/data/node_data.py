"""A SuperNode's own private data, read from the file its node config names (``data-path``).

On a real device the private shard is the device's data, not a simulated partition.
Two formats, both one sample per row:

- ``.npz`` with ``x`` (samples x the data set's input shape, or samples x its flattened
  size; any real dtype) and ``y`` (integer class ids in 0..classes-1);
- ``.csv`` with a header, a ``label`` column (class ids) and one column per input value
  in flattened order (the other columns, in file order).

Inputs come in the data set's own shape, either on the scale fedkd gives its
simulated shards (``x`` as ``load_splits`` holds it) or, for data sets stored as
integers in ``0..raw_max`` (digits 0..16, 8-bit images 0..255), raw: those become
``x / raw_max - 0.5``, exactly as the simulated shards were made. The expected range is
the public set's (the public proxy set and the test set come from the run's data set,
so every node and the server agree on it): a file whose values lie far outside both
is refused with the figures. ``simulations/node_data.py`` writes a simulated partition
in either format as an example. Any problem raises ``NodeDataError`` naming the file
and what is expected; on a SuperNode the ClientApp fails with it and the server logs
the node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedkd.data.datasets import Splits

LABEL_COLUMN = "label"
FORMATS = (".npz", ".csv")
SLACK = 0.5  # how far (in spans of the public set's range) a node's values may reach past that range


class NodeDataError(ValueError):
    """The node's data file is missing or does not have the expected format."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"data-path={path}: {problem}")


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = dict(npz)
        except (OSError, ValueError) as err:
            raise NodeDataError(path, f"not a readable .npz file ({err})") from None
        missing = {"x", "y"} - set(arrays)
        if missing:
            raise NodeDataError(path, f"no array {', '.join(sorted(missing))}; an .npz needs "
                                      f"'x' (samples x inputs) and 'y' (class ids), has {sorted(arrays)}")
        return arrays["x"], arrays["y"]
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise NodeDataError(path, f"not a readable .csv file ({err})") from None
    if LABEL_COLUMN not in frame.columns:
        raise NodeDataError(path, f"no '{LABEL_COLUMN}' column; a .csv needs a header with '{LABEL_COLUMN}' "
                                  f"and one column per input value")
    features = frame.drop(columns=LABEL_COLUMN)
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise NodeDataError(path, f"columns {non_numeric[:5]} are not numbers")
    return features.to_numpy(), frame[LABEL_COLUMN].to_numpy()


def load_node_data(path: Path | str, splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    """``(x float32 of shape (n, *input_shape), y int64)`` from the node's file, checked
    and on the scale of ``splits``."""
    input_shape, num_classes = splits.input_shape, splits.num_classes
    path = Path(path).expanduser()
    if path.suffix not in FORMATS:
        raise NodeDataError(path, f"unknown format '{path.suffix}'; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise NodeDataError(path, "no such file on this node")
    x, y = _read(path)
    size = int(np.prod(input_shape))
    if y.ndim != 1 or len(y) == 0:
        raise NodeDataError(path, f"labels must be one non-empty column, got shape {y.shape}")
    if x.shape[0] != len(y):
        raise NodeDataError(path, f"{x.shape[0]} input rows but {len(y)} labels")
    if x.shape[1:] != tuple(input_shape) and x.shape[1:] != (size,):
        raise NodeDataError(path, f"each sample must have shape {tuple(input_shape)} or {size} values "
                                  f"(the run's data set), got {x.shape[1:]}")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.integer)):
        raise NodeDataError(path, f"inputs must be numbers and labels integers, got {x.dtype} / {y.dtype}")
    if not np.isfinite(x).all():
        raise NodeDataError(path, "inputs contain NaN or infinity")
    if y.min() < 0 or y.max() >= num_classes:
        raise NodeDataError(path, f"labels must be class ids 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    x = _on_scale(path, x.reshape(len(y), *input_shape).astype(np.float32), splits)
    return x, y.astype(np.int64)


def _on_scale(path: Path, x: np.ndarray, splits: Splits) -> np.ndarray:
    """``x`` on the simulated shards' scale: as it is, or mapped from ``0..raw_max``; else refused."""
    lo, hi = float(splits.public_x.min()), float(splits.public_x.max())
    slack = SLACK * (hi - lo)
    got_lo, got_hi = float(x.min()), float(x.max())
    if lo - slack <= got_lo and got_hi <= hi + slack:
        return x
    if splits.raw_max and got_lo >= 0 and got_hi <= splits.raw_max:
        return x / splits.raw_max - 0.5
    raw = f", or raw values in 0..{splits.raw_max:g}" if splits.raw_max else ""
    raise NodeDataError(path, f"inputs span {got_lo:.4g}..{got_hi:.4g}; the run's data set has values in "
                              f"{lo:.4g}..{hi:.4g}{raw}: rescale the file")


def save_node_data(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``x``, ``y`` in the format ``path``'s suffix names (the layout ``load_node_data`` reads)."""
    if path.suffix not in FORMATS:
        raise NodeDataError(path, f"unknown format '{path.suffix}'; use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = x.reshape(len(y), -1)
    if path.suffix == ".npz":
        np.savez(path, x=x, y=y)
        return
    import pandas as pd

    frame = pd.DataFrame(flat, columns=[f"x{i}" for i in range(flat.shape[1])])
    frame.insert(0, LABEL_COLUMN, y)
    frame.to_csv(path, index=False)
