"""One policy forward per batch role and training step: every term of a method reads its role's one forward, and
a method that moves the weights between its terms (NPO+SAM) forwards again at the moved weights."""

from collections import Counter

import lightning as L
import pytest
import torch

from unlearn.data.sources import Refusals, SyntheticQA
from unlearn.losses import idk_ap_retain_loss, mean_token_nll, sequence_nll
from unlearn.methods import (
    CEU,
    DPO,
    ELM,
    IDKAP,
    NPO,
    NPOSAM,
    PDU,
    TAR,
    UNDIAL,
    WGA,
    FineTune,
    GradDiff,
    GradDiffEntropy,
    GradientAscent,
    IDKFineTune,
    NPOEntropy,
    SatImp,
    SimNPO,
)
from unlearn.methods.base import token_count
from unlearn.models import load_model

REFUSALS = {"forget": Refusals(SyntheticQA("forget01"))}
ALTERNATES = {"forget_alt": Refusals(SyntheticQA("forget01"))}

# Each method config: its class and arguments, the data `fit` gives it, and the distinct inputs its policy reads per
# step: the batch roles, plus IDK+AP's refusal batch (the retain questions answered with refusals) and ELM's fluency
# sample.
CONFIGS = {
    "idkap": (IDKAP, {}, REFUSALS, 3),
    "idkap-kl": (IDKAP, {"retain_loss": "kl"}, REFUSALS, 3),
    "idkap-fused": (IDKAP, {"fused_logprob": True}, REFUSALS, 3),
    "npo-entropy": (NPOEntropy, {}, {}, 2),
    "npo-entropy-kl": (NPOEntropy, {"retain_loss": "kl"}, {}, 2),
    "npo-entropy-fused": (NPOEntropy, {"fused_logprob": True}, {}, 2),
    "graddiff-entropy-kl": (GradDiffEntropy, {"retain_loss": "kl"}, {}, 2),
    "dpo": (DPO, {}, ALTERNATES, 3),
    "npo-frozen": (NPO, {"reference": "frozen"}, {}, 2),
    "graddiff": (GradDiff, {}, {}, 2),
    "ga": (GradientAscent, {}, {}, 1),
    "simnpo": (SimNPO, {}, {}, 2),
    "wga": (WGA, {}, {}, 2),
    "satimp": (SatImp, {}, {}, 2),
    "ceu": (CEU, {}, {}, 2),
    "undial": (UNDIAL, {"retain_weight": 1.0}, {}, 2),
    "pdu": (PDU, {"epsilon": 1.0}, {}, 2),
    "idk": (IDKFineTune, {}, REFUSALS, 2),
    "finetune": (FineTune, {}, {}, 1),
    "elm": (ELM, {"concept": "the synthetic people", "fluency_tokens": 2}, {}, 3),
}


class StepForwards(L.Callback):
    """How often the policy ran in training mode on each input during each step, keyed by the input's token ids.

    The hook sits on the policy's input embedding, which every forward passes: full, fused (backbone only) or stopped
    at a hooked layer; the reference (a frozen copy, or the policy with its adapters off) runs in eval mode.
    """

    def __init__(self, module) -> None:
        self.steps: list[Counter] = []
        module.configure_model()
        module.model.get_input_embeddings().register_forward_pre_hook(self.count)

    def count(self, embedding: torch.nn.Module, args: tuple) -> None:
        """Records one forward on `args[0]`, the token ids, when it is part of a training step."""
        if embedding.training and self.steps:
            self.steps[-1][tuple(args[0].shape), tuple(args[0].flatten().tolist())] += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append(Counter())


@pytest.mark.parametrize("name", CONFIGS)
def test_each_input_is_forwarded_once_per_step(tmp_path, fit, name):
    """IDK+AP's retain term and its true-answer NLL, the entropies and the KL retain term read one forward."""
    method, args, data, inputs = CONFIGS[name]
    module = method(model="tiny-scratch", **args)
    forwards = StepForwards(module)
    fit(module, tmp_path, steps=2, callbacks=[forwards], **data)
    assert [sorted(step.values()) for step in forwards.steps] == [[1] * inputs] * 2


# SelfBackward methods, and the count of each input's forwards per step, sorted: NPO+SAM's forget rows at θ and at
# θ + ε, TAR's attacker's and held-out rows at each of its 2 attack steps' weights; the retain rows once (TAR's retain
# and representation terms read one forward).
SELF_BACKWARD = {
    "npo-sam": (NPOSAM, {"rho": 0.1}, [1, 2]),
    "tar-kl": (TAR, {"inner_steps": 2, "representation_weight": 1.0, "retain_loss": "kl"}, [1, 2, 2]),
}


@pytest.mark.parametrize("name", SELF_BACKWARD)
def test_self_backward_forwards_again_only_at_moved_weights(tmp_path, fit, name):
    """A pass at moved weights must not read the forward taken before they moved; the rest is forwarded once."""
    method, args, counts = SELF_BACKWARD[name]
    module = method(model="tiny-scratch", **args)
    forwards = StepForwards(module)
    fit(module, tmp_path, steps=2, callbacks=[forwards])
    assert [sorted(step.values()) for step in forwards.steps] == [counts] * 2


class FirstBatch(L.Callback):
    """Keeps the first training batch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.batch = batch


def test_idk_ap_first_loss_is_its_terms_by_hand(tmp_path, fit, adam):
    """Sharing the retain forward leaves the loss as it was: at step 0 (the initial weights), refusal NLL +
    retain_weight·retain NLL + γ·AP computed by hand, the retain logits read by both retain terms."""
    module = IDKAP(model="tiny-scratch", retain_weight=0.5, beta=0.3, gamma=2.0, optimizer=adam(1e-2))
    first = FirstBatch()
    steps = fit(module, tmp_path, steps=1, callbacks=[first], **REFUSALS)
    forget, retain = first.batch["forget"], first.batch["retain"]
    refusal = module.refusal_batch(retain)
    model = load_model("tiny-scratch")
    with torch.no_grad():
        forget_logits, retain_logits, refusal_logits = (
            model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"]).logits
            for rows in (forget, retain, refusal)
        )
        refusal_nll = mean_token_nll(forget_logits, forget["labels"], num_tokens=token_count(forget))
        retain_nll = mean_token_nll(retain_logits, retain["labels"], num_tokens=token_count(retain))
        nll_idk, _ = sequence_nll(refusal_logits, refusal["labels"])
        nll_true, _ = sequence_nll(retain_logits, retain["labels"])
        ap = idk_ap_retain_loss(nll_idk, nll_true, beta=0.3)
    assert steps[0]["train/retain"] == pytest.approx(retain_nll.item(), rel=1e-5)
    assert steps[0]["train/ap"] == pytest.approx(ap.item(), rel=1e-5)
    assert steps[0]["train/loss"] == pytest.approx((refusal_nll + 0.5 * retain_nll + 2.0 * ap).item(), rel=1e-5)
