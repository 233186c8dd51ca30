"""Data-dependent PATE analysis (fedkd.privacy.pate) and Confident-GNMax (--dp confident-gnmax)."""

import math

import numpy as np
import pytest

from fedkd import rules
from fedkd.config import ConfigError, RunConfig
from fedkd.privacy import pate
from fedkd.privacy.accounting import Accountant
from fedkd.privacy.mechanisms import confident_votes, vote_counts
from fedkd.results.store import read_server_metrics, read_summary
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config

ORDERS = np.array([2.0, 5, 10, 20, 50])
CLEAR = np.array([[190, 30, 20, 10, 0, 0, 0, 0, 0, 0.]])  # 250 teachers, a clear winner
SPLIT = np.array([[60, 55, 40, 30, 25, 20, 10, 5, 3, 2.]])  # no clear winner


def test_the_bounds_match_the_papers_reference_computation():
    """Figures from the reference code of Papernot et al. 2018 (tensorflow/privacy,
    research/pate_2018/core.py: compute_logq_gaussian, rdp_gaussian, compute_logpr_answered,
    compute_rdp_threshold) on these vote histograms."""
    assert pate.log_q_gnmax(CLEAR, 40.0)[0] == pytest.approx(-4.998797372011583, rel=1e-12)
    assert pate.rdp_gnmax(pate.log_q_gnmax(CLEAR, 40.0), 40.0, ORDERS)[0] == pytest.approx(
        [0.00125, 0.001746235924, 0.002088626745, 0.003341531053, 0.020250969047], rel=1e-9)
    assert pate.log_q_gnmax(SPLIT, 40.0)[0] == pytest.approx(-0.10536051565782628, rel=1e-12)  # capped at 1 - 1/m
    assert pate.rdp_gnmax(pate.log_q_gnmax(SPLIT, 40.0), 40.0, ORDERS)[0] == pytest.approx(ORDERS / 40.0**2)
    answered = pate.log_pr_answered(np.array([250.0]), 100, 30.0)
    assert answered[0] == pytest.approx(-2.8665161296376294e-07, rel=1e-9)
    assert pate.rdp_threshold(answered, 30.0, ORDERS)[0] == pytest.approx(
        [1.151065176774e-07, 1.350162704181e-07, 1.916410782051e-07, 5.354164154781e-07, 4.705663921084e-05], rel=1e-9)
    refused = pate.log_pr_answered(np.array([60.0]), 300, 30.0)
    assert refused[0] == pytest.approx(-35.01343715991456, rel=1e-12)
    assert pate.rdp_threshold(refused, 30.0, ORDERS)[0] == pytest.approx(
        [4.002920791603e-16, 5.198632227658e-16, 9.857643966583e-16, 6.795057449482e-15, 1.125792752806e-11],
        rel=1e-6)


def test_the_union_bound_holds_by_simulation_and_clear_votes_cost_less():
    rng = np.random.default_rng(0)
    counts = np.array([[50, 30, 0, 0.], [80, 2, 0, 0], [30, 29, 1, 0]])
    noisy = counts[None] + rng.normal(0, 6.0, size=(200_000, *counts.shape))
    wrong = (noisy.argmax(axis=2) != counts.argmax(axis=1)).mean(axis=0)
    assert (wrong <= np.exp(pate.log_q_gnmax(counts, 6.0)) + 0.003).all()
    rdp = pate.rdp_gnmax(pate.log_q_gnmax(counts, 6.0), 6.0)
    assert (rdp <= pate.ORDERS / 36 + 1e-12).all()  # never above the data-independent bound
    assert (rdp[1] <= rdp[0]).all() and (rdp[0] <= rdp[2]).all()  # the clearer the majority, the cheaper
    assert rdp[1].sum() < rdp[0].sum() < rdp[2].sum()


def test_confident_gnmax_answers_clear_majorities_within_the_budget():
    uploads = [np.eye(4)[[0, 0, 1, 2, 3]] * 5.0 for _ in range(40)]
    uploads += [np.eye(4)[[0, 1, 1, 3, 3]] * 5.0 for _ in range(20)]  # rows 0, 2, 4 unanimous; 1, 3 split 40/20
    counts = vote_counts(uploads)
    assert counts[0].tolist() == [60, 0, 0, 0] and counts[1].tolist() == [40, 20, 0, 0]
    config = rules.complete(RunConfig(clients=60, rounds=1, dp="confident-gnmax", dp_noise=2.0,
                                      dp_threshold=0.9, dp_threshold_noise=2.0, target_epsilon=50.0))
    accountant = Accountant(config, 2.0)
    logits = confident_votes(uploads, 0.9, 2.0, 2.0, np.random.default_rng(0), accountant)
    assert np.isfinite(logits[[0, 2, 4]]).all() and logits[[0, 2, 4]].argmax(axis=1).tolist() == [0, 1, 3]
    assert np.isnan(logits[[1, 3]]).all()  # 40 of 60 is below the threshold of 54 votes
    spent = accountant.spent().epsilon
    assert 0 < spent <= 50.0 and not accountant.would_exceed([0], 50.0)
    tight = Accountant(config.replace(target_epsilon=spent / 2), 2.0)
    assert np.isnan(confident_votes(uploads, 0.9, 2.0, 2.0, np.random.default_rng(0), tight)).all()
    assert tight.would_exceed([0], spent / 2) and tight.spent().epsilon == 0.0  # nothing released past the budget


def test_confident_gnmax_runs_and_stops_answering_at_the_budget(tmp_path):
    config = tiny_config().replace(rounds=2, fraction=1.0, public_subset=50, dp="confident-gnmax", dp_noise=1.0,
                                   dp_threshold=0.6, dp_threshold_noise=2.0)
    (tmp_path / "free").mkdir()
    (tmp_path / "budget").mkdir()
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path / "free")
    free = read_server_metrics(tmp_path / "free")
    assert (free["answered"] > 0).all() and (free["answered"] < 50).all()  # split votes are refused
    summary = read_summary(tmp_path / "free")  # the released, smoothed ε costs more than the data-dependent one
    assert summary["epsilon_sanitized_expected"] > summary["epsilon"] > 0 and summary["epsilon_sanitized_spread"] > 0
    budget = (free["epsilon"].iloc[1] + free["epsilon"].iloc[2]) / 2  # rounds 0 and 1 fit, round 2 only in part
    run_server(PoolGrid(config.clients, workers=0), config.replace(target_epsilon=budget), tmp_path / "budget")
    capped = read_server_metrics(tmp_path / "budget")
    assert capped["answered"].iloc[:2].tolist() == free["answered"].iloc[:2].tolist()
    assert capped["answered"].iloc[2] < free["answered"].iloc[2]
    assert free["epsilon"].iloc[1] < capped["epsilon"].iloc[2] <= budget


@pytest.mark.parametrize("changes, key", [
    ({"dp_noise": 0.0, "target_epsilon": 4.0}, "dp-noise"),
    ({"dp_threshold_noise": 0.0}, "dp-threshold-noise"),
])
def test_confident_gnmax_refuses_what_it_cannot_account(changes, key):
    with pytest.raises(ConfigError) as err:
        rules.complete(RunConfig(dp="confident-gnmax", dp_noise=2.0, dp_threshold_noise=5.0).replace_unchecked(
            **changes))
    assert err.value.key == key


def test_the_threshold_share_is_checked():
    with pytest.raises(ConfigError) as err:
        RunConfig(dp_threshold=1.5).check_fields()
    assert err.value.key == "dp-threshold" and "(0, 1]" in str(err.value)
    assert math.isclose(RunConfig().dp_threshold, 0.6)
