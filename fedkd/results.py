"""One run's results folder: config.json, metrics.csv (tidy), clients.csv, summary.json, plots.

``metrics.csv`` has one row per (round, client, metric, value); ``client`` is a
partition id or ``"server"``. It is rewritten atomically after every round, so an
interrupted run keeps every finished round.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fedkd.config import RunConfig

SERVER = "server"
# Measurements of the machine, not of the federation: the only values allowed to
# differ between runs with the same seed.
MACHINE_METRICS = ("wall_time_s", "memory_mb")


def new_run_dir(config: RunConfig) -> Path:
    """``<out>/<run-id>/``, created; the run id names the time, strategy, data and seed."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.out) / f"{stamp}-{config.strategy}-{config.dataset}-c{config.clients}-s{config.seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class MetricsTable:
    """Collects tidy metric rows and keeps ``metrics.csv`` (and ``.parquet``) up to date."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.rows: list[tuple[int, str, str, float]] = []

    def add(self, round_: int, client: int | str, metric: str, value: float) -> None:
        self.rows.append((round_, str(client), metric, float(value)))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["round", "client", "metric", "value"])

    def flush(self) -> None:
        write_atomic(self.run_dir / "metrics.csv", self.frame().to_csv(index=False))

    def server(self) -> pd.DataFrame:
        return server_rows(self.frame())


def server_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Server rows of a metrics table as a wide table: one row per round, one column per metric."""
    return df[df.client == SERVER].pivot(index="round", columns="metric", values="value")


def read_server_metrics(run_dir: Path) -> pd.DataFrame:
    """``server_rows`` of a results folder's metrics.csv."""
    return server_rows(pd.read_csv(run_dir / "metrics.csv", dtype={"client": str}))


def write_parquet(run_dir: Path, frame: pd.DataFrame) -> None:
    """Also write ``metrics.parquet`` where pyarrow is installed (a dependency, but optional here)."""
    try:
        frame.to_parquet(run_dir / "metrics.parquet", index=False)
    except ImportError:
        pass
