"""ELM: the erase loss against a hand computation, its target at η = 0, adapters-only gradients, and forgetting."""

import numpy as np
import pytest
import torch

from benchmarks.elm_sampler import uncached_continuations
from unlearn.checks import UsageError
from unlearn.data.collate import IGNORE_INDEX
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA
from unlearn.losses import elm_erase_loss, elm_target_logits, sequence_nll
from unlearn.methods import ELM
from unlearn.methods.elm import row_generators, with_prefix
from unlearn.methods.lora import LoRA
from unlearn.models import load_model


def batch_of(split: str, size: int) -> dict:
    """The first `size` rows of a split, collated as training collates them."""
    data = UnlearnDataModule("tiny-target", forget=SyntheticQA(split), retain=None, batch_size=size)
    data.setup("fit")
    return next(iter(data.ordered_dataloader("forget")))["forget"]


def test_erase_loss_matches_a_hand_computation():
    """2 answer tokens, vocabulary 3, η = 2, computed with numpy in float64 from the paper's formula."""
    z = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0], [0.0, 0.0, 0.0]])  # original; the last row predicts nothing
    novice = np.array([[0.5, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    expert = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    policy = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, 0.0], [3.0, 3.0, 3.0]])
    eta = 2.0

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    # position 0: z* = [0,1,2] + 2·[0.5,0,−2] = [1, 1, −2]; position 1: [1,0,−1] + 2·[−1,1,1] = [−1, 2, 1]
    targets = [np.array([1.0, 1.0, -2.0]), np.array([-1.0, 2.0, 1.0])]
    expected = np.mean([-(softmax(t) * np.log(softmax(p))).sum() for t, p in zip(targets, policy[:2], strict=True)])
    for t, zt, nt, et in zip(targets, z, novice, expert, strict=False):
        np.testing.assert_allclose(zt + eta * (nt - et), t)

    def tensor(x):
        return torch.tensor(x, dtype=torch.float64)[None]

    labels = torch.tensor([[IGNORE_INDEX, 2, 0]])  # tokens 1 and 2 are answer tokens, predicted at positions 0 and 1
    loss = elm_erase_loss(tensor(policy), tensor(z), tensor(novice), tensor(expert), labels, eta=eta)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # one answer token counted out of the denominator's 4 (a global count): the sum over 2 tokens / 4
    halved = elm_erase_loss(tensor(policy), tensor(z), tensor(novice), tensor(expert), labels, eta=eta, num_tokens=4)
    assert halved.item() == pytest.approx(expected / 2, rel=1e-12)


