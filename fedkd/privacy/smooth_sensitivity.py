"""Releasing Confident-GNMax's data-dependent ε: its smooth sensitivity, and the noisy release
(Papernot et al. 2018, "Scalable Private Learning with PATE", §4.3 and Appendices B–C).

The data-dependent RDP of ``fedkd.privacy.pate`` is computed from the votes, so
publishing it as it is would leak them. The paper bounds how far it can move: the
local sensitivity at distance d (the most the cost can change when one client's votes
change, at any federation at most d clients away: Algorithms 3–5 for the noisy argmax,
the monotone sweep over the top count for the threshold check), summed over the
queries charged, smoothed as SS_β = max_d e^(−βd)·LS(d) (Nissim et al. 2007), and
releases the cost plus N(0, (SS_β·σ_s)²): the GNSS mechanism, whose own RDP is
Theorem 23. What a run reports is that noisy value plus the GNSS cost, converted to
(ε, δ) at one order λ. As in the paper, λ, β and σ_s are chosen with a view of the
votes (β on the paper's grid [0.3/λ, 0.495/λ), σ_s minimising λe^(2β)/σ_s² + 2·SS·σ_s,
λ the order of the smallest such cost); the figure is what fixing them in advance to
these values would give.

Everything is vectorised over queries: a query moves one vote per distance step, all
queries at once, until its bound stops changing (the plateau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import erfc, erfcinv

from fedkd.privacy import pate


def _rdp(log_q: np.ndarray, sigma: float, order: float) -> np.ndarray:
    """GNMax's RDP at one order per query: Theorem 6 below ``log_q0``, λ/σ² from there on."""
    log_q = np.atleast_1d(np.asarray(log_q, dtype=float))
    dependent = pate.rdp_gnmax(log_q, sigma, np.array([order]))[:, 0]
    return np.where(log_q >= log_q0(sigma, order), order / sigma**2, dependent)


@lru_cache(maxsize=None)
def log_q0(sigma: float, order: float) -> float:
    """log q0: where the data-dependent bound of Theorem 6 meets the data-independent λ/σ²
    (above it, the data-independent bound is the better one)."""
    def excess(log_q: float) -> float:
        return float(pate.theorem6(np.array([log_q]), sigma, np.array([order]))[0][0, 0]) - order / sigma**2

    upper = min(-(1 + 1 / sigma) ** 2, -((order - 0.99) / sigma) ** 2, -1 / sigma**2)
    if excess(upper) < 0:
        return upper
    lower = 2 * upper
    while excess(lower) > 0:
        lower *= 1.5
    return float(brentq(excess, lower, upper))


@lru_cache(maxsize=None)
def log_q1(sigma: float, order: float, classes: int) -> float:
    """log q1 = log bl(q0): below q0 by one step of the votes; between q1 and q0 the
    local sensitivity is at its plateau."""
    return float(np.log(_lower(math.exp(log_q0(sigma, order)), sigma, classes)))


def _lower(q, sigma: float, classes: int):
    """bl(q): the smallest Pr[not argmax] one vote away from a histogram with q (Appendix B.4)."""
    return (classes - 1) / 2 * erfc(1 / sigma + erfcinv(2 * np.asarray(q) / (classes - 1)))


def _upper(q, sigma: float, classes: int):
    """bu(q): the largest Pr[not argmax] one vote away, at most 1."""
    return np.minimum(1.0, (classes - 1) / 2 * erfc(-1 / sigma + erfcinv(2 * np.asarray(q) / (classes - 1))))


def _local_sensitivity(log_q: np.ndarray, sigma: float, classes: int, order: float) -> np.ndarray:
    """Algorithm 3: a bound on how much one client's vote moves the RDP of a query whose
    Pr[not argmax] is at most exp(``log_q``) (vectorised)."""
    low, high = log_q1(sigma, order, classes), log_q0(sigma, order)
    log_q = np.where((low <= log_q) & (log_q <= high), low, log_q)
    q = np.exp(log_q)
    with np.errstate(divide="ignore"):
        up = _rdp(np.log(_upper(q, sigma, classes)), sigma, order)
        down = _rdp(np.log(_lower(q, sigma, classes)), sigma, order)
    beta = _rdp(log_q, sigma, order)
    return np.maximum(up - beta, beta - down)


