"""TAR's losses on hand-computed tiny examples."""

import math

import pytest
import torch

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses import hidden_distance, tamper_resistance_loss, trajectory_weights


def one_answer_token(logits_row: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1, 2, V) whose position 0 predicts the one answer token (labels[0, 1] = 0)."""
    vocab = len(logits_row)
    logits = torch.zeros(1, 2, vocab)
    logits[0, 0] = torch.tensor(logits_row)
    return logits, torch.tensor([[IGNORE_INDEX, 0]])


def test_max_entropy_is_minus_the_answer_entropy():
    logits, labels = one_answer_token([0.0, 0.0, 0.0, 0.0])  # uniform over 4: H = log 4
    assert tamper_resistance_loss(logits, labels).item() == pytest.approx(-math.log(4))
    logits, labels = one_answer_token([math.log(3), 0.0])  # p = (3/4, 1/4)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert tamper_resistance_loss(logits, labels).item() == pytest.approx(-entropy)


def test_nll_variant_is_minus_the_answer_nll():
    logits, labels = one_answer_token([math.log(3), 0.0])  # p(answer token 0) = 3/4
    loss = tamper_resistance_loss(logits, labels, adversary_loss="nll")
    assert loss.item() == pytest.approx(math.log(0.75))
    assert tamper_resistance_loss(logits, labels, adversary_loss="nll", num_tokens=torch.tensor(2.0)).item() == (
        pytest.approx(math.log(0.75) / 2)
    )
    with pytest.raises(ValueError, match="max_entropy or nll"):
        tamper_resistance_loss(logits, labels, adversary_loss="kl")


def test_trajectory_weights():
    assert trajectory_weights(3).tolist() == pytest.approx([1 / 3] * 3)
    assert trajectory_weights(2, schedule_lambda=math.log(2)).tolist() == pytest.approx([1 / 3, 2 / 3])  # 2 : 4
    with pytest.raises(ValueError, match="steps must be >= 1"):
        trajectory_weights(0)


def test_hidden_distance_by_hand():
    hidden = torch.zeros(2, 1, 2, 2)  # (L, B, T, D)
    hidden[0, 0, 0] = torch.tensor([3.0, 4.0])  # layer 0, token 0: distance 5
    hidden[1, 0, 0] = torch.tensor([0.0, 1.0])  # layer 1, token 0: distance 1
    hidden[:, 0, 1] = 100.0  # token 1 is masked out
    mask = torch.tensor([[1, 0]])
    assert hidden_distance(hidden, torch.zeros_like(hidden), mask).item() == pytest.approx((5 + 1) / 2)
    assert hidden_distance(hidden, torch.zeros_like(hidden), mask, num_tokens=torch.tensor(2.0)).item() == (
        pytest.approx(1.5)
    )
