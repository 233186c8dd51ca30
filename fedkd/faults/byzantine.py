"""What a Byzantine client uploads instead of its honest knowledge (``--attack``).

A Byzantine client trains like any other and then corrupts the logits it sends, so
its reply passes every format check (shape, dtype, finite values) and only the
aggregation rule stands between it and the teacher signal. Which clients are
Byzantine is fixed for the run (``fedkd.faults.plan.FaultPlan``).
"""

from __future__ import annotations

import numpy as np

from fedkd.config import Registry

SCALE = 10.0  # the factor of the ``scale`` attack
CONFIDENCE = 10.0  # the logit margin of the ``one-class`` attack


def random_logits(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise with the honest logits' mean and spread: no norm check can tell it apart."""
    return rng.normal(logits.mean(), logits.std() + 1e-6, size=logits.shape)


def label_flip(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft labels of class c reported for class K-1-c: confident and consistently wrong."""
    return logits[:, ::-1]


def scale(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The right ranking, blown up: drags a mean towards one client's opinion."""
    return logits * SCALE


def invert(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Negated logits: the client's most likely class becomes its least likely."""
    return -logits


def one_class(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every sample confidently in class 0."""
    out = np.zeros_like(logits)
    out[:, 0] = CONFIDENCE
    return out


ATTACKS: Registry = Registry("attack", {
    "random": random_logits, "label-flip": label_flip, "scale": scale, "invert": invert, "one-class": one_class})


def corrupt(logits: np.ndarray, attack: str, rng: np.random.Generator) -> np.ndarray:
    """The upload of a Byzantine client: float32, same shape as the honest one."""
    return np.ascontiguousarray(ATTACKS[attack](logits, rng), dtype=np.float32)
