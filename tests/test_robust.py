"""Byzantine uploads and the aggregators that resist them."""

import numpy as np
import pytest

from fedkd.faults import robust
from fedkd.faults.byzantine import ATTACKS, corrupt
from fedkd.results.store import read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config


def test_median_and_trimmed_mean_on_hand_made_values():
    arrays = [np.array([[v, -v]], np.float32) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    np.testing.assert_allclose(robust.median(arrays), [[3.0, -3.0]])
    np.testing.assert_allclose(robust.trimmed_mean(arrays, 0.2), [[3.0, -3.0]])  # drops 1 and 100
    np.testing.assert_allclose(robust.trimmed_mean(arrays, 0.0), robust.mean(arrays))
    np.testing.assert_allclose(robust.mean(arrays), [[22.0, -22.0]])


def test_krum_keeps_the_clustered_payloads_and_drops_the_outliers():
    rng = np.random.default_rng(0)
    honest = [np.ones((4, 3)) + 0.01 * rng.standard_normal((4, 3)) for _ in range(6)]
    bad = [np.full((4, 3), 50.0), np.full((4, 3), -50.0)]
    arrays = honest[:3] + bad + honest[3:]
    kept = robust.krum_selection(arrays, 0.25)  # f = 2 of 8
    assert sorted(kept) == [0, 1, 2, 5, 6, 7]
    np.testing.assert_allclose(robust.krum(arrays, 0.25), np.mean(honest, axis=0), atol=1e-12)


def test_every_rule_is_the_mean_when_all_parties_agree():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3)] * 5
    for rule in robust.AGGREGATORS:
        np.testing.assert_allclose(robust.combiner(rule, 0.2)(arrays), arrays[0])


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attacks_keep_the_format_so_only_aggregation_can_stop_them(attack):
    logits = np.random.default_rng(1).standard_normal((7, 10)).astype(np.float32)
    bad = corrupt(logits, attack, np.random.default_rng(2))
    assert bad.shape == logits.shape and bad.dtype == np.float32 and np.isfinite(bad).all()
    assert not np.allclose(bad, logits)
    if attack in ("label-flip", "invert", "one-class"):  # the client's own top class is no longer top
        assert (bad.argmax(1) != logits.argmax(1)).mean() > 0.5


def _teacher_acc(tmp_path, name, **changes):
    config = tiny_config().replace(fraction=1.0, clients=5, **changes)
    run_dir = tmp_path / name
    run_dir.mkdir()
    run_server(PoolGrid(config.clients, workers=0), config, run_dir)
    return read_server_metrics(run_dir)["teacher_acc"].iloc[-1]


def test_a_median_resists_what_poisons_the_mean(tmp_path):
    clean = _teacher_acc(tmp_path, "clean")
    attacked = dict(byzantine_frac=0.4, attack="one-class")
    poisoned = _teacher_acc(tmp_path, "mean", **attacked)
    defended = _teacher_acc(tmp_path, "median", aggregator="median", **attacked)
    assert poisoned < 0.3 < clean  # two confident liars out of five drag the mean to class 0
    assert defended > poisoned + 0.2
