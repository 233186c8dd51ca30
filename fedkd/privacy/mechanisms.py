"""Differential privacy of shared knowledge: the mechanisms (clipping, Gaussian noise, noisy votes).

Mechanisms (``--dp``); ``dp-sgd`` (record-level, Opacus) is in ``fedkd.privacy.dp_sgd``.
These four, for strategies whose clients upload soft labels on public ids:

- ``central``: the trusted server bounds each client's upload of the round, sums,
  adds Gaussian noise to every entry and divides by the number of uploads. What it
  releases (the teacher signal, a server model) is client-level DP. Clients are
  sampled without replacement, a fixed number per round (round 0: all), so
  neighbouring federations *replace one* client. Two bounds (``dp-bound``):
  ``rows`` (default): each public id's logits become probabilities at the run's
  temperature, so one client moves each row of the sum by at most √2, whatever its
  logits; noise N(0, σ²) per entry, the ``q`` = ``public-subset`` rows composing to
  one Gaussian of multiplier σ/√(2q), as GNMax's votes. ``matrix``: the whole ids x
  classes logit matrix is clipped to L2 norm ``dp-clip`` = C; noise N(0, (σC)²), sum
  sensitivity 2C, multiplier σ/2. Rows keep each answer's signal (a probability row
  has norm <= 1); a clipped matrix of 1,000 rows keeps about C/√1000 of each.
- ``gnmax``: PATE's Gaussian noisy argmax (Papernot et al. 2018) with clients as
  teachers: each client votes for its argmax class on every public id of the round
  (the vote travels as one class id, a byte, per public id),
  the server adds N(0, σ²) to each vote count and the noisy argmax label is the
  teacher signal. Replacing one client changes two counts by one (sensitivity √2);
  the data-independent bound of the round's ``public-subset`` queries composes to
  one Gaussian of multiplier σ/√(2·queries), sampled without replacement.
- ``confident-gnmax``: Confident-GNMax (Papernot et al. 2018, Algorithm 1) with
  clients as teachers: a public id is answered only where its top vote count plus
  N(0, σ1²) reaches ``dp-threshold`` x the round's voters; answered ids get GNMax's
  noisy argmax (σ = ``dp-noise``), the others are left out of the teacher signal. Each
  query's cost is the data-dependent RDP of ``fedkd.privacy.pate`` (a clear majority
  costs little), composed over queries and rounds without sampling amplification;
  the server stops answering before ``target-epsilon`` would be passed. The cost
  depends on the votes, so no noise is calibrated in advance.
- ``local``: each client clips its own upload to C and adds N(0, (σC)²) before it
  leaves; the server is not trusted. Any two data sets of one client give uploads
  within 2C, so each upload is Gaussian with multiplier σ/2, composed over the rounds
  the client took part in, with no amplification (the server sees who uploads).

What each release costs is counted in ``fedkd.privacy.accounting``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Protocol

import numpy as np
from scipy.special import softmax

from fedkd.config import Registry, RunConfig
from fedkd.privacy import pate

BOUNDS = Registry("dp-bound", ("rows", "matrix"))  # what bounds one client's upload under --dp central
SENSITIVITY = 2.0  # in units of C: replacing one client's (clipped) upload moves the sum by <= 2C
VOTE_SENSITIVITY = math.sqrt(2.0)  # replacing one client's vote (or probability row) moves its row by <= √2
PROBABILITY_FLOOR = 1e-4  # a noisy mean probability below this is taken as this before the log
LABEL_SMOOTHING = 0.01  # GNMax teacher: log of the one-hot noisy label, smoothed so logits stay finite


class Ledger(Protocol):
    """Where a data-dependent mechanism spends its queries' costs (the run's accountant)."""

    def spend(self, costs: np.ndarray, counts: np.ndarray, answered: np.ndarray, threshold: float) -> int:
        """Charge the first queries' RDP curves (rows of ``costs``) that fit the budget,
        keeping their vote ``counts``, ``answered`` flags and ``threshold`` (in votes);
        returns how many."""


def clip(upload: np.ndarray, bound: float) -> np.ndarray:
    """``upload`` scaled down to L2 norm ``bound`` if it is longer (the whole array)."""
    norm = float(np.linalg.norm(upload))
    return upload * (bound / norm) if norm > bound else upload


def noisy_mean(uploads: list[np.ndarray], bound: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Central DP: clip each upload, sum, add N(0, (noise·bound)²) per entry, divide by the count."""
    total = np.sum([clip(u.astype(np.float64), bound) for u in uploads], axis=0)
    return (total + rng.normal(0.0, noise * bound, size=total.shape)) / len(uploads)


