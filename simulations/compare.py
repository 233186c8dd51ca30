"""Compare strategies on one scenario: same seed, same partition, same students.

    python simulations/compare.py --clients 100
    python simulations/compare.py --clients 100 --seeds 0,1,2 --strategies fedmd,dsfl,local,centralized
    python simulations/compare.py --clients 100 --strategies fedmd,fedmd:knowledge=relational,fedmd:online=1

Each strategy runs through the same simulation as ``run.py`` (every run-config
flag applies to all of them) and keeps its own results folder; a strategy may
carry its own run-config values (``name:key=value:key=value``). A strategy that
cannot run the scenario (FedAvg with mixed architectures) is listed with the
reason instead. Written to ``<out>/compare-<time>/``: ``runs/<strategy>-s<seed>/``,
``comparison.csv`` and ``comparison.md`` (mean ± std over seeds), and the plots
``accuracy_per_round.png`` and ``accuracy_vs_bytes.png``. Accuracy is the last
round's (and the mean of the last 3 rounds), never the best over rounds.
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
from fedkd.config import ConfigError, RunConfig
from fedkd.results.plots import plot_comparison
from fedkd.results.store import read_server_metrics, write_atomic
from fedkd.strategies import STRATEGIES

COLUMNS = {  # column -> heading in the markdown table
    "acc_final": "accuracy (final)", "acc_last3": "accuracy (last 3 rounds)", "acc_p10": "p10 client",
    "server_acc": "server model", "up_mb": "uplink MB", "down_mb": "downlink MB",
    "up_kb_per_client_round": "uplink KB / client-round", "wall_s": "wall time s",
}


def parse_variant(parser, text: str, base: RunConfig) -> tuple[str, dict[str, str]]:
    """``name[:key=value...]`` -> (strategy, run-config overrides); exits 2 on a bad one."""
    name, *pairs = text.split(":")
    if name not in STRATEGIES:
        parser.error(f"--strategies: unknown {name}; allowed: {', '.join(STRATEGIES)}")
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in RunConfig.keys():
            parser.error(f"--strategies: {text!r}: expected {name}:key=value with a run-config key")
        overrides[key] = value
    try:
        rules.load({**base.to_run_config(), "strategy": name, **overrides})
    except ConfigError as err:
        if err.key in overrides or err.key == "strategy":  # the variant itself is wrong
            parser.error(f"--strategies: {text!r}: --{err.key}={err.value}: {err.allowed}")
    return name, overrides


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every figure, per strategy (in the order they ran)."""
    ok = runs[runs.status == "ok"].reindex(columns=["strategy", *COLUMNS])
    order = list(dict.fromkeys(runs.strategy))
    mean = ok.groupby("strategy")[list(COLUMNS)].mean().reindex(order)
    std = ok.groupby("strategy")[list(COLUMNS)].std(ddof=0).reindex(order)
    table = mean.join(std.add_suffix("_std"))
    table["seeds"] = ok.groupby("strategy").size().reindex(order).fillna(0).astype(int)
    table["status"] = runs.groupby("strategy")["status"].first().reindex(order)
    return table.reset_index()


def by_model_markdown(runs: pd.DataFrame, models: list[str]) -> str:
    """Final accuracy of each architecture's clients, per strategy (mean over seeds)."""
    columns = [f"acc_{m}" for m in models if f"acc_{m}" in runs]
    ok = runs[runs.status == "ok"]
    if len(models) < 2 or not columns or ok.empty:
        return ""
    mean = ok.groupby("strategy", sort=False)[columns].mean()
    headings = {"strategy": "strategy", **{f"acc_{m}": f"{m} clients" for m in models if f"acc_{m}" in columns}}
    return markdown_table(mean.reset_index(), headings, dict.fromkeys(columns, ".3f"))


