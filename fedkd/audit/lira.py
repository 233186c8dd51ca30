"""Calibrated membership inference: the offline Likelihood Ratio Attack (LiRA) of
Carlini et al. 2022, "Membership Inference Attacks From First Principles", §VI-C.

The attacker knows the training recipe and holds labelled data of its own: the public
pool with its labels, which holds neither the members (private shards) nor the
non-members (test rows). For each attacked client it trains ``REFERENCES`` students of
the client's architecture on shards drawn from that pool with the client's label
histogram (what the server's label inference estimates), for as many epochs as a
client sees its shard in a full run. Every reference is *out* for every target sample.
A sample's score is how far its logit-scaled confidence on its label under the target,
φ = log p_y − log(1 − p_y), lies above its mean under the references, in units of
the references' spread (one spread for all samples, the paper's fixed variance, which
suits few references). Calibrating per sample is what lifts the attack above a global
threshold: a sample that is hard for models that never saw it, yet easy for the target,
is likely a member.
"""

from __future__ import annotations

import numpy as np
import torch

from fedkd.config import RunConfig
from fedkd.data.datasets import Splits
from fedkd.learning.models import build_model
from fedkd.strategies import STRATEGIES
from fedkd.training.loops import revisit

REFERENCES = 8  # reference students per attacked client
MIN_SPREAD = 1e-3  # floor of the references' spread of φ


@torch.no_grad()
def scaled_confidence(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """φ = log p_y − log(1 − p_y) of each sample, from the logits (stable where p_y ≈ 1)."""
    logits = model(torch.from_numpy(x)).double()
    rows = torch.arange(len(y))
    labels = torch.from_numpy(y)
    others = logits.clone()
    others[rows, labels] = -torch.inf
    return (logits[rows, labels] - torch.logsumexp(others, dim=1)).numpy()


def private_epochs(config: RunConfig) -> int:
    """Epochs a client trains on its shard in a full run, counting each round's digest,
    which mixes private batches in, as one at least."""
    return max(STRATEGIES[config.strategy].private_epochs(config), config.init_epochs + config.rounds)


def reference_students(config: RunConfig, splits: Splits, partition_id: int, member_y: np.ndarray,
                       count: int = REFERENCES) -> list[torch.nn.Module]:
    """``count`` students of the client's architecture, each trained with the run's recipe
    on a shard of the labelled public pool with the client's label histogram."""
    rng = np.random.default_rng([config.seed, 12, partition_id])
    histogram = np.bincount(member_y, minlength=splits.num_classes)
    by_class = [np.flatnonzero(splits.public_y == c) for c in range(splits.num_classes)]
    models = []
    for k in range(count):
        rows = np.concatenate([rng.choice(pool, size=min(n, len(pool)), replace=False)
                               for pool, n in zip(by_class, histogram) if n])
        model = build_model(config.model_for(partition_id), splits.input_shape, splits.num_classes,
                            int(rng.integers(2**31)))
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        revisit(model, torch.optim.Adam(model.parameters(), lr=config.lr), torch.from_numpy(splits.public_x[rows]),
                torch.from_numpy(splits.public_y[rows]), private_epochs(config), config.batch_size, generator,
                config.augment)
        models.append(model.eval())
    return models


def lira_scores(target: torch.nn.Module, references: list[torch.nn.Module], x: np.ndarray,
                y: np.ndarray) -> np.ndarray:
    """Offline LiRA scores (higher = more likely a member): the target's φ minus the
    references' mean φ, over the references' spread pooled over the samples."""
    target_phi = scaled_confidence(target, x, y)
    reference_phi = np.stack([scaled_confidence(m, x, y) for m in references])
    spread = max(float(reference_phi.std(axis=0, ddof=1).mean()), MIN_SPREAD)
    return (target_phi - reference_phi.mean(axis=0)) / spread