def local_sensitivity_gnmax(counts: np.ndarray, voters: int, sigma: float, order: float,
                            length: int | None = None) -> np.ndarray:
    """Local sensitivity at distances 0, 1, ... (columns; ``length``, default ``voters``) of
    GNMax's RDP at ``order`` for each query's vote histogram (rows of ``counts``):
    Algorithms 4–5, moving one vote per step towards the plateau for every query at once."""
    counts = -np.sort(-np.asarray(counts, dtype=float), axis=1)  # each row non-increasing
    classes = counts.shape[1]
    low, high = log_q1(sigma, order, classes), log_q0(sigma, order)
    plateau = float(_local_sensitivity(np.array([low]), sigma, classes, order)[0])
    out = np.full((len(counts), length or voters), plateau)
    log_q = pate.log_q_gnmax(counts, sigma)
    left = log_q > high  # the bound falls as the gap widens: go towards q0 by widening it
    moving = left | (log_q < low)
    out[moving, 0] = _local_sensitivity(log_q[moving], sigma, classes, order)
    active = (left & (counts[:, 1] > 0)) | (~left & moving)
    for d in range(1, min(voters, out.shape[1])):
        if not active.any():
            break
        rows = np.flatnonzero(active)
        step = np.where(left[rows], 1.0, -1.0)
        counts[rows, 0] += step
        counts[rows, 1] -= step
        counts[rows] = -np.sort(-counts[rows], axis=1)
        log_q[rows] = pate.log_q_gnmax(counts[rows], sigma)
        out[rows, d] = _local_sensitivity(log_q[rows], sigma, classes, order)
        active[rows] = np.where(left[rows], (log_q[rows] > high) & (counts[rows, 1] > 0), log_q[rows] < low)
    return out


def local_sensitivity_threshold(top: np.ndarray, voters: int, threshold: float, sigma: float, order: float,
                                length: int | None = None) -> np.ndarray:
    """Local sensitivity at distances 0, 1, ... of the threshold check's RDP at ``order``
    for each query's top count ``top``: the check's cost depends on the top count alone,
    which d clients move by at most d; zero once it cannot move further."""
    v = np.arange(voters + 1)
    cost = pate.rdp_threshold(pate.log_pr_answered(v, threshold, sigma), sigma, np.array([order]))[:, 0]
    step = np.abs(np.diff(cost))  # |cost(v + 1) − cost(v)|
    by_top = np.maximum(np.concatenate([[-np.inf], step]), np.concatenate([step, [-np.inf]]))
    current = np.round(np.asarray(top, dtype=float)).astype(int)[:, None]
    d = np.arange(length or voters)[None, :]
    up, down = current + d, current - d
    out = np.maximum(np.where(up <= voters, by_top[np.clip(up, 0, voters)], -np.inf),
                     np.where(down >= 0, by_top[np.clip(down, 0, voters)], -np.inf))
    out[d >= np.maximum(current, voters - current)] = 0.0
    return out


def smooth(beta: float, local: np.ndarray) -> float:
    """SS_β = max_d e^(−βd)·LS(d)."""
    return float(np.max(local * np.exp(-beta * np.arange(len(local)))))


def rdp_gnss(beta: float, sigma: float, order: float) -> float:
    """RDP at ``order`` of releasing a value plus SS_β·N(0, σ²) (Theorem 23); needs 1 < λ < 1/(2β)."""
    if not 1 < order < 1 / (2 * beta):
        raise ValueError(f"order {order} outside (1, 1/(2β)) = (1, {1 / (2 * beta):g})")
    return order * math.exp(2 * beta) / sigma**2 + (-0.5 * math.log(1 - 2 * order * beta) + beta * order) / (order - 1)


@dataclass(frozen=True)
class Rounds:
    """The queries a run charged: one entry per release (round), with its voters,
    threshold (in votes) and noise."""

    counts: list[np.ndarray]
    answered: list[np.ndarray]
    thresholds: list[float]


