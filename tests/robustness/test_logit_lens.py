"""Logit lens: truncation is the lens (checked against residuals decoded by hand); its last layer is the model."""

import torch

from unlearn.models import decoder_layers, load_model, load_tokenizer
from unlearn.robustness import LogitLens
from unlearn.robustness.logit_lens import sublayer_lens, truncated


def test_truncation_decodes_each_layers_residual_through_the_final_norm_and_head():
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    inputs = tokenizer(["Question: Where does Xemoki Wanucla live?\nAnswer:"], return_tensors="pt")
    residuals = []
    hooks = [block.register_forward_hook(lambda m, a, out: residuals.append(out)) for block in decoder_layers(model)]
    with torch.no_grad():
        full = model(**inputs).logits
        for hook in hooks:
            hook.remove()
        for layer, residual in enumerate(residuals):
            by_hand = model.lm_head(model.model.norm(residual))
            with truncated(model, layer):
                assert torch.allclose(model(**inputs).logits, by_hand, atol=1e-5)
        assert torch.equal(model(**inputs).logits, full), "the layers come back after the block"
    assert torch.allclose(by_hand, full, atol=1e-5), "the last layer's lens is the model itself"


def test_sublayer_lens_decodes_what_attention_and_mlp_add_to_the_residual():
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    inputs = tokenizer(["Question: Where does Xemoki Wanucla live?\nAnswer:"], return_tensors="pt")
    block, parts = decoder_layers(model)[2], {}
    hooks = [block.self_attn.register_forward_hook(lambda m, a, out: parts.update(attention=out[0])),
             block.mlp.register_forward_hook(lambda m, a, out: parts.update(mlp=out))]  # fmt: skip
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states  # hidden[2] enters layer 2, hidden[3] leaves
        for hook in hooks:
            hook.remove()
        assert torch.allclose(parts["attention"] + parts["mlp"], hidden[3] - hidden[2], atol=1e-4)
        hooks_before = len(block._forward_hooks)
        for part, output in parts.items():
            with sublayer_lens(model, 2, part):
                lensed = model(**inputs).logits
            assert torch.allclose(lensed, model.lm_head(model.model.norm(output)), atol=1e-5)
        assert len(decoder_layers(model)) == 4 and len(block._forward_hooks) == hooks_before, "the model is whole again"


def test_last_layer_accuracy_is_the_models_own_mcq_accuracy(tmp_path, attack_run):
    summary = attack_run(tmp_path, LogitLens(layer=3), limit=20)
    lens = summary["attack"]["per_layer"]
    names = {"forget/mcq_acc", "retain/mcq_acc"}
    assert set(lens) == names | {f"{part}:{name}" for part in ("attention", "mlp") for name in names}
    assert all(len(curve) == 4 for curve in lens.values())
    for name in names:
        curve = lens[name]
        assert curve[-1] == summary["before"][name]
    assert summary["after"] == summary["before"], "at the last layer the attacked model is the model"
    assert (tmp_path / "logit_lens.png").stat().st_size > 0


def test_the_oracle_layer_is_the_best_forget_layer(tmp_path, attack_run):
    summary = attack_run(tmp_path, LogitLens(sublayers=[], plot=False), limit=10)
    curve = summary["attack"]["per_layer"]["forget/mcq_acc"]
    assert curve[summary["attack"]["layer"]] == max(curve)
    assert summary["after"]["forget/mcq_acc"] == max(curve)