def markdown(table: pd.DataFrame, seeds: list[int]) -> str:
    def cell(row, col) -> str:
        value, std = row[col], row[f"{col}_std"]
        if pd.isna(value):
            return "–"
        digits = 3 if col.startswith(("acc", "server")) else 2
        return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if len(seeds) > 1 else "")

    cells = pd.DataFrame([{"strategy": row.strategy, **({c: cell(row, c) for c in COLUMNS} if row.status == "ok"
                                                         else {next(iter(COLUMNS)): row.status})}
                          for _, row in table.iterrows()], columns=["strategy", *COLUMNS])
    return markdown_table(cells.astype(object).fillna(""), {"strategy": "strategy", **COLUMNS})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("compare.py", __doc__.split("\n")[0], cohort_size=0)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), metavar="LIST",
                        help=f"strategies to compare (default: all: {','.join(STRATEGIES)})")
    parser.add_argument("--seeds", default=None, metavar="LIST", help="seeds, e.g. 0,1,2 (default: --seed)")
    args = parser.parse_args(argv)
    base = resolve(parser, args)
    strategies = comma_list(parser, "strategies", args.strategies)
    seeds = comma_list(parser, "seeds", args.seeds, convert=int) if args.seeds else [base.seed]
    if min(seeds) < 0:
        parser.error(f"--seeds={args.seeds}: integers >= 0, comma-separated")
    variants = {text: parse_variant(parser, text, base) for text in strategies}
    logging.getLogger("flwr").setLevel(logging.WARNING)

    out = timed_folder(parser, Path(base.out), "compare-")
    rows, total = [], len(strategies) * len(seeds)
    print(f"comparing {', '.join(strategies)} on {base.dataset}, {base.clients} clients ({base.partition}), "
          f"models {base.models}, {rounds_text(base.rounds)}, seeds {seeds} -> {out}/")
    for seed in seeds:
        prepare_data(parser, base.replace(seed=seed))
        for strategy in strategies:
            label = f"[{len(rows) + 1}/{total}] {strategy} seed {seed}"
            row = {"strategy": strategy, "seed": seed}
            name, overrides = variants[strategy]
            try:
                config = rules.load({**base.to_run_config(), **overrides, "strategy": name,
                                                    "seed": seed, "out": str(out / "runs")})
            except ConfigError as err:
                rows.append({**row, "status": f"not run: {err.allowed}"})
                print(f"{label}: not run: {err.allowed}")
                continue
            run_dir = out / "runs" / f"{strategy.replace(':', '-').replace('=', '-')}-s{seed}"
            try:
                figures = run_one(config, run_dir, label)
            except Exception as err:  # one failed run must not lose the others
                rows.append({**row, "status": f"failed: {err}"})
                print(f"{label}: failed: {err}")
                continue
            rows.append({**row, "status": "ok", "run_dir": str(run_dir), **figures})
            print(f"{label}: accuracy {figures['acc_final']:.3f} (last 3: {figures['acc_last3']:.3f}), "
                  f"uplink {figures['up_mb']:.2f} MB, {figures['wall_s']:.0f} s", flush=True)
            pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)  # each finished run is kept

    runs = pd.DataFrame(rows)
    runs.to_csv(out / "runs.csv", index=False)
    table = summarize(runs)
    table.to_csv(out / "comparison.csv", index=False)
    by_model = by_model_markdown(runs, base.model_names)
    write_atomic(out / "comparison.md", markdown(table, seeds) + ("\n" + by_model if by_model else ""))
    done = runs[runs.status == "ok"]
    if not done.empty:
        per_round = {s: [read_server_metrics(Path(d)) for d in g.run_dir]
                     for s, g in done.groupby("strategy", sort=False)}
        plot_comparison(per_round, out, f"{base.dataset}, {base.clients} clients, {base.partition} partition, "
                                         f"models {base.models}, seeds {','.join(map(str, seeds))}")
    print()
    print(markdown(table, seeds))
    if by_model:
        print("final accuracy by client architecture:")
        print(by_model)
    print(f"results: {out}/ (comparison.csv, comparison.md, runs.csv, accuracy_per_round.png, "
          f"accuracy_vs_bytes.png, runs/)")
    return 0


if __name__ == "__main__":
    exit_with(main)