@dataclass(frozen=True)
class Sanitized:
    """The released ε (δ as the run's) and how it was obtained."""

    epsilon: float  # the released figure: (data-dependent RDP + GNSS noise + GNSS cost) at ``order``
    expected: float  # the same without the drawn noise (its mean)
    spread: float  # SS·σ_s: the standard deviation of the released RDP
    order: float
    beta: float
    sigma: float  # σ_s
    smooth_sensitivity: float


def sanitize(rounds: Rounds, rdp: np.ndarray, sigma_threshold: float, sigma: float, delta: float,
             rng: np.random.Generator, candidates: int = 10) -> Sanitized:
    """The paper's release of a data-dependent cost: at an order λ, the summed local
    sensitivities of every charged query (threshold check, plus the noisy argmax where
    answered), smoothed, and a noisy release. λ, β and σ_s minimise the paper's cost (the
    cost at λ, the release's RDP and two of its standard deviations, converted to ε):
    λ among ``candidates`` orders spaced geometrically from 2 to the one where the composed curve ``rdp`` (over
    ``pate.ORDERS``) is best on its own (at high orders the release costs more than the
    queries save), β on the paper's grid."""
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon  # a second to import: where used

    _, best_order = compute_epsilon(pate.ORDERS, rdp, delta)
    nearest = np.abs(np.log(pate.ORDERS)[:, None] - np.log(np.geomspace(2.0, max(best_order, 2.0), candidates)))
    orders = pate.ORDERS[np.unique(nearest.argmin(axis=0))]
    plans = [_plan(rounds, float(np.interp(order, pate.ORDERS, rdp)), float(order), sigma_threshold, sigma, delta)
             for order in orders]
    worst, cost, order, beta, ss, sigma_s, gnss = min(plans)
    if ss == 0:
        return Sanitized(_epsilon(cost, order, delta), _epsilon(cost, order, delta), 0.0, order, beta, math.inf, 0.0)
    noisy = cost + ss * sigma_s * float(rng.standard_normal())
    return Sanitized(_epsilon(noisy + gnss, order, delta), _epsilon(cost + gnss, order, delta), ss * sigma_s,
                     order, beta, sigma_s, ss)


def _plan(rounds: Rounds, cost: float, order: float, sigma_threshold: float, sigma: float,
          delta: float) -> tuple[float, ...]:
    """(ε of the cost plus the release's RDP and two standard deviations, cost, order, β, SS,
    σ_s, the release's RDP) for the cheapest β at ``order``."""
    length = max(int(round(c.sum(axis=1).max())) for c in rounds.counts)
    local = np.zeros(length)
    for counts, answered, threshold in zip(rounds.counts, rounds.answered, rounds.thresholds):
        voters = int(round(counts.sum(axis=1).max()))
        local += local_sensitivity_threshold(counts.max(axis=1), voters, threshold, sigma_threshold, order,
                                             length).sum(axis=0)
        if answered.any():
            local += local_sensitivity_gnmax(counts[answered], voters, sigma, order, length).sum(axis=0)
    if not local.any():
        return (_epsilon(cost, order, delta), cost, order, 0.0, 0.0, math.inf, 0.0)
    plans = []
    for beta in np.arange(0.3, 0.495, 0.01) / order:
        ss = smooth(beta, local)
        sigma_s = (order * math.exp(2 * beta) / ss) ** (1 / 3)
        gnss = rdp_gnss(beta, sigma_s, order)
        plans.append((_epsilon(cost + gnss + 2 * ss * sigma_s, order, delta), cost, order, float(beta), ss, sigma_s,
                      gnss))
    return min(plans)


def _epsilon(rdp: float, order: float, delta: float) -> float:
    return pate.epsilon(np.array([max(rdp, 0.0)]), delta, np.array([order]))


def sanitized_fields(released: Sanitized | None) -> dict[str, float]:
    """A run summary's figures of the release (none without one)."""
    if released is None:
        return {}
    return {"epsilon_sanitized": released.epsilon, "epsilon_sanitized_expected": released.expected,
            "epsilon_sanitized_spread": released.spread, "sanitized_order": released.order,
            "sanitized_beta": released.beta, "sanitized_sigma": released.sigma,
            "smooth_sensitivity": released.smooth_sensitivity}
