"""Plots of a run, drawn from its metrics table (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402


def plot_accuracy(server: pd.DataFrame, path: Path, title: str) -> None:
    """Client test accuracy per round (mean, p10, min–max band) and the teacher's accuracy."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    rounds = server.index
    ax.fill_between(rounds, server["acc_min"], server["acc_max"], alpha=0.15, color="C0",
                    label="clients: min–max")
    ax.plot(rounds, server["acc_mean"], "o-", color="C0", label="clients: mean")
    ax.plot(rounds, server["acc_p10"], "s--", color="C0", alpha=0.7, label="clients: 10th percentile")
    if "teacher_acc" in server:
        ax.plot(rounds, server["teacher_acc"], "^-", color="C3",
                label="teacher signal (argmax vs hidden public labels)")
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