def test_eta_zero_gives_the_original_distribution_and_no_gradient_at_it():
    torch.manual_seed(0)
    z, novice, expert = torch.randn(3, 2, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(elm_target_logits(z, novice, expert, eta=0.0), z)
    labels = torch.randint(0, 7, (2, 5))
    policy = z.clone().requires_grad_(True)  # the policy starts as the original model
    loss = elm_erase_loss(policy, z, novice, expert, labels, eta=0.0)
    p = torch.softmax(z[:, :-1], dim=-1)
    assert loss.item() == pytest.approx(-(p * p.log()).sum(-1).mean().item(), rel=1e-12)  # CE(p, p) = H(p)
    loss.backward()
    assert policy.grad.abs().max().item() < 1e-12
    # η > 0 moves the target, so the same policy now has a gradient
    policy.grad = None
    elm_erase_loss(policy, z, novice, expert, labels, eta=1.0).backward()
    assert policy.grad.abs().max().item() > 1e-3


def test_prefix_is_inserted_after_bos_and_aligned():
    """logits[:, P:] of c + x predict the tokens of x: with P prefix ids after the BOS, x's token k sits at k + P."""
    forget = batch_of("forget01", 3)
    ids, mask, shift = with_prefix(forget["input_ids"], forget["attention_mask"], [7, 8, 9], bos_token_id=1)
    assert shift == 3 and torch.equal(ids[:, :4], torch.tensor([[1, 7, 8, 9]] * 3))
    assert torch.equal(ids[:, shift + 1 :], forget["input_ids"][:, 1:])
    assert torch.equal(mask[:, shift + 1 :], forget["attention_mask"][:, 1:]) and bool(mask[:, :4].all())
    no_bos, _, _ = with_prefix(forget["input_ids"][:, 1:], forget["attention_mask"][:, 1:], [7, 8], bos_token_id=1)
    assert torch.equal(no_bos[:, :2], torch.tensor([[7, 8]] * 3))


def elm(**kwargs) -> ELM:
    kwargs = {"concept": "the forget set", "adapter": LoRA(r=4, lora_alpha=8.0), "fluency_tokens": 4, **kwargs}
    module = ELM(model="tiny-target", **kwargs)
    module.configure_model()
    return module


def test_gradients_reach_only_the_adapters_and_the_reference_is_the_base():
    module = elm()
    forget, retain = batch_of("forget01", 4), batch_of("retain", 4)
    # LoRA's B starts at 0, so A gets no gradient at step 0: move B off zero as after a first step
    with torch.no_grad():
        for name, param in module.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    terms = module.objective({"forget": forget, "retain": retain})
    assert set(terms) == {"loss", "forget", "retain", "fluency"}
    terms["loss"].backward()
    adapters = {n: p for n, p in module.model.named_parameters() if "lora_" in n}
    assert adapters and all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters.values())
    assert all(p.grad is None for n, p in module.model.named_parameters() if n not in adapters)
    base = load_model("tiny-target").eval()
    with torch.no_grad():
        original, novice, expert = module.original_logits(forget["input_ids"], forget["attention_mask"])
        plain = base(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    torch.testing.assert_close(original, plain)
    assert novice.shape == expert.shape == plain.shape
    assert not torch.allclose(novice, expert)  # the two prompts do change the original's predictions


def test_fluency_sample_continues_each_question():
    """The drawn tokens follow each row's question, where its answer began; the question itself is kept."""
    module = elm(fluency_tokens=3)
    forget = batch_of("forget01", 4)
    torch.manual_seed(0)
    sample = module.fluency_sample(forget)
    start = (forget["labels"] != IGNORE_INDEX).int().argmax(dim=1)
    for row, s in enumerate(start.tolist()):
        assert torch.equal(sample["input_ids"][row, :s], forget["input_ids"][row, :s])
        drawn = (sample["labels"][row] != IGNORE_INDEX).nonzero().squeeze(1).tolist()
        assert drawn and drawn == list(range(s, s + len(drawn))) and len(drawn) <= 3
        assert sample["attention_mask"][row].sum() == s + 3


@pytest.mark.parametrize("adapter", [None, LoRA(r=4, lora_alpha=8.0)], ids=["frozen-copy", "lora"])
def test_cached_fluency_draws_are_the_uncached_ones(adapter):
    """The KV-cached, left-padded sampler draws the tokens that whole forwards of right-padded prompts give, for
    prompts of unequal length, with the original as a frozen copy or as the policy with its LoRA off."""
    module = elm(adapter=adapter, fluency_tokens=5)
    with torch.no_grad():  # a trained LoRA, so that the adapters being off matters
        for name, param in module.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    forget = batch_of("forget01", 4)
    start = (forget["labels"] != IGNORE_INDEX).int().argmax(dim=1)
    assert len(set(start.tolist())) > 1, "prompts of unequal length, so left padding matters"
    with torch.no_grad():
        cached = module.continuations(forget["input_ids"], start, row_generators(forget, 0))
        expected = uncached_continuations(module, forget, start, row_generators(forget, 0))
    assert torch.equal(cached, expected)


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="eta=-1.0 must be >= 0"):
        ELM(concept="x", eta=-1.0)
    with pytest.raises(UsageError, match="concept is empty"):
        ELM(concept=" ")
    with pytest.raises(UsageError, match="equals novice_prompt"):
        ELM(concept="x", expert_prompt="a {concept}", novice_prompt="a {concept}")


def answer_logprob(model: torch.nn.Module, batch: dict) -> float:
    """Mean over rows of the summed answer log-probability."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return -sequence_nll(logits, batch["labels"])[0].mean().item()


def test_elm_lowers_forget_answers_more_than_retain_answers(tmp_path, fit, adam):
    """24 steps of ELM with LoRA on the tiny target: the forget answers' log-likelihood falls by nats, the retain
    answers' (held by the KL term) by far less."""
    torch.set_num_threads(1)
    forget, retain = batch_of("forget01", 10), batch_of("retain", 40)
    base = load_model("tiny-target").eval()
    before = answer_logprob(base, forget), answer_logprob(base, retain)
    module = ELM(
        model="tiny-target",
        concept="the forget set",
        adapter=LoRA(r=8, lora_alpha=16.0),
        fluency_tokens=4,
        optimizer=adam(3e-3),
    )
    steps = fit(module, tmp_path, steps=24)
    module.model.eval()
    after = answer_logprob(module.model, forget), answer_logprob(module.model, retain)
    forget_drop, retain_drop = before[0] - after[0], before[1] - after[1]
    assert steps[-1]["train/forget"] < steps[0]["train/forget"]
    assert forget_drop > 2.0 and forget_drop > 5 * max(retain_drop, 0.0), (before, after)
