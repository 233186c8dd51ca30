"""Plots of a run, drawn from its metrics table (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402


def plot_accuracy(server: pd.DataFrame, path: Path, title: str) -> None:
    """Client test accuracy per round (mean, p10, min–max band), the teacher's accuracy
    and the server model's, where the strategy has them."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    rounds = server.index
    ax.fill_between(rounds, server["acc_min"], server["acc_max"], alpha=0.15, color="C0",
                    label="clients: min–max")
    ax.plot(rounds, server["acc_mean"], "o-", color="C0", label="clients: mean")
    ax.plot(rounds, server["acc_p10"], "s--", color="C0", alpha=0.7, label="clients: 10th percentile")
    if "teacher_acc" in server:
        ax.plot(rounds, server["teacher_acc"], "^-", color="C3",
                label="teacher signal (argmax vs hidden public labels)")
    if "server_acc" in server:
        ax.plot(rounds, server["server_acc"], "D-", color="C2", label="server model (test)")
    ax.axhline(server["acc_mean"].iloc[0], color="grey", lw=0.8, ls=":", label="round 0 (local only) mean")
    ax.set_xlabel("round (0 = local training only, before any exchange)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(len(rounds), 12)))
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


BOUNDS = ("local", "centralized")  # drawn as reference lines where communication means nothing
MARKERS = "osD^vP*Xph"  # strategies with the same bytes and similar accuracy stay apart


def plot_comparison(per_round: dict[str, list[pd.DataFrame]], out: Path, title: str) -> None:
    """accuracy_per_round.png and accuracy_vs_bytes.png: client mean accuracy of each
    strategy (mean over seeds, band = ±1 std where there are several) against the round
    and against cumulative bytes on the wire (uplink + downlink)."""
    fig_r, ax_r = plt.subplots(figsize=(9, 4.5), dpi=120)
    fig_b, ax_b = plt.subplots(figsize=(9, 4.5), dpi=120)
    for i, (strategy, frames) in enumerate(per_round.items()):
        acc = pd.concat([f["acc_mean"] for f in frames], axis=1)
        mean, std = acc.mean(axis=1), acc.std(axis=1, ddof=0)
        mb = pd.concat([(f["bytes_up"] + f["bytes_down"]).cumsum() / 1e6 for f in frames], axis=1).mean(axis=1)
        style = dict(color=f"C{i}", label=strategy)
        marker = MARKERS[i % len(MARKERS)]
        ax_r.plot(mean.index, mean, f"{marker}-" if strategy not in BOUNDS else "--", ms=4, mfc="none", **style)
        if len(frames) > 1:
            ax_r.fill_between(mean.index, mean - std, mean + std, color=f"C{i}", alpha=0.15)
        if strategy in BOUNDS:
            ax_b.axhline(mean.iloc[-1], ls="--", lw=1, **{**style, "label": f"{strategy} (final)"})
        else:
            ax_b.plot(mb, mean, f"{marker}-", ms=4, mfc="none", **style)
    ax_r.set_xlabel("round (0 = local training only)")
    ax_r.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_b.set_xlabel("cumulative MB on the wire (uplink + downlink, all clients)")
    ax_b.set_xscale("log")
    for fig, ax, name in ((fig_r, ax_r, "accuracy_per_round.png"), (fig_b, ax_b, "accuracy_vs_bytes.png")):
        ax.set_ylabel("test accuracy, mean over clients")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # beside: hides no line
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)


def plot_tradeoff(table: pd.DataFrame, path: Path, title: str) -> None:
    """Final client accuracy against the privacy budget ε, one line per strategy and
    mechanism; each strategy's non-private run and the local-only run as horizontal references."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    finite = table[table.target != float("inf")]
    markers = {m: "os^vD"[j % 5] for j, m in enumerate(dict.fromkeys(finite.mechanism))}
    for i, strategy in enumerate(dict.fromkeys(table.strategy[table.strategy != "local"])):
        for mechanism, marker in markers.items():
            rows = finite[(finite.strategy == strategy) & (finite.mechanism == mechanism)].sort_values("target")
            if len(rows):
                ax.plot(rows.target, rows.acc_final, f"{marker}-", color=f"C{i}", label=f"{strategy}, {mechanism} DP")
        reference = table[(table.strategy == strategy) & (table.target == float("inf"))]
        if len(reference):
            ax.axhline(reference.acc_final.iloc[0], color=f"C{i}", ls="--", lw=1, label=f"{strategy}, no DP")
    local = table[table.strategy == "local"]
    if len(local):
        ax.axhline(local.acc_final.iloc[0], color="grey", ls=":", lw=1.2, label="local only (nothing shared)")
    if len(finite):
        _log_ticks(ax, sorted(set(finite.target)), "{:g}")
    ax.set_xlabel("privacy budget ε (target; the noise is calibrated to it)")
    _save_accuracy(fig, ax, table.acc_final.max(), path, title)


def _log_ticks(ax, ticks: list[float], fmt: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(ticks, [fmt.format(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save_accuracy(fig, ax, top: float, path: Path, title: str) -> None:
    """Final client accuracy on the y axis, the title, grid and legend; written to ``path``."""
    ax.set_ylabel("final client test accuracy (mean)")
    ax.set_ylim(0, min(1.0, 1.3 * top))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)



def plot_clients(table: pd.DataFrame, path: Path, title: str) -> None:
    """Final client accuracy against the number of clients: one line per strategy,
    mechanism and privacy budget (solid: DP at that ε, fainter for smaller ε; dashed: no
    DP), local-only dotted."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    shared = table[table.strategy != "local"]
    budgets = sorted(set(shared.target))
    lines = list(dict.fromkeys(zip(shared.strategy, shared.mechanism)))
    for i, (strategy, mechanism) in enumerate(lines):
        for j, e in enumerate(budgets):
            rows = shared[(shared.strategy == strategy) & (shared.mechanism == mechanism)
                          & (shared.target == e)].sort_values("clients")
            if len(rows):
                private = e != float("inf")
                ax.plot(rows.clients, rows.acc_final, "o-" if private else "s--", color=f"C{i}",
                        alpha=1.0 - 0.6 * (len(budgets) - 1 - j) / max(1, len(budgets) - 1) if private else 1.0,
                        label=f"{strategy}, {mechanism}, ε = {e:g}" if private else f"{strategy}, no DP")
    local = table[table.strategy == "local"].sort_values("clients")
    if len(local):
        ax.plot(local.clients, local.acc_final, "x:", color="grey", label="local only (nothing shared)")
    _log_ticks(ax, sorted(set(table.clients)), "{:,}")
    ax.set_xlabel("number of clients")
    _save_accuracy(fig, ax, table.acc_final.max(), path, title)
