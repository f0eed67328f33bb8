"""NPO, GradDiff, NPO+SAM, UNDIAL, WGA, SatImp, CE-U, PDU and the entropy objective in Lightning on the tiny model."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy

from unlearn.checks import UsageError
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA
from unlearn.losses import mean_token_nll, npo_loss, sequence_nll, token_entropy
from unlearn.methods import CEU, NPO, NPOSAM, PDU, UNDIAL, GradDiff, NPOEntropy
from unlearn.models import load_model


def first_batches(count: int) -> list[dict]:
    """The forget batches `fit` trains on, in order (the data module's order is seeded)."""
    data = UnlearnDataModule("tiny-scratch", forget=SyntheticQA("forget01"), retain=SyntheticQA("retain"), batch_size=4)
    data.setup("fit")
    return [batch["forget"] for _ in range(count) for batch in data.train_dataloader()][:count]


def logits_of(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


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


def test_npo_sam_puts_bf16_weights_back_exactly():
    """θ + ε − ε rounds in bf16 (adding then subtracting ε changed 1.6% of the tiny model's weights): the step must
    leave the weights bit-identical to what they were."""
    module = NPOSAM(model="tiny-scratch", rho=0.5, retain_weight=0.0, reference="frozen", dtype="bfloat16")
    module.configure_model()
    module.manual_backward = lambda loss: loss.backward()  # no trainer attached here
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    module.sharpness_aware_forget({"forget": first_batches(1)[0]})
    assert next(module.model.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(p, before[n]) for n, p in module.model.named_parameters())


def test_npo_sam_gradient_is_the_forget_gradient_at_the_perturbed_weights():
    """.grad = ∇L_f(θ + ρ g/‖g‖), recomputed on a perturbed copy, and a central difference of L_f at θ + ρ g/‖g‖
    along .grad agrees with it; it differs from the plain ∇L_f(θ); the weights end back at θ."""
    module = NPOSAM(model="tiny-scratch", rho=0.5, retain_weight=0.0, reference="frozen")
    module.configure_model()
    module.double()
    module.manual_backward = lambda loss: loss.backward()  # no trainer attached here
    forget = first_batches(1)[0]
    initial = copy.deepcopy(module.model)
    module.sharpness_aware_forget({"forget": forget})

    reference_nll = sequence_nll(logits_of(module.reference, forget), forget["labels"])[0]

    def forget_loss(model):
        return npo_loss(sequence_nll(logits_of(model, forget), forget["labels"])[0], reference_nll, beta=module.beta)

    params = list(initial.parameters())
    plain = torch.autograd.grad(forget_loss(initial), params)
    norm = torch.sqrt(sum((g**2).sum() for g in plain))
    with torch.no_grad():
        for p, g in zip(params, plain, strict=True):
            p.add_(0.5 * g / norm)
    expected = torch.autograd.grad(forget_loss(initial), params)
    got = [p.grad for p in module.model.parameters()]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    assert max((g - p).abs().max().item() for g, p in zip(got, plain, strict=True)) > 1e-3, "SAM must change .grad"

    # along g_sam/‖g_sam‖ the derivative is ‖g_sam‖, large enough for the model's float32 internals (RMSNorm, RoPE)
    length = torch.sqrt(sum((g**2).sum() for g in got))
    direction = [g / length for g in got]
    h = 1e-3
    with torch.no_grad():
        losses = []
        for sign in (1, -1):
            for p, v in zip(params, direction, strict=True):
                p.add_(sign * h * v)
            losses.append(forget_loss(initial).item())
            for p, v in zip(params, direction, strict=True):
                p.sub_(sign * h * v)
    assert (losses[0] - losses[1]) / (2 * h) == pytest.approx(length.item(), rel=1e-3)
    for p, q in zip(module.model.parameters(), load_model("tiny-scratch").double().parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_npo_sam_with_rho_zero_trains_like_npo_and_its_sharp_loss_is_higher(tmp_path, fit, adam):
    """ρ = 0: manual optimisation reproduces NPO step for step; ρ > 0: L_f(θ+ε) > L_f(θ) at step 0 (ε ascends L_f)."""
    npo = fit(NPO(model="tiny-scratch", optimizer=adam(1e-3)), tmp_path / "npo", steps=3)
    flat = fit(NPOSAM(model="tiny-scratch", rho=0.0, optimizer=adam(1e-3)), tmp_path / "flat", steps=3)
    assert [s["train/loss"] for s in flat] == pytest.approx([s["train/loss"] for s in npo], rel=1e-5)
    sharp = fit(NPOSAM(model="tiny-scratch", rho=0.5, optimizer=adam(1e-3)), tmp_path / "sam", steps=2)
    assert sharp[0]["train/forget"] == pytest.approx(npo[0]["train/forget"], rel=1e-6)
    assert sharp[0]["train/forget_sharp"] > sharp[0]["train/forget"]


def test_undial_starts_at_the_policy_entropy_and_keeps_its_reference(tmp_path, fit, adam):
    """Policy = reference at step 0 and β = 0: CE(π, π) = H(π) of the first forget batch; the reference never moves."""
    module = UNDIAL(model="tiny-scratch", beta=0.0, retain_weight=0.0, optimizer=adam(1e-3))
    steps = fit(module, tmp_path, steps=3)
    forget = first_batches(1)[0]
    with torch.no_grad():
        entropy = token_entropy(logits_of(load_model("tiny-scratch"), forget), forget["labels"])
    assert steps[0]["train/forget"] == pytest.approx(entropy.item(), rel=1e-5)
    initial = dict(load_model("tiny-scratch").named_parameters())
    assert all(torch.equal(p, initial[n]) for n, p in module.reference.named_parameters())
    assert any(not torch.equal(p, initial[n]) for n, p in module.model.named_parameters())


def test_ceu_lowers_the_forget_answers(tmp_path, fit, adam):
    """A few CE-U steps raise the forget answers' NLL (on the batch trained first)."""
    module = CEU(model="tiny-scratch", retain_weight=0.0, optimizer=adam(1e-2))
    forget = first_batches(1)[0]
    with torch.no_grad():
        before = mean_token_nll(logits_of(load_model("tiny-scratch"), forget), forget["labels"])
    fit(module, tmp_path, steps=4)
    with torch.no_grad():
        after = mean_token_nll(logits_of(module.model.eval(), forget), forget["labels"])
    assert after > before + 0.1
    with pytest.raises(ValueError, match="ignore_first_answer_tokens must be >= 0"):
        CEU(ignore_first_answer_tokens=-1)


def test_pdu_dual_ascends_above_epsilon_and_stays_zero_below(tmp_path, fit, adam):
    """ε = 0: λ₀ = 0, then λ_{k+1} = λ_k + η·L_r,k exactly; ε huge: λ stays 0 and the loss is the forget term."""
    eta = 3.0
    module = PDU(model="tiny-scratch", epsilon=0.0, dual_step_size=eta, dual_init=0.0, optimizer=adam(1e-3))
    steps = fit(module, tmp_path / "above", steps=3)
    assert steps[0]["train/dual"] == 0.0
    for previous, current in zip(steps, steps[1:], strict=False):
        assert current["train/dual"] == pytest.approx(previous["train/dual"] + eta * previous["train/retain"], rel=1e-5)
    assert "dual" in module.state_dict(), "λ must be saved in checkpoints"
    assert module.dual.item() == pytest.approx(steps[-1]["train/dual"] + eta * steps[-1]["train/retain"], rel=1e-5)
    below = fit(
        PDU(model="tiny-scratch", epsilon=1e3, dual_init=0.0, optimizer=adam(1e-3)), tmp_path / "below", steps=3
    )
    assert all(s["train/dual"] == 0.0 and s["train/loss"] == pytest.approx(s["train/forget"]) for s in below)


def test_npo_entropy_adds_the_entropies_of_the_outputs_npo_computed(tmp_path, fit, adam):
    """loss = NPO terms + λ_f·H_f + λ_r·H_r each step; H_f at step 0 is the initial model's; one policy forward per
    role and step (the entropies reuse NPO's outputs)."""
    module = NPOEntropy(
        model="tiny-scratch", lambda_forget=0.7, lambda_retain=-0.3, retain_weight=2.0, optimizer=adam(1e-3)
    )
    module.configure_model()
    calls = []
    module.model.register_forward_hook(lambda model, *args: calls.append(1) if model.training else None)
    steps = fit(module, tmp_path, steps=2)
    for s in steps:
        npo_part = s["train/forget"] + 2.0 * s["train/retain"]
        entropy = 0.7 * s["train/entropy_forget"] - 0.3 * s["train/entropy_retain"]
        assert s["train/loss"] == pytest.approx(npo_part + entropy, rel=1e-5)
    forget = first_batches(1)[0]
    with torch.no_grad():
        entropy = token_entropy(logits_of(load_model("tiny-scratch"), forget), forget["labels"])
    assert steps[0]["train/entropy_forget"] == pytest.approx(entropy.item(), rel=1e-5)
    assert len(calls) == 2 * 2, "forget and retain: one forward each per step"


def test_npo_entropy_shares_the_forward_of_a_role_passed_as_a_new_dict(tmp_path, fit, adam):
    """The outputs are shared by role, not by the inputs' object: a method that rebuilds the forget dict still makes
    the one forget forward of the step that the entropy reads."""

    class Rebuilding(NPOEntropy):
        def forget_loss(self, batch):
            return super().forget_loss({**batch, "forget": dict(batch["forget"])})

    module = Rebuilding(model="tiny-scratch", lambda_retain=0.0, retain_weight=0.0, optimizer=adam(1e-3))
    module.configure_model()
    calls = []
    module.model.register_forward_hook(lambda model, *args: calls.append(1) if model.training else None)
    fit(module, tmp_path, steps=2)
    assert len(calls) == 2, "forget only: one forward per step"


@pytest.mark.parametrize("stage", [2, 3])
def test_npo_sam_refuses_deepspeed_before_loading(tmp_path, stage):
    """ZeRO keeps weights or gradients partitioned, where ε cannot move whole weights by the whole gradient."""
    module = NPOSAM(model="tiny-scratch")
    module._trainer = SimpleNamespace(strategy=DeepSpeedStrategy(stage=stage), datamodule=None)
    with pytest.raises(UsageError, match="NPOSAM perturbs .*DeepSpeedStrategy.*trainer.strategy: ddp, or use NPO"):
        module.setup("fit")
    assert module.model is None
