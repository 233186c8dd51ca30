import pandas as pd
import pytest

from tests.helpers import load_script

bench = load_script("bench")


def _metrics(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["round", "client", "metric", "value"])


def _round0(losses: list[float]) -> list[tuple]:
    return [(0, str(c), "test_loss", loss) for c, loss in enumerate(losses)]


def test_runs_agree_when_most_clients_round_0_agree_whatever_one_client_and_later_rounds_carry_on():
    """Float order moves most clients' round 0 by about 1e-7; a chaotic client's local
    epochs may carry it to 2e-3 (more where each has a large shard), and from round 1
    on the teacher spreads that to every client: reported, not judged."""
    a = _metrics(_round0([1.0, 2.0, 3.0]) + [(0, "0", "bytes_down", 100), (0, "server", "teacher_acc", 0.5),
                                            (0, "server", "wall_time_s", 1.0), (5, "1", "test_acc", 0.30)])
    b = _metrics(_round0([1.0 + 1e-7, 2.0 * (1 + 2e-3), 3.0]) + [
        (0, "0", "bytes_down", 25), (0, "server", "teacher_acc", 0.5),  # per node; measured
        (0, "server", "wall_time_s", 2.0), (5, "1", "test_acc", 0.31)])
    judged, first, largest, accuracies = bench._agree(a, b)
    assert judged == pytest.approx(1e-7) and judged < bench.AGREE
    assert first == pytest.approx(2e-3) and largest == pytest.approx(1 / 30) and accuracies == 1


def test_another_workload_moves_every_clients_round_0():
    a = _metrics(_round0([1.0, 2.0, 3.0]))
    b = _metrics(_round0([1.04, 2.0 * 1.05, 3.0 * 0.97]))  # one local epoch fewer: 0.041 at 100 clients
    judged, first, largest, accuracies = bench._agree(a, b)
    assert judged == pytest.approx(4e-2) and judged >= bench.AGREE
    assert first == largest == pytest.approx(5e-2) and accuracies == 0


def test_runs_that_recorded_other_metrics_do_not_agree():
    a = _metrics(_round0([1.0, 2.0]))
    b = a.replace({"metric": {"test_loss": "revisit_loss"}})
    assert bench._agree(a, b) == (float("inf"),) * 3 + (-1,)


def test_each_pair_is_judged_against_the_mean_floor_and_the_headline_is_their_median():
    """Rows in run order: the floor, (a) and (b) of each pair, the floor again."""
    pairs = bench._pair_ratios(pd.Series([1.0, 2.0, 0.8, 2.5, 0.9, 2.2, 1.1, 1.2]))
    assert pairs["cohorts_over_one"] == pytest.approx([0.4, 0.36, 0.5])
    assert pairs["cohorts_over_floor"] == pytest.approx([0.8 / 1.1, 0.9 / 1.1, 1.0])
    assert pairs["one_over_floor"] == pytest.approx([2.0 / 1.1, 2.5 / 1.1, 2.2 / 1.1])
