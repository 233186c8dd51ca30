import io

from rich.console import Console

from fedkd.server.progress import RoundProgress

ROUND = {"replied": 5, "sampled": 5, "acc_mean": 0.5, "acc_p10": 0.4, "acc_min": 0.3, "acc_max": 0.7,
         "teacher_acc": 0.6, "bytes_up": 2e6, "bytes_down": 1e6, "wall_time_s": 1.5}


def _run(quiet: bool) -> str:
    out = io.StringIO()
    with RoundProgress(2, quiet=quiet, console=Console(file=out, width=120)) as progress:
        for rnd in range(3):
            progress(rnd, ROUND)
    return out.getvalue()


def test_a_line_per_round_with_its_key_metrics():
    text = _run(quiet=False)
    assert "acc mean" in text
    lines = [line for line in text.splitlines() if line.lstrip().startswith(("0/2", "1/2", "2/2"))]
    assert len(lines) == 3
    assert "0.500" in lines[0] and "0.600" in lines[0] and "2.00" in lines[0] and "1.00" in lines[0]


def test_faults_are_named_at_the_end_of_the_line_only_when_there_are_some():
    from fedkd.server.progress import format_round

    assert "(" not in format_round(1, 2, {**ROUND, "missing": 0, "failed": 0, "skipped": 0})
    line = format_round(1, 2, {**ROUND, "missing": 3, "failed": 1, "late": 2, "skipped": 1})
    assert line.endswith("(3 no reply, 1 failed, 2 late, aggregation skipped (min-clients))")


def test_quiet_prints_nothing():
    assert _run(quiet=True) == ""
