"""Simulations one after another, one row of figures each (the comparison scripts)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fedkd.config import RunConfig
from fedkd.results.store import read_server_metrics, read_summary
from fedkd.runtime.simulation import simulate
from fedkd.server.progress import RoundProgress


def run_one(config: RunConfig, run_dir: Path, label: str) -> dict:
    """Simulate ``config`` into ``run_dir`` (a progress bar named ``label``) and return
    its figures, read from its summary and metrics."""
    run_dir.mkdir(parents=True)
    start = time.perf_counter()
    with RoundProgress(config.rounds, lines=False, label=label) as progress:
        simulate(config, run_dir, on_round=progress)
    return {**run_figures(run_dir), "wall_s": time.perf_counter() - start}


def run_figures(run_dir: Path) -> dict:
    """Figures of a finished run, read from its summary and metrics (its wall time is the
    caller's to measure)."""
    s = read_summary(run_dir)
    client_rounds = read_server_metrics(run_dir)["replied"].sum()
    by_model = {f"acc_{m}": a for m, a in s["acc_mean_final_by_model"].items()}
    return {
        **by_model,
        "acc_final": s["acc_mean_final"], "acc_last3": s["acc_mean_last3"], "acc_p10": s["acc_p10_final"],
        "server_acc": s["server_acc_final"], "teacher_acc": s["teacher_acc_final"],
        "up_mb": s["bytes_up_total"] / 1e6, "down_mb": s["bytes_down_total"] / 1e6,
        "up_kb_per_client_round": s["bytes_up_total"] / 1e3 / client_rounds if client_rounds else np.nan,
    }
