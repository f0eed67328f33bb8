"""High-confidence bounds over N sampled answers per prompt: one greedy answer can hide a leak that sampling finds.

Paper: Scholten et al., ICLR 2025, "A Probabilistic Perspective on Unlearning and Alignment for LLMs",
arXiv:2410.03523. Every bound holds with probability at least ``1 − delta`` over the N i.i.d. samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

Scores = Tensor | np.ndarray | Sequence[float]


@dataclass(frozen=True)
class DKWBand:
    """A confidence band for the CDF of a score, kept as step functions so bounds can integrate it exactly.

    ``F(x)`` lies in ``[lower[i], upper[i]]`` for ``x`` in ``[x[i], x[i + 1])`` (``x[n] = 1``), and in ``[0, epsilon]``
    below ``x[0]``, simultaneously for all ``x``, with probability at least ``1 − delta``.
    """

    epsilon: float  # half-width of the band
    x: Tensor  # (N,) the sorted scores, float64
    lower: Tensor  # (N,) max(F_n(x) − ε, 0) at each sorted score
    upper: Tensor  # (N,) min(F_n(x) + ε, 1) at each sorted score

    def steps(self) -> dict[str, float | list[float]]:
        """The band at each distinct score, JSON-ready: tied scores share one step, so per-item reports stay short."""
        last = torch.cat([self.x[1:] != self.x[:-1], torch.ones(1, dtype=torch.bool)])  # (N,) last score of each tie
        return {
            "epsilon": self.epsilon,
            "x": self.x[last].tolist(),
            "lower": self.lower[last].tolist(),
            "upper": self.upper[last].tolist(),
        }


def clopper_pearson_upper(k: int, n: int, *, delta: float = 0.01) -> float:
    """Upper bound on a leak probability from k leaks in n samples, exact rather than asymptotic so n=0 leaks is fine.

    Paper: Clopper & Pearson 1934, Biometrika 26(4); one-sided form as used by Scholten et al. 2025, §4.

    ``p_u`` solves ``P(Bin(n, p_u) ≤ k) = delta``, i.e. ``p_u = Beta⁻¹(1 − delta; k + 1, n − k)`` (scipy's beta
    quantile); ``p_u = 1`` when ``k = n`` and ``p_u = 1 − delta^(1/n)`` when ``k = 0``.

    Args:
        k: number of samples that leaked, ``0 ≤ k ≤ n``.
        n: number of samples, ``n ≥ 1``.
        delta: δ, the failure probability, in (0, 1): the bound holds with probability ≥ 1 − δ.

    Returns:
        The bound ``p_u`` as a float in (0, 1].
    """
    _check_delta(delta)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if k == n:
        return 1.0
    return float(stats.beta.ppf(1.0 - delta, k + 1, n - k))


def dkw_band(scores: Scores, *, delta: float = 0.01) -> DKWBand:
    """A band around the empirical CDF that holds at every threshold at once, so any functional of it is bounded too.

    Paper: Dvoretzky, Kiefer & Wolfowitz 1956 with Massart's constant (Ann. Probab. 18(3), 1990).

    ``P(sup_x |F_n(x) − F(x)| > ε) ≤ 2 exp(−2 n ε²)``, so ``ε = sqrt(log(2 / delta) / (2 n))``.

    Args:
        scores: (N,) i.i.d. per-sample scores in [0, 1].
        delta: δ, the failure probability, in (0, 1): the bound holds with probability ≥ 1 − δ.
    """
    _check_delta(delta)
    x = _check_scores(scores).sort().values  # (N,)
    n = x.numel()
    epsilon = math.sqrt(math.log(2.0 / delta) / (2.0 * n))
    # F_n is right-continuous: at the i-th sorted score (0-based) it counts every score ≤ x[i], ties included.
    ecdf = torch.searchsorted(x, x, right=True).to(torch.float64) / n  # (N,)
    return DKWBand(epsilon, x, (ecdf - epsilon).clamp_min(0.0), (ecdf + epsilon).clamp_max(1.0))


def expectation_upper(scores: Scores, *, delta: float = 0.01) -> float:
    """Upper bound on the mean score, the quantity a greedy single answer cannot bound.

    Paper: Scholten et al. 2025, §4 (expectation bound from the DKW band).

    ``E[X] = ∫₀¹ (1 − F(x)) dx ≤ ∫₀¹ (1 − max(F_n(x) − ε, 0)) dx`` for X in [0, 1], integrated exactly over the steps.

    Args:
        scores: (N,) i.i.d. per-sample scores in [0, 1].
        delta: δ, the failure probability, in (0, 1): the bound holds with probability ≥ 1 − δ.
    """
    band = dkw_band(scores, delta=delta)
    return _survival_integral(band.x, torch.cat([band.lower.new_zeros(1), band.lower]), power=1)


def std_upper(scores: Scores, *, delta: float = 0.01) -> float:
    """Upper bound on the score's standard deviation, which says how much a single sampled answer can vary.

    Derived from the same DKW band (Scholten et al. 2025, §4), so both halves hold on one event of probability
    ``≥ 1 − delta``: ``Var X = E[X²] − E[X]²`` with ``E[X²] = ∫₀¹ 2x (1 − F(x)) dx ≤ ∫₀¹ 2x (1 − F_lo(x)) dx`` and
    ``E[X] ≥ ∫₀¹ (1 − F_hi(x)) dx ≥ 0``, where ``F_lo = max(F_n − ε, 0)``, ``F_hi = min(F_n + ε, 1)`` (ε below the
    first score). The variance bound is capped at 1/4, Popoviciu's inequality for [0, 1] (Amer. Math. Monthly 1935).

    Args:
        scores: (N,) i.i.d. per-sample scores in [0, 1].
        delta: δ, the failure probability, in (0, 1): the bound holds with probability ≥ 1 − δ.
    """
    band = dkw_band(scores, delta=delta)
    second_moment_upper = _survival_integral(band.x, torch.cat([band.lower.new_zeros(1), band.lower]), power=2)
    below_first = band.upper.new_full((1,), band.epsilon)
    mean_lower = _survival_integral(band.x, torch.cat([below_first, band.upper]), power=1)
    variance_upper = min(max(second_moment_upper - mean_lower**2, 0.0), 0.25)
    return math.sqrt(variance_upper)


def answer_entropy(answers: Sequence[str]) -> float:
    """Entropy in nats of the distinct sampled answers: 0 when the model always says the same thing.

    Paper: Scholten et al. 2025, §5 (output diversity under sampling).

    ``H = −Σ_a p̂(a) log p̂(a)``, ``p̂(a)`` the share of samples equal to answer ``a`` (exact string match; normalise
    the answers first if spelling variants should count as one).

    Args:
        answers: the N sampled answers to one prompt, N ≥ 1.
    """
    if len(answers) == 0:
        raise ValueError("answer_entropy needs at least one answer")
    n = len(answers)
    return -sum(c / n * math.log(c / n) for c in Counter(answers).values()) + 0.0  # + 0.0 turns −0.0 into 0.0


def _survival_integral(x: Tensor, cdf: Tensor, *, power: int) -> float:
    """``∫₀¹ d(t^power)/dt · (1 − G(t)) dt`` for a step CDF bound G, exact: a sum over the steps between scores.

    ``cdf[0]`` is G below ``x[0]``, ``cdf[i + 1]`` is G on ``[x[i], x[i + 1])`` with ``x[N] = 1``.
    """
    edges = torch.cat([x.new_zeros(1), x, x.new_ones(1)]) ** power  # (N+2,)
    return float(1.0 - (cdf * edges.diff()).sum())


def _check_scores(scores: Scores) -> Tensor:
    """Reject what would make a bound silently wrong: no samples, NaN, or scores outside [0, 1]."""
    x = torch.as_tensor(np.asarray(scores, dtype=np.float64) if not isinstance(scores, Tensor) else scores)
    x = x.detach().to(device="cpu", dtype=torch.float64)
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence, got shape {tuple(x.shape)}")
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("scores must lie in [0, 1] (and not be NaN)")
    return x


def _check_delta(delta: float) -> None:
    """Bounds at confidence 0 or 1 are meaningless or infinite."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
