"""Direction ablation: the projection against hand computation, the direction, and the hooks on the tiny model."""

import pytest
import torch

from unlearn.methods.representation import layer_outputs
from unlearn.models import BUILTIN, decoder_layers, load_model, load_tokenizer
from unlearn.robustness import DirectionAblation
from unlearn.robustness.ablation import ablate, fold, mean_difference_direction, project_out


def test_projection_removes_exactly_the_component_along_d():
    hidden = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    direction = torch.tensor([0.6, 0.8])  # unit; h·d = 2.2 and 1.0
    expected = torch.tensor([[1 - 2.2 * 0.6, 2 - 2.2 * 0.8], [3 - 0.6, -1 - 0.8]])
    assert torch.allclose(project_out(hidden, direction), expected)
    assert torch.allclose(project_out(hidden, direction) @ direction, torch.zeros(2), atol=1e-6)


def test_zero_direction_changes_nothing():
    hidden = torch.randn(2, 3, 8)
    assert torch.equal(project_out(hidden, torch.zeros(8)), hidden)


def test_direction_is_the_normalised_mean_difference():
    original = torch.randn(50, 6)
    shift = torch.tensor([0.0, 3.0, 0.0, 4.0, 0.0, 0.0])
    direction, norm = mean_difference_direction(original + shift, original)
    assert norm == pytest.approx(5.0, rel=1e-5)
    assert torch.allclose(direction, shift / 5.0, atol=1e-6)


def test_identical_activations_have_the_zero_direction():
    acts = torch.randn(10, 6)
    direction, norm = mean_difference_direction(acts, acts.clone())
    assert norm == 0.0 and torch.equal(direction, torch.zeros(6))


def test_the_attack_refuses_the_original_as_its_own_unlearned_model(tmp_path, attack_run):
    with pytest.raises(ValueError, match="no direction to ablate"):
        attack_run(tmp_path, DirectionAblation(original="tiny-target"), model="tiny-target", limit=5)
    assert not (tmp_path / "metrics.json").exists()


def test_hooks_leave_no_component_along_the_direction_and_a_zero_direction_changes_nothing():
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    inputs = tokenizer(["Question: Where does Xemoki Wanucla live?\nAnswer:"], return_tensors="pt")
    with torch.no_grad():
        plain = model(**inputs).logits
        handles = ablate(model, {1: torch.zeros(192)})
        assert torch.equal(model(**inputs).logits, plain)
        for handle in handles:
            handle.remove()
        direction = torch.nn.functional.normalize(torch.randn(192), dim=0)
        ablate(model, {1: direction})
        (hidden,) = layer_outputs(model, inputs, [1])
    assert hidden.abs().max() > 1 and (hidden @ direction).abs().max() < 1e-4


def test_folded_weights_equal_hooks_on_every_write_and_save_as_a_plain_model(tmp_path):
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    inputs = tokenizer(["Question: Where does Xemoki Wanucla live?\nAnswer:", "Question: Who?\nAnswer:"],
                       return_tensors="pt", padding=True)  # fmt: skip
    direction = torch.nn.functional.normalize(torch.randn(192, generator=torch.Generator().manual_seed(0)), dim=0)
    with torch.no_grad():
        plain = model(**inputs).logits

        def project(module, args, out):  # every write to the residual: embedding, attention and MLP outputs
            return (project_out(out[0], direction), *out[1:]) if isinstance(out, tuple) else project_out(out, direction)

        writers = [model.get_input_embeddings(), *(m for b in decoder_layers(model) for m in (b.self_attn, b.mlp))]
        handles = [writer.register_forward_hook(project) for writer in writers]
        hooked = model(**inputs).logits
        for handle in handles:
            handle.remove()
        fold(model, direction)
        folded = model(**inputs).logits
    assert not torch.allclose(hooked, plain, atol=1e-3)
    assert torch.allclose(folded, hooked, atol=1e-4)
    model.save_pretrained(tmp_path / "folded")
    reloaded = load_model(str(tmp_path / "folded")).eval()
    assert reloaded.lm_head.weight is not reloaded.get_input_embeddings().weight
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, folded, atol=1e-5)


def test_fold_needs_one_layer_and_saves_the_attacked_model(tmp_path, attack_run):
    with pytest.raises(ValueError, match="one layer"):
        DirectionAblation(fold=True)
    retain = str(BUILTIN["tiny-retain"])  # another model than `original`: a direction exists
    summary = attack_run(tmp_path, DirectionAblation(original="tiny-target", layers=[1], fold=True), model=retain,
                         limit=5)  # fmt: skip
    saved = load_model(summary["attack"]["model"])
    assert summary["attack"]["model"] == str(tmp_path / "model") and not saved.config.tie_word_embeddings


def test_every_layer_ablation_skips_the_layers_unlearning_did_not_move(tmp_path, attack_run):
    """A model changed only in its last layer (as GRUN or a late-layer method leaves it) still gets that layer's
    direction ablated; the earlier layers, identical to the original's, get none instead of an error."""
    model = load_model("tiny-target")
    with torch.no_grad():
        decoder_layers(model)[-1].mlp.down_proj.weight.mul_(1.5)
    model.save_pretrained(tmp_path / "late")
    load_tokenizer("tiny-target").save_pretrained(tmp_path / "late")
    result = attack_run(tmp_path / "run", DirectionAblation(original="tiny-target"), model=str(tmp_path / "late"),
                        limit=5)  # fmt: skip
    assert result["attack"]["unmoved_layers"] == [0, 1, 2]
    assert result["attack"]["difference_norm"]["3"] > 0
