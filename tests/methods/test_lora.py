"""LoRA on any method: only adapter weights train, the reference is the base, saves reload exactly."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from unlearn.data.sources import SyntheticPassages
from unlearn.methods import NPO, RMU, GradDiff
from unlearn.methods.lora import LoRA
from unlearn.methods.reference import AdaptersOff
from unlearn.methods.saved import load_saved
from unlearn.models import load_model, load_tokenizer


def batch():
    tokenizer = load_tokenizer("tiny-scratch")
    return tokenizer(["Question: who is Ka?\nAnswer: a baker", "Question: where?"], return_tensors="pt", padding=True)


def logits(model, inputs):
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


def test_lora_trains_only_adapters_and_the_reference_is_the_base(tmp_path, fit, adam):
    module = GradDiff(model="tiny-scratch", retain_loss="kl", adapter=LoRA(r=4), optimizer=adam(1e-2))
    steps = fit(module, tmp_path, steps=3)
    base = load_model("tiny-scratch")
    trained = dict(module.model.named_parameters())
    for name, param in base.named_parameters():
        key = name if name in trained else name.replace(".weight", ".base_layer.weight")
        assert torch.equal(trained[key], param), f"{name} changed"
    assert any(".lora_B." in n and p.abs().sum() > 0 for n, p in trained.items()), "B starts at 0 and must move"
    assert isinstance(module.reference, AdaptersOff) and not list(module.reference.parameters())
    assert steps[0]["train/retain"] == pytest.approx(0.0, abs=1e-6), "B = 0: the adapted model starts as the base"
    assert steps[-1]["train/retain"] > 0
    inputs = batch()
    assert torch.equal(logits(module.reference, inputs), logits(base.eval(), inputs))
    assert not torch.allclose(logits(module.model.eval(), inputs), logits(base, inputs))
    assert all(p.requires_grad for n, p in trained.items() if ".lora_" in n), "the switch restores requires_grad"


def test_npo_lora_cached_and_frozen_references_agree(tmp_path, fit, adam):
    def run(reference, path):
        module = NPO(model="tiny-scratch", reference=reference, adapter=LoRA(r=4), optimizer=adam(1e-2))
        return fit(module, path, steps=3)

    cached, frozen = run("cached", tmp_path / "c"), run("frozen", tmp_path / "f")
    assert [s["train/loss"] for s in cached] == pytest.approx([s["train/loss"] for s in frozen], rel=1e-4)
    assert cached[-1]["train/forget"] != pytest.approx(cached[0]["train/forget"]), "training must move the loss"


def test_rmu_with_lora_reads_the_reference_at_the_hooked_layer(tmp_path, fit, adam):
    module = RMU(model="tiny-scratch", layer=2, retain_weight=1.0, adapter=LoRA(r=4), optimizer=adam(1e-2))
    passages = {"forget": SyntheticPassages("forget01"), "retain": SyntheticPassages("retain")}
    steps = fit(module, tmp_path, steps=2, **passages)
    assert steps[0]["train/retain"] == pytest.approx(0.0, abs=1e-8), "adapters off = policy at step 0"
    assert steps[-1]["train/retain"] > 0
    assert not [n for n, p in module.model.named_parameters() if p.requires_grad and ".lora_" not in n]


def test_saved_adapter_and_merged_model_reproduce_the_trained_logits(tmp_path, fit, adam):
    module = GradDiff(
        model="tiny-scratch", adapter=LoRA(r=4, merge=True), save_dir=str(tmp_path / "out"), optimizer=adam(1e-2)
    )
    fit(module, tmp_path, steps=2)
    inputs = batch()
    expected = logits(module.model.eval(), inputs)
    folder = tmp_path / "out"
    assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
    reloaded = PeftModel.from_pretrained(load_model("tiny-scratch"), folder).eval()
    assert torch.allclose(logits(reloaded, inputs), expected, atol=1e-5)
    merged = AutoModelForCausalLM.from_pretrained(folder / "merged").eval()
    assert torch.allclose(logits(merged, inputs), expected, atol=1e-4)
    assert torch.allclose(logits(load_saved(str(folder)).eval(), inputs), expected, atol=1e-4), "the adapter merged"


def test_lora_names_the_linear_layers_when_a_target_is_missing(tmp_path):
    module = GradDiff(model="tiny-scratch", adapter=LoRA(target_modules=["no_such_proj"]))
    with pytest.raises(ValueError, match="q_proj"):
        module.configure_model()