def noisy_row_mean(probabilities: list[np.ndarray], noise: float, rng: np.random.Generator) -> np.ndarray:
    """Central DP with bounded rows: each party's rows are probability vectors (any two
    differ by at most √2 in L2, whatever the model), so the sum over parties needs no
    clipping; N(0, noise²) is added to every entry and the sum divided by the count."""
    total = np.sum([p.astype(np.float64) for p in probabilities], axis=0)
    return (total + rng.normal(0.0, noise, size=total.shape)) / len(probabilities)


def log_probabilities(mean: np.ndarray, temperature: float) -> np.ndarray:
    """Logits at ``temperature`` of noisy mean probabilities: floored, renormalised per
    row, ``temperature`` x log (a student's softmax at that temperature gives them back)."""
    p = np.clip(mean, PROBABILITY_FLOOR, None)
    return temperature * np.log(p / p.sum(axis=1, keepdims=True))


def vote_counts(uploads: list[np.ndarray]) -> np.ndarray:
    """Per row, how many parties' argmax is each class."""
    classes = uploads[0].shape[1]
    return np.sum([np.eye(classes)[u.argmax(axis=1)] for u in uploads], axis=0)


def label_logits(labels: np.ndarray, classes: int) -> np.ndarray:
    """Hard labels as logits: the log of the one-hot, smoothed so they stay finite."""
    target = np.full((len(labels), classes), LABEL_SMOOTHING / (classes - 1))
    target[np.arange(len(labels)), labels] = 1 - LABEL_SMOOTHING
    return np.log(target)


def noisy_votes(uploads: list[np.ndarray], noise: float, rng: np.random.Generator) -> np.ndarray:
    """PATE's GNMax: each party votes for its argmax class per row; N(0, noise²) is added
    to every vote count and the noisy argmax is the label, returned as smoothed log-one-hot logits."""
    counts = vote_counts(uploads)
    return label_logits((counts + rng.normal(0.0, noise, size=counts.shape)).argmax(axis=1), counts.shape[1])


def confident_votes(uploads: list[np.ndarray], threshold: float, threshold_noise: float, noise: float,
                    rng: np.random.Generator, ledger: Ledger) -> np.ndarray:
    """Confident-GNMax: the noisy threshold check on each row's top count (``threshold``
    a share of the parties), then GNMax's noisy argmax on the rows that pass, as far as
    ``ledger`` lets their data-dependent cost be spent; refused rows are NaN."""
    counts = vote_counts(uploads)
    votes = threshold * len(uploads)
    answered = counts.max(axis=1) + rng.normal(0.0, threshold_noise, size=len(counts)) >= votes
    labels = (counts + rng.normal(0.0, noise, size=counts.shape)).argmax(axis=1)
    affordable = ledger.spend(pate.confident_rdp(counts, answered, votes, threshold_noise, noise), counts, answered,
                              votes)
    answered[affordable:] = False  # past the budget nothing more is released
    logits = label_logits(labels, counts.shape[1])
    logits[~answered] = np.nan
    return logits


