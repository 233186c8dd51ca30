"""Per-round evaluation on a fixed test subset, every k rounds; the last round on all of it;
carried by the training replies where clients evaluate their own students."""

import pandas as pd
import pytest

from fedkd.results.store import read_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server import loop
from fedkd.server.app import run_server
from fedkd.strategies.base import FedkdStrategy
from tests.helpers import tiny_config


def test_per_round_curves_on_a_test_subset_and_the_last_round_on_all_of_it_for_everyone(tmp_path):
    config = tiny_config().replace(rounds=3, eval_size=100, eval_every=2)  # digits: 360 test rows; fraction 0.6
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    df = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    acc = df[df.metric == "test_acc"]
    assert sorted(acc["round"].unique()) == [0, 2, 3]  # every 2nd round, and the last
    assert _counts_of(acc[acc["round"] == 2]["value"], 100)  # accuracies on 100 rows
    local_only = acc[acc["round"] == 0]["value"]  # every comparison's reference: the whole test set
    assert _counts_of(local_only, 360) and not _counts_of(local_only, 100)
    final = acc[acc["round"] == 3]
    assert len(final) == config.clients  # everyone, also the clients not sampled in round 3
    assert _counts_of(final["value"], 360) and not _counts_of(final["value"], 100)


def test_a_subset_no_smaller_than_the_test_set_is_the_test_set(tmp_path):
    """digits has 360 test rows: eval-size 1000 (the default) evaluates on all of them, so
    the last round asks no extra evaluation of the clients it did not sample."""
    config = tiny_config().replace(rounds=2)
    assert config.eval_size == 1000
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    acc = read_metrics(tmp_path).query("metric == 'test_acc'")
    assert _counts_of(acc["value"], 360) and not _counts_of(acc["value"], 100)
    assert len(acc[acc["round"] == 2]) == config.clients_per_round < config.clients


def _counts_of(accuracies: pd.Series, rows: int) -> bool:
    """Whether every accuracy is a whole number of correct rows out of ``rows`` (float32 sums)."""
    correct = accuracies * rows
    return bool(((correct - correct.round()).abs() < 1e-3).all())


@pytest.mark.parametrize("eval_size", [0, 100])
def test_evaluation_with_the_training_replies_is_the_evaluation_exchange(tmp_path, monkeypatch, eval_size):
    """The same scores as a separate evaluation exchange, one exchange a round fewer (the
    last round's exchange remains with a subset: it reaches the clients not sampled)."""
    config = tiny_config().replace(rounds=3, eval_size=eval_size)
    exchanges = {}

    def run(name):
        sent = exchanges.setdefault(name, [])
        exchange = loop._exchange

        def counted(grid, messages, *args):
            if messages:  # a round without an evaluation exchange passes none
                sent.append(len(messages))
            return exchange(grid, messages, *args)
        with monkeypatch.context() as m:
            m.setattr(loop, "_exchange", counted)
            if name == "separate":
                m.setattr(FedkdStrategy, "evaluates_own_students", False)
            (tmp_path / name).mkdir()
            run_server(PoolGrid(config.clients, workers=0), config, tmp_path / name)
        metrics = read_metrics(tmp_path / name)
        return metrics[metrics.metric.isin(["test_acc", "test_loss"])].reset_index(drop=True)

    separate, together = run("separate"), run("together")
    evaluated = separate[separate.metric == "test_acc"].groupby("round").size().tolist()
    assert evaluated == [5, 3, 3, 5 if eval_size else 3]  # the last round: everyone, where earlier saw a subset
    pd.testing.assert_frame_equal(separate, together)
    assert exchanges["separate"] == [5, 5, 3, 3, 3, 3, 3, 5 if eval_size else 3]
    assert exchanges["together"] == [5, 3, 3, 3] + ([2] if eval_size else [])
