"""Methods wired into Lightning: references, trainable selection, guards and saving."""

import math

import pytest
import torch

from unlearn.checks import UsageError
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticPassages, SyntheticQA
from unlearn.methods import (
    CEU,
    DPO,
    ELM,
    NPO,
    PDU,
    RMU,
    UNDIAL,
    WGA,
    GradDiff,
    GradientAscent,
    IDKFineTune,
    NPOEntropy,
    SatImp,
)
from unlearn.methods.grun import GRUN
from unlearn.methods.lora import LoRA
from unlearn.models import load_model


def test_npo_first_step_is_log_two_scaled(tmp_path, fit, adam):
    """At step 0 the policy is the reference: log-ratio 0, so L = -(2/β)·log σ(0) = (2/β)·log 2."""
    steps = fit(NPO(model="tiny-scratch", beta=0.1, retain_weight=0.0, optimizer=adam(1e-3)), tmp_path, steps=1)
    assert steps[0]["train/forget"] == pytest.approx(20 * math.log(2), rel=1e-5)


def test_npo_cached_and_frozen_references_agree(tmp_path, fit, adam):
    cached = fit(NPO(model="tiny-scratch", reference="cached", optimizer=adam(1e-3)), tmp_path / "c", steps=4)
    frozen = fit(NPO(model="tiny-scratch", reference="frozen", optimizer=adam(1e-3)), tmp_path / "f", steps=4)
    assert [s["train/loss"] for s in cached] == pytest.approx([s["train/loss"] for s in frozen], rel=1e-4)
    assert cached[-1]["train/forget"] != pytest.approx(cached[0]["train/forget"]), "training must move the loss"


def test_graddiff_kl_uses_a_frozen_reference(tmp_path, fit, adam):
    steps = fit(GradDiff(model="tiny-scratch", retain_loss="kl", optimizer=adam(1e-3)), tmp_path, steps=3)
    assert steps[0]["train/retain"] == pytest.approx(0.0, abs=1e-6), "KL to itself is zero before any update"
    assert steps[-1]["train/retain"] > 0


def test_rmu_trains_only_the_selected_weights(tmp_path, fit, adam):
    module = RMU(model="tiny-scratch", layer=2, optimizer=adam(1e-2))
    fit(module, tmp_path, steps=2, forget=SyntheticPassages("forget01"), retain=SyntheticPassages("retain"))
    before = dict(load_model("tiny-scratch").named_parameters())
    changed = {n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)}
    assert len(module.reference.model.layers) == 3, "the frozen reference stops after the hooked layer"


def test_rmu_layer_out_of_range_names_the_fix():
    module = RMU(model="tiny-scratch", layer=9)
    with pytest.raises(ValueError, match=r"out of range: tiny-scratch has 4 decoder layers \(0..3\)"):
        module.configure_model()


def test_nan_loss_stops_the_run_and_saves_nothing(tmp_path, fit, adam):
    class Broken(GradientAscent):
        def objective(self, batch):
            terms = super().objective(batch)
            return {"loss": terms["loss"] * float("nan") if self.global_step == 1 else terms["loss"]}

    with pytest.raises(FloatingPointError, match="at step 1"):
        fit(Broken(model="tiny-scratch", optimizer=adam(1e-3)), tmp_path, steps=3)
    assert not (tmp_path / "model").exists()


def test_checkpoints_leave_the_reference_out():
    """The module's state_dict, which Lightning and DeepSpeed both save, has the policy but not the frozen copy."""
    module = NPO(model="tiny-scratch", reference="frozen")
    module.configure_model()
    assert any(k.startswith("reference.") for k, _ in module.named_parameters()), "the copy exists"
    state = module.state_dict()
    assert not any(k.startswith("reference.") for k in state)
    assert {f"model.{k}" for k in module.model.state_dict()} <= set(state)


def test_unmatched_trainable_regex_is_a_clear_error():
    module = GradientAscent(model="tiny-scratch", trainable=r"no_such_weight")
    with pytest.raises(ValueError, match="matches no parameter"):
        module.configure_model()


def test_missing_local_model_path_is_a_clear_error(tmp_path):
    module = GradientAscent(model=str(tmp_path / "no_such_model"))
    with pytest.raises(ValueError, match="does not exist"):
        module.configure_model()


def test_idk_fine_tuning_makes_refusals_likely(tmp_path, fit, adam):
    from unlearn.data.sources import REFUSALS, Refusals

    forget = Refusals(SyntheticQA("forget01"))
    rows = forget.load()
    assert [r["question"] for r in rows] == [r["question"] for r in SyntheticQA("forget01").load()]
    assert {r["answer"] for r in rows} <= set(REFUSALS) and rows == forget.load()
    steps = fit(
        IDKFineTune(model="tiny-scratch", retain_weight=0.0, optimizer=adam(1e-2)), tmp_path, steps=15, forget=forget
    )
    assert steps[-1]["train/forget"] < 0.5 * steps[0]["train/forget"], "the refusal NLL must fall"


def test_dpo_starts_at_log_two_and_references_agree(tmp_path, fit, adam):
    """Policy = reference at step 0: both log-ratios are 0, so L = (2/β)·log 2; cached and frozen then agree."""
    from unlearn.data.sources import Refusals

    def fit_dpo(reference):
        module = DPO(model="tiny-scratch", reference=reference, optimizer=adam(1e-3))
        return fit(module, tmp_path / reference, steps=4, forget_alt=Refusals(SyntheticQA("forget01")))

    cached, frozen = fit_dpo("cached"), fit_dpo("frozen")
    assert cached[0]["train/forget"] == pytest.approx(20 * math.log(2), rel=1e-5)
    assert [s["train/loss"] for s in cached] == pytest.approx([s["train/loss"] for s in frozen], rel=1e-4)
    assert cached[-1]["train/forget"] < cached[0]["train/forget"]


def test_forget_alt_must_pair_row_for_row():
    data = UnlearnDataModule("tiny-scratch", forget=SyntheticQA("forget01"), forget_alt=SyntheticQA("forget05"))
    with pytest.raises(ValueError, match="must pair row for row"):
        data.setup("fit")


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
