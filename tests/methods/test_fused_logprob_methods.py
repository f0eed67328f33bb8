"""The fused lm-head path across methods: the logits path's losses without (B, T, V) logits, refused where a loss
reads every logit."""

import pytest
import torch

from unlearn.checks import UsageError
from unlearn.methods import CEU, ELM, NPO, PDU, UNDIAL, WGA, GradientAscent, IDKFineTune, NPOEntropy, SatImp
from unlearn.methods.grun import GRUN
from unlearn.methods.lora import LoRA
from unlearn.models import load_model


def builds_logits(head, args, output) -> bool:
    """Whether an lm-head call produced (B, T, V) logits; the fused kernel runs as the head's forward but gives
    per-token log-probs (and entropies) only."""
    return isinstance(output, torch.Tensor) and output.shape[-1] == head.out_features


@pytest.mark.parametrize("method", [NPO, GradientAscent, IDKFineTune, WGA, SatImp, NPOEntropy])
def test_fused_logprob_trains_like_logits(tmp_path, method, fit, adam):
    """The fused lm-head path (no (B, T, V) logits) gives the eager path's losses step for step: log-probs,
    token-weighted ascent and the entropy objective all read `lm_outputs`."""
    runs, head_calls = [], []
    for fused in (False, True):
        module = method(model="tiny-scratch", fused_logprob=fused, optimizer=adam(1e-3))
        module.configure_model()
        calls = []
        head = module.model.get_output_embeddings()
        head.register_forward_hook(lambda *args, calls=calls: calls.append(1) if builds_logits(*args) else None)
        runs.append(fit(module, tmp_path / str(fused), steps=3))
        head_calls.append(len(calls))
    assert [s["train/loss"] for s in runs[1]] == pytest.approx([s["train/loss"] for s in runs[0]], rel=1e-5)
    assert head_calls[0] > 0 and head_calls[1] == 0, "fused training steps must never build logits"


@pytest.mark.parametrize("lambda_retain", [-0.25, 0.0])
def test_fused_npo_entropy_calls_the_kernel_once_per_role(tmp_path, fit, adam, monkeypatch, lambda_retain):
    """NPO's log-probs and the entropy objective of a role come from one kernel call per step; entropy is asked only
    of the roles whose entropy is a term."""
    import unlearn.kernels

    calls = []
    kernel = unlearn.kernels.fused_linear_logprob
    monkeypatch.setattr(
        unlearn.kernels, "fused_linear_logprob", lambda *a, **kw: calls.append(kw["with_entropy"]) or kernel(*a, **kw)
    )
    module = NPOEntropy(model="tiny-scratch", fused_logprob=True, lambda_retain=lambda_retain, optimizer=adam(1e-3))
    fit(module, tmp_path, steps=2)
    training = calls[-4:]  # after the reference cache's calls
    assert training == [True, lambda_retain != 0] * 2


ADAPTERS = {"none": lambda: None, "lora": lambda: LoRA(r=2), "grun": lambda: GRUN(rank=2)}


@pytest.mark.parametrize("reference", ["cached", "frozen"])
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fused_npo_reference_never_builds_logits(tmp_path, reference, adapter, fit, adam):
    """The reference (cached before training, a frozen copy, or the policy with its adapter off) takes the fused path
    too, with the logits path's losses step for step (GRUN's intervention at the prompt end included, which the
    steps after the first see): no lm-head call anywhere, the caching pass and every reference forward included."""
    runs, head_calls = [], []
    for fused in (False, True):
        module = NPO(
            model="tiny-scratch",
            reference=reference,
            adapter=ADAPTERS[adapter](),
            fused_logprob=fused,
            optimizer=adam(1e-2),
        )
        torch.manual_seed(0)  # the adapter's random initialisation
        module.configure_model()
        calls = []
        heads = {module.model.get_output_embeddings()}
        if reference == "frozen":
            heads.add(module.reference.get_output_embeddings())
        assert len(heads) == (1 if adapter != "none" or reference == "cached" else 2)
        for head in heads:
            head.register_forward_hook(lambda *args, calls=calls: calls.append(1) if builds_logits(*args) else None)
        runs.append(fit(module, tmp_path / str(fused), steps=3))
        head_calls.append(len(calls))
    assert [s["train/loss"] for s in runs[1]] == pytest.approx([s["train/loss"] for s in runs[0]], rel=1e-5)
    assert head_calls[0] > 0 and head_calls[1] == 0, "with fused_logprob no logits are built, reference included"


@pytest.mark.parametrize("method", [CEU, UNDIAL, PDU, ELM])
def test_fused_logprob_is_refused_where_the_loss_reads_every_logit(method):
    """CE-U, UNDIAL, PDU and ELM compare whole next-token distributions, which the fused kernel never builds."""
    extra = {ELM: {"concept": "x"}, PDU: {"epsilon": 1.0}}.get(method, {})
    with pytest.raises(UsageError, match="reads every vocabulary logit.*fused_logprob: false"):
        method(model="tiny-scratch", fused_logprob=True, **extra)
    assert not method(model="tiny-scratch", **extra).fused_logprob


def test_fused_logprob_is_refused_with_a_kl_retain_term():
    with pytest.raises(UsageError, match="retain_loss: kl.*fused_logprob: false"):
        NPO(model="tiny-scratch", fused_logprob=True, retain_loss="kl")
    assert NPO(model="tiny-scratch", fused_logprob=True, retain_loss="kl", retain_weight=0).fused_logprob


def test_fused_logprob_refuses_a_lora_on_the_head():
    """A LoRA-wrapped head's `weight` is the base weight alone: the fused path would drop the adapter there."""
    module = NPO(model="tiny-scratch", adapter=LoRA(r=2, target_modules=["q_proj", "lm_head"]), fused_logprob=True)
    with pytest.raises(ValueError, match="plain linear lm-head.*peft.*set fused_logprob: false"):
        module.configure_model()


def test_fused_logprob_refuses_a_soft_capped_head():
    from unlearn.methods.base import check_fusable_head

    model = load_model("tiny-scratch")
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping.*set fused_logprob: false"):
        check_fusable_head(model, "capped")
