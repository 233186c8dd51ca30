"""Offline LiRA (fedkd.audit.lira): the scaled confidence, calibration per sample, a run attacked."""

import numpy as np
import torch
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from fedkd.audit.inference_attacks import attack_run
from fedkd.audit.lira import lira_scores, scaled_confidence
from fedkd.results.store import CLIENT_STATE_DIR
from fedkd.runtime.pool_grid import PoolGrid
from fedkd.server.app import run_server
from tests.helpers import tiny_config


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4))


def _fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    return model.eval()


def test_scaled_confidence_is_the_log_odds_of_the_label():
    model = _mlp(0).eval()
    x, y = np.random.default_rng(0).normal(size=(50, 20)).astype(np.float32), np.arange(50) % 4
    p = softmax(model(torch.from_numpy(x)).detach().double().numpy(), axis=1)[np.arange(50), y]
    assert np.allclose(scaled_confidence(model, x, y), np.log(p / (1 - p)), atol=1e-9)


def test_lira_finds_members_and_scores_a_model_that_never_saw_them_as_chance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 20)).astype(np.float32), rng.integers(0, 4, 600)  # noise labels
    members, nonmembers = np.arange(100), np.arange(100, 200)
    references = [_fit(_mlp(s), x[200 + 100 * s:300 + 100 * s], y[200 + 100 * s:300 + 100 * s]) for s in range(4)]
    target = _fit(_mlp(10), x[members], y[members])
    outsider = _fit(_mlp(11), x[500:600], y[500:600])  # trained like a reference, on other rows
    rows = np.r_[members, nonmembers]
    truth = np.r_[np.ones(100), np.zeros(100)]
    assert roc_auc_score(truth, lira_scores(target, references, x[rows], y[rows])) > 0.95
    assert abs(roc_auc_score(truth, lira_scores(outsider, references, x[rows], y[rows])) - 0.5) < 0.15


def test_a_run_is_attacked_per_client_and_pooled_with_lira(tmp_path):
    config = tiny_config().replace(rounds=1, fraction=1.0)
    run_server(PoolGrid(config.clients, workers=0, state_dir=tmp_path / CLIENT_STATE_DIR), config, tmp_path)
    attacked, pooled = attack_run(tmp_path, max_clients=3, references=2)
    assert len(attacked) == 3 and attacked.mia_lira_auc.notna().all()
    assert {f"pooled_mia_{a}_auc" for a in ("loss", "confidence", "entropy", "lira")} <= set(pooled)
    without, pooled_without = attack_run(tmp_path, max_clients=3, references=0)
    assert "mia_lira_auc" not in without and "pooled_mia_lira_auc" not in pooled_without
    assert without.mia_loss_auc.tolist() == attacked.mia_loss_auc.tolist()  # the threshold attacks are unchanged
