"""Differential privacy of shared knowledge: the mechanisms (clipping, Gaussian noise, noisy votes).

Mechanisms (``--dp``); ``dp-sgd`` (record-level, Opacus) is in ``fedkd.privacy.dp_sgd``.
The first two, for strategies whose clients upload soft labels on public ids:

- ``central``: the trusted server clips each client's upload of the round to L2 norm
  ``dp-clip`` = C (the whole ids x classes matrix), sums, adds N(0, (σC)²) to every
  entry and divides by the number of uploads. What it releases (the teacher signal,
  a server model) is client-level DP. Clients are sampled without replacement, a
  fixed number per round (round 0: all), so neighbouring federations *replace one*
  client: the sum's sensitivity is 2C and the accountant's noise multiplier σ/2.
- ``gnmax``: PATE's Gaussian noisy argmax (Papernot et al. 2018) with clients as
  teachers: each client votes for its argmax class on every public id of the round,
  the server adds N(0, σ²) to each vote count and the noisy argmax label is the
  teacher signal. Replacing one client changes two counts by one (sensitivity √2);
  the data-independent bound of the round's ``public-subset`` queries composes to
  one Gaussian of multiplier σ/√(2·queries), sampled without replacement.
- ``local``: each client clips its own upload to C and adds N(0, (σC)²) before it
  leaves; the server is not trusted. Any two data sets of one client give uploads
  within 2C, so each upload is Gaussian with multiplier σ/2, composed over the rounds
  the client took part in, with no amplification (the server sees who uploads).

What each release costs is counted in ``fedkd.privacy.accounting``.
"""

from __future__ import annotations

import math

import numpy as np

from fedkd.config import Registry

MECHANISMS = Registry("dp", ("none", "central", "local", "gnmax", "dp-sgd"))
SENSITIVITY = 2.0  # in units of C: replacing one client's (clipped) upload moves the sum by <= 2C
VOTE_SENSITIVITY = math.sqrt(2.0)  # replacing one client's vote moves two counts by 1
LABEL_SMOOTHING = 0.01  # GNMax teacher: log of the one-hot noisy label, smoothed so logits stay finite


def clip(upload: np.ndarray, bound: float) -> np.ndarray:
    """``upload`` scaled down to L2 norm ``bound`` if it is longer (the whole array)."""
    norm = float(np.linalg.norm(upload))
    return upload * (bound / norm) if norm > bound else upload


def noisy_mean(uploads: list[np.ndarray], bound: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Central DP: clip each upload, sum, add N(0, (noise·bound)²) per entry, divide by the count."""
    total = np.sum([clip(u.astype(np.float64), bound) for u in uploads], axis=0)
    return (total + rng.normal(0.0, noise * bound, size=total.shape)) / len(uploads)


def noisy_votes(uploads: list[np.ndarray], noise: float, rng: np.random.Generator) -> np.ndarray:
    """PATE's GNMax: each party votes for its argmax class per row; N(0, noise²) is added
    to every vote count and the noisy argmax is the label, returned as smoothed log-one-hot logits."""
    classes = uploads[0].shape[1]
    counts = np.sum([np.eye(classes)[u.argmax(axis=1)] for u in uploads], axis=0)
    labels = (counts + rng.normal(0.0, noise, size=counts.shape)).argmax(axis=1)
    target = np.full(counts.shape, LABEL_SMOOTHING / (classes - 1))
    target[np.arange(len(labels)), labels] = 1 - LABEL_SMOOTHING
    return np.log(target)


def local_release(upload: np.ndarray, bound: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Local DP: one client's upload clipped and noised before it leaves the client."""
    clipped = clip(upload.astype(np.float64), bound)
    return (clipped + rng.normal(0.0, noise * bound, size=upload.shape)).astype(upload.dtype)
