"""Answer-token NLL helpers against hand-worked numbers, a per-token loop and finite differences."""

import math

import torch
from torch.testing import assert_close

from unlearn.data.collate import IGNORE_INDEX
from unlearn.losses.nll import mean_token_nll, sequence_nll, shifted_logprobs

IGN = IGNORE_INDEX


def loop_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Independent reference: one softmax per (b, t), written out with exp and sum."""
    B, T, _ = logits.shape
    out = torch.zeros(B, T - 1, dtype=torch.float64)
    for b in range(B):
        for t in range(T - 1):
            if labels[b, t + 1] != IGN:
                z = logits[b, t].double()
                out[b, t] = z[labels[b, t + 1]] - torch.log(torch.exp(z).sum())
    return out


def random_batch(B: int = 3, T: int = 7, V: int = 11, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and labels with a prompt prefix and right padding of varying lengths."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :2] = IGN  # prompt
    labels[1, :3] = IGN
    labels[1, -2:] = IGN  # padding
    labels[2, :1] = IGN
    return logits, labels


def test_uniform_logits_give_log_v_per_answer_token():
    """V=4 uniform logits: each answer token has logp = −log 4; row 0 has 2 answer tokens, row 1 has 1.

    S = (2 log 4, log 4), n = (2, 1), token mean = 3 log 4 / 3 = log 4.
    """
    logits = torch.zeros(2, 4, 4)
    labels = torch.tensor([[IGN, IGN, 1, 3], [IGN, 2, IGN, IGN]])
    logp, mask = shifted_logprobs(logits, labels)
    assert_close(mask, torch.tensor([[False, True, True], [True, False, False]]))
    expected = torch.tensor([[0.0, -math.log(4), -math.log(4)], [-math.log(4), 0.0, 0.0]])
    assert_close(logp, expected)
    S, n = sequence_nll(logits, labels)
    assert_close(S, torch.tensor([2 * math.log(4), math.log(4)]))
    assert_close(n, torch.tensor([2.0, 1.0]))
    assert_close(mean_token_nll(logits, labels), torch.tensor(math.log(4)))


def test_token_mean_not_sequence_mean():
    """V=2. Row 0: logits [0, 0], p=½, 2 tokens, S=2 log 2. Row 1: logits [0, log 3], p(0)=¼, S=log 4.

    Token mean = 4 log 2 / 3 (a mean of per-sequence means would be 1.5 log 2).
    """
    logits = torch.zeros(2, 3, 2)
    logits[1, 1] = torch.tensor([0.0, math.log(3)])
    labels = torch.tensor([[IGN, 0, 1], [IGN, IGN, 0]])
    S, n = sequence_nll(logits, labels)
    assert_close(S, torch.tensor([2 * math.log(2), math.log(4)]))
    assert_close(n, torch.tensor([2.0, 1.0]))
    assert_close(mean_token_nll(logits, labels), torch.tensor(4 * math.log(2) / 3))


def test_logits_at_t_predict_label_t_plus_1():
    """Logits at t put all mass on token t+1's label: NLL ≈ 0; the unshifted pairing would give ≈ 50."""
    labels = torch.tensor([[IGN, 2, 0, 1]])
    logits = torch.zeros(1, 4, 3)
    for t in range(3):
        logits[0, t, labels[0, t + 1]] = 50.0
    assert_close(mean_token_nll(logits, labels), torch.tensor(0.0), atol=1e-12, rtol=0)


def test_matches_loop_reference_on_random_batch():
    """Per-token values and reductions agree with the explicit loop on a batch with prompt and padding."""
    logits, labels = random_batch()
    logp, mask = shifted_logprobs(logits, labels)
    reference = loop_logprobs(logits, labels)
    assert_close(logp.double(), reference)
    assert_close(mask, labels[:, 1:] != IGN)
    S, n = sequence_nll(logits, labels)
    assert_close(S.double(), -reference.sum(-1))
    assert_close(n, mask.sum(-1).float())
    assert_close(mean_token_nll(logits, labels).double(), -reference.sum() / mask.sum())


def test_masked_positions_do_not_change_result():
    """Logits whose next label is prompt/padding, and the last position (predicts nothing), are ignored."""
    logits, labels = random_batch()
    unused = torch.ones_like(labels, dtype=torch.bool)
    unused[:, :-1] = labels[:, 1:] == IGN
    changed = logits.clone()
    changed[unused] = 100.0 * torch.randn_like(changed[unused])
    assert_close(shifted_logprobs(changed, labels), shifted_logprobs(logits, labels))
    assert_close(mean_token_nll(changed, labels), mean_token_nll(logits, labels))


def test_custom_ignore_index_never_reaches_gather():
    """A non-default ignore_index (−1, out of range for gather) masks the same positions as −100."""
    logits, labels = random_batch()
    other = torch.where(labels == IGN, -1, labels)
    assert_close(shifted_logprobs(logits, other, ignore_index=-1), shifted_logprobs(logits, labels))


def test_low_precision_logits_are_upcast():
    """bf16 logits give float32 log-probs equal to those of the same values upcast first."""
    logits, labels = random_batch()
    low = logits.bfloat16()
    logp, _ = shifted_logprobs(low, labels)
    assert logp.dtype == torch.float32
    assert_close(logp, shifted_logprobs(low.float(), labels)[0])


def test_all_masked_returns_zero_with_finite_grad():
    """No answer token: exactly 0.0, finite, still attached to logits, zero gradient."""
    logits = torch.randn(2, 5, 6, requires_grad=True)
    labels = torch.full((2, 5), IGN)
    loss = mean_token_nll(logits, labels)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert_close(logits.grad, torch.zeros_like(logits))
    S, n = sequence_nll(logits, labels)
    assert_close(S, torch.zeros(2))
    assert_close(n, torch.zeros(2))


def test_gradcheck():
    """Analytic gradients of both reductions match float64 finite differences."""
    logits, labels = random_batch(B=3, T=5, V=4)
    logits = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: mean_token_nll(x, labels), (logits,))
    assert torch.autograd.gradcheck(lambda x: sequence_nll(x, labels)[0], (logits,))
    assert torch.autograd.gradcheck(lambda x: shifted_logprobs(x, labels)[0], (logits,))
