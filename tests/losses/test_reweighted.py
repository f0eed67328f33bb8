"""WGA and SatImp token weights against hand-worked numbers, GA as their limit, and float64 gradients."""

import math

import torch
from torch.testing import assert_close

from unlearn.data.collate import IGNORE_INDEX as IGN
from unlearn.losses import gradient_ascent_loss, satimp_loss, shifted_logprobs, wga_loss


def two_token_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """V=2, labels [IGN, 0, 0]: answer-token probabilities p = ½ (t=0, z = (0, 0)) and p = ¾ (t=1, z = (log 3, 0))."""
    logits = torch.zeros(1, 3, 2)
    logits[0, 1, 0] = math.log(3)
    logits[0, 2] = torch.tensor([5.0, -5.0])  # last position: predicts nothing
    return logits, torch.tensor([[IGN, 0, 0]])


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits (B=2, T=5, V=4) and labels with a prompt and a padded row."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 5), generator=g)
    labels[:, :2] = IGN
    labels[1, -1] = IGN
    return logits, labels


def test_wga_hand_computed():
    """α = 1: L = mean(p log p) = (½ log ½ + ¾ log ¾) / 2; α = 2: (¼ log ½ + (9/16) log ¾) / 2."""
    logits, labels = two_token_batch()
    expected = (0.5 * math.log(0.5) + 0.75 * math.log(0.75)) / 2
    assert_close(wga_loss(logits, labels, beta=1.0), torch.tensor(expected))
    expected = (0.25 * math.log(0.5) + 9 / 16 * math.log(0.75)) / 2
    assert_close(wga_loss(logits, labels, beta=2.0), torch.tensor(expected))
    # Sharded: the global batch has 8 answer tokens over 2 ranks, so this rank's sum divides by 4, not by its 2.
    assert_close(wga_loss(logits, labels, beta=2.0, num_tokens=torch.tensor(4.0)), torch.tensor(expected / 2))


def test_satimp_hand_computed():
    """β₁ = 1, β₂ = 2: w = p (1 − p)²: ½·¼ = ⅛ and ¾·(1/16) = 3/64; L = (⅛ log ½ + (3/64) log ¾) / 2."""
    logits, labels = two_token_batch()
    expected = (math.log(0.5) / 8 + 3 / 64 * math.log(0.75)) / 2
    assert_close(satimp_loss(logits, labels, beta1=1.0, beta2=2.0), torch.tensor(expected))
    assert_close(
        satimp_loss(logits, labels, beta1=1.0, beta2=2.0, num_tokens=torch.tensor(4.0)), torch.tensor(expected / 2)
    )


def test_zero_powers_are_gradient_ascent():
    """α = 0 and β₁ = β₂ = 0 make every weight 1: both equal GA = −NLL; β₂ = 0 makes SatImp equal WGA with α = β₁."""
    logits, labels = random_batch()
    assert_close(wga_loss(logits, labels, beta=0.0), gradient_ascent_loss(logits, labels))
    assert_close(satimp_loss(logits, labels, beta1=0.0, beta2=0.0), gradient_ascent_loss(logits, labels))
    assert_close(satimp_loss(logits, labels, beta1=3.0, beta2=0.0), wga_loss(logits, labels, beta=3.0))


def test_all_masked_is_zero_with_zero_gradient():
    """No answer token: 0.0 and a zero gradient, not NaN."""
    logits, labels = random_batch()
    logits.requires_grad_()
    for loss in (wga_loss(logits, torch.full_like(labels, IGN)), satimp_loss(logits, torch.full_like(labels, IGN))):
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, logits)
        assert_close(grad, torch.zeros_like(logits))


def test_weights_are_constants_in_the_gradient():
    """The gradient is w · ∇log p with w held fixed (stop-gradient), checked against fixed weights in float64."""
    logits, labels = random_batch(seed=1)
    logits.requires_grad_()
    logp, mask = shifted_logprobs(logits, labels)
    p = logp.detach().exp()
    for loss, weights in (
        (wga_loss(logits, labels, beta=1.5), p**1.5),
        (satimp_loss(logits, labels, beta1=2.0, beta2=0.5), p**2.0 * (1 - p) ** 0.5),
    ):
        fixed = (weights * logp)[mask].sum() / mask.sum()
        assert_close(
            torch.autograd.grad(loss, logits, retain_graph=True)[0],
            torch.autograd.grad(fixed, logits, retain_graph=True)[0],
        )


def test_gradcheck_at_zero_power():
    """Where the weights are constant (powers 0) the detached-weight losses are smooth: float64 gradcheck passes."""
    logits, labels = random_batch(seed=2)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: wga_loss(z, labels, beta=0.0), (logits,))
    assert torch.autograd.gradcheck(lambda z: satimp_loss(z, labels, beta1=0.0, beta2=0.0), (logits,))
