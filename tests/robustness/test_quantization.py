"""Quantization: round-to-nearest against hand computation, and int8 keeps the tiny model's accuracy."""

import pytest
import torch

from unlearn.robustness import Quantization
from unlearn.robustness.quantization import fake_quantize


def test_symmetric_int4_per_channel_by_hand():
    weight = torch.tensor([[0.7, -0.36, 0.1, 0.0], [2.0, 1.1, -0.5, 0.2]])
    # scales max|w| / 7 = 0.1 and 2/7; w / s = [7, -3.6, 1, 0] and [7, 3.85, -1.75, 0.7] -> [7, -4, 1, 0], [7, 4, -2, 1]
    expected = torch.tensor([[0.7, -0.4, 0.1, 0.0], [2.0, 4 * 2 / 7, -2 * 2 / 7, 2 / 7]])
    assert torch.allclose(fake_quantize(weight, bits=4), expected, atol=1e-6)


def test_asymmetric_groups_by_hand():
    weight = torch.tensor([[0.0, 3.0, -1.0, 2.0]])
    # groups of 2: [0, 3]: s = 3 / 3 = 1, z = 0 -> exact; [-1, 2]: s = 1, z = 1 -> exact at 2 bits
    assert torch.equal(fake_quantize(weight, bits=2, group_size=2, symmetric=False), weight)
    # one group [0, 3, -1, 1.8] at 2 bits: s = 4 / 3, z = round(0.75) = 1; round(w / s) + z = [0, 2, -1, 1] + 1
    expected = torch.tensor([[0.0, 2 * 4 / 3, -4 / 3, 4 / 3]])
    one_group = fake_quantize(torch.tensor([[0.0, 3.0, -1.0, 1.8]]), bits=2, symmetric=False)
    assert torch.allclose(one_group, expected, atol=1e-6)


def test_zero_channel_stays_and_bad_group_is_refused():
    weight = torch.zeros(2, 4)
    assert torch.equal(fake_quantize(weight, bits=4), weight)
    with pytest.raises(ValueError, match="does not divide"):
        fake_quantize(weight, bits=4, group_size=3)


def test_int8_keeps_the_tiny_models_accuracy_within_two_points(tmp_path, attack_run):
    summary = attack_run(tmp_path, Quantization(bits=8), limit=50)
    for name in ("forget/mcq_acc", "retain/mcq_acc"):
        assert abs(summary["after"][name] - summary["before"][name]) <= 0.02
    assert summary["attack"]["matrices"] == 4 * 7 and 0 < summary["attack"]["mean_abs_change"] < 1e-3
