"""Differential privacy of knowledge: accountant values, noise, clipping, budgets, bad input, attacks."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import softmax
from scipy.stats import norm

from fedkd import rules
from fedkd.audit.inference_attacks import (
    attack_run,
    balanced_nonmembers,
    estimated_histogram,
    membership_inference,
    total_variation,
    tpr_at_fpr,
)
from fedkd.config import ConfigError, RunConfig
from fedkd.data.datasets import load_splits
from fedkd.knowledge import payload
from fedkd.learning.models import build_model
from fedkd.privacy.accounting import Accountant, calibrate_noise, planned_epsilon
from fedkd.privacy.mechanisms import clip, local_release, log_probabilities, noisy_mean, noisy_row_mean
from fedkd.results.store import CLIENT_STATE_DIR, read_metrics, read_server_metrics
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from fedkd.training.server_model import accuracy_on_test
from tests.helpers import tiny_config

DELTA = 1e-5


def _analytic_gaussian_epsilon(z: float, delta: float) -> float:
    """The exact ε of one Gaussian mechanism with noise multiplier z (Balle & Wang 2018)."""
    def excess(eps):
        return norm.cdf(1 / (2 * z) - eps * z) - math.exp(eps) * norm.cdf(-1 / (2 * z) - eps * z) - delta
    return brentq(excess, 0.0, 100.0)


def _rdp_epsilon(z: float, releases: int, delta: float) -> float:
    """RDP of ``releases`` Gaussian mechanisms, α(releases)/(2z²), converted to (ε, δ) with the
    conversion of Canonne, Kamath and Steinke (2020), over a fine grid of orders."""
    alphas = np.linspace(1.01, 200, 200_000)
    rdp = releases * alphas / (2 * z ** 2)
    eps = rdp + np.log((alphas - 1) / alphas) - (np.log(delta) + np.log(alphas)) / (alphas - 1)
    return float(eps.min())


def _config(**changes) -> RunConfig:
    """Central DP with the whole logit matrix clipped (multiplier σ/2), unless changed."""
    return RunConfig(clients=100, rounds=10, dp_bound="matrix").replace(**changes)


@pytest.mark.parametrize("z", [0.8, 2.0, 5.0])
def test_one_gaussian_release_matches_independent_computations(z):
    # local DP: one upload is one Gaussian mechanism of multiplier σ/2 (replace-one sensitivity 2C)
    eps = Accountant(_config(dp="local", dp_noise=2 * z), 2 * z).local_epsilon(1)
    assert eps == pytest.approx(_rdp_epsilon(z, 1, DELTA), rel=0.02)
    assert _analytic_gaussian_epsilon(z, DELTA) <= eps <= 1.6 * _analytic_gaussian_epsilon(z, DELTA)


def test_central_accounting_without_sampling_is_the_composed_gaussian():
    config = _config(dp="central", dp_noise=6.0)  # fraction 1: every release has all 100 clients
    accountant = Accountant(config, 6.0)
    for _ in range(11):
        accountant.record(list(range(100)))
    assert accountant.spent().epsilon == pytest.approx(_rdp_epsilon(3.0, 11, DELTA), rel=0.02)
    assert accountant.spent().delta == DELTA and "replace-one" in accountant.spent().unit


def test_epsilon_grows_with_rounds_shrinks_with_noise_and_with_sampling():
    eps = [planned_epsilon(_config(dp="central", dp_noise=4.0, rounds=r), 4.0) for r in (1, 5, 20)]
    assert eps[0] < eps[1] < eps[2]
    by_noise = [planned_epsilon(_config(dp="central", dp_noise=s), s) for s in (2.0, 4.0, 8.0)]
    assert by_noise[0] > by_noise[1] > by_noise[2]
    assert planned_epsilon(_config(dp="central", dp_noise=4.0, fraction=0.1), 4.0) < eps[1] * 2  # 10 vs 5 rounds
    assert planned_epsilon(_config(dp="local", dp_noise=4.0), 4.0) > 0


def test_calibrated_noise_meets_the_budget_tightly():
    for dp in ("central", "local"):
        config = _config(dp=dp, target_epsilon=2.0)
        sigma = calibrate_noise(config, 2.0)
        assert planned_epsilon(config, sigma) <= 2.0 < planned_epsilon(config, sigma * 0.99)


def test_without_dp_epsilon_is_infinite():
    assert math.isinf(Accountant(RunConfig(), 0.0).spent().epsilon)
    assert str(Accountant(RunConfig(), 0.0).spent()) == "ε = inf (no DP)"


def test_clipping_bounds_the_norm_and_leaves_short_uploads_alone():
    rng = np.random.default_rng(0)
    long, short = rng.normal(size=(50, 10)) * 10, rng.normal(size=(50, 10)) * 0.01
    assert np.linalg.norm(clip(long, 3.0)) == pytest.approx(3.0)
    np.testing.assert_array_equal(clip(short, 3.0), short)
    assert all(np.linalg.norm(clip(rng.normal(size=(20, 10)) * s, 1.0)) <= 1.0 + 1e-9 for s in (0.1, 1, 10))


def test_the_noise_added_has_the_claimed_std():
    rng = np.random.default_rng(1)
    uploads = [np.zeros((200, 10)) for _ in range(8)]
    central = noisy_mean(uploads, bound=2.0, noise=1.5, rng=rng)
    assert central.std() == pytest.approx(1.5 * 2.0 / 8, rel=0.03) and abs(central.mean()) < 0.02
    local = local_release(np.zeros((200, 10), np.float32), bound=2.0, noise=1.5, rng=rng)
    assert local.dtype == np.float32 and local.std() == pytest.approx(3.0, rel=0.03)
    ones = [np.ones((200, 10))] * 8  # norm sqrt(2000) > 2: clipped to 2 before summing
    assert (noisy_mean(ones, 2.0, 1e-9, rng) == pytest.approx(np.full((200, 10), 2.0 / math.sqrt(2000))))


@pytest.mark.parametrize("changes, key, words", [
    ({"dp": "central", "target_epsilon": 0.0}, "target-epsilon", "ε > 0"),
    ({"dp": "central", "dp_bound": "matrix", "dp_noise": 2.0, "target_epsilon": 3.0}, "target-epsilon",
     "round 0 alone spends ε = 4.7"),
    ({"dp": "central", "dp_bound": "cells", "dp_noise": 2.0}, "dp-bound", "allowed: rows, matrix"),
    ({"dp": "central", "target_epsilon": -1.0}, "target-epsilon", "ε > 0"),
    ({"dp": "central", "dp_noise": 1.0, "dp_delta": 0.0}, "dp-delta", "(0, 1)"),
    ({"dp": "central", "dp_noise": 1.0, "dp_delta": 1.0}, "dp-delta", "(0, 1)"),
    ({"dp": "central", "dp_noise": 1.0, "dp_delta": 0.3}, "dp-delta", "below 1/clients = 0.2"),
    ({"dp": "central", "dp_noise": -1.0}, "dp-noise", ">= 0"),
    ({"dp": "central", "dp_noise": 1.0, "dp_clip": 0.0}, "dp-clip", "> 0"),
    ({"dp": "central"}, "dp", "needs --dp-noise > 0 or a finite --target-epsilon"),
    ({"dp_noise": 1.0}, "dp", "need a mechanism"),
    ({"dp": "gaussian", "dp_noise": 1.0}, "dp", "none, central, local"),
    ({"dp": "central", "dp_noise": 1.0, "strategy": "feddistill", "local_epochs": 1}, "dp", "per-class means"),
    ({"dp": "local", "dp_noise": 1.0, "strategy": "fedavg", "models": "cnn-s"}, "dp", "local DP of weights"),
    ({"dp": "central", "dp_noise": 1.0, "strategy": "feddf", "local_epochs": 1}, "dp", "uploads weights"),
    ({"dp": "central", "dp_noise": 1.0, "knowledge": "relational"}, "dp", "uploads --knowledge=relational"),
    ({"dp": "local", "dp_noise": 1.0, "aggregator": "median"}, "aggregator", "--aggregator=mean"),
    ({"dp": "central", "dp_noise": 1.0, "compression": "int8"}, "compression", "--compression=none"),
])
def test_bad_privacy_settings_are_refused_naming_the_key(changes, key, words):
    with pytest.raises(ConfigError) as err:
        rules.changed(tiny_config(), **changes)
    assert err.value.key == key and words in str(err.value)


def _run(tmp_path, config):
    tmp_path.mkdir(exist_ok=True)
    run_server(PoolGrid(config.clients, workers=0), config, tmp_path)
    return json.loads((tmp_path / "summary.json").read_text()), read_server_metrics(tmp_path)


@pytest.mark.slow
def test_a_central_dp_run_reports_growing_epsilon_within_its_budget(tmp_path):
    config = tiny_config().replace(rounds=2, dp="central", target_epsilon=5.0)
    summary, server = _run(tmp_path, config)
    assert summary["rounds_completed"] == 2 and not summary["stopped_early"]
    assert 0 < server["epsilon"].iloc[0] < server["epsilon"].iloc[1] < server["epsilon"].iloc[2] <= 5.0
    assert summary["epsilon"] == pytest.approx(server["epsilon"].iloc[-1])
    assert summary["dp_noise"] == pytest.approx(calibrate_noise(config, 5.0))


def test_bounded_rows_add_the_claimed_noise_and_give_back_the_mean_probabilities():
    rng = np.random.default_rng(2)
    zeros = [np.zeros((200, 10)) for _ in range(8)]
    mean = noisy_row_mean(zeros, noise=4.0, rng=rng)
    assert mean.std() == pytest.approx(4.0 / 8, rel=0.03) and abs(mean.mean()) < 0.05
    p = softmax(rng.normal(size=(5, 200, 10)), axis=2)
    exact = noisy_row_mean(list(p), noise=0.0, rng=rng)
    np.testing.assert_allclose(exact, p.mean(axis=0))
    np.testing.assert_allclose(softmax(log_probabilities(exact, 2.0) / 2.0, axis=1), p.mean(axis=0), rtol=1e-6)


def test_rows_account_as_composed_gaussian_queries_like_gnmax():
    rows = _config(dp="central", dp_bound="rows", dp_noise=30.0, public_subset=400)
    votes = _config(dp="gnmax", dp_noise=30.0, public_subset=400)
    assert planned_epsilon(rows, 30.0) == pytest.approx(planned_epsilon(votes, 30.0))
    single = Accountant(rows, 30.0)
    single.record(list(range(100)))  # all clients: no amplification
    assert single.spent().epsilon == pytest.approx(_rdp_epsilon(30.0 / math.sqrt(2 * 400), 1, DELTA), rel=0.02)
    assert "√2 per public id" in single.spent().unit


def test_bounded_rows_keep_the_signal_that_a_clipped_matrix_loses_at_the_same_epsilon():
    """100 clients mostly agree on the class of 100 public ids through confident logits;
    at ε = 8 over 11 releases the rows' noisy argmax keeps more labels than the clipped
    matrix, whose clipping scales every confident logit down."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 10, 100)
    logits = [8 * np.eye(10)[np.where(rng.random(100) < 0.6, truth, rng.integers(0, 10, 100))]
              + rng.normal(size=(100, 10)) for _ in range(100)]
    accuracy = {}
    for bound in ("rows", "matrix"):
        config = _config(dp="central", dp_bound=bound, public_subset=100)
        noise = calibrate_noise(config, 8.0)
        if bound == "rows":
            probabilities = [softmax(z / 2.0, axis=1) for z in logits]
            teacher = noisy_row_mean(probabilities, noise, rng)
        else:
            teacher = noisy_mean(logits, config.dp_clip, noise, rng)
        accuracy[bound] = float((teacher.argmax(1) == truth).mean())
    assert accuracy["rows"] > accuracy["matrix"] + 0.1, accuracy  # measured: 0.62 against 0.42


