"""Membership-inference scores on tiny hand-checkable log-probs, with padding and all-masked rows."""

import math
import zlib

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from unlearn.eval.mia import auc, loss_score, min_k_plus_plus_score, min_k_score, privleak, zlib_score

# Row 0 scores all four tokens; row 1 has its last token as padding (log-prob -inf must not leak in).
LOGPROBS = torch.tensor([[-1.0, -2.0, -3.0, -4.0], [-0.5, -1.5, -2.5, -math.inf]])
MASK = torch.tensor([[True, True, True, True], [True, True, True, False]])


def test_loss_score():
    """Row 0: (1 + 2 + 3 + 4) / 4 = 2.5; row 1: (0.5 + 1.5 + 2.5) / 3 = 1.5, the padded -inf ignored."""
    assert_close(loss_score(LOGPROBS, MASK), torch.tensor([2.5, 1.5]))


def test_loss_score_without_mask_and_all_masked():
    """No mask scores every token; a row with nothing scored is 0.0, not NaN."""
    assert_close(loss_score(torch.tensor([[-1.0, -3.0]])), torch.tensor([2.0]))
    out = loss_score(LOGPROBS, torch.tensor([[True, False, False, False], [False, False, False, False]]))
    assert_close(out, torch.tensor([1.0, 0.0]))


def test_zlib_score():
    """LOSS divided by the zlib-compressed size in bytes of each text."""
    texts = ["hello hello hello hello", "qzx"]
    sizes = torch.tensor([len(zlib.compress(t.encode())) for t in texts], dtype=torch.float32)
    assert_close(zlib_score(LOGPROBS, texts, MASK), torch.tensor([2.5, 1.5]) / sizes)
    with pytest.raises(ValueError):
        zlib_score(LOGPROBS, ["one text"], MASK)


def test_min_k_score():
    """k = 0.5. Row 0: ⌊0.5·4⌋ = 2 lowest are −4, −3 → 3.5. Row 1: ⌊0.5·3⌋ = 1 lowest scored is −2.5 → 2.5."""
    assert_close(min_k_score(LOGPROBS, MASK, k=0.5), torch.tensor([3.5, 2.5]))


def test_min_k_keeps_at_least_one_token_and_handles_all_masked():
    """k = 0.1 of 4 tokens floors to 0, so the single lowest is kept (4.0); k = 1 is LOSS; all-masked is 0.0."""
    assert_close(min_k_score(LOGPROBS[:1], k=0.1), torch.tensor([4.0]))
    assert_close(min_k_score(LOGPROBS, MASK, k=1.0), loss_score(LOGPROBS, MASK))
    assert_close(min_k_score(LOGPROBS, torch.zeros_like(MASK), k=0.5), torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError):
        min_k_score(LOGPROBS, MASK, k=0.0)


def test_min_k_plus_plus_hand_case():
    """Next-token p = (½, ¼, ¼): μ = −1.5 ln 2, E[(log p)²] = 2.5 (ln 2)², σ = ½ ln 2.

    Target 0 gives z = (−1 + 1.5) / 0.5 = +1, target 1 gives z = (−2 + 1.5) / 0.5 = −1; logits are log p (any shift
    cancels in the softmax). A uniform position has σ = 0 and z = 0.
    """
    peaked = torch.tensor([0.5, 0.25, 0.25]).log() + 3.0
    logits = torch.stack([peaked, peaked, torch.zeros(3), peaked]).unsqueeze(0)  # (1, 4, 3)
    targets = torch.tensor([[0, 1, 2, -100]])  # z = (+1, −1, 0, padding)
    mask = torch.tensor([[True, True, True, False]])
    # k = 1: −mean(1, −1, 0) = 0; k = 0.5: ⌊1.5⌋ = 1 lowest, z = −1 → 1.
    assert_close(min_k_plus_plus_score(logits, targets, mask, k=1.0), torch.tensor([0.0]), atol=1e-6, rtol=0)
    assert_close(min_k_plus_plus_score(logits, targets, mask, k=0.5), torch.tensor([1.0]), atol=1e-6, rtol=0)
    # unbatched (T, V) input and a row with no scored token
    assert_close(min_k_plus_plus_score(logits[0, :1], targets[0, :1], k=1.0), torch.tensor(-1.0), atol=1e-6, rtol=0)
    assert min_k_plus_plus_score(logits, targets, torch.zeros_like(mask)).item() == 0.0


def test_auc_hand_case():
    """Members (1, 2) vs non-members (2, 3): of 4 pairs none is won, one tie counts ½ → AUC = 0.125."""
    assert auc(torch.tensor([1.0, 2.0]), [2.0, 3.0]) == pytest.approx(0.125)
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0, 1.0], [1.0]) == 0.5


def test_auc_matches_mann_whitney_and_sklearn():
    """On random scores with ties, AUC = U₁ / (m n) from scipy, and equals sklearn's roc_auc_score where installed."""
    rng = np.random.default_rng(0)
    members, nonmembers = rng.integers(0, 20, size=37).astype(float), rng.integers(3, 25, size=51).astype(float)
    stats = pytest.importorskip("scipy.stats")
    u = stats.mannwhitneyu(members, nonmembers).statistic
    assert auc(members, nonmembers) == pytest.approx(u / (37 * 51), rel=1e-12)
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return
    labels = np.r_[np.ones(37), np.zeros(51)]
    assert auc(members, nonmembers) == pytest.approx(roc_auc_score(labels, np.r_[members, nonmembers]), rel=1e-12)


def test_auc_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        auc([], [1.0])
    with pytest.raises(ValueError):
        auc([float("nan")], [1.0])


def test_privleak():
    """MUSE: (AUC_unlearned − AUC_retain) / AUC_retain; (0.3 − 0.5) / 0.5 = −0.4, equal AUCs give 0."""
    assert privleak(0.3, 0.5) == pytest.approx(-0.4)
    assert privleak(0.5, 0.5) == 0.0
    with pytest.raises(ValueError):
        privleak(0.5, 0.0)
