"""fedkd against the compute floor: one client workload, three ways, side by side.

    python simulations/bench.py --clients 100 --rounds 5 --cohort-size 25

(a) fedkd as users run it by default: Flower's simulation engine on Ray, one virtual
    node per client, one actor per core.
(b) fedkd with cohorts: the same, ``--cohort-size`` clients per virtual node, their
    digests stacked (``fedkd.client.cohort``).
(c) the floor: the same rounds' client work (digest, predictions, evaluation) as
    stacked bare PyTorch in one process per core: no Flower, no Ray, no messages
    (``fedkd.runtime.vector_floor``). It runs before (a) and after (b), and the ratios
    use the mean of its two median rounds: a machine whose speed drifts over minutes
    moves a single short floor run by up to 2x. With ``--pairs N``, (a) then (b) run N
    times between them; the ratios are the medians over the pairs.
Runs (a) and (b) use the same seed and differ only in float summation order: the
stacked kernels sum in another order, in round 0's local epochs too. Training carries
that on, further the more steps a round has: at 100 clients every metric of rounds 0
and 1 agreed to within 1e-6, while at 10 clients (ten times the shard, ten times the
steps) two of ten clients' round-0 losses differed by 7e-4 and 2e-3, and the teacher
spreads such a difference to every client from round 1 on. Round 0 is local training
only, each client on its own, so the script judges agreement there: the median
client's largest relative difference of its round-0 metrics must be below ``AGREE``.
Measured: float order 1e-8 to 1e-7 at 4 to 100 clients, 6.6e-4 at 3 (two of the three
clients chaotic); another workload moves every client: one local epoch fewer 0.041
(100 clients) and 0.056 (10), another seed 0.71, lr 0.0011 instead of 0.003: 0.33. It
reports the largest difference in round 0 and over all rounds beside it.
It prints, per mode, the start-up + round-0 time, the median round time over rounds after the first,
client-rounds per second and the peak memory (PSS) of the process and all its
descendants (sampled every 2 s, as ``run.py`` samples it: denser sampling slows the
run it measures); then the ratios b/a and b/c (the headline) and a/c, and the rate each
mode does a round's arithmetic at (GFLOP/s per process; ``vector_floor.round_gflop``),
which says how far all three are from the hardware. Results also go to a CSV.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fedkd.cli.flags import build_parser, prepare_data, resolve, rounds_text, writable_folder
from fedkd.cli.stop import exit_with
from fedkd.results.memory import PeakMemory
from fedkd.results.store import MACHINE_METRICS, SERVER, read_metrics, read_server_metrics, write_atomic

AGREE = 1e-2  # the median client's largest relative difference in round 0 that counts as agreeing


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


def _floor_row(config, workers: int, when: str) -> dict:
    from fedkd.runtime.vector_floor import floor_rounds, round_gflop

    start = time.perf_counter()
    with PeakMemory() as memory:
        rounds = floor_rounds(config, workers)
    median = float(pd.Series(rounds[1:]).median())
    return {"mode": f"floor: stacked PyTorch, {workers} processes, {when}", "clients": config.clients,
            "rounds": config.rounds, "startup_and_round0_s": float("nan"), "median_round_s": median,
            "client_rounds_per_s": config.clients_per_round / median, "peak_pss_mb": memory.peak,
            "total_s": time.perf_counter() - start, "round_gflop": round_gflop(config)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("bench.py", __doc__.split("\n")[0], rounds=5, cohort_size=25)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes of the floor, 1 to the cores (default: one per core, as Ray's actors)")
    parser.add_argument("--csv", default="results/bench.csv",
                        help="where to write the table (default: results/bench.csv)")
    parser.add_argument("--pairs", type=int, default=1,
                        help="(a) then (b), this many times; with more, the ratios are the medians "
                             "over the pairs, each pair's beside them (default: 1)")
    args = parser.parse_args(argv)
    config = resolve(parser, args)
    if config.rounds < 2:
        parser.error(f"--rounds={config.rounds}: the benchmark needs >= 2 (round 1 is excluded)")
    if config.cohort_size < 2:
        parser.error(f"--cohort-size={config.cohort_size}: the benchmark compares cohorts (>= 2) with one "
                     "client per node")
    cores = os.cpu_count() or 1
    if not 1 <= args.workers <= cores:
        parser.error(f"--workers={args.workers}: from 1 to this machine's {cores} cores (more floor processes "
                     "than cores share them: a slower floor, not a lower one)")
    if args.pairs < 1:
        parser.error(f"--pairs={args.pairs}: at least 1 (a pair is one run with one client per node, then one "
                     "with cohorts)")
    csv = Path(args.csv)
    if csv.is_dir():
        parser.error(f"--csv={args.csv}: a folder; give the table's file name")
    writable_folder(parser, "csv", csv.parent, args.csv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    load = os.getloadavg()[0]  # the machine before the benchmark (idle: near 0)
    prepare_data(parser, config)

    from fedkd.runtime.simulation import simulate

    alone = config.replace(cohort_size=1)

    def run_with(c, label):
        return lambda run_dir: simulate(c, run_dir, on_round=lambda r, m: print(
            f"  {label} round {r}: {m['wall_time_s']:.2f} s", flush=True))

    print(f"floor, {args.workers} processes ...", flush=True)
    rows = [_floor_row(config, args.workers, "before")]
    modes = (("fedkd, one client per node", run_with(alone, "K=1"), alone),
             (f"fedkd, cohorts of {config.cohort_size}", run_with(config, f"K={config.cohort_size}"), config))
    agreement, repeated = [], True  # (a) against (b) in each pair; each mode's runs the same in every pair
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(args.pairs):
            for i, (mode, run, c) in enumerate(modes):
                print(f"{mode}{f', pair {pair + 1}' if args.pairs > 1 else ''} ...", flush=True)
                run_dir = Path(tmp) / f"pair{pair}-mode{i}"
                run_dir.mkdir()
                rows.append({**_measure(mode, run, c, run_dir), "pair": pair + 1})
            runs = [read_metrics(Path(tmp) / f"pair{pair}-mode{i}") for i in range(2)]
            agreement.append(_agree(*runs))
            if pair == 0:
                firsts = runs
            else:
                repeated = repeated and all(_agree(f, m)[2] == 0 for f, m in zip(firsts, runs))
    judged, first, largest, accuracies = (max(values) for values in zip(*agreement))  # the worst pair's
    same = judged < AGREE
    print(f"floor, {args.workers} processes, again ...", flush=True)
    rows.append(_floor_row(config, args.workers, "after"))

    table = pd.DataFrame(rows).astype({"pair": "Int64"})  # none for the floor's rows
    t = table["median_round_s"]
    pairs = _pair_ratios(t)
    ratios = {key: float(np.median(values)) for key, values in pairs.items()}
    write_atomic(csv, table.assign(**ratios, median_client_round0_difference=judged, round0_largest_difference=first,
                                   largest_relative_difference=largest, accuracies_differing=accuracies)
                 .to_csv(index=False))
    shown = table.drop(columns=["clients", "rounds", "round_gflop"] + (["pair"] if args.pairs == 1 else []))
    with pd.option_context("display.width", 160, "display.precision", 2):
        print(shown.to_string(index=False))

    def ratio(key: str) -> str:
        each = "" if args.pairs == 1 else f" (pairs: {', '.join(f'{v:.2f}' for v in pairs[key])})"
        return f"{ratios[key]:.2f}{each}"

    print(f"median round{'' if args.pairs == 1 else ', the median over the pairs'}: cohorts / one client per node "
          f"{ratio('cohorts_over_one')}; cohorts / floor {ratio('cohorts_over_floor')}; one client per node / floor "
          f"{ratio('one_over_floor')} (floor: the mean of {t.iloc[0]:.2f} and {t.iloc[-1]:.2f} s)")
    gflop = table["round_gflop"].iloc[0]
    _, one, cohorts = (np.median(times) for times in _by_mode(t))
    print(f"arithmetic of a round's client work: about {gflop:.1f} GFLOP; per process: floor "
          f"{gflop / t.iloc[0] / args.workers:.1f} and {gflop / t.iloc[-1] / args.workers:.1f}, cohorts "
          f"{gflop / cohorts / args.workers:.1f}, one client per node {gflop / one / args.workers:.1f} GFLOP/s")
    print(f"(a) and (b){'' if args.pairs == 1 else ', the pair that differs most'}: the median client's largest "
          f"relative difference in round 0 {judged:.1e} (below {AGREE:g}: {same}); the largest in round 0 "
          f"{first:.1e}, in all rounds {largest:.1e}; {accuracies} client accuracies differ")
    if args.pairs > 1:
        print(f"each mode's {args.pairs} runs: the same metrics (same seed, same cohort size): {repeated}")
    print(f"workload: {config.clients} clients, {rounds_text(config.rounds)}, fraction {config.fraction}, "
          f"models {config.models}, {config.dataset}, eval-size {config.eval_size or 'all'}; {args.workers} floor "
          f"processes, {cores} cores, load {load:.2f} before the run")
    print(f"table: {args.csv}")
    return 0 if same and repeated else 1


def _pair_ratios(median_rounds: pd.Series) -> dict[str, np.ndarray]:
    """Each pair's ratios, from the median rounds in the table's order: the floor, then (a)
    and (b) of each pair, then the floor again (the floor: the mean of its two runs)."""
    floor, one, cohorts = _by_mode(median_rounds)
    floor = floor.mean()
    return {"cohorts_over_one": cohorts / one, "cohorts_over_floor": cohorts / floor, "one_over_floor": one / floor}


def _by_mode(median_rounds: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The floor's two median rounds, then (a)'s and (b)'s, one per pair, from the table's
    column in run order."""
    t = median_rounds.to_numpy()
    return t[[0, -1]], t[1:-1:2], t[2:-1:2]


def _agree(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, float, int]:
    """(the median client's largest relative difference of its round-0 metrics, the largest
    relative difference of a metric in round 0, the same over all rounds, client accuracies
    that differ), round 0's downlink aside (it is counted per node, and cohorts have fewer
    nodes); inf, inf, inf, -1 where the runs did not record the same metrics."""
    a, b = (m[~m.metric.isin(MACHINE_METRICS) & ~((m["round"] == 0) & (m.metric == "bytes_down"))]
            .sort_values(["round", "client", "metric"]).reset_index(drop=True) for m in (a, b))
    if len(a) != len(b) or not (a[["round", "client", "metric"]].values == b[["round", "client", "metric"]].values).all():
        return float("inf"), float("inf"), float("inf"), -1
    relative = ((a["value"] - b["value"]).abs() / a["value"].abs().clip(lower=1e-12)).fillna(0)
    first = a["round"] == 0
    clients = first & (a.client != SERVER)
    accuracy = a.metric == "test_acc"
    return (float(relative[clients].groupby(a.loc[clients, "client"]).max().median()), float(relative[first].max()),
            float(relative.max()), int((a.loc[accuracy, "value"] != b.loc[accuracy, "value"]).sum()))


if __name__ == "__main__":
    exit_with(main)
