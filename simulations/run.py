"""Run one federated-distillation simulation on Flower + Ray and write its results folder.

    python simulations/run.py --clients 100

Every flag is one run-config key (see ``pyproject.toml``'s ``[tool.flwr.app.config]``).
Bad values stop the run before any work with a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fedkd.config import ConfigError, RunConfig
from fedkd.datasets import DATASETS, check_sizes, load_splits
from fedkd.partition import label_histograms, partition_indices
from fedkd.results import new_run_dir, write_atomic
from fedkd.server.progress import RoundProgress


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py", description=__doc__.split("\n")[0])
    for f in dataclasses.fields(RunConfig):
        key = RunConfig.key_of(f.name)
        kind = type(f.default)
        parser.add_argument(f"--{key}", dest=f.name, metavar=kind.__name__.upper(), type=str,
                            help=f"{RunConfig.help_of(key)} (default: {f.default})")
    parser.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    parser.add_argument("--quiet", action="store_true", help="no per-round lines or progress bar")
    parser.add_argument("--ray-address", metavar="HOST:PORT",
                        help="run the clients on an existing Ray cluster (started with `ray start --head`)")
    return parser


def resolve(args: argparse.Namespace) -> RunConfig:
    """The validated config, or ConfigError naming the flag; reads no data."""
    given = {RunConfig.key_of(f.name): getattr(args, f.name)
             for f in dataclasses.fields(RunConfig) if getattr(args, f.name) is not None}
    config = RunConfig.from_run_config({**RunConfig().to_run_config(), **given})
    check_sizes(config)
    return config


def write_clients(config: RunConfig, run_dir: Path) -> None:
    """clients.csv: partition size, model and label histogram of every client."""
    hist = label_histograms(config)
    frame = pd.DataFrame(hist, columns=[f"label_{k}" for k in range(hist.shape[1])])
    frame.insert(0, "num_examples", hist.sum(1))
    frame.insert(0, "model", [config.model_for(p) for p in range(config.clients)])
    frame.insert(0, "partition_id", np.arange(config.clients))
    write_atomic(run_dir / "clients.csv", frame.to_csv(index=False))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = resolve(args)
    except ConfigError as err:
        parser.error(f"--{err.key}={err.value}: {err.allowed}")
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    say = (lambda *a, **k: None) if args.quiet else print

    say(f"fedkd: {config.strategy} on {config.dataset}, {config.clients} clients "
          f"({config.partition} partition), models {config.models}, {config.rounds} rounds, "
          f"fraction {config.fraction}, seed {config.seed}")
    start = time.perf_counter()
    say(f"preparing data ({DATASETS[config.dataset].description}) ...", flush=True)
    load_splits(config.dataset, config.seed, config.public_size)
    try:
        sizes = [len(idx) for idx in partition_indices(config)]
    except ValueError as err:  # a partitioner that cannot satisfy the request
        flag = {"dirichlet": f"alpha={config.alpha}",
                "pathological": f"classes-per-client={config.classes_per_client}"}.get(config.partition, "")
        parser.error(f"--partition={config.partition} --{flag} with --clients={config.clients}: "
                     f"cannot be split so ({err}); try fewer clients or a milder skew")
    say(f"  private shards: {min(sizes)}..{max(sizes)} samples, "
          f"{time.perf_counter() - start:.1f} s", flush=True)

    run_dir = new_run_dir(config)
    write_clients(config, run_dir)

    from fedkd.simulation import simulate

    with RoundProgress(config.rounds, quiet=args.quiet) as progress:
        simulate(config, run_dir, on_round=progress, verbose=args.verbose, ray_address=args.ray_address)
    total = time.perf_counter() - start
    s = json.loads((run_dir / "summary.json").read_text())
    say(f"accuracy (mean over clients): round 0 {s['acc_mean_round0']:.3f} -> final "
          f"{s['acc_mean_final']:.3f} (p10 {s['acc_p10_final']:.3f}); teacher {s['teacher_acc_final']:.3f}")
    say("final accuracy by model: " + ", ".join(
        f"{m} {a:.3f} ({s['model_parameters'][m]:,} params)" for m, a in s["acc_mean_final_by_model"].items()))
    say(f"wall time {total:.1f} s (median round {s['round_time_s_median']:.2f} s)")
    print(f"results: {run_dir}/ (config.json, metrics.csv, clients.csv, summary.json, accuracy.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