def local_release(upload: np.ndarray, bound: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Local DP: one client's upload clipped and noised before it leaves the client."""
    clipped = clip(upload.astype(np.float64), bound)
    return (clipped + rng.normal(0.0, noise * bound, size=upload.shape)).astype(upload.dtype)


def row_mean_of_logits(uploads: list[np.ndarray], noise: float, rng: np.random.Generator,
                       temperature: float) -> np.ndarray:
    """``noisy_row_mean`` of logits: probabilities at ``temperature`` in, logits out."""
    probabilities = [softmax(z.astype(np.float64) / temperature, axis=1) for z in uploads]
    return log_probabilities(noisy_row_mean(probabilities, noise, rng), temperature)


Combine = Callable[[list[np.ndarray]], np.ndarray]


class Mechanism:
    """One ``--dp`` mechanism: what a client does to its upload before it leaves
    (``release``, ``votes``), what the server does to the uploads (``combiner``), and how
    a round is counted: ``accounting`` is "round" (one Gaussian release per round on the
    sampled clients, amplified by the sampling), "upload" (one Gaussian per client
    upload, no amplification), "client" (each client's own accountant),
    "data-dependent" (the combiner spends each query's cost in the ``ledger``) or "" (no DP);
    ``multiplier`` is the noise multiplier of one such release. Adding a mechanism is a
    subclass here and a line in ``MECHANISMS``."""

    name = ""
    accounting = ""
    noised_uploads = False  # clips and noises soft labels on public ids: uploads must be those, unmodified
    private_training = False  # record-level: clients train on their shard privately (DP-SGD)
    votes = False  # uploads travel as one class id per public id

    def unit(self, config: RunConfig) -> str:
        return "no DP"

    def multiplier(self, config: RunConfig, noise: float) -> float:
        return math.inf

    def release(self, upload: np.ndarray, config: RunConfig, noise: float, rng: np.random.Generator) -> np.ndarray:
        """The upload as it leaves the client."""
        return upload

    def combiner(self, config: RunConfig, noise: float, rng: np.random.Generator, temperature: float,
                 probabilities: bool, ledger: Ledger) -> Combine | None:
        """The server's rule for a round's uploads (logits, or probability rows when
        ``probabilities``), or None: the strategy's own rule. Rows it refuses are NaN."""
        return None


class Central(Mechanism):
    name, accounting, noised_uploads = "central", "round", True

    def unit(self, config: RunConfig) -> str:
        bound = " (√2 per public id's probabilities)" if config.dp_bound == "rows" else ""
        return f"client-level, central, replace-one{bound}, sampled without replacement"

    def multiplier(self, config: RunConfig, noise: float) -> float:
        if config.dp_bound == "rows":  # the round's rows: composed Gaussian queries of sensitivity √2
            return noise / VOTE_SENSITIVITY / math.sqrt(config.public_subset)
        return noise / SENSITIVITY

    def combiner(self, config, noise, rng, temperature, probabilities, ledger):
        if config.dp_bound == "matrix":
            return partial(noisy_mean, bound=config.dp_clip, noise=noise, rng=rng)
        if probabilities:
            return partial(noisy_row_mean, noise=noise, rng=rng)
        return partial(row_mean_of_logits, noise=noise, rng=rng, temperature=temperature)


class GNMax(Mechanism):
    name, accounting, noised_uploads, votes = "gnmax", "round", True, True

    def unit(self, config: RunConfig) -> str:
        return "client-level, votes on public ids, replace-one, data-independent GNMax bound"

    def multiplier(self, config: RunConfig, noise: float) -> float:
        return noise / VOTE_SENSITIVITY / math.sqrt(config.public_subset)

    def combiner(self, config, noise, rng, temperature, probabilities, ledger):
        return partial(noisy_votes, noise=noise, rng=rng)


class ConfidentGNMax(Mechanism):
    name, accounting, noised_uploads, votes = "confident-gnmax", "data-dependent", True, True

    def unit(self, config: RunConfig) -> str:
        return ("client-level, votes on public ids, replace-one, data-dependent Confident-GNMax bound "
                "(the budget is checked on it; its smooth-sensitivity release is epsilon_sanitized), "
                "no sampling amplification")

    def combiner(self, config, noise, rng, temperature, probabilities, ledger):
        return partial(confident_votes, threshold=config.dp_threshold, threshold_noise=config.dp_threshold_noise,
                       noise=noise, rng=rng, ledger=ledger)


class Local(Mechanism):
    name, accounting, noised_uploads = "local", "upload", True

    def unit(self, config: RunConfig) -> str:
        return "client-level, local, any two data sets of one client; worst client"

    def multiplier(self, config: RunConfig, noise: float) -> float:
        return noise / SENSITIVITY

    def release(self, upload, config, noise, rng):
        return local_release(upload, config.dp_clip, noise, rng)


class DPSGD(Mechanism):
    name, accounting, private_training = "dp-sgd", "client", True

    def unit(self, config: RunConfig) -> str:
        return "record-level, one sample of a client's shard, add/remove, Poisson batches; worst client"


class NoDP(Mechanism):
    name = "none"


MECHANISMS: Registry = Registry("dp", {m.name: m for m in (NoDP(), Central(), Local(), GNMax(), ConfidentGNMax(),
                                                           DPSGD())})
