"""Run one federated-distillation simulation on Flower + Ray and write its results folder.

    python simulations/run.py --clients 100
    python simulations/run.py --resume results/<run-id>    # after a crash or kill

Every flag is one run-config key (see ``pyproject.toml``'s ``[tool.flwr.app.config]``).
Bad values stop the run before any work with a one-line error and exit code 2. Each
round is checkpointed; ``--resume`` continues an interrupted run from its last
complete round with the configuration it was started with.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fedkd import rules
from fedkd.cli.flags import build_parser, prepare_data, resolve, rounds_text
from fedkd.cli.stop import SAID, exit_with, stop_code
from fedkd.client.cohort import cohort_span, node_count
from fedkd.config import ConfigError, RunConfig
from fedkd.data.datasets import dataset_spec, load_splits
from fedkd.data.partition import label_histograms
from fedkd.privacy.mechanisms import MECHANISMS
from fedkd.results import checkpoint
from fedkd.results.checkpoint import CheckpointError
from fedkd.results.memory import SAMPLE_INTERVAL_S, PeakMemory
from fedkd.results.store import (
    CHECKPOINT_FILE,
    CLIENTS_FILE,
    CONFIG_FILE,
    SUMMARY_FILE,
    ResultsError,
    new_run_dir,
    read_rows,
    read_run_config,
    read_server_metrics,
    read_summary,
    write_atomic,
    write_json,
)
from fedkd.server.progress import RoundProgress, accuracy_lines


def write_clients(config: RunConfig, run_dir: Path) -> None:
    """clients.csv: partition size, model and label histogram of every client."""
    hist = label_histograms(config)
    frame = pd.DataFrame(hist, columns=[f"label_{k}" for k in range(hist.shape[1])])
    frame.insert(0, "num_examples", hist.sum(1))
    frame.insert(0, "model", [config.model_for(p) for p in range(config.clients)])
    frame.insert(0, "partition_id", np.arange(config.clients))
    write_atomic(run_dir / CLIENTS_FILE, frame.to_csv(index=False))


def resumed_config(parser, args) -> RunConfig:
    """The configuration of the run in ``args.resume``, or exit 2 saying why it cannot resume."""
    given = [f"--{RunConfig.key_of(k)}" for k, v in vars(args).items() if k in RunConfig.__dataclass_fields__
             and v is not None]
    if given:
        parser.error(f"--resume continues a run with its own configuration; drop {', '.join(given)}")
    run_dir = args.resume
    if not (run_dir / CONFIG_FILE).exists():
        parser.error(f"--resume={run_dir}: not a results folder of run.py (no config.json)")
    if (run_dir / SUMMARY_FILE).exists():
        parser.error(f"--resume={run_dir}: the run finished (summary.json is there); nothing to resume")
    if not (run_dir / CHECKPOINT_FILE).exists():
        parser.error(f"--resume={run_dir}: no checkpoint; the run stopped before its first round completed")
    try:
        config = rules.complete(read_run_config(run_dir))
    except ConfigError as err:
        parser.error(f"--resume={run_dir}: its {CONFIG_FILE} has --{err.key}={err.value}: {err.allowed}")
    return config


def check_resumable(parser, config: RunConfig, run_dir: Path) -> int:
    """Exit 2, before the engine starts, where the checkpoint cannot be read or
    metrics.csv no longer holds the rows it counts (the ServerApp reads both again);
    return the round the checkpoint holds."""
    try:
        saved = checkpoint.load(run_dir, load_splits(config))
        read_rows(run_dir, saved.rows)
    except (ResultsError, CheckpointError) as err:
        parser.error(f"--resume={run_dir}: {err}")
    return saved.round


def stopped(run_dir: Path, why: str, code: int) -> int:
    """Say why the run stopped and how to continue it from its last checkpoint; return ``code``."""
    print(f"run.py: {why}", file=sys.stderr)
    if (run_dir / CHECKPOINT_FILE).exists():
        print(f"rounds finished so far are in {run_dir}/ (metrics.csv); continue with "
              f"python simulations/run.py --resume {run_dir}", file=sys.stderr)
    else:
        print(f"no round finished in {run_dir}/: nothing to resume", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("run.py", __doc__.split("\n")[0], cohort_size=0)
    parser.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    parser.add_argument("--quiet", action="store_true", help="no per-round lines or progress bar")
    parser.add_argument("--ray-address", metavar="HOST:PORT",
                        help="run the clients on an existing Ray cluster (started with `ray start --head`; "
                             "default: $RAY_ADDRESS where set, as in a job `ray job submit` started)")
    parser.add_argument("--cpus-per-client", type=float, default=1.0, metavar="FLOAT",
                        help="CPUs Ray reserves for each client actor (default: 1; actors = CPUs / this)")
    parser.add_argument("--gpus-per-client", type=float, default=0.0, metavar="FLOAT",
                        help="share of a GPU Ray reserves for each client actor (default: 0; e.g. 0.25: four "
                             "actors a GPU); with --device cuda or auto")
    parser.add_argument("--resume", metavar="RUN_DIR", type=Path,
                        help="continue the interrupted run in RUN_DIR from its last complete round "
                             "(its own configuration; run-config flags are not allowed with it)")
    args = parser.parse_args(argv)
    config = resumed_config(parser, args) if args.resume else resolve(parser, args)
    from fedkd.runtime.simulation import EngineFailed, check_ray_address, check_resources, simulate

    ray_address = args.ray_address or os.environ.get("RAY_ADDRESS") or None  # Ray's own default
    try:
        check_resources(config.device, args.cpus_per_client, args.gpus_per_client, ray_address)
        if ray_address:
            check_ray_address(ray_address)
    except ConfigError as err:
        if err.key == "ray-address" and not args.ray_address:
            parser.error(f"RAY_ADDRESS={err.value} in the environment: {err.allowed} (unset RAY_ADDRESS)")
        parser.error(f"--{err.key}={err.value}: {err.allowed}")
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    say = (lambda *a, **k: None) if args.quiet else print

    spec = dataset_spec(config)
    fewest, most = cohort_span(config)  # (1, 1) with a node per client
    span = f"{most}" if fewest == most else f"{fewest} to {most}"
    public = f"public {config.public_size}" + (f" from {config.public_dataset}" if config.public_dataset else "")
    say(f"fedkd: {config.strategy} on {config.dataset} ({public}, {config.public_subset} per round, "
        f"test {spec.test}), {config.clients} clients ({config.partition} partition), models {config.models}"
        + (f" (augment {config.augment})" if config.augment != "none" else "") + ", "
        f"{rounds_text(config.rounds)}, fraction {config.fraction}, seed {config.seed}"
        + (f", {span} clients per simulated node" if most > 1 else "")
        + (f", clients on the Ray cluster at {ray_address}" if ray_address else ""))
    start = time.perf_counter()
    say(f"preparing data ({spec.description}) ...", flush=True)
    sizes = prepare_data(parser, config)
    say(f"  private shards: {min(sizes)}..{max(sizes)} samples, "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    first = check_resumable(parser, config, args.resume) + 1 if args.resume else 0  # the first round run here

    try:
        run_dir = args.resume or new_run_dir(config)
        write_clients(config, run_dir)
    except ResultsError as err:
        parser.error(str(err))

    with RoundProgress(config.rounds, quiet=args.quiet) as progress, PeakMemory() as memory:
        try:
            simulate(config, run_dir, on_round=progress, verbose=args.verbose, ray_address=ray_address,
                     cpus_per_client=args.cpus_per_client, resume=args.resume is not None,
                     gpus_per_client=args.gpus_per_client)
        except (ResultsError, CheckpointError) as err:  # Flower re-raises what stopped the ServerApp
            return stopped(run_dir, f"error: the run stopped: {err}", 1)
        except EngineFailed as err:
            return stopped(run_dir, f"error: the simulation engine stopped ({err}); Flower's log above has "
                                    "the traceback", 1)
        except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C, or SIGTERM (a batch system's time limit)
            code = stop_code(err)
            if code is None:
                raise
            return stopped(run_dir, SAID[code], code)
    total = time.perf_counter() - start
    s = read_summary(run_dir)
    s["memory_mb_peak"] = memory.peak
    write_json(run_dir / SUMMARY_FILE, s)
    for line in accuracy_lines(s):
        say(line)
    mechanism = MECHANISMS[config.dp]
    if mechanism.accounting:
        noise = "noise calibrated per client" if mechanism.private_training and not s["dp_noise"] else \
            f"noise σ = {s['dp_noise']:.3g}"
        say(f"privacy ({s['dp']}, {noise}): ε = {s['epsilon']:.3g} at "
            f"δ = {s['dp_delta']:g}, {s['dp_unit']}")
    if "epsilon_sanitized" in s:
        say(f"released ε (smooth sensitivity, order {s['sanitized_order']:g}): {s['epsilon_sanitized']:.3g} "
            f"(mean {s['epsilon_sanitized_expected']:.3g}, standard deviation {s['epsilon_sanitized_spread']:.2g})")
    if s["stopped_early"]:
        say(f"stopped after round {s['rounds_completed']}: {s['stopped_early']}")
    say(f"peak memory {memory.peak:,.0f} MB (PSS of this process and all it started, Ray included, "
        f"sampled every {SAMPLE_INTERVAL_S:.0f} s)")
    nodes = f"{node_count(config)} virtual nodes" + (
        f" of {span} clients{' each' if fewest == most else ''}" if most > 1 else "")
    if first == 0:
        first_s, first_work = s["round0_time_s"], f"and {config.init_epochs} local epochs"
    else:  # nan where the run stopped (a spent privacy budget) before it
        first_s = read_server_metrics(run_dir)["wall_time_s"].get(first, float("nan"))
        first_work = "and their saved state; resumed"
    say(f"wall time {total:.1f} s: engine start-up {s['engine_startup_s']:.1f} s (Ray and {nodes}), round {first} "
        f"{first_s:.1f} s (the client actors' first import and data load, {first_work}), median later round "
        f"{s['round_time_s_median']:.2f} s")
    print(f"results: {run_dir}/ (config.json, metrics.csv, clients.csv, summary.json, accuracy.png)")
    return 0


if __name__ == "__main__":
    exit_with(main)
