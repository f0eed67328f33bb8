"""Probabilistic bounds against closed forms, published tables, scipy, brute-force integration and coverage."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from unlearn.eval.bounds import answer_entropy, clopper_pearson_upper, dkw_band, expectation_upper, std_upper


def test_clopper_pearson_zero_and_all_but_one_leaks_closed_forms():
    """k = 0 solves (1 − p)^n = delta: p = 1 − delta^(1/n); k = n − 1 solves 1 − p^n = delta: p = (1 − delta)^(1/n)."""
    assert round(clopper_pearson_upper(0, 128, delta=0.01), 6) == 0.035338
    assert clopper_pearson_upper(0, 128, delta=0.01) == pytest.approx(1 - 0.01 ** (1 / 128), rel=1e-12)
    assert clopper_pearson_upper(9, 10, delta=0.05) == pytest.approx(0.95 ** (1 / 10), rel=1e-12)


@pytest.mark.parametrize("k,n,upper", [(0, 10, 0.3085), (1, 10, 0.4450), (5, 10, 0.8129), (10, 10, 1.0)])
def test_clopper_pearson_matches_published_exact_intervals(k, n, upper):
    """The upper ends of the exact 95% two-sided intervals for k of 10 in Clopper-Pearson tables (delta = 0.025)."""
    assert clopper_pearson_upper(k, n, delta=0.025) == pytest.approx(upper, abs=5e-5)


@pytest.mark.parametrize("k,n,delta", [(0, 1, 0.05), (1, 2, 0.05), (3, 10, 0.01), (50, 100, 0.1), (999, 1000, 0.01)])
def test_clopper_pearson_solves_the_binomial_tail(k, n, delta):
    """The bound is where P(Bin(n, p) ≤ k) falls to delta (scipy's binomial CDF), and scipy's exact CI at 2·delta."""
    bound = clopper_pearson_upper(k, n, delta=delta)
    assert stats.binom.cdf(k, n, bound) == pytest.approx(delta, rel=1e-8)
    two_sided = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * delta, method="exact")
    assert bound == pytest.approx(two_sided.high, rel=1e-10)


def test_clopper_pearson_hand_cases():
    """k = n can rule nothing out; n = 1, k = 0 solves 1 − p = delta."""
    assert clopper_pearson_upper(5, 5, delta=0.01) == 1.0
    assert clopper_pearson_upper(0, 1, delta=0.25) == pytest.approx(0.75, rel=1e-12)


@pytest.mark.parametrize(
    "k,n,delta", [(3, 2, 0.01), (-1, 5, 0.01), (0, 0, 0.01), (1, 5, 0.0), (1, 5, 1.0), (1.5, 5, 0.1)]
)
def test_clopper_pearson_rejects_bad_input(k, n, delta):
    with pytest.raises(ValueError):
        clopper_pearson_upper(k, n, delta=delta)


def test_dkw_band_hand_case():
    """n = 4, delta = 0.5: ε = sqrt(log 4 / 8) ≈ 0.4163; F_n at the sorted scores (0.2, 0.5, 0.5, 0.9) is ¼, ¾, ¾, 1."""
    band = dkw_band(torch.tensor([0.5, 0.2, 0.9, 0.5]), delta=0.5)
    eps = math.sqrt(math.log(4) / 8)
    assert band.epsilon == pytest.approx(eps)
    torch.testing.assert_close(band.x, torch.tensor([0.2, 0.5, 0.5, 0.9], dtype=torch.float64))
    ecdf = torch.tensor([0.25, 0.75, 0.75, 1.0], dtype=torch.float64)
    torch.testing.assert_close(band.lower, (ecdf - eps).clamp_min(0))
    torch.testing.assert_close(band.upper, (ecdf + eps).clamp_max(1))


def test_dkw_band_is_scipys_ecdf_widened_by_massarts_epsilon():
    """At every sample the band is scipy's empirical CDF ± sqrt(log(2 / delta) / (2 n)), clipped to [0, 1]."""
    scores = np.random.default_rng(2).beta(0.5, 2.0, size=50).round(2)  # rounded: ties
    band = dkw_band(scores, delta=0.05)
    eps = math.sqrt(math.log(2 / 0.05) / 100)
    ecdf = stats.ecdf(scores).cdf.evaluate(np.sort(scores))
    np.testing.assert_allclose(band.lower.numpy(), np.clip(ecdf - eps, 0, 1), atol=1e-12)
    np.testing.assert_allclose(band.upper.numpy(), np.clip(ecdf + eps, 0, 1), atol=1e-12)


def test_dkw_band_steps_keep_one_entry_per_distinct_score():
    """The hand case above: the tied 0.5s make one step, so three steps remain, JSON-ready."""
    steps = dkw_band([0.5, 0.2, 0.9, 0.5], delta=0.5).steps()
    eps = math.sqrt(math.log(4) / 8)
    assert steps["epsilon"] == pytest.approx(eps) and steps["x"] == [0.2, 0.5, 0.9]
    assert steps["lower"] == pytest.approx([max(0.25 - eps, 0), 0.75 - eps, 1 - eps])
    assert steps["upper"] == pytest.approx([0.25 + eps, 1.0, 1.0])
    assert all(type(v) is float for key in ("x", "lower", "upper") for v in steps[key])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_and_std_bounds_match_brute_force_integration(seed):
    """Both bounds integrate the band exactly; a midpoint sum over 200,000 cells of scipy's ECDF ± ε agrees.

    E[X] ≤ ∫₀¹ (1 − F_lo), E[X²] ≤ ∫₀¹ 2x (1 − F_lo), E[X] ≥ ∫₀¹ (1 − F_hi), Var ≤ min(E[X²]⁺ − E[X]₋², 1/4).
    """
    rng = np.random.default_rng(seed)
    scores = rng.choice([0.0, 0.25, 0.5, 1.0], size=40) if seed == 2 else rng.beta(2.0, 5.0, size=40)
    delta = 0.1
    eps = math.sqrt(math.log(2 / delta) / 80)
    grid = (np.arange(200_000) + 0.5) / 200_000
    ecdf = stats.ecdf(scores).cdf.evaluate(grid)
    low, high = np.clip(ecdf - eps, 0, 1), np.clip(ecdf + eps, 0, 1)
    mean_upper = np.mean(1 - low)
    second_upper = np.mean(2 * grid * (1 - low))
    mean_lower = np.mean(1 - high)
    std = math.sqrt(min(max(second_upper - mean_lower**2, 0.0), 0.25))
    assert expectation_upper(scores, delta=delta) == pytest.approx(mean_upper, abs=1e-4)
    assert std_upper(scores, delta=delta) == pytest.approx(std, abs=1e-4)


def test_expectation_upper_hand_case():
    """Scores (0, 1), delta = 2/e so ε = ½: F_lo is 0 on [0, 1) and ½ at 1, so ∫₀¹ (1 − F_lo) = 1."""
    assert expectation_upper([0.0, 1.0], delta=2 / math.e) == pytest.approx(1.0)
    # Eight scores at 0.5, delta = 2/e^4 (ε = ½): F_lo = ½ on [0.5, 1], so the bound is 1 − ½·½ = 0.75.
    assert expectation_upper([0.5] * 8, delta=2 / math.e**4) == pytest.approx(0.75)


def test_bounds_all_zeros_and_all_ones():
    """All zeros: the band allows mass ε at 1, so E ≤ ε and E[X²] ≤ ε. All ones: E[X] ≥ 1 − ε, so σ² ≤ 1 − (1 − ε)²."""
    n, delta = 200, 0.05
    eps = math.sqrt(math.log(2 / delta) / (2 * n))
    assert expectation_upper(np.zeros(n), delta=delta) == pytest.approx(eps)
    assert expectation_upper(np.ones(n), delta=delta) == pytest.approx(1.0)
    assert std_upper(np.ones(n), delta=delta) == pytest.approx(math.sqrt(1 - (1 - eps) ** 2))
    assert std_upper(np.zeros(n), delta=delta) == pytest.approx(math.sqrt(eps))  # E[X²] ≤ ε, E[X] ≥ 0


def test_one_sample_bounds_are_trivial():
    """n = 1 at delta = 0.01 gives ε > 1: the band is [0, 1] everywhere, so E ≤ 1 and σ ≤ ½ (Popoviciu)."""
    assert expectation_upper([0.3], delta=0.01) == pytest.approx(1.0)
    assert std_upper([0.3], delta=0.01) == pytest.approx(0.5)


@pytest.mark.parametrize("scores", [[0.5, 1.5], [-0.1], [float("nan")], [], [[0.1, 0.2]]])
def test_scores_rejected(scores):
    for bound in (dkw_band, expectation_upper, std_upper):
        with pytest.raises(ValueError):
            bound(scores, delta=0.1)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.5, 2.0])
