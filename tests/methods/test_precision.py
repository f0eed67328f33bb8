"""Every method family trains under bf16-mixed and bf16-true; what a method keeps across steps stays fp32."""

import math
from functools import partial

import lightning as L
import pytest
import torch

from unlearn.data.sources import Refusals, SyntheticPassages, SyntheticQA
from unlearn.methods import DPO, NPO, PDU, RMU, RR, GradDiff, IDKFineTune, SimNPO
from unlearn.methods.grun import GRUN, GatedLoReFT
from unlearn.methods.lora import LoRA

PASSAGES = {"forget": SyntheticPassages("forget01"), "retain": SyntheticPassages("retain")}
FAMILIES = {  # name -> (method, data)
    "npo": (NPO, {}),
    "graddiff": (GradDiff, {}),
    "pdu": (partial(PDU, epsilon=0.0, dual_step_size=1e-3), {}),
    "simnpo": (SimNPO, {}),
    "rmu": (partial(RMU, layer=2), PASSAGES),
    "rr": (partial(RR, layers=[1, 2]), PASSAGES),
    "idk": (IDKFineTune, {"forget": Refusals(SyntheticQA("forget01"))}),
    "dpo": (DPO, {"forget_alt": Refusals(SyntheticQA("forget01"))}),
    "lora": (partial(NPO, adapter=LoRA(r=2)), {}),
    "grun": (partial(NPO, adapter=GRUN(rank=2)), {}),
}


class TrainableAtStart(L.Callback):
    """The trainable parameters as the first step sees them: loaded, adapted and cast by Lightning."""

    def on_train_start(self, trainer, pl_module):
        self.params = {n: p.detach().clone() for n, p in pl_module.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_in_bf16(tmp_path, fit, adam, family, precision):
    """Two steps give finite losses and move every trainable tensor (GRUN's QR has no bf16 kernel, for one); lr 1e-2
    moves even a bf16 weight of 1.0 (its neighbours are 2⁻⁷ away)."""
    method, data = FAMILIES[family]
    module, start = method(model="tiny-scratch", optimizer=adam(1e-2)), TrainableAtStart()
    steps = fit(module, tmp_path, steps=2, batch_size=2, precision=precision, callbacks=[start], **data)
    assert len(steps) == 2 and all(math.isfinite(v) for step in steps for v in step.values()), steps
    now = dict(module.model.named_parameters())
    assert start.params and [n for n, p in start.params.items() if torch.equal(now[n], p)] == []


def test_pdu_dual_under_bf16_true_is_the_fp32_ascent(tmp_path, fit, adam):
    """λ₀ = 1, λ_{k+1} = max(0, λ_k + η·(L_r,k − ε)) in fp32 from the logged retain losses, exactly: each step adds
    η·L_r ≈ 0.003, which a bf16 λ would round away (bf16 steps by 2⁻⁷ at 1.0); a checkpoint restores it exactly."""
    eta = 4e-4
    module = PDU(model="tiny-scratch", epsilon=0.0, dual_step_size=eta, dual_init=1.0, optimizer=adam(1e-3))
    steps = fit(module, tmp_path, steps=5, batch_size=2, precision="bf16-true")
    assert next(module.model.parameters()).dtype == torch.bfloat16
    dual = torch.tensor(1.0)
    for step in steps:
        assert step["train/dual"] == dual.item()
        dual = (dual + eta * (torch.tensor(step["train/retain"]) - 0.0)).clamp(min=0.0)
    assert module.dual.dtype == torch.float32 and module.dual.item() == dual.item() > 1.01
    restored = PDU(model="tiny-scratch", epsilon=0.0, dual_step_size=eta).to(torch.bfloat16)
    restored.load_state_dict({"dual": module.dual}, strict=False)
    assert restored.dual.dtype == torch.float32 and torch.equal(restored.dual, module.dual)


def test_state_kept_across_steps_stays_fp32_under_bf16_true(tmp_path, fit, adam):
    """RMU's random direction is the fp32 draw u/‖u‖ whatever the precision, and NPO's cached reference scores stay
    fp32; both go through a later cast of the whole module unchanged."""
    rmu = RMU(model="tiny-scratch", layer=2, optimizer=adam(1e-2))
    fit(rmu, tmp_path / "rmu", steps=1, batch_size=2, precision="bf16-true", **PASSAGES)
    u = torch.rand(rmu.model.config.hidden_size, generator=torch.Generator().manual_seed(rmu.control_seed))
    assert torch.equal(rmu.direction, u / u.norm())
    npo = NPO(model="tiny-scratch", optimizer=adam(1e-3))
    fit(npo, tmp_path / "npo", steps=1, batch_size=2, precision="bf16-true")
    cache = npo.reference_cache_forget.clone()
    assert cache.dtype == torch.float32
    rmu.to(torch.bfloat16)
    npo.to(torch.bfloat16)
    assert torch.equal(rmu.direction, u / u.norm()) and torch.equal(npo.reference_cache_forget, cache)


def test_grun_edit_in_bf16_is_the_fp32_edit_rounded_once():
    """GRUN computes in its weights' dtype (fp32) and returns h's: the bf16 edit is the fp32 edit rounded once."""
    torch.manual_seed(0)
    edit = GatedLoReFT(16, 3, [8])
    with torch.no_grad():
        edit.source.bias.fill_(0.5)
    h = torch.randn(5, 16).bfloat16()
    assert {p.dtype for p in edit.parameters()} == {torch.float32}
    assert torch.equal(edit(h), edit(h.float()).bfloat16())


@pytest.mark.parametrize("adapter", [GRUN(rank=2), LoRA(r=2)], ids=["grun", "lora"])
def test_adapters_on_a_bf16_model_train_below_bf16_resolution(tmp_path, fit, adam, adapter):
    """On a bf16 policy, an adapter's weights are fp32 and stay so through a cast of the whole module; at lr 1e-5 (an
    AdamW step under the 2⁻⁹·|w| that a bf16 weight would round away) every weight still moves."""
    module = NPO(model="tiny-scratch", dtype="bfloat16", adapter=adapter, optimizer=adam(1e-5))
    module.configure_model()
    module.to(torch.bfloat16)
    assert {p.dtype for p in module.adapter_weights()} == {torch.float32}
    start = TrainableAtStart()
    fit(module, tmp_path, steps=2, batch_size=2, callbacks=[start], precision="bf16-true")
    now = dict(module.model.named_parameters())
    assert next(module.model.parameters()).dtype == torch.bfloat16
    assert start.params and all(now[n].dtype == torch.float32 for n in start.params)
    assert all((now[n] != p).all() for n, p in start.params.items() if "lora_A" not in n)
    # LoRA's A gets no gradient at step 1 (B = 0), so it moves once, by AdamW's first step, about lr per element
    assert all((now[n] != p).float().mean() > 0.99 for n, p in start.params.items() if "lora_A" in n)