def test_a_fixed_noise_run_stops_before_the_round_that_would_exceed_its_budget(tmp_path):
    config = tiny_config().replace(rounds=6, dp="central", dp_bound="matrix", dp_noise=4.0, target_epsilon=4.0)
    summary, server = _run(tmp_path, config)
    assert 0 < summary["rounds_completed"] < 6 and list(server.index) == list(range(summary["rounds_completed"] + 1))
    assert summary["epsilon"] <= 4.0 and "would exceed target-epsilon=4" in summary["stopped_early"]
    assert (tmp_path / "accuracy.png").exists() and "stopped before round" in (tmp_path / "events.log").read_text()


def test_the_round_before_a_budget_stop_is_evaluated_as_the_last(tmp_path):
    config = tiny_config().replace(rounds=6, dp="central", dp_bound="matrix", dp_noise=4.0, target_epsilon=4.0,
                                   eval_every=6)
    summary, _ = _run(tmp_path, config)
    last = summary["rounds_completed"]
    assert 0 < last < 6
    metrics = read_metrics(tmp_path)
    evaluated = metrics[(metrics.metric == "test_acc") & (metrics.client != "server")]
    assert sorted(set(evaluated["round"])) == [0, last]  # evaluated with the whole test set before the stop


def test_a_local_dp_run_reports_the_worst_clients_epsilon(tmp_path):
    config = tiny_config().replace(rounds=2, dp="local", dp_noise=3.0)
    summary, server = _run(tmp_path, config)
    uploads = 1 + 2  # round 0 and at most every later round
    assert summary["epsilon"] <= Accountant(config, 3.0).local_epsilon(uploads)
    assert "local" in summary["dp_unit"] and summary["acc_mean_final"] > 0.1


