"""Empirical privacy: what an attacker learns from released students and from uploads.

- **Membership inference** against a client's released student: is a sample in the
  client's private shard? Members are shard samples, non-members test samples drawn
  with the same label histogram (so the attack cannot win on labels alone), equal
  in number. Three threshold attacks: the sample's loss (Yeom et al. 2018; it knows
  the label), and the label-free top posterior and prediction entropy (Salem et al.
  2019); and the calibrated offline LiRA (``fedkd.audit.lira``), where the public
  pool's labels share the private label space.
  Reported: ROC AUC and the true-positive rate at 1 % and 0.1 % false positives, per
  client and pooled over the attacked clients (enough non-members that 0.1 % is
  several of them).
- **Label-distribution inference** by the honest-but-curious server: it estimates a
  client's class histogram as the mean softmax of the soft labels the client
  uploaded; reported as total-variation distance to the shard's true histogram.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.metrics import roc_auc_score, roc_curve

from fedkd.audit.lira import REFERENCES, lira_scores, reference_students
from fedkd.data.datasets import load_splits
from fedkd.data.partition import partition_indices
from fedkd.knowledge.kinds import KINDS
from fedkd.knowledge.payload import query_ids
from fedkd.learning.models import build_model
from fedkd.privacy.mechanisms import MECHANISMS
from fedkd.protocol import CLASS_LOGITS, PUBLIC_LOGITS
from fedkd.results.checkpoint import final_students
from fedkd.results.store import SERVER_MODEL_FILE, read_metrics, read_run_config, read_summary
from fedkd.strategies import STRATEGIES
from fedkd.training.loops import class_means, views

THRESHOLD_ATTACKS = ("loss", "confidence", "entropy")  # the scores of attack_scores
FPRS = (0.01, 0.001)


def balanced_nonmembers(member_y: np.ndarray, pool_y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``pool_y`` with the label histogram of ``member_y`` (as far as the pool
    holds each label), one per member where possible."""
    picks = []
    for label, count in zip(*np.unique(member_y, return_counts=True)):
        candidates = np.flatnonzero(pool_y == label)
        picks.append(rng.choice(candidates, size=min(count, len(candidates)), replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def attack_scores(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample membership scores (higher = more likely a member) of each attack."""
    logits = model(torch.from_numpy(x))
    labels = torch.from_numpy(y)
    log_p = F.log_softmax(logits, dim=1)
    return {
        "loss": (-F.nll_loss(log_p, labels, reduction="none")).numpy(),
        "confidence": log_p.max(1).values.exp().numpy(),  # the top posterior: no label needed
        "entropy": (log_p.exp() * log_p).sum(1).numpy(),  # negative entropy: members are predicted surely
    }


def tpr_at_fpr(truth: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """The best true-positive rate of a threshold whose false-positive rate is at most ``fpr``."""
    fprs, tprs, _ = roc_curve(truth, scores)
    return float(tprs[fprs <= fpr].max())


def membership_scores(model: torch.nn.Module, member_x: np.ndarray, member_y: np.ndarray,
                      pool_x: np.ndarray, pool_y: np.ndarray, seed: int,
                      references: list[torch.nn.Module] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(truth, each attack's scores) on members vs balanced non-members, as many of each;
    LiRA's too when ``references`` are given."""
    rng = np.random.default_rng(seed)
    out = balanced_nonmembers(member_y, pool_y, rng)
    keep = rng.permutation(len(member_y))[:len(out)]  # as many members as non-members
    x = np.concatenate([member_x[keep], pool_x[out]])
    y = np.concatenate([member_y[keep], pool_y[out]])
    scores = attack_scores(model, x, y)
    if references:
        scores["lira"] = lira_scores(model, references, x, y)
    return np.r_[np.ones(len(keep)), np.zeros(len(out))], scores


def figures_of(truth: np.ndarray, scores: dict[str, np.ndarray], prefix: str = "mia") -> dict[str, float]:
    """ROC AUC and TPR at 1 % / 0.1 % FPR of each attack."""
    figures = {}
    for name, s in scores.items():
        figures[f"{prefix}_{name}_auc"] = float(roc_auc_score(truth, s))
        for fpr in FPRS:
            figures[f"{prefix}_{name}_tpr@{fpr:g}"] = tpr_at_fpr(truth, s, fpr)
    return figures


def membership_inference(model: torch.nn.Module, member_x: np.ndarray, member_y: np.ndarray,
                         pool_x: np.ndarray, pool_y: np.ndarray, seed: int) -> dict[str, float]:
    """AUC and TPR at 1 % / 0.1 % FPR of each threshold attack on ``model``, members vs balanced non-members."""
    return figures_of(*membership_scores(model, member_x, member_y, pool_x, pool_y, seed))


def estimated_histogram(upload: np.ndarray) -> np.ndarray:
    """The server's estimate of a client's label histogram: mean softmax of its uploaded logits."""
    return softmax(upload, axis=1).mean(axis=0)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def attack_run(run_dir: Path, max_clients: int = 20, references: int = REFERENCES
               ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Both attacks on the clients of a finished simulation that took part in its last
    round (at most ``max_clients``, by partition id): one row per client, and the
    membership figures pooled over those clients (``pooled_mia_*``). LiRA runs with
    ``references`` reference students per client (0: not at all) where the public
    pool's labels are in the private label space. The label
    estimate reads soft labels on public ids (the mean softmax) or, for FedDistill,
    the classes of the per-class upload, which name the client's label set exactly
    (``label_set_exact``); NaN for strategies that upload neither.

    The server's view of a client is its last upload, recomputed exactly from the
    client's final student (the model that made it) on that round's public ids, with
    the same local noise where the run used local DP; a central-DP server sees raw
    uploads (it is the trusted party)."""
    config = read_run_config(run_dir)
    summary = read_summary(run_dir)
    last = summary["rounds_completed"]
    metrics = read_metrics(run_dir)
    took_part = metrics[(metrics["round"] == last) & (metrics.metric == "test_acc") & (metrics.client != "server")]
    clients = sorted(int(c) for c in took_part.client)[:max_clients]
    splits = load_splits(config)
    shards = partition_indices(config)
    students = final_students(run_dir, config, splits, clients)
    ids = query_ids(config, last)
    reply = STRATEGIES[config.strategy].reply
    rows, truths, pooled = [], [], {}
    for pid, model in students.items():
        rows_of = shards[pid]
        member_y = splits.private_y[rows_of]
        reference = reference_students(config, splits, pid, member_y, references) \
            if references and splits.public_labelled else []
        truth, scores = membership_scores(model, splits.private_x[rows_of], member_y, splits.test_x, splits.test_y,
                                          seed=config.seed + pid, references=reference)
        figures = figures_of(truth, scores)
        truths.append(truth)
        for name, s in scores.items():
            pooled.setdefault(name, []).append(s)
        true = np.bincount(splits.private_y[rows_of], minlength=splits.num_classes).astype(float)
        estimate, label_set = np.full(splits.num_classes, np.nan), np.nan
        if reply == PUBLIC_LOGITS:
            upload = views(model, torch.from_numpy(splits.public_x[ids]), KINDS["soft-labels"]).numpy()
            upload = MECHANISMS[config.dp].release(upload, config, summary["dp_noise"],  # local DP's noise
                                                   np.random.default_rng([config.seed, 6, pid, last]))
            estimate = estimated_histogram(upload)
        elif reply == CLASS_LOGITS:  # one row per class the shard holds: the label set, in the clear
            classes, _ = class_means(model, torch.from_numpy(splits.private_x[rows_of]),
                                     torch.from_numpy(splits.private_y[rows_of]), KINDS["soft-labels"])
            estimate = np.bincount(classes, minlength=splits.num_classes).astype(float)
            label_set = float(set(classes) == set(np.flatnonzero(true)))
        rows.append({"client": pid, "members": len(rows_of), **figures,
                     "label_tv": total_variation(estimate, true) if np.isfinite(estimate).all() else np.nan,
                     "label_set_exact": label_set,
                     "label_tv_uniform": total_variation(np.ones(splits.num_classes), true)})
    together = figures_of(np.concatenate(truths), {k: np.concatenate(v) for k, v in pooled.items()}, "pooled_mia") \
        if truths else {}
    return pd.DataFrame(rows), together


def attack_server_model(run_dir: Path, max_clients: int = 20) -> dict[str, float]:
    """Membership inference on a run's released server model (``server_model.pt``, where
    the strategy has one): members are samples of the first ``max_clients`` clients'
    shards, which reached the server model only through their knowledge. Empty if
    the run has no server model."""
    if not (run_dir / SERVER_MODEL_FILE).exists():
        return {}
    config = read_run_config(run_dir)
    splits = load_splits(config)
    model = build_model(config.server_model, splits.input_shape, splits.num_classes, 0)
    model.load_state_dict(torch.load(run_dir / SERVER_MODEL_FILE))
    rows = np.concatenate(partition_indices(config)[:max_clients])
    figures = membership_inference(model.eval(), splits.private_x[rows], splits.private_y[rows],
                                   splits.test_x, splits.test_y, seed=config.seed)
    return {f"server_{k}": v for k, v in figures.items()}

