"""Per-round evaluation on a fixed test subset, every k rounds; the last round on all of it."""

import pandas as pd

from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config


def test_per_round_curves_on_a_test_subset_and_the_last_round_on_all_of_it_for_everyone(tmp_path):
    config = tiny_config().replace(rounds=3, eval_size=100, eval_every=2)  # digits: 360 test rows; fraction 0.6
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    df = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    acc = df[df.metric == "test_acc"]
    assert sorted(acc["round"].unique()) == [0, 2, 3]  # every 2nd round, and the last
    early = acc[acc["round"] < 3]["value"]
    assert _counts_of(early, 100)  # accuracies on 100 rows
    final = acc[acc["round"] == 3]
    assert len(final) == config.clients  # everyone, also the clients not sampled in round 3
    assert _counts_of(final["value"], 360) and not _counts_of(final["value"], 100)


def _counts_of(accuracies: pd.Series, rows: int) -> bool:
    """Whether every accuracy is a whole number of correct rows out of ``rows`` (float32 sums)."""
    correct = accuracies * rows
    return bool(((correct - correct.round()).abs() < 1e-3).all())
