"""The gate BCE against hand-worked numbers and finite differences."""

import math

import torch

from unlearn.losses.gate import gate_bce_loss


def test_gate_bce_by_hand():
    """g^f = [0, ln 3], g^r = [0]: −(log ½ + log ¾ + log ½)/3 = (2·ln 2 + ln 4 − ln 3)/3 = (4·ln 2 − ln 3)/3."""
    loss = gate_bce_loss(torch.tensor([0.0, math.log(3)]), torch.tensor([0.0]))
    assert math.isclose(loss.item(), (4 * math.log(2) - math.log(3)) / 3, rel_tol=1e-6)


def test_gate_bce_one_side_and_empty():
    """σ(−ln 3) = ¼: a retain logit of −ln 3 costs −log(1 − ¼) = ln 4 − ln 3; nothing at all costs 0, not NaN."""
    assert math.isclose(
        gate_bce_loss(torch.zeros(0), torch.tensor([-math.log(3)])).item(), math.log(4 / 3), rel_tol=1e-6
    )
    empty = gate_bce_loss(torch.zeros(0), torch.zeros(0))
    assert empty.item() == 0.0


def test_gate_bce_gradcheck():
    forget = torch.randn(3, dtype=torch.float64, requires_grad=True)
    retain = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gate_bce_loss, (forget, retain))
