"""Per-round progress in the terminal: a line per round and a bar with ETA.

The bar starts before round 0 (which also starts Ray and the clients), shows the
latest mean accuracy, and stays below the per-round lines. ``quiet`` prints
nothing, for scripts.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

REFRESH_PER_S = 2  # rich's default, 10, drew the bar for 18 ms of CPU a second in a terminal (3.2 ms at 2),
# taken from the client actors on a small machine; the bar's clocks count whole seconds
HEADER = "round    clients  acc mean    p10    min    max  teacher  server   up MB  down MB  time s"


def _mb(n: float) -> str:
    return f"{n / 1e6:7.2f}"


FAULTS = (("missing", "no reply"), ("failed", "failed"), ("rejected", "rejected"), ("late", "late"))


def format_round(rnd: int, rounds: int, m: dict[str, float]) -> str:
    """One line of the per-round table; what went wrong with replies, if anything, at its end."""
    nan = float("nan")
    teacher = f"{m['teacher_acc']:7.3f}" if "teacher_acc" in m else "      -"
    server = f"{m['server_acc']:7.3f}" if "server_acc" in m else "      -"
    faults = ", ".join(f"{int(m[key])} {label}" for key, label in FAULTS if m.get(key))
    if m.get("skipped"):
        faults += (", " if faults else "") + "aggregation skipped (min-clients)"
    return (f"{rnd:>2}/{rounds:<2}  {int(m['replied']):>4}/{int(m['sampled']):<4}"
            f"  {m.get('acc_mean', nan):8.3f} {m.get('acc_p10', nan):6.3f}"
            f" {m.get('acc_min', nan):6.3f} {m.get('acc_max', nan):6.3f}  {teacher} {server}"
            f" {_mb(m['bytes_up'])}  {_mb(m['bytes_down'])}  {m['wall_time_s']:6.1f}"
            + (f"  ({faults})" if faults else ""))


def accuracy_lines(s: dict) -> list[str]:
    """What a finished run's summary.json says about accuracy, for the terminal."""
    extra = "".join(f"; {label} {s[key]:.3f}" for key, label in
                    (("teacher_acc_final", "teacher"), ("server_acc_final", "server model"))
                    if not math.isnan(s[key]))
    lines = [f"accuracy (mean over clients): round 0 {s['acc_mean_round0']:.3f} -> final "
             f"{s['acc_mean_final']:.3f} (p10 {s['acc_p10_final']:.3f}){extra}"]
    if s["acc_mean_final_by_model"]:
        lines.append("final accuracy by model: " + ", ".join(
            f"{m} {a:.3f} ({s['model_parameters'][m]:,} params)" for m, a in s["acc_mean_final_by_model"].items()))
    return lines


class RoundProgress:
    """Context manager; call it with (round, server metrics) after every round.
    ``lines=False`` keeps the bar but prints no per-round lines (sweeps)."""

    def __init__(self, rounds: int, quiet: bool = False, console: Console | None = None, lines: bool = True,
                 label: str = "rounds"):
        self.rounds, self.quiet, self.lines = rounds, quiet, lines
        self.console = console or Console(highlight=False)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=True, disable=quiet,
            refresh_per_second=REFRESH_PER_S,
        )
        self.task = self.progress.add_task(label, total=rounds + 1,
                                           status="round 0: local training (starting clients)")

    def __enter__(self) -> "RoundProgress":
        if self.lines and not self.quiet:
            self.console.print(f"[bold]{HEADER}[/bold]", soft_wrap=True)
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, rnd: int, m: dict[str, float]) -> None:
        if self.quiet:
            return
        if self.lines:
            self.progress.console.print(format_round(rnd, self.rounds, m), soft_wrap=True)
        status = f"acc mean {m.get('acc_mean', float('nan')):.3f}"
        if rnd < self.rounds:
            status += f", round {rnd + 1} running"
        self.progress.update(self.task, advance=1, status=status)
