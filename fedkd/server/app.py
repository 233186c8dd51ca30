"""The fedkd ServerApp: runs a strategy for the configured rounds and writes the results.

``app`` reads Flower's run config (``flwr run``, deployment); ``make_server_app``
closes over a config for ``run_simulation``, which hands the ServerApp an empty one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedkd import rules
from fedkd.client.cohort import node_count
from fedkd.config import ConfigError, RunConfig
from fedkd.data.datasets import load_splits
from fedkd.data.external import short_name
from fedkd.faults.plan import FaultPlan, UnreliableGrid
from fedkd.learning.models import build_model, count_parameters
from fedkd.privacy.smooth_sensitivity import sanitized_fields
from fedkd.results import checkpoint
from fedkd.results.plots import plot_accuracy
from fedkd.results.store import (
    ACCURACY_PLOT,
    CONFIG_FILE,
    EVENTS_FILE,
    SERVER_MODEL_FILE,
    SUMMARY_FILE,
    TEACHER_FILE,
    MetricsTable,
    new_run_dir,
    write_json,
    write_parquet,
)
from fedkd.server import loop
from fedkd.server.cohort_grid import CohortGrid
from fedkd.server.loop import run_rounds, wait_for_nodes
from fedkd.server.progress import HEADER, format_round
from fedkd.strategies import STRATEGIES
from fedkd.training.compute import setup_process

RoundCallback = Callable[[int, dict[str, float]], None]
FLOWER_LOG = logging.getLogger("flwr")  # Flower's own logger: under `flwr run` its lines reach `flwr log`


@contextmanager
def events_log(path: Path):
    """The round loop's reports (faults with partition ids, resume) go to ``path``."""
    logger = logging.getLogger(loop.__name__)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def model_parameters(config: RunConfig, input_shape: tuple[int, ...], num_classes: int) -> dict[str, int]:
    return {name: count_parameters(build_model(name, input_shape, num_classes, 0))
            for name in config.model_names}


def summarize(table: MetricsTable, config: RunConfig, wall_time_s: float,
              params: dict[str, int]) -> dict[str, Any]:
    server = table.server()
    rounds = server.index[server.index > 0]
    final = server.loc[server.index.max()]
    df = table.frame()
    acc = df[df.metric == "test_acc"].groupby("client")["value"].last()  # each client's latest
    by_model = acc.groupby([config.model_for(int(p)) for p in acc.index]).mean()
    if by_model.empty:  # no client evaluates (centralized): the server's model of each architecture
        by_model = pd.Series({m: final[f"server_acc_{m}"] for m in config.model_names
                              if f"server_acc_{m}" in final})
    return {
        "acc_mean_final_by_model": {m: float(v) for m, v in by_model.items()},
        "strategy": config.strategy, "dataset": config.dataset, "clients": config.clients,
        "rounds": config.rounds, "seed": config.seed, "model_parameters": params,
        "acc_mean_round0": float(server.loc[0, "acc_mean"]),
        "acc_mean_final": float(final["acc_mean"]),
        "acc_p10_final": float(final["acc_p10"]),
        "acc_mean_last3": float(server.loc[rounds[-3:], "acc_mean"].mean()),
        "teacher_acc_final": float(final.get("teacher_acc", np.nan)),
        "server_acc_final": float(final.get("server_acc", np.nan)),
        "bytes_up_total": int(server["bytes_up"].sum()),
        "bytes_down_total": int(server["bytes_down"].sum()),
        "memory_mb_max": float(server["memory_mb"].max()),
        "memory_mb_final": float(final["memory_mb"]),
        "round0_time_s": float(server.loc[0, "wall_time_s"]),
        "round_time_s_median": float(server.loc[rounds, "wall_time_s"].median()),
        "round_time_s": [float(v) for v in server["wall_time_s"]],
        "server_wall_time_s": wall_time_s,
        **{f"{key}_total": int(server[key].sum()) for key in ("missing", "failed", "rejected", "late", "skipped")},
    }


