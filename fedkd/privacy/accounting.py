"""Privacy accounting of a run: ε spent so far, whether the next round fits, calibration.

Flower's ``RdpAccountant`` (dp-accounting's RDP backend, exported by
``flwr.serverapp``) counts the releases of ``fedkd.privacy.mechanisms``: central DP
and GNMax are one Gaussian release per round on the sampled clients (sampled
without replacement, replace-one adjacency); local DP is one Gaussian per upload of
each client, with no amplification; DP-SGD clients report their own ε (Opacus).
Confident-GNMax's queries are charged one by one at their data-dependent RDP
(``fedkd.privacy.pate``), composed and converted by dp-accounting. A run without DP
reports ε = inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)

from fedkd.config import RunConfig
from fedkd.privacy import pate
from fedkd.privacy.mechanisms import MECHANISMS
from fedkd.privacy.smooth_sensitivity import Rounds, Sanitized, sanitize

SANITIZE_STREAM = 23  # the stream of the run's seed that draws the sanitised ε's noise


@dataclass(frozen=True)
class Guarantee:
    """ε at δ, and what it is about."""

    epsilon: float
    delta: float
    unit: str

    def __str__(self) -> str:
        return f"ε = {self.epsilon:.3g} at δ = {self.delta:g} ({self.unit})" if math.isfinite(self.epsilon) \
            else f"ε = inf ({self.unit})"


class Accountant:
    """ε spent by a run so far: one Gaussian release per aggregation (central), per
    upload of each client (local), or per answered query at its data-dependent cost
    (confident-gnmax, the ``Ledger`` its combiner spends in). ``would_exceed`` tells
    whether the next round fits."""

    def __init__(self, config: RunConfig, noise: float):
        self.config, self.noise = config, noise
        self.mechanism = MECHANISMS[config.dp]
        self.central = self._new(SamplingMethod.WITHOUT_REPLACEMENT) if self.mechanism.accounting == "round" else None
        self.uploads: dict[int, int] = {}  # partition id -> uploads so far (local)
        self.reported: dict[int, float] = {}  # partition id -> ε its DP-SGD accountant reported (dp-sgd)
        self.rdp = np.zeros(len(pate.ORDERS))  # data-dependent RDP spent so far (confident-gnmax)
        self.charged = Rounds([], [], [])  # the queries charged, for the sanitised release (confident-gnmax)
        self.exhausted = False  # a query was refused for the budget: no further round fits

    def __getstate__(self) -> dict:  # checkpoints: Flower's accountant holds modules, keep its state dict
        return {**self.__dict__, "central": self.central.state_dict() if self.central is not None else None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "central": None})
        if state["central"] is not None:
            self.central = self._new(SamplingMethod.WITHOUT_REPLACEMENT)
            self.central.load_state_dict(state["central"])

    def _new(self, sampling: SamplingMethod) -> RdpAccountant:
        relation = (NeighboringRelation.REPLACE_ONE if sampling is SamplingMethod.WITHOUT_REPLACEMENT
                    else NeighboringRelation.ADD_OR_REMOVE_ONE)
        return RdpAccountant(PrivacyConfig(target_delta=self.config.dp_delta, population_size=self.config.clients,
                                           neighboring_relation=relation, sampling_method=sampling))

    def _event(self, sample_size: int) -> GaussianPrivacyEvent:
        """One release (a round's aggregate, or one client's upload) as one Gaussian
        mechanism of the mechanism's multiplier on ``sample_size`` clients."""
        return GaussianPrivacyEvent(noise_multiplier=self.mechanism.multiplier(self.config, self.noise),
                                    sample_size=sample_size, population_size=self.config.clients)

    def local_epsilon(self, uploads: int) -> float:
        """ε of one client after ``uploads`` noised uploads (no amplification)."""
        if uploads == 0:
            return 0.0
        accountant = self._new(SamplingMethod.NO_AMPLIFICATION)
        accountant.compose(self._event(1), count=uploads)
        return accountant.get_epsilon(self.config.dp_delta)

    def record(self, sampled: list[int]) -> None:
        """One round released: the aggregate of ``sampled`` clients (partition ids)."""
        if self.central is not None:
            self.central.compose(self._event(len(sampled)))
        for pid in sampled:
            self.uploads[pid] = self.uploads.get(pid, 0) + 1

    def spend(self, costs: np.ndarray, counts: np.ndarray, answered: np.ndarray, threshold: float) -> int:
        """Charge the queries' RDP curves (rows of ``costs``) in order, as many as keep
        ε within ``target-epsilon``, and keep their votes (``counts``, ``answered``, the
        ``threshold`` in votes) for the sanitised release; returns how many were charged."""
        budget, delta = self.config.target_epsilon, self.config.dp_delta
        running = self.rdp + np.cumsum(costs, axis=0)
        low, high = 0, len(costs)  # the largest prefix that fits (ε grows with every query)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if pate.epsilon(running[mid - 1], delta) <= budget else (low, mid - 1)
        if low:
            self.rdp = running[low - 1]
            self.charged.counts.append(counts[:low].astype(np.int32))
            self.charged.answered.append(np.asarray(answered[:low], dtype=bool))
            self.charged.thresholds.append(float(threshold))
        self.exhausted = low < len(costs)
        return low

    def sanitized(self) -> Sanitized | None:
        """The data-dependent ε as it may be released (``fedkd.privacy.smooth_sensitivity``);
        None for the other mechanisms, or before any query was charged."""
        if self.mechanism.accounting != "data-dependent" or not self.charged.counts:
            return None
        rng = np.random.default_rng([self.config.seed, SANITIZE_STREAM])
        return sanitize(self.charged, self.rdp, self.config.dp_threshold_noise, self.noise, self.config.dp_delta, rng)

    def report(self, partition_id: int, epsilon: float) -> None:
        """A client's own record-level ε after its latest DP-SGD steps (dp-sgd)."""
        self.reported[partition_id] = epsilon

    def would_exceed(self, sampled: list[int], budget: float) -> bool:
        if self.mechanism.accounting == "data-dependent":
            return self.exhausted
        if self.mechanism.accounting not in ("round", "upload") or not math.isfinite(budget):
            return False  # no DP, or clients that calibrate their own noise (dp-sgd)
        if self.central is not None:
            return self.central.would_exceed(self._event(len(sampled)), max_epsilon=budget)
        return self.local_epsilon(max((self.uploads.get(p, 0) for p in sampled), default=0) + 1) > budget

    def spent(self) -> Guarantee:
        accounting = self.mechanism.accounting
        if not accounting:
            eps = math.inf
        elif accounting == "round":
            eps = self.central.get_epsilon(self.config.dp_delta) if self.central.num_releases else 0.0
        elif accounting == "client":
            eps = max(self.reported.values(), default=0.0)
        elif accounting == "data-dependent":
            eps = pate.epsilon(self.rdp, self.config.dp_delta) if self.rdp.any() else 0.0
        else:
            eps = self.local_epsilon(max(self.uploads.values(), default=0))
        return Guarantee(eps, self.config.dp_delta, self.mechanism.unit(self.config))


