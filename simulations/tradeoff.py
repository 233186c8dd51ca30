"""The privacy / accuracy / communication trade-off: one run per strategy and privacy budget ε.

    python simulations/tradeoff.py --clients 100 --eps 0.5,1,2,4,8,inf --strategies fedmd,dsfl
    python simulations/tradeoff.py --clients 100 --eps 1,8,inf --mechanisms central,gnmax,local
    python simulations/tradeoff.py --client-counts 100,300,1000 --eps 1,4,inf --strategies fedmd

For every strategy, mechanism and ε the scenario (every run-config flag applies) runs
with ``--dp <mechanism> --target-epsilon ε`` (the noise calibrated so the planned
rounds spend at most ε; ``inf`` = no DP, the non-private reference, once per
strategy), plus one local-only run (no sharing at all). ``confident-gnmax``'s cost
depends on the votes, so its noise is the run's ``--dp-noise`` (give ``--dp
confident-gnmax`` with it), ε is the budget at which the server stops answering, and
its row also gives the ε released through smooth sensitivity. After each run the
released client students are attacked (membership inference) and the server
estimates each client's label histogram from its uploads
(``fedkd/audit/inference_attacks.py``). Written to ``<out>/tradeoff-<time>/``:
``runs/``, ``tradeoff.csv`` (one row per run), ``tradeoff.md`` and
``tradeoff.png`` (final accuracy against ε, one line per strategy and mechanism, the non-private
and local-only references as horizontal lines). With ``--client-counts`` the whole
grid runs once per number of clients: ``tradeoff-c<N>.png`` for each and
``tradeoff-clients.png`` (final accuracy against the number of clients, one line per
strategy, mechanism and ε, local-only dotted). A strategy that cannot run a mechanism is listed
with the reason.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from fedkd import rules
from fedkd.audit.inference_attacks import THRESHOLD_ATTACKS, attack_run, attack_server_model
from fedkd.cli.flags import build_parser, comma_list, prepare_data, resolve, timed_folder
from fedkd.cli.stop import exit_with
from fedkd.cli.sweep import run_one
from fedkd.cli.tables import markdown_table
from fedkd.config import ConfigError, RunConfig
from fedkd.privacy.mechanisms import MECHANISMS
from fedkd.results.plots import plot_clients, plot_tradeoff
from fedkd.results.store import read_summary, write_atomic
from fedkd.strategies import STRATEGIES

LOCAL_ONLY = "local"
NOTHING_SHARED = {"online": 0, "teacher_size": 0, "compression": "none", "byzantine_frac": 0.0, "aggregator": "mean",
                  "dp": "none", "dp_noise": 0.0, "target_epsilon": math.inf}  # the local-only reference's options
COLUMNS = {"clients": "clients", "strategy": "strategy", "mechanism": "mechanism", "target": "target ε",
           "epsilon": "ε spent", "released": "ε released (smoothed)", "delta": "δ", "unit": "unit", "noise": "noise σ", "acc_final": "accuracy",
           "acc_p10": "p10", "teacher_acc": "teacher",
           "mia_auc": "MIA AUC", "mia_tpr1": "TPR@1%FPR", "mia_tpr": "TPR@0.1%FPR", "lira_auc": "LiRA AUC", "lira_tpr1": "LiRA TPR@1%",
           "lira_tpr": "LiRA TPR@0.1%", "server_mia_auc": "server model MIA AUC",
           "label_tv": "label TV", "label_set": "label set exact", "up_mb": "uplink MB", "wall_s": "wall s"}
FORMATS = {"target": "g", "epsilon": ".3g", "released": ".3g", "delta": "g", "noise": ".3g", "acc_final": ".3f", "acc_p10": ".3f",
           "teacher_acc": ".3f", "wall_s": ".0f",
           "mia_auc": ".3f", "mia_tpr1": ".3f", "mia_tpr": ".3f", "lira_auc": ".3f", "lira_tpr1": ".3f", "lira_tpr": ".3f", "server_mia_auc": ".3f", "label_tv": ".3f", "label_set": ".2f",
           "up_mb": ".2f"}


def parse_eps(parser, text: str) -> list[float]:
    values = comma_list(parser, "eps", text, convert=float)
    if not all(v > 0 for v in values):
        parser.error(f"--eps={text}: a comma-separated list of budgets ε > 0 (inf: no DP)")
    return values


def configs(base: RunConfig, strategies: list[str], eps: list[float], mechanisms: list[str]) -> list[tuple]:
    """(strategy, mechanism, ε, config) for every cell, each checked before any run (the
    non-private ε = inf once per strategy); in place of the config, the reason when the
    strategy cannot run that way."""
    cells = []
    for strategy in strategies:
        grid = [(m, e) for m in mechanisms for e in eps if math.isfinite(e)] + [("none", e) for e in eps
                                                                                if math.isinf(e)]
        for mechanism, e in grid:
            try:
                keep = MECHANISMS[mechanism].accounting == "data-dependent"  # its noise is given; ε is a budget
                config = rules.changed(base, strategy=strategy, dp=mechanism, target_epsilon=e,
                                       dp_noise=base.dp_noise if keep else 0.0)
            except ConfigError as err:
                config = str(err)
            cells.append((strategy, mechanism, e, config))
    return cells


def row_of(strategy: str, e: float, config: RunConfig, run_dir: Path, attack_clients: int) -> dict:
    """One cell run, then attacked: its row of the table."""
    return attacked_row(strategy, e, config, run_dir, attack_clients, run_one(config, run_dir, f"{strategy} ε={e:g}"))


def attacked_row(strategy: str, e: float, config: RunConfig, run_dir: Path, attack_clients: int,
                 figures: dict) -> dict:
    """The row of a finished run with ``figures``: its guarantee, and the attacks on it."""
    s = read_summary(run_dir)
    attacks, pooled = attack_run(run_dir, attack_clients)
    server = attack_server_model(run_dir, attack_clients)
    auc = attacks[[f"mia_{a}_auc" for a in THRESHOLD_ATTACKS]].max(axis=1)
    return {"clients": config.clients, "strategy": strategy, "mechanism": config.dp, "target": e, "epsilon": s["epsilon"],
            "released": s.get("epsilon_sanitized", math.nan),
            "delta": s["dp_delta"] if MECHANISMS[config.dp].accounting else float("nan"), "unit": s["dp_unit"],
            "noise": s["dp_noise"], "rounds_completed": s["rounds_completed"], **figures,
            "mia_auc": auc.mean(), "mia_tpr1": max(pooled[f"pooled_mia_{a}_tpr@0.01"] for a in THRESHOLD_ATTACKS),
            "mia_tpr": max(pooled[f"pooled_mia_{a}_tpr@0.001"] for a in THRESHOLD_ATTACKS),
            "lira_auc": pooled.get("pooled_mia_lira_auc", math.nan),
            "lira_tpr1": pooled.get("pooled_mia_lira_tpr@0.01", math.nan),
            "lira_tpr": pooled.get("pooled_mia_lira_tpr@0.001", math.nan), "label_tv": attacks["label_tv"].mean(),
            "label_set": attacks["label_set_exact"].mean(),
            "server_mia_auc": max((v for k, v in server.items() if k.endswith("_auc")), default=float("nan")),
            "label_tv_uniform": attacks["label_tv_uniform"].mean(), "attacked_clients": len(attacks),
            "members_per_client": attacks["members"].mean(), "run_dir": str(run_dir), "note": ""}


def markdown(table: pd.DataFrame) -> str:
    rows = [r if not r["note"] else {**{c: "" for c in COLUMNS}, "clients": r["clients"], "strategy": r["strategy"],
                                      "mechanism": r["mechanism"], "target": r["target"],
                                      "epsilon": f"not run: {r['note']}"}
            for r in table.to_dict("records")]
    return markdown_table(pd.DataFrame(rows, columns=list(COLUMNS)), COLUMNS, FORMATS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("tradeoff.py", __doc__.split("\n")[0], cohort_size=0)
    parser.add_argument("--eps", default="0.5,1,2,4,8,inf", metavar="LIST",
                        help="privacy budgets ε (default: 0.5,1,2,4,8,inf; inf = no DP)")
    parser.add_argument("--strategies", default="fedmd,dsfl", metavar="LIST",
                        help="strategies to compare (default: fedmd,dsfl)")
    private = [m for m in MECHANISMS if MECHANISMS[m].accounting]
    parser.add_argument("--mechanisms", default="central", metavar="LIST",
                        help=f"DP mechanisms of the private runs, from {', '.join(private)} (default: central)")
    parser.add_argument("--attack-clients", type=int, default=20, metavar="N",
                        help="clients of the last round whose students are attacked (default: 20)")
    parser.add_argument("--client-counts", metavar="LIST",
                        help="run the whole grid once per number of clients, e.g. 100,300,1000 (default: --clients)")
    args = parser.parse_args(argv)
    strategies = comma_list(parser, "strategies", args.strategies, STRATEGIES)
    base = resolve(parser, args, strategy=strategies[0])  # flags are checked against a strategy that runs
    eps = parse_eps(parser, args.eps)
    mechanisms = comma_list(parser, "mechanisms", args.mechanisms, private)
    if args.attack_clients < 1:
        parser.error(f"--attack-clients={args.attack_clients}: at least 1")
    counts = comma_list(parser, "client-counts", args.client_counts, convert=int) if args.client_counts \
        else [base.clients]
    cells, scenarios = [], []
    for n in counts:  # every run is checked before the first starts
        try:
            scenarios.append(rules.changed(base, clients=n))
        except ConfigError as err:
            parser.error(f"--client-counts={args.client_counts}: with {n} clients, --{err.key}={err.value}: "
                         f"{err.allowed}")
        cells += [(n, *cell) for cell in configs(scenarios[-1], strategies, eps, mechanisms)]
        cells.append((n, LOCAL_ONLY, "none", math.inf,
                      rules.changed(scenarios[-1], strategy=LOCAL_ONLY, **NOTHING_SHARED)))
    for scenario in scenarios:
        prepare_data(parser, scenario)
    out = timed_folder(parser, Path(base.out), "tradeoff-")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    print(f"tradeoff: {len(cells)} runs ({', '.join(strategies)} x ε {args.eps} with {', '.join(mechanisms)} DP, "
          f"and local-only; clients {', '.join(map(str, counts))}) -> {out}/", flush=True)
    rows = []
    for i, (clients, strategy, mechanism, e, config) in enumerate(cells):
        if isinstance(config, str):
            print(f"  {clients} clients, {strategy} {mechanism} ε={e:g}: not run: {config}")
            rows.append({"clients": clients, "strategy": strategy, "mechanism": mechanism, "target": e,
                         "note": config})
            continue
        rows.append(row_of(strategy, e, config, out / "runs" / f"{i:02d}-c{clients}-{strategy}-{mechanism}-eps{e:g}",
                           args.attack_clients))
        write_atomic(out / "tradeoff.csv", pd.DataFrame(rows).to_csv(index=False))  # a stopped sweep keeps its rows
        r = rows[-1]
        print(f"  {clients} clients, {strategy} ε={e:g} ({r['mechanism']}): accuracy {r['acc_final']:.3f}, "
              f"teacher {r['teacher_acc']:.3f}, ε spent {r['epsilon']:.3g}, MIA AUC {r['mia_auc']:.3f}, "
              f"label TV {r['label_tv']:.3f}, {r['wall_s']:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    write_atomic(out / "tradeoff.csv", table.to_csv(index=False))
    write_atomic(out / "tradeoff.md", markdown(table))
    ran = table[table.note == ""]
    title = f"{base.dataset}, rounds: {base.rounds}, client-level DP (δ = {base.dp_delta:g})"
    for n in counts:
        name = "tradeoff.png" if len(counts) == 1 else f"tradeoff-c{n}.png"
        plot_tradeoff(ran[ran.clients == n], out / name, f"{n} clients, {title}")
    if len(counts) > 1:
        plot_clients(ran, out / "tradeoff-clients.png", title)
    print(markdown(table))
    print(f"results: {out}/ (tradeoff.csv, tradeoff.md, tradeoff*.png, runs/)")
    return 0


if __name__ == "__main__":
    exit_with(main)