def run_server(grid: Grid, config: RunConfig, run_dir: Path, on_round: RoundCallback | None = None,
               started: float | None = None, resume: bool = False,
               flower_run_id: int | None = None) -> dict[str, Any]:
    """Run every round, write config.json, metrics, summary.json, accuracy.png and, where
    the teacher signal is soft labels on public ids, teacher.npz (server_model.pt where
    the strategy has a server model). ``started`` (a
    ``time.perf_counter()`` reading) dates the engine's start, reported as start-up.

    A checkpoint is written after every round (clients keep their own state, see
    ``fedkd.results.checkpoint``); ``resume`` continues the run in ``run_dir`` after its last
    complete round. A finished run removes the checkpoint; clients keep their final state.
    ``flower_run_id`` (deployment) goes into config.json, so the run's folder can be found."""
    rules.check(config)  # every entry point passes here: scripts, `flwr run`, --resume
    setup_process(config.threads)  # server-side training: the run's thread count, as the clients'
    rules.check_shards(config)
    splits = load_splits(config)
    params = model_parameters(config, splits.input_shape, splits.num_classes)
    write_json(run_dir / CONFIG_FILE, {
        "run_config": config.to_run_config(), "run_dir": str(run_dir),
        "input_shape": list(splits.input_shape), "num_classes": splits.num_classes,
        "model_parameters": params, "private_pool": len(splits.private_y),
        "public_size": len(splits.public_y), "test_size": len(splits.test_y),
        **({"flower_run_id": flower_run_id} if flower_run_id is not None else {}),
    })
    restart = checkpoint.load(run_dir, splits) if resume else None
    strategy = restart.strategy if restart is not None else STRATEGIES[config.strategy](config, splits)
    if config.cohort_size > 1:  # the strategy talks to clients, the grid to cohort nodes
        grid = CohortGrid(grid, config)
    plan = FaultPlan(config)
    if plan.on_link:  # drops and stragglers happen between the server and the clients
        grid = UnreliableGrid(grid, plan, strategy.node_map.partition_of)
    table = MetricsTable(run_dir)
    start = time.perf_counter()
    if on_round is None:  # under `flwr run`: the round lines go to Flower's log
        FLOWER_LOG.info(HEADER)
        on_round = lambda rnd, m: FLOWER_LOG.info(format_round(rnd, config.rounds, m))
    wait_for_nodes(grid, node_count(config))
    startup_s = time.perf_counter() - started if started is not None else float("nan")
    with events_log(run_dir / EVENTS_FILE):
        state = run_rounds(grid, config, strategy, table, on_round, restart,
                           lambda point: checkpoint.save(run_dir, point, splits))
    teacher = strategy.soft_label_teacher(state)
    if teacher is not None:  # the final teacher signal, for lineages
        np.savez(run_dir / TEACHER_FILE, ids=teacher[0], logits=teacher[1])
    if getattr(strategy, "server_model", None) is not None:  # the released server model, for attacks
        torch.save({k: v.cpu() for k, v in strategy.server_model.model.state_dict().items()},
                   run_dir / SERVER_MODEL_FILE)
    spent = strategy.accountant.spent()
    summary = {**summarize(table, config, time.perf_counter() - start, params), "engine_startup_s": startup_s,
               "dp": config.dp, "epsilon": spent.epsilon, "dp_delta": spent.delta, "dp_unit": spent.unit,
               "dp_noise": strategy.dp_noise, "rounds_completed": int(table.server().index.max()),
               "stopped_early": strategy.stop_reason, **sanitized_fields(strategy.accountant.sanitized())}
    write_json(run_dir / SUMMARY_FILE, summary)
    write_parquet(run_dir, table.frame())
    plot_accuracy(table.server(), run_dir / ACCURACY_PLOT,
                  f"{config.strategy} on {short_name(config.dataset)}: {config.clients} clients, "
                  f"{config.partition} partition, models {config.models}")
    checkpoint.finish(run_dir)
    return summary


SIMULATION_PULL_INTERVAL_S = 0.01  # polls of the in-memory link state are cheap (fedkd.runtime.flower_patches)


def make_server_app(config: RunConfig, run_dir: Path, on_round: RoundCallback | None = None,
                    started: float | None = None, resume: bool = False,
                    engine_stopped: threading.Event | None = None) -> ServerApp:
    """The ServerApp of a simulation; ``engine_stopped``, once set, ends its waiting for
    replies (Flower's engine stops on Ctrl-C or a backend failure without telling its
    ServerApp thread, which would otherwise wait for replies that never come)."""
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        grid.engine_stopped = engine_stopped
        if hasattr(grid, "pull_interval"):  # Flower's in-memory grid polls every 0.1 s: a round
            grid.pull_interval = SIMULATION_PULL_INTERVAL_S  # waited 0.05 s a phase for its last reply
        run_server(grid, config, run_dir, on_round, started, resume=resume)

    return server_app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run``: the run config comes from pyproject.toml and the CLI."""
    config = rules.load(context.run_config)
    if config.cohort_size > 1:  # SuperNodes are devices here (or flwr run's one node per client)
        raise ConfigError("cohort-size", config.cohort_size, "cohorts run through simulations/run.py; under "
                          "`flwr run` every SuperNode is one client (cohort-size 1)")
    run_server(grid, config, new_run_dir(config), flower_run_id=context.run_id)