@pytest.mark.slow
def test_dp_fedavg_through_flowers_wrapper_spends_within_its_budget(tmp_path):
    config = tiny_config().replace(rounds=2, strategy="fedavg", models="mlp-s", dp="central", target_epsilon=8.0,
                                   dp_clip=5.0)
    summary, server = _run(tmp_path, config)
    assert 0 < summary["epsilon"] <= 8.0 and "replace-one" in summary["dp_unit"]
    plain, _ = _run(tmp_path / "plain", config.replace(dp="none", target_epsilon=math.inf))
    assert summary["server_acc_final"] != plain["server_acc_final"]  # the noise reached the global model
    # 5 clients cannot hide one another (the noise ruins accuracy); what is spent is what the plan computes
    assert summary["epsilon"] == pytest.approx(planned_epsilon(config, summary["dp_noise"]), rel=1e-6)


def test_a_run_without_dp_reports_infinite_epsilon(tmp_path):
    summary, server = _run(tmp_path, tiny_config().replace(rounds=1))
    assert math.isinf(summary["epsilon"]) and np.isinf(server["epsilon"]).all() and summary["dp_unit"] == "no DP"


def test_membership_inference_finds_a_memorizing_model_and_not_an_untrained_one():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 20)).astype(np.float32), rng.integers(0, 4, 400)
    members = np.arange(60)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    fresh = torch.nn.Sequential(torch.nn.Linear(20, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(300):  # labels are noise: only memorization fits them
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x[members])), torch.from_numpy(y[members])).backward()
        opt.step()
    pool = np.arange(100, 400)
    found = membership_inference(model, x[members], y[members], x[pool], y[pool], seed=0)
    blind = membership_inference(fresh, x[members], y[members], x[pool], y[pool], seed=0)
    assert found["mia_loss_auc"] > 0.9 and found["mia_entropy_auc"] > 0.7
    assert abs(blind["mia_loss_auc"] - 0.5) < 0.15