def test_alpha_rejected(delta):
    with pytest.raises(ValueError):
        expectation_upper([0.5], delta=delta)


@pytest.mark.parametrize("a,b", [(2.0, 5.0), (0.3, 0.3), (1.0, 1.0)])
def test_bounds_cover_on_simulated_scores(a, b):
    """Over 2000 draws of n = 64 Beta(a, b) scores, the mean and std bounds hold at least 1 − delta of the time."""
    n, delta, repeats = 64, 0.1, 2000
    rng = np.random.default_rng(0)
    true_mean = a / (a + b)
    true_std = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    draws = rng.beta(a, b, size=(repeats, n))
    mean_hits = sum(expectation_upper(row, delta=delta) >= true_mean for row in draws)
    std_hits = sum(std_upper(row, delta=delta) >= true_std for row in draws)
    assert mean_hits / repeats >= 1 - delta
    assert std_hits / repeats >= 1 - delta
    # and the bounds are not vacuous: the mean bound sits well below 1 on average
    assert np.mean([expectation_upper(row, delta=delta) for row in draws[:50]]) < true_mean + 0.25


def test_bernoulli_leak_coverage():
    """Clopper–Pearson covers a leak rate of 3% over 2000 runs of n = 128 samples at delta = 0.05."""
    rng = np.random.default_rng(1)
    leaks = rng.binomial(128, 0.03, size=2000)
    bounds = {k: clopper_pearson_upper(int(k), 128, delta=0.05) for k in np.unique(leaks)}
    assert np.mean([bounds[k] >= 0.03 for k in leaks]) >= 0.95


def test_answer_entropy():
    """Four answers a, a, b, c: p = (½, ¼, ¼), H = ½ log 2 + ½ log 4 = 1.5 log 2; one distinct answer gives 0."""
    assert answer_entropy(["a", "a", "b", "c"]) == pytest.approx(1.5 * math.log(2))
    assert answer_entropy(["Paris"] * 7) == 0.0
    assert answer_entropy(["x"]) == 0.0
    assert answer_entropy([str(i) for i in range(10)]) == pytest.approx(math.log(10))
    with pytest.raises(ValueError):
        answer_entropy([])
