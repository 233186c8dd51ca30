"""Per-round progress in the terminal: one line per round with its key metrics."""

from __future__ import annotations

from rich.console import Console


def _mb(n: float) -> str:
    return f"{n / 1e6:7.2f}"


class RoundPrinter:
    """Prints a header, then a line per round as it finishes."""

    def __init__(self, rounds: int, console: Console | None = None):
        self.rounds = rounds
        self.console = console or Console(highlight=False)
        self._header_done = False

    def __call__(self, rnd: int, m: dict[str, float]) -> None:
        if not self._header_done:
            self.console.print(
                "[bold]round  clients  acc mean    p10    min    max  teacher   up MB  down MB  time s[/bold]")
            self._header_done = True
        teacher = f"{m['teacher_acc']:7.3f}" if "teacher_acc" in m else "      -"
        self.console.print(
            f"{rnd:>2}/{self.rounds:<2}  {int(m['replied']):>3}/{int(m['sampled']):<3}"
            f"  {m.get('acc_mean', float('nan')):8.3f} {m.get('acc_p10', float('nan')):6.3f}"
            f" {m.get('acc_min', float('nan')):6.3f} {m.get('acc_max', float('nan')):6.3f}  {teacher}"
            f" {_mb(m['bytes_up'])}  {_mb(m['bytes_down'])}  {m['wall_time_s']:6.1f}")
