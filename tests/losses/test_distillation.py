"""UNDIAL and CE-U soft targets against hand-worked numbers, explicit loops and float64 gradients."""

import math

import torch
from torch.testing import assert_close

from unlearn.data.collate import IGNORE_INDEX as IGN
from unlearn.losses import ceu_loss, drop_first_answer_tokens, token_entropy, undial_loss


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random policy and reference logits (B=2, T=5, V=4) in float64, labels with a prompt and a padded row."""
    g = torch.Generator().manual_seed(seed)
    policy = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    reference = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 5), generator=g)
    labels[:, :2] = IGN
    labels[1, -1] = IGN
    return policy, reference, labels


def loop_soft_cross_entropy(policy, target, labels, lower_by):
    """Independent reference: per counted position, q ∝ exp(target) with q_y scaled by exp(−lower_by); −Σ q log π."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            y = int(labels[b, t + 1])
            if y == IGN:
                continue
            weights = [math.exp(v) for v in target[b, t].tolist()]
            weights[y] = 0.0 if math.isinf(lower_by) else weights[y] * math.exp(-lower_by)
            q = [w / sum(weights) for w in weights]
            z = policy[b, t].tolist()
            log_norm = math.log(sum(math.exp(v) for v in z))
            total += -sum(qv * (zv - log_norm) for qv, zv in zip(q, z, strict=True))
            count += 1
    return torch.tensor(total / count, dtype=torch.float64)


def test_undial_hand_computed():
    """V=2, one answer token y=0. Reference z = (0, 0), β = log 3: q ∝ (⅓, 1) = (¼, ¾). Policy π = (½, ½).

    CE(q, π) = −(¼ + ¾) log ½ = log 2. With policy z = (log 3, 0), π = (¾, ¼): CE = −¼ log ¾ − ¾ log ¼.
    """
    labels = torch.tensor([[IGN, 0]])
    reference = torch.zeros(1, 2, 2)
    assert_close(undial_loss(torch.zeros(1, 2, 2), reference, labels, beta=math.log(3)), torch.tensor(math.log(2)))
    policy = torch.zeros(1, 2, 2)
    policy[0, 0, 0] = math.log(3)
    expected = -0.25 * math.log(0.75) - 0.75 * math.log(0.25)
    assert_close(undial_loss(policy, reference, labels, beta=math.log(3)), torch.tensor(expected))
    # One answer token here out of 5 in the global batch over 2 ranks: the sum divides by 2.5.
    assert_close(
        undial_loss(policy, reference, labels, beta=math.log(3), num_tokens=torch.tensor(2.5)),
        torch.tensor(expected / 2.5),
    )


def test_undial_beta_zero_on_itself_is_the_entropy():
    """β = 0 and policy = reference: CE(π, π) = H(π), the answer-token mean entropy of `token_entropy`."""
    policy, _, labels = random_batch()
    assert_close(undial_loss(policy, policy.clone(), labels, beta=0.0), token_entropy(policy, labels))


def test_undial_matches_loop_and_reference_is_constant():
    """Random batch, β = 2.5: equals the explicit loop; no gradient reaches the reference logits."""
    policy, reference, labels = random_batch(seed=1)
    assert_close(
        undial_loss(policy, reference, labels, beta=2.5), loop_soft_cross_entropy(policy, reference, labels, 2.5)
    )
    reference.requires_grad_()
    policy.requires_grad_()
    undial_loss(policy, reference, labels, beta=2.5).backward()
    assert reference.grad is None and policy.grad is not None


def test_ceu_hand_computed():
    """V=3, y=2, z = (0, log 3, 5): q = softmax(0, log 3, −∞) = (¼, ¾, 0); π ∝ (1, 3, e⁵).

    CE(q, π) = log(4 + e⁵) − ¾ log 3 (log π_v = z_v − log(1 + 3 + e⁵)).
    """
    logits = torch.zeros(1, 2, 3, dtype=torch.float64)
    logits[0, 0] = torch.tensor([0.0, math.log(3), 5.0])
    expected = math.log(4 + math.exp(5)) - 0.75 * math.log(3)
    assert_close(ceu_loss(logits, torch.tensor([[IGN, 2]])), torch.tensor(expected, dtype=torch.float64))


def test_ceu_matches_loop_and_gradient_is_pi_minus_q():
    """Random batch: equals the loop; the gradient per counted position is (π − q) / N (q held constant)."""
    policy, _, labels = random_batch(seed=2)
    assert_close(ceu_loss(policy, labels), loop_soft_cross_entropy(policy, policy, labels, math.inf))
    policy.requires_grad_()
    ceu_loss(policy, labels).backward()
    mask = labels[:, 1:] != IGN
    pi = torch.softmax(policy.detach()[:, :-1], dim=-1)
    target = policy.detach()[:, :-1].clone()
    target.scatter_(-1, torch.where(mask, labels[:, 1:], 0).unsqueeze(-1), -math.inf)
    expected = torch.zeros_like(policy)
    expected[:, :-1] = torch.where(mask.unsqueeze(-1), (pi - torch.softmax(target, dim=-1)) / mask.sum(), 0.0)
    assert_close(policy.grad, expected)


def test_all_masked_is_zero_with_zero_gradient():
    """No answer token: both losses give 0.0 and a zero gradient, not NaN."""
    policy, reference, labels = random_batch()
    policy.requires_grad_()
    empty = torch.full_like(labels, IGN)
    for loss in (undial_loss(policy, reference, empty, beta=3.0), ceu_loss(policy, empty)):
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, policy)
        assert_close(grad, torch.zeros_like(policy))


def test_undial_gradcheck():
    """The target is a constant, so the loss is smooth in the policy logits: float64 gradcheck passes."""
    policy, reference, labels = random_batch(seed=3)
    policy.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: undial_loss(z, reference, labels, beta=3.0), (policy,))


def test_ceu_gradient_matches_fixed_target_gradcheck():
    """CE-U's target moves with the logits (stop-gradient), so gradcheck runs on CE to the target frozen at z0."""
    policy, _, labels = random_batch(seed=4)
    frozen = policy.clone()
    policy.requires_grad_()
    # CE to a fixed target: undial_loss with the frozen logits as reference and an infinite lowering is CE-U at z0
    assert torch.autograd.gradcheck(lambda z: undial_loss(z, frozen, labels, beta=math.inf), (policy,))
    (grad,) = torch.autograd.grad(ceu_loss(policy, labels), policy)
    (fixed,) = torch.autograd.grad(undial_loss(policy, frozen, labels, beta=math.inf), policy)
    assert_close(grad, fixed)


def test_drop_first_answer_tokens():
    """Row [IGN, 5, 6, 7] loses 5 with count 1; a row with fewer answer tokens than count becomes all ignored."""
    labels = torch.tensor([[IGN, 5, 6, 7], [IGN, IGN, IGN, 8]])
    assert drop_first_answer_tokens(labels, 1).tolist() == [[IGN, IGN, 6, 7], [IGN, IGN, IGN, IGN]]
    assert torch.equal(drop_first_answer_tokens(labels, 0), labels)
