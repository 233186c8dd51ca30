"""Accuracy under Byzantine attacks on knowledge, for each robust aggregator.

    python simulations/robustness.py --clients 100
    python simulations/robustness.py --clients 100 --strategy dsfl --byzantine-frac 0.3 --attacks label-flip,one-class

Runs the scenario the flags describe (every run-config flag applies) once without
attackers and once per attack, for every aggregator: (1 + attacks) x aggregators
runs. Byzantine clients (``--byzantine-frac``, 0.2 unless given) train honestly and
corrupt every upload (``fedkd/attacks.py``); the aggregators are in
``fedkd/robust.py``. Written to ``<out>/robustness-<time>/``: ``runs/``,
``robustness.csv`` (one row per run) and ``robustness.md`` (final client accuracy
and teacher accuracy, attack x aggregator).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fedkd import rules
from fedkd.cli.flags import build_parser, comma_list, prepare_data, resolve, rounds_text, timed_folder
from fedkd.cli.stop import exit_with
from fedkd.cli.sweep import run_one
from fedkd.cli.tables import markdown_table
from fedkd.config import ConfigError
from fedkd.faults.byzantine import ATTACKS
from fedkd.faults.robust import AGGREGATORS
from fedkd.results.store import write_atomic

CLEAN = "none"
DEFAULT_BYZANTINE_FRAC = 0.2


def table_markdown(runs: pd.DataFrame, column: str, aggregators: list[str], attacks: list[str]) -> str:
    cells = runs.pivot(index="attack", columns="aggregator", values=column)
    cells = cells.reindex(index=[CLEAN, *attacks], columns=aggregators).rename_axis(index="attack").reset_index()
    return markdown_table(cells, {"attack": "attack", **{a: a for a in aggregators}}, dict.fromkeys(aggregators, ".3f"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("robustness.py", __doc__.split("\n")[0], byzantine_frac=DEFAULT_BYZANTINE_FRAC,
                          cohort_size=0)
    parser.add_argument("--attacks", default=",".join(ATTACKS), metavar="LIST",
                        help=f"attacks to run (default: all: {','.join(ATTACKS)})")
    parser.add_argument("--aggregators", default=",".join(AGGREGATORS), metavar="LIST",
                        help=f"aggregators to compare (default: all: {','.join(AGGREGATORS)})")
    args = parser.parse_args(argv)
    base = resolve(parser, args)
    attacks = comma_list(parser, "attacks", args.attacks, ATTACKS)
    aggregators = comma_list(parser, "aggregators", args.aggregators, AGGREGATORS)
    if base.byzantine_frac == 0:
        parser.error("--byzantine-frac=0: the attacks need Byzantine clients; give a fraction in (0, 1)")
    plan = [(aggregator, attack) for aggregator in aggregators for attack in [CLEAN, *attacks]]
    configs = {}
    for aggregator, attack in plan:  # every combination is valid before the first run starts
        try:
            configs[aggregator, attack] = rules.changed(base, 
                aggregator=aggregator, attack=attack if attack != CLEAN else base.attack,
                byzantine_frac=base.byzantine_frac if attack != CLEAN else 0.0)
        except ConfigError as err:
            parser.error(f"--{err.key}={err.value}: {err.allowed}")
    prepare_data(parser, base)
    logging.getLogger("flwr").setLevel(logging.WARNING)

    out = timed_folder(parser, Path(base.out), "robustness-")
    print(f"{base.strategy} on {base.dataset}, {base.clients} clients ({base.partition}), {rounds_text(base.rounds)}: "
          f"{base.byzantine_frac:.0%} Byzantine clients, attacks {', '.join(attacks)}, aggregators "
          f"{', '.join(aggregators)} -> {out}/")
    rows = []
    for i, (aggregator, attack) in enumerate(plan, 1):
        label = f"[{i}/{len(plan)}] {aggregator}, attack {attack}"
        config = configs[aggregator, attack].replace(out=str(out / "runs"))
        figures = run_one(config, out / "runs" / f"{aggregator}-{attack}", label)
        rows.append({"aggregator": aggregator, "attack": attack, "byzantine_frac": config.byzantine_frac,
                     **figures})
        pd.DataFrame(rows).to_csv(out / "robustness.csv", index=False)  # each finished run is kept
        print(f"{label}: accuracy {figures['acc_final']:.3f}, teacher {figures['teacher_acc']:.3f}, "
              f"{figures['wall_s']:.0f} s", flush=True)

    runs = pd.DataFrame(rows)
    md = (f"Final client accuracy (mean over clients), {base.byzantine_frac:.0%} Byzantine clients:\n\n"
          + table_markdown(runs, "acc_final", aggregators, attacks)
          + "\nTeacher signal's accuracy on the public labels hidden from everyone:\n\n"
          + table_markdown(runs, "teacher_acc", aggregators, attacks))
    write_atomic(out / "robustness.md", md)
    print()
    print(md)
    print(f"results: {out}/ (robustness.csv, robustness.md, runs/)")
    return 0


if __name__ == "__main__":
    exit_with(main)
