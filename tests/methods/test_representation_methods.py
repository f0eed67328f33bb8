"""RMU, Adaptive RMU, RR and RMU+LAT wired into Lightning: coefficients, schedules and the adversary's bound."""

import pytest
import torch
import transformers.masking_utils

from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticPassages
from unlearn.losses import mean_token_nll
from unlearn.methods import RMU, RMULAT, RR, AdaptiveRMU
from unlearn.methods.representation import added_to_output
from unlearn.models import load_model

PASSAGES = {"forget": SyntheticPassages("forget05"), "retain": SyntheticPassages("retain")}


def first_batches(count: int) -> list[dict]:
    """The forget batches `fit` trains on, in order (the data module's order is seeded)."""
    data = UnlearnDataModule("tiny-scratch", **PASSAGES, batch_size=4)
    data.setup("fit")
    loader = data.train_dataloader()
    return [batch["forget"] for _ in range(count) for batch in loader][:count]


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


def test_adaptive_rmu_coefficient_is_k_times_mean_reference_norm(tmp_path, fit, adam):
    """c logged at each step = k · mean per-token ‖h‖ of the initial model at the layer, over non-padding tokens."""
    module = AdaptiveRMU(model="tiny-scratch", layer=2, scale=1.5, optimizer=adam(1e-2))
    steps = fit(module, tmp_path, steps=2, **PASSAGES)
    initial = load_model("tiny-scratch")
    for step, forget in zip(steps, first_batches(2), strict=True):
        with torch.no_grad():
            hidden = initial(**{k: forget[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
        norms = hidden.hidden_states[3].norm(dim=-1)[forget["attention_mask"].bool()]  # layer 2's output
        assert step["train/coeff"] == pytest.approx(1.5 * norms.mean().item(), rel=1e-5)
    assert steps[0]["train/coeff"] != pytest.approx(steps[1]["train/coeff"]), "c is recomputed per batch"


def test_rr_starts_at_cosine_one_and_follows_the_schedule(tmp_path, fit, adam):
    """Policy = reference at step 0: forget term mean ReLU(cos) = 1, retain distance 0; then c_f falls, c_r grows."""
    module = RR(model="tiny-scratch", layers=[1, 2], forget_coeff=2.0, retain_coeff=3.0, optimizer=adam(1e-2))
    steps = fit(module, tmp_path, steps=3, **PASSAGES)
    assert steps[0]["train/forget"] == pytest.approx(1.0, abs=1e-5)
    assert steps[0]["train/retain"] == pytest.approx(0.0, abs=1e-6)
    assert [s["train/forget_coeff"] for s in steps] == pytest.approx([2.0, 2.0 * (1 - 1 / 6), 2.0 * (1 - 2 / 6)])
    assert [s["train/retain_coeff"] for s in steps] == pytest.approx([0.0, 3.0 / 6, 3.0 * 2 / 6])
    assert steps[-1]["train/forget"] < 1.0 and steps[-1]["train/retain"] > 0.0
    assert len(module.reference.model.layers) == 3, "the frozen reference stops after the last hooked layer"
    before = dict(load_model("tiny-scratch").named_parameters())
    changed = {n.split(".")[2] for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"0", "1", "2"}, "only layers up to the last hooked one train"


def test_rr_without_schedule_keeps_constant_coefficients(tmp_path, fit, adam):
    module = RR(model="tiny-scratch", layers=[1], retain_coeff=3.0, schedule=False, optimizer=adam(1e-2))
    steps = fit(module, tmp_path, steps=2, **PASSAGES)
    assert [(s["train/forget_coeff"], s["train/retain_coeff"]) for s in steps] == [(1.0, 3.0), (1.0, 3.0)]


def test_lat_adversary_is_bounded_and_restores_the_forget_answers():
    """δ respects ‖δ‖₂ ≤ ε per token, is 0 on padding, lowers the forget NLL against δ = 0, and leaves .grad alone."""
    module = RMULAT(model="tiny-scratch", layer=2, adv_layer=1, epsilon=3.0, pgd_steps=3)
    module.configure_model()
    forget = first_batches(1)[0]
    delta = module.attack(forget)
    norms = delta.norm(dim=-1)  # (B, T)
    padding = forget["attention_mask"] == 0
    assert padding.any() and (norms[padding] == 0).all()
    assert norms.max() <= 3.0 + 1e-4
    assert (norms[~padding] > 1.0).float().mean() > 0.9, "PGD moves (almost) every token; the last has no gradient"
    assert all(p.grad is None for p in module.model.parameters())
    inputs = {k: forget[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        clean = mean_token_nll(module.model(**inputs).logits, forget["labels"])
        with added_to_output(module.model, 1, delta):
            attacked = mean_token_nll(module.model(**inputs).logits, forget["labels"])
    assert attacked < clean - 0.05


def test_lat_trains_under_the_adversary(tmp_path, fit, adam):
    steps = fit(RMULAT(model="tiny-scratch", layer=2, pgd_steps=2, optimizer=adam(1e-2)), tmp_path, steps=2, **PASSAGES)
    assert steps[-1]["train/forget"] < steps[0]["train/forget"]


def test_lat_adversary_layer_must_precede_the_steered_layer():
    with pytest.raises(ValueError, match=r"adv_layer=2 must be in 0..1"):
        RMULAT(model="tiny-scratch", layer=2, adv_layer=2)


def test_rr_logs_every_term_on_the_module_device(monkeypatch):
    """Terms are all-reduced for logging, which NCCL refuses for CPU tensors: the meta device stands in for a GPU."""
    # the causal-mask shortcut calls .item(), which meta tensors lack
    monkeypatch.setattr(transformers.masking_utils, "_ignore_causal_mask_sdpa", lambda *args, **kwargs: False)
    module = RR(model="tiny-scratch", schedule=False)
    module.configure_model()
    module.to("meta")
    data = UnlearnDataModule("tiny-scratch", **PASSAGES, batch_size=2)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    terms = module.objective({role: {k: v.to("meta") for k, v in inputs.items()} for role, inputs in batch.items()})
    assert {name: term.device.type for name, term in terms.items()} == dict.fromkeys(terms, "meta")