def test_non_members_follow_the_members_label_histogram():
    rng = np.random.default_rng(0)
    member_y, pool_y = np.array([0] * 30 + [3] * 10), rng.integers(0, 5, 1000)
    picked = pool_y[balanced_nonmembers(member_y, pool_y, rng)]
    assert np.bincount(picked, minlength=5).tolist() == [30, 0, 0, 10, 0]


def test_tpr_at_fpr_and_label_inference_on_known_values():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert tpr_at_fpr(truth, np.array([9, 8, 1, 0, 7, 2, 3, 4]), 0.0) == 0.5
    assert total_variation(np.array([1.0, 0, 0]), np.array([0, 1.0, 0])) == 1.0
    assert total_variation(np.array([2.0, 2.0]), np.array([1.0, 1.0])) == 0.0
    logits = np.full((100, 3), -5.0)
    logits[:70, 0] = logits[70:, 2] = 5.0
    assert total_variation(estimated_histogram(logits), np.array([70.0, 0, 30])) < 0.01


def test_opacus_and_dp_accounting_agree_on_poisson_sampled_gaussian_steps():
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    from fedkd.privacy import dp_sgd

    sigma, q, steps = 1.1, 0.05, 600
    reference = RdpAccountant()
    reference.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    assert dp_sgd.epsilon([(sigma, q, steps)], DELTA) == pytest.approx(reference.get_epsilon(DELTA), rel=0.02)
    assert dp_sgd.epsilon([], DELTA) == 0.0


