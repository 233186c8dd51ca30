"""Engine overhead: one workload on Flower + Ray and on the compute floor, side by side.

    python simulations/bench.py --clients 100 --rounds 5

(a) fedkd as users run it: Flower's simulation engine on Ray, one actor per core.
(b) the compute floor: the same round loop, strategy and ClientApp, the messages
    handed to a plain ``multiprocessing`` pool with as many processes as cores (no
    Flower engine, no Ray).
(c) for reference, FedAvg (Flower's own aggregation) on Flower + Ray with the same
    clients, rounds and data, every client on the workload's first model.
Runs (a) and (b) use the same seed and must give the same metrics; the script checks it.
It prints, per mode, the start-up + round-0 time, the median round time over rounds
after the first, client-rounds per second, and the peak memory (PSS) of the process
and all its descendants; then the ratio a/b. Results also go to a CSV.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from fedkd.cli.flags import build_parser, prepare_data, resolve
from fedkd.results.memory import PeakMemory
from fedkd.results.store import MACHINE_METRICS, read_metrics, read_server_metrics


def _measure(mode: str, run, config, run_dir: Path) -> dict:
    start = time.perf_counter()
    with PeakMemory() as memory:
        run(run_dir)
    total = time.perf_counter() - start
    server = read_server_metrics(run_dir)
    later = server.loc[server.index >= 2]  # rounds after the first exchange round
    median = float(later["wall_time_s"].median())
    return {
        "mode": mode, "clients": config.clients, "rounds": config.rounds,
        "startup_and_round0_s": total - float(server.loc[server.index >= 1, "wall_time_s"].sum()),
        "median_round_s": median,
        "client_rounds_per_s": float(later["sampled"].median()) / median,
        "peak_pss_mb": memory.peak,
        "total_s": total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("bench.py", __doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes of the compute floor (default: one per core, as Ray's actors)")
    parser.add_argument("--csv", default="results/bench.csv", help="where to write the table")
    args = parser.parse_args(argv)
    config = resolve(parser, args, rounds=5)
    if config.rounds < 2:
        parser.error(f"--rounds={config.rounds}: the benchmark needs >= 2 (round 1 is excluded)")
    if args.workers < 1:
        parser.error(f"--workers={args.workers}: must be >= 1")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    prepare_data(parser, config)

    from fedkd.results.store import CLIENT_STATE_DIR
    from fedkd.runtime.pool_grid import PoolGrid
    from fedkd.runtime.simulation import simulate
    from fedkd.server.app import run_server

    def flower(run_dir: Path) -> None:
        simulate(config, run_dir, on_round=lambda r, m: print(f"  flower round {r}: {m['wall_time_s']:.2f} s",
                                                              flush=True))

    fedavg_config = config.replace(strategy="fedavg", models=config.model_names[0])

    def fedavg(run_dir: Path) -> None:
        simulate(fedavg_config, run_dir, on_round=lambda r, m: print(
            f"  fedavg round {r}: {m['wall_time_s']:.2f} s", flush=True))

    def floor(run_dir: Path) -> None:
        # the clients keep their state on disk as in (a), so both do the same work
        grid = PoolGrid(config.clients, args.workers, state_dir=run_dir / CLIENT_STATE_DIR)
        try:
            run_server(grid, config, run_dir, on_round=lambda r, m: print(
                f"  floor  round {r}: {m['wall_time_s']:.2f} s", flush=True))
        finally:
            grid.close()

    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        modes = (("fedkd on Flower + Ray", flower), ("compute floor (multiprocessing)", floor),
                 (f"FedAvg on Flower + Ray ({fedavg_config.models})", fedavg))
        for mode, run in modes:
            print(f"{mode} ...", flush=True)
            run_dir = Path(tmp) / mode.split()[0]
            run_dir.mkdir()
            rows.append(_measure(mode, run, config, run_dir))
        a, b = (read_metrics(Path(tmp) / d) for d in ("fedkd", "compute"))
        same = a[~a.metric.isin(MACHINE_METRICS)].equals(b[~b.metric.isin(MACHINE_METRICS)])

    table = pd.DataFrame(rows)
    ratio = table.loc[0, "median_round_s"] / table.loc[1, "median_round_s"]
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    table.assign(overhead_ratio_a_over_b=ratio, same_metrics=same).to_csv(args.csv, index=False)
    with pd.option_context("display.width", 160, "display.precision", 2):
        print(table.drop(columns=["clients", "rounds"]).to_string(index=False))
    print(f"engine overhead a/b (median round time): {ratio:.2f}; same metrics in both: {same}")
    print(f"workload: {config.clients} clients, {config.rounds} rounds, fraction {config.fraction}, "
          f"models {config.models}, {config.dataset}; {args.workers} floor workers, {os.cpu_count()} cores")
    print(f"table: {args.csv}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