def planned_epsilon(config: RunConfig, noise: float) -> float:
    """ε after a full run with noise multiplier ``noise``: every client's release in round 0,
    then ``rounds`` releases of the sampled clients (the worst client, for local DP)."""
    accountant = Accountant(config, noise)
    if accountant.mechanism.accounting == "upload":
        return accountant.local_epsilon(config.rounds + 1)  # a client sampled in every round
    if accountant.central is None:
        return accountant.spent().epsilon
    accountant.central.compose(accountant._event(config.clients))  # round 0: every client
    if config.rounds:
        accountant.central.compose(accountant._event(config.clients_per_round), count=config.rounds)
    return accountant.spent().epsilon


def calibrate_noise(config: RunConfig, target: float, tolerance: float = 1e-3) -> float:
    """The smallest noise multiplier (to ``tolerance`` relative) whose full run stays within ε = ``target``."""
    low, high = 0.0, 1.0
    while planned_epsilon(config, high) > target:
        low, high = high, high * 2
        if high > 1e6:
            raise ValueError(f"no noise multiplier reaches ε = {target} in {config.rounds} rounds")
    while high - low > tolerance * high:
        mid = (low + high) / 2
        low, high = (mid, high) if planned_epsilon(config, mid) > target else (low, mid)
    return high


def run_noise(config: RunConfig) -> float:
    """The noise multiplier the run uses: ``dp-noise``, or calibrated to ``target-epsilon``
    (for dp-sgd each client calibrates its own, for its shard size: 0 here)."""
    mechanism = MECHANISMS[config.dp]
    if not mechanism.accounting or (mechanism.private_training and config.dp_noise == 0):
        return 0.0
    if config.dp_noise > 0:
        return config.dp_noise
    return calibrate_noise(config, config.target_epsilon)