@pytest.mark.slow
def test_dp_sgd_clients_report_record_level_epsilon_within_the_budget(tmp_path):
    from fedkd.privacy import dp_sgd

    config = tiny_config().replace(rounds=1, dp="dp-sgd", target_epsilon=3.0, dp_clip=1.0, init_epochs=2,
                                   fraction=1.0)
    summary, server = _run(tmp_path, config)
    import pandas as pd

    rows = pd.read_csv(tmp_path / "metrics.csv", dtype={"client": str})
    per_client = rows[(rows.metric == "epsilon") & (rows.client != "server")]
    final = per_client[per_client["round"] == 1].set_index("client")["value"]
    assert len(final) == config.clients and (final <= 3.0).all() and (final > 0.5).all()
    assert summary["epsilon"] == pytest.approx(final.max()) and "record-level" in summary["dp_unit"]
    assert (per_client[per_client["round"] == 0]["value"].to_numpy() < final.to_numpy()).all()  # ε grows
    assert dp_sgd.calibrate(3.0, DELTA, 100, 64, 3) > dp_sgd.calibrate(3.0, DELTA, 100, 64, 1)


@pytest.mark.parametrize("changes, key, words", [
    ({"dp": "dp-sgd", "dp_noise": 1.0, "strategy": "feddistill", "local_epochs": 1}, "dp", "per-class means"),
    ({"dp": "dp-sgd", "dp_noise": 1.0, "target_epsilon": 2.0}, "target-epsilon", "not both"),
    ({"dp": "dp-sgd", "dp_noise": 1.0, "strategy": "centralized"}, "dp", "pooled shards"),
])
def test_bad_dp_sgd_settings_are_refused(changes, key, words):
    with pytest.raises(ConfigError) as err:
        rules.changed(tiny_config(), **changes)
    assert err.value.key == key and words in str(err.value)


@pytest.mark.slow
def test_gnmax_votes_take_the_noisy_argmax_and_account_as_composed_gaussian_queries(tmp_path):
    from fedkd.privacy.mechanisms import noisy_votes

    rng = np.random.default_rng(0)
    uploads = [np.eye(4)[[2, 2, 1]] * 5 + rng.normal(0, 0.1, (3, 4)) for _ in range(7)]
    teacher = noisy_votes(uploads, noise=0.01, rng=rng)
    assert teacher.argmax(axis=1).tolist() == [2, 2, 1] and np.allclose(np.exp(teacher).sum(axis=1), 1)
    config = _config(dp="gnmax", dp_noise=40.0, public_subset=50)  # fraction 1: no amplification
    accountant = Accountant(config, 40.0)
    accountant.record(list(range(100)))
    assert accountant.spent().epsilon == pytest.approx(_rdp_epsilon(40.0 / math.sqrt(2), 50, DELTA), rel=0.02)
    run = tiny_config().replace(rounds=1, dp="gnmax", target_epsilon=8.0, public_subset=50)
    summary, server = _run(tmp_path, run)
    assert 0 < summary["epsilon"] <= 8.0 and "GNMax" in summary["dp_unit"] and server["teacher_acc"].notna().all()
    per_client = server.loc[1, "bytes_up"] / server.loc[1, "replied"]
    assert per_client < 50 * (4 + 10 * 4)  # less than the ids and float32 logits alone: one byte per vote


def test_votes_travel_as_class_ids_and_malformed_votes_are_rejected():
    ids, logits = np.arange(5), np.eye(4)[[3, 0, 1, 1, 2]] + 0.1
    record = payload.pack_votes(ids, logits)
    assert record["votes"].numpy().dtype == np.uint8
    back = payload.unpack(payload.votes_as_logits(record, 4))
    assert back[0].tolist() == ids.tolist() and back[1].argmax(axis=1).tolist() == [3, 0, 1, 1, 2]
    with pytest.raises(payload.KnowledgeError, match="outside 0..3"):
        payload.votes_as_logits(payload.pack_votes(ids, np.eye(6)[[5, 0, 1, 1, 2]]), 4)
    with pytest.raises(payload.KnowledgeError, match="expected arrays"):
        payload.votes_as_logits(payload.pack(ids, logits), 4)


