"""One run's results folder: config.json, metrics.csv (tidy), clients.csv, summary.json, plots.

``metrics.csv`` has one row per (round, client, metric, value); ``client`` is a
partition id or ``"server"``. It is rewritten atomically after every round, so an
interrupted run keeps every finished round.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedkd.config import RunConfig
from fedkd.data.external import short_name

if TYPE_CHECKING:  # pandas is imported where a table is made: client processes write none
    import pandas as pd

SERVER = "server"

# The files of a run's folder (README, "Results folder"): every reader and writer names them from here.
CONFIG_FILE = "config.json"  # the resolved run config, split sizes, parameters of each model
METRICS_FILE = "metrics.csv"  # tidy rows: round, client, metric, value (+ metrics.parquet)
PARQUET_FILE = "metrics.parquet"
CLIENTS_FILE = "clients.csv"  # per client: model, private examples, label histogram (run.py)
SUMMARY_FILE = "summary.json"  # round 0 vs final accuracy, bytes, times, memory, privacy spent
ACCURACY_PLOT = "accuracy.png"
EVENTS_FILE = "events.log"  # each client that failed, sent nothing in time or was rejected, and why
TEACHER_FILE = "teacher.npz"  # ids and logits of the final teacher signal (soft-label strategies)
SERVER_MODEL_FILE = "server_model.pt"  # the final server model's weights (strategies with one)
CHECKPOINT_FILE = "checkpoint.pkl"  # the last complete round, while the run is going
CLIENT_STATE_DIR = "client_state"  # each client's state (for --resume), then its final student
# Measurements of the machine, not of the federation: the only values allowed to
# differ between runs with the same seed.
MACHINE_METRICS = ("wall_time_s", "memory_mb")


class ResultsError(RuntimeError):
    """A results file or folder that cannot be written; what was written before is intact."""


def new_run_dir(config: RunConfig) -> Path:
    """``<out>/<run-id>/``, created; the run id names the time, strategy, data and seed."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{config.strategy}-{short_name(config.dataset)}-c{config.clients}-s{config.seed}"
    return new_folder(Path(config.out) / name, "results folder")


def new_folder(path: Path, what: str) -> Path:
    """``path`` created, or ``path-2``, ``path-3``, ... where that is taken (runs or
    sweeps started in the same second, in parallel too: creating is the test); a
    ResultsError naming ``--out`` where nothing can be created there."""
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            if candidate.exists():
                n += 1
                candidate = path.with_name(f"{path.name}-{n}")
                continue
            reason = "a file is in its path"  # where a parent folder is asked for
        except OSError as err:
            reason = err.strerror or str(err)
        raise ResultsError(f"cannot create {what} {candidate}: {reason}; choose a writable --out")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: never half a file. A
    failure (no permission, disk full) leaves the previous ``path`` as it was and
    raises ResultsError."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise ResultsError(f"cannot write {path}: {err.strerror or err}; the files written "
                           "before it are intact") from None


def append(path: Path, text: str) -> None:
    """Add ``text`` at the end of ``path``, or nothing: what a failed write (a full disk)
    left is cut off again, and ResultsError says so."""
    size = None
    try:
        with open(path, "a") as f:
            size = f.tell()
            f.write(text)
    except OSError as err:
        if size is not None:
            os.truncate(path, size)
        raise ResultsError(f"cannot write {path}: {err.strerror or err}; what it held before is intact") from None


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class MetricsTable:
    """Collects tidy metric rows and keeps ``metrics.csv`` (and ``.parquet``) up to date."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.rows: list[tuple[int, str, str, float]] = []
        self._written: int | None = None  # leading rows metrics.csv holds as they are; None: rewrite it

    def add(self, round_: int, client: int | str, metric: str, value: float) -> None:
        self.rows.append((round_, str(client), metric, float(value)))

    def _find(self, round_: int, client: int | str, metric: str) -> int | None:
        key = (round_, str(client), metric)
        return next((i for i in range(len(self.rows) - 1, -1, -1) if self.rows[i][:3] == key), None)

    def get(self, round_: int, client: int | str, metric: str) -> float:
        i = self._find(round_, client, metric)
        return self.rows[i][3] if i is not None else 0.0

    def increment(self, round_: int, client: int | str, metric: str, by: float) -> None:
        """Add ``by`` to a row written earlier (e.g. a round's late replies), or write it."""
        i = self._find(round_, client, metric)
        if i is None:
            self.add(round_, client, metric, by)
        else:
            self.rows[i] = (*self.rows[i][:3], self.rows[i][3] + float(by))
            if self._written is not None and i < self._written:
                self._written = None

    def frame(self, first: int = 0) -> pd.DataFrame:
        """The rows from ``first`` on."""
        import pandas as pd

        return pd.DataFrame(self.rows[first:], columns=["round", "client", "metric", "value"])

    def flush(self) -> None:
        """Bring metrics.csv up to date: append the rows added since the last flush, or
        rewrite it whole where none was written yet (also a resumed run's) or a written row
        changed. A rewrite each round cost more each round (0.16 s at 77,000 rows)."""
        path, written = self.run_dir / METRICS_FILE, self._written
        self._written = None  # until this flush has succeeded
        if written is None:
            write_atomic(path, self.frame().to_csv(index=False))
        else:
            append(path, self.frame(written).to_csv(index=False, header=False))
        self._written = len(self.rows)

    def server(self) -> pd.DataFrame:
        return server_rows(self.frame())


def server_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Server rows of a metrics table as a wide table: one row per round, one column per metric."""
    return df[df.client == SERVER].pivot(index="round", columns="metric", values="value")


def read_run_config(run_dir: Path) -> RunConfig:
    """The run configuration a results folder was written with (its config.json)."""
    return RunConfig.from_run_config(json.loads((run_dir / CONFIG_FILE).read_text())["run_config"])


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A finished run's summary.json."""
    return json.loads((run_dir / SUMMARY_FILE).read_text())


def read_rows(run_dir: Path, count: int) -> list[tuple[int, str, str, float]]:
    """The first ``count`` rows of a results folder's metrics.csv as ``MetricsTable``
    holds them: what ``flush`` writes reads back exactly (floats in their shortest
    round-trip form, NaN as an empty field). A ResultsError where the file holds fewer."""
    path = run_dir / METRICS_FILE
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            next(reader, None)  # the header
            rows = [(int(r), client, metric, float(value) if value else math.nan)
                    for r, client, metric, value in itertools.islice(reader, count)]
    except OSError as err:
        raise ResultsError(f"cannot read {path}: {err.strerror or err}") from None
    if len(rows) < count:
        raise ResultsError(f"{path} holds {len(rows)} rows, the run's checkpoint counts {count}: "
                           "the file was changed after the run stopped")
    return rows


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """A results folder's tidy metrics.csv (``client``: partition ids and "server", as text)."""
    import pandas as pd

    return pd.read_csv(run_dir / METRICS_FILE, dtype={"client": str})


def read_server_metrics(run_dir: Path) -> pd.DataFrame:
    """``server_rows`` of a results folder's metrics.csv."""
    return server_rows(read_metrics(run_dir))


def write_parquet(run_dir: Path, frame: pd.DataFrame) -> None:
    """Also write ``metrics.parquet`` where pyarrow is installed (a dependency, but optional here)."""
    try:
        frame.to_parquet(run_dir / PARQUET_FILE, index=False)
    except ImportError:
        pass
