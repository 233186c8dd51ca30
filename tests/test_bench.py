import pandas as pd
import pytest

from tests.helpers import load_script

bench = load_script("bench")


def _metrics(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["round", "client", "metric", "value"])


def test_runs_agree_on_their_first_rounds_whatever_later_rounds_carry_on():
    """From round 4 on, the teacher has carried float-order differences far enough to
    score single test samples differently: that is reported, not judged."""
    a = _metrics([(0, "0", "test_acc", 0.5), (2, "0", "digest_loss", 1.0), (5, "0", "test_acc", 0.30),
                  (0, "0", "bytes_down", 100), (0, "server", "wall_time_s", 1.0)])
    b = _metrics([(0, "0", "test_acc", 0.5), (2, "0", "digest_loss", 1.0 + 5e-5), (5, "0", "test_acc", 0.31),
                  (0, "0", "bytes_down", 25), (0, "server", "wall_time_s", 2.0)])  # per node; measured
    early, largest, accuracies = bench._agree(a, b)
    assert early == pytest.approx(5e-5) and early < bench.AGREE
    assert largest == pytest.approx(1 / 30) and accuracies == 1


def test_a_difference_in_the_first_rounds_is_another_workload():
    a = _metrics([(1, "0", "digest_loss", 1.0), (5, "0", "test_acc", 0.3)])
    b = _metrics([(1, "0", "digest_loss", 1.01), (5, "0", "test_acc", 0.3)])
    early, _, accuracies = bench._agree(a, b)
    assert early == pytest.approx(1e-2) and early >= bench.AGREE and accuracies == 0
    assert bench._agree(a, b.replace({"metric": {"digest_loss": "revisit_loss"}}))[:2] == (float("inf"),) * 2