def test_the_released_server_model_is_kept_and_attacked(tmp_path):
    from fedkd.audit.inference_attacks import attack_server_model
    from fedkd.results.store import SERVER_MODEL_FILE

    summary, _ = _run(tmp_path / "dsfl", tiny_config().replace(rounds=1, strategy="dsfl"))
    assert (tmp_path / "dsfl" / SERVER_MODEL_FILE).exists()
    released = build_model("cnn-s", (1, 8, 8), 10, 0)
    released.load_state_dict(torch.load(tmp_path / "dsfl" / SERVER_MODEL_FILE))
    splits = load_splits(RunConfig(dataset="digits", public_size=300))
    assert accuracy_on_test(released, splits) == pytest.approx(summary["server_acc_final"])  # the final model
    figures = attack_server_model(tmp_path / "dsfl", max_clients=3)
    assert set(figures) == {f"server_mia_{a}_{m}" for a in ("loss", "confidence", "entropy")
                            for m in ("auc", "tpr@0.01", "tpr@0.001")}
    assert all(math.isfinite(v) for v in figures.values())
    _run(tmp_path / "fedmd", tiny_config().replace(rounds=1))
    assert attack_server_model(tmp_path / "fedmd") == {}  # fedmd has no server model


def test_feddistill_uploads_name_each_clients_label_set_and_the_attack_says_so(tmp_path):
    config = tiny_config().replace(rounds=1, strategy="feddistill", partition="pathological", fraction=1.0)
    tmp_path.mkdir(exist_ok=True)
    run_server(PoolGrid(config.clients, workers=0, state_dir=tmp_path / CLIENT_STATE_DIR), config, tmp_path)
    attacked, _ = attack_run(tmp_path, max_clients=5, references=0)
    assert len(attacked) == 5 and (attacked.label_set_exact == 1.0).all()
    assert (attacked.label_tv < attacked.label_tv_uniform).all()  # the label set alone beats a uniform guess


def test_sensitivities_hold_by_brute_force_on_tiny_neighbouring_federations():
    """Replace-one neighbours of 4 parties on 2 public ids of 3 classes, enumerated: the
    vote counts move by at most √2 per row and the top count by at most 1 (GNMax and the
    threshold check); summed probability rows by at most √2 per row, whatever the logits
    (central, rows); a clipped sum by at most 2C (central, matrix; local)."""
    import itertools

    from fedkd.privacy.mechanisms import SENSITIVITY, VOTE_SENSITIVITY, vote_counts

    rng = np.random.default_rng(0)
    uploads = [rng.normal(0, 5, size=(2, 3)) for _ in range(4)]
    counts = vote_counts(uploads)
    replacements = [np.eye(3)[list(v)] * 9.0 for v in itertools.product(range(3), repeat=2)]
    worst_row, worst_top = 0.0, 0.0
    for i, other in itertools.product(range(4), replacements):
        moved = vote_counts(uploads[:i] + [other] + uploads[i + 1:]) - counts
        worst_row = max(worst_row, np.linalg.norm(moved, axis=1).max())
        worst_top = max(worst_top, np.abs((counts + moved).max(axis=1) - counts.max(axis=1)).max())
    assert worst_row == pytest.approx(VOTE_SENSITIVITY) and worst_top == 1  # reached, never passed

    scales = (0.1, 1.0, 30.0)  # from flat to one-hot probabilities
    logits = [s * rng.normal(size=(2, 3)) for s in scales for _ in range(3)]
    probs = [softmax(z / 2.0, axis=1) for z in logits]
    worst = max(np.linalg.norm(p - q, axis=1).max() for p, q in itertools.combinations(probs, 2))
    assert 1.2 < worst <= VOTE_SENSITIVITY + 1e-12  # sharp rows come near √2

    bound = 10.0
    clipped = [clip(5 * z, bound) for z in logits]
    worst = max(np.linalg.norm(a - b) for a, b in itertools.combinations(clipped, 2))
    assert worst <= SENSITIVITY * bound + 1e-9
