"""Smooth-sensitivity release of Confident-GNMax's data-dependent ε (fedkd.privacy.smooth_sensitivity).

The expected arrays are those of the paper's reference tests (tensorflow/privacy,
research/pate_2018/smooth_sensitivity_test.py)."""

import numpy as np
import pytest

from fedkd import rules
from fedkd.config import RunConfig
from fedkd.privacy import pate
from fedkd.privacy import smooth_sensitivity as ss
from fedkd.privacy.accounting import Accountant
from fedkd.privacy.mechanisms import confident_votes

THRESHOLD_COUNTS = np.array([20, 10, 0])  # 30 teachers
HIGH = [0] * 3 + [1.48454129e-04, 1.47826870e-02, 3.94153241e-02, 6.45775697e-02, 9.01543247e-02, 1.16054002e-01,
                  1.42180452e-01, 1.42180452e-01, 1.48454129e-04, 1.47826870e-02, 3.94153241e-02, 6.45775697e-02,
                  9.01543266e-02, 1.16054000e-01, 1.42180452e-01, 1.68302106e-01, 1.93127860e-01] + [0] * 10
LOW = [1.60212079e-01, 2.07021132e-01, 2.07021132e-01, 1.93127860e-01, 1.68302106e-01, 1.42180452e-01,
       1.16054002e-01, 9.01543247e-02, 6.45775697e-02, 3.94153241e-02, 1.47826870e-02, 1.48454129e-04] + [0] * 18
ABOVE_ALL = [1.35750725752e-19, 1.88990500499e-17, 2.05403154065e-15, 1.74298153642e-13, 1.15489723995e-11,
             5.97584949325e-10, 2.41486826748e-08, 7.62150641922e-07, 1.87846248741e-05, 0.000360973025976,
             0.000360973025976, 2.76377015215e-50, 1.00904975276e-53, 2.87254164748e-57, 6.37583360761e-61,
             1.10331620211e-64, 1.48844393335e-68, 1.56535552444e-72, 1.28328011060e-76, 8.20047697109e-81] + [0] * 10
FRACTIONAL = [0.0620410301, 0.0875807131, 0.113451958, 0.139561671, 0.1657074530, 0.1908244840, 0.2070270720,
              0.207027072, 0.169718100, 0.0575152142, 0.00678695871] + [0] * 6 + \
    [0.000536304908, 0.0172181073, 0.041909870] + [0] * 10


def test_gnmax_local_sensitivity_is_the_reference_going_right_and_left():
    right = ss.local_sensitivity_gnmax(np.array([[10, 0, 0]]), 10, 0.5, 1.5)[0]
    expected = np.array([3.13503646e-17, 1.60178280e-08, 5.90681786e-03] + [5.99981308e+00] * 7)
    np.testing.assert_allclose(right, expected, rtol=1e-7, atol=1e-15)  # the first is rounding either way
    left = ss.local_sensitivity_gnmax(np.array([[1000, 500, 300, 200, 0]]), 2000, 250.0, 10.0)[0]
    expected = np.array([0.0] * 298 + [2.77693450548e-7, 2.10853979548e-6] + [2.73113623988e-6] * 1700)
    np.testing.assert_allclose(left, expected, rtol=1e-8, atol=1e-15)


@pytest.mark.parametrize("top, threshold, expected", [
    (20, 16, HIGH), (20, 2, LOW), (20, 50, ABOVE_ALL), (19.5, 10.1, FRACTIONAL)])
def test_threshold_local_sensitivity_is_the_reference(top, threshold, expected):
    out = ss.local_sensitivity_threshold(np.array([top]), 30, threshold, 2.0, 10.0)[0]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-12)


def test_queries_walk_together_as_they_would_alone():
    rng = np.random.default_rng(0)
    counts = np.stack([rng.multinomial(200, rng.dirichlet(np.full(10, a))) for a in (0.05, 0.2, 1.0, 5.0) * 3])
    together = ss.local_sensitivity_gnmax(counts, 200, 20.0, 12.0)
    alone = np.stack([ss.local_sensitivity_gnmax(c[None], 200, 20.0, 12.0)[0] for c in counts])
    np.testing.assert_array_equal(together, alone)
    assert len({tuple(row[:50]) for row in alone}) > 3  # the histograms walk differently


def _charged(uploads, config, noise):
    accountant = Accountant(config, noise)
    confident_votes(uploads, config.dp_threshold, config.dp_threshold_noise, noise, np.random.default_rng(0),
                    accountant)
    return accountant


def test_the_release_adds_its_own_cost_and_noise_to_the_data_dependent_epsilon():
    rng = np.random.default_rng(1)
    uploads = [np.eye(10)[np.where(rng.random(300) < 0.8, np.arange(300) % 10, rng.integers(10, size=300))]
               for _ in range(200)]  # 200 clients, 300 ids: 80 % agree on each id's class
    config = rules.complete(RunConfig(clients=200, rounds=1, dp="confident-gnmax", dp_noise=20.0, dp_threshold=0.5,
                                      dp_threshold_noise=40.0, target_epsilon=100.0, seed=3))
    accountant = _charged(uploads, config, 20.0)
    released = accountant.sanitized()
    assert released == accountant.sanitized()  # drawn from the run's seed: the same every time asked
    dependent = accountant.spent().epsilon
    assert dependent < released.expected  # the release pays its own RDP and a worse order than the best
    assert released.spread > 0 and released.smooth_sensitivity > 0
    z = np.random.default_rng([3, 23]).standard_normal()
    assert released.epsilon - released.expected == pytest.approx(released.spread * z, rel=1e-6)
    at_order = float(np.interp(released.order, pate.ORDERS, accountant.rdp))
    assert released.expected > float(pate.epsilon(np.full(len(pate.ORDERS), at_order), 1e-5)) - 1e-9


def test_split_votes_have_a_larger_smooth_sensitivity_than_clear_ones():
    rng = np.random.default_rng(2)
    config = rules.complete(RunConfig(clients=200, rounds=1, dp="confident-gnmax", dp_noise=20.0, dp_threshold=0.3,
                                      dp_threshold_noise=40.0, target_epsilon=100.0))
    releases = {}
    for agreement in (0.95, 0.5):
        uploads = [np.eye(10)[np.where(rng.random(300) < agreement, np.arange(300) % 10, rng.integers(10, size=300))]
                   for _ in range(200)]
        releases[agreement] = _charged(uploads, config, 20.0).sanitized()
    assert releases[0.5].expected > releases[0.95].expected
    assert releases[0.5].spread > releases[0.95].spread


def test_no_release_without_charged_queries_or_for_other_mechanisms():
    config = rules.complete(RunConfig(clients=10, rounds=1, dp="confident-gnmax", dp_noise=2.0,
                                      dp_threshold_noise=2.0, target_epsilon=4.0))
    assert Accountant(config, 2.0).sanitized() is None
    assert Accountant(rules.complete(RunConfig(clients=10, rounds=1)), 0.0).sanitized() is None


def test_the_release_needs_an_order_below_its_limit():
    with pytest.raises(ValueError, match="outside"):
        ss.rdp_gnss(0.1, 10.0, 5.0)  # 1/(2β) = 5
