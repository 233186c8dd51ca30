"""Data-dependent Rényi-DP of PATE's noisy votes (Papernot et al. 2018, "Scalable
Private Learning with PATE", §4 and appendices), vectorised over queries.

A vote histogram with a clear winner makes the noisy argmax nearly deterministic, and
a nearly deterministic answer reveals little: Theorem 6 bounds the RDP of a mechanism
at a data set where its likely outcome has probability at least 1 − q̃, with
Proposition 10's orders μ2 = σ·√log(1/q̃), μ1 = μ2 + 1 for Gaussian noise, and
Proposition 7's union bound on q̃ for GNMax. The threshold check of Confident-GNMax
(Algorithm 1) is the same analysis with the outcome "answered" or not, whose input
(the top count) moves by 1 where GNMax's counts move by 2 (hence √2·σ1). Every bound is
the minimum with the data-independent λ/σ², so it never exceeds it.

These figures depend on the votes: they are data-dependent privacy costs, and the
paper releases them only after smoothing them (§4.3): ``fedkd.privacy.smooth_sensitivity``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

ORDERS = np.concatenate([np.linspace(1.1, 10.9, 99), np.arange(11, 64), np.geomspace(64, 1024, 17)])


def log_q_gnmax(counts: np.ndarray, sigma: float) -> np.ndarray:
    """Upper bound on log Pr[the noisy argmax is not the true argmax] per query (rows of
    ``counts``): Proposition 7's union bound over the other classes, capped at 1 − 1/m."""
    m = counts.shape[1]
    winner = counts.argmax(axis=1)
    gaps = counts[np.arange(len(counts)), winner][:, None] - counts
    from scipy.stats import norm  # scipy.stats and dp-accounting: a second to import, paid where used

    terms = norm.logsf(gaps, scale=math.sqrt(2.0) * sigma)
    terms[np.arange(len(counts)), winner] = -np.inf  # every class but one winner
    return np.minimum(logsumexp(terms, axis=1), math.log(1.0 - 1.0 / m))


def theorem6(log_q: np.ndarray, sigma: float, orders: np.ndarray = ORDERS) -> tuple[np.ndarray, np.ndarray]:
    """(Theorem 6's bound with Proposition 10's μ1, μ2, whether its conditions hold) at each
    order (columns) for each query (rows) whose non-argmax probability is at most
    exp(``log_q``); the bound is computed whether or not they hold."""
    log_q = np.asarray(log_q, dtype=float)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mu2 = sigma * np.sqrt(-log_q)
        mu1 = mu2 + 1.0
        eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
        holds = ((mu2 > 1) & (-log_q > eps2)
                 & (log_q <= (mu2 - 1) * eps2 - mu2 * (np.log(mu1 / (mu1 - 1)) + np.log(mu2 / (mu2 - 1))))
                 & (orders < mu1))
        log_1q = np.log(-np.expm1(log_q))
        log_a = (orders - 1) * (log_1q - np.log(-np.expm1((log_q + eps2) * (1 - 1 / mu2))))
        log_b = (orders - 1) * (eps1 - log_q / (mu1 - 1))
        return np.logaddexp(log_1q + log_a, log_q + log_b) / (orders - 1), holds


def rdp_gnmax(log_q: np.ndarray, sigma: float, orders: np.ndarray = ORDERS) -> np.ndarray:
    """RDP at each order (columns) of GNMax with noise ``sigma`` for each query (rows)
    whose non-argmax probability is at most exp(``log_q``): Theorem 6 with Proposition
    10's μ1, μ2 where its conditions hold, else the data-independent λ/σ²."""
    log_q = np.asarray(log_q, dtype=float)[:, None]
    independent = np.broadcast_to(orders / sigma**2, (len(log_q), len(orders))).copy()
    dependent, holds = theorem6(log_q[:, 0], sigma, orders)
    rdp = np.where(holds, np.minimum(dependent, independent), independent)
    rdp[np.isneginf(log_q[:, 0])] = 0.0  # a certain outcome reveals nothing
    return rdp


def log_pr_answered(top: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """log Pr[top count + N(0, σ²) >= threshold] per query."""
    from scipy.stats import norm

    return norm.logsf(threshold - np.asarray(top, dtype=float), scale=sigma)


def rdp_threshold(log_pr: np.ndarray, sigma: float, orders: np.ndarray = ORDERS) -> np.ndarray:
    """RDP of the noisy threshold check per query: its less likely outcome bounds q̃; its
    input moves by 1 under replace-one (GNMax's by √2), hence noise √2·σ in GNMax's terms."""
    log_pr = np.asarray(log_pr, dtype=float)
    log_q = np.minimum(log_pr, np.log(-np.expm1(np.minimum(log_pr, -1e-300))))
    return rdp_gnmax(log_q, math.sqrt(2.0) * sigma, orders)


def confident_rdp(counts: np.ndarray, answered: np.ndarray, threshold: float, sigma_threshold: float,
                  sigma: float, orders: np.ndarray = ORDERS) -> np.ndarray:
    """Per-query RDP of Confident-GNMax (Algorithm 1): every query pays its threshold
    check, the answered ones the noisy argmax too."""
    cost = rdp_threshold(log_pr_answered(counts.max(axis=1), threshold, sigma_threshold), sigma_threshold, orders)
    return cost + answered[:, None] * rdp_gnmax(log_q_gnmax(counts, sigma), sigma, orders)


def epsilon(rdp: np.ndarray, delta: float, orders: np.ndarray = ORDERS) -> float:
    """(ε, δ)-DP of a composed RDP curve (dp-accounting's conversion)."""
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    return float(compute_epsilon(orders, rdp, delta)[0])
