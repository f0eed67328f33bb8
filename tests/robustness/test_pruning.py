"""Set-difference pruning: importance, top shares and the mask by hand; p = q = 0 changes nothing."""

import pytest
import torch

from unlearn.data.collate import Collator
from unlearn.data.sources import SyntheticQA
from unlearn.losses import mean_token_nll
from unlearn.models import load_model, load_tokenizer
from unlearn.robustness import SetDifferencePruning
from unlearn.robustness.linears import decoder_linear_weights
from unlearn.robustness.pruning import answer_nll_gradients, set_difference_mask, snip_importance, top_percent


def test_importance_is_weight_times_gradient_in_absolute_value():
    weight, grad = torch.tensor([[1.0, -2.0], [0.5, 3.0]]), torch.tensor([[-4.0, 0.5], [2.0, 0.0]])
    assert torch.equal(snip_importance(weight, grad), torch.tensor([[4.0, 1.0], [1.0, 0.0]]))


def test_top_percent_and_set_difference_by_hand():
    forget = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
    utility = torch.tensor([[0.0, 9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0, 8.0]])
    assert top_percent(forget, 30).flatten().tolist() == [True] * 3 + [False] * 7  # round(0.3 * 10) = 3 entries
    # top 40% forget: 9, 8, 7, 6 (entries 0-3); top 20% utility: 9, 8 (entries 1, 9): entry 1 is kept
    expected = torch.tensor([[True, False, True, True, False], [False] * 5])
    assert torch.equal(set_difference_mask(forget, utility, p=20, q=40), expected)
    assert not set_difference_mask(forget, utility, p=0, q=0).any()
    assert not set_difference_mask(forget, utility, p=100, q=100).any()
    with pytest.raises(ValueError, match="percentage"):
        top_percent(forget, 101)


def test_gradients_are_the_row_weighted_mean_of_batch_gradients():
    model, tokenizer = load_model("tiny-target").eval(), load_tokenizer("tiny-target")
    collator, rows = Collator(tokenizer), SyntheticQA("forget05").load()[:6]
    weights = decoder_linear_weights(model)
    grads = answer_nll_gradients(model, collator, rows, {"q": weights["layers.0.self_attn.q_proj.weight"]}, 4)
    model.requires_grad_(True)
    total = 0
    for part in (rows[:4], rows[4:]):  # by hand: batches of 4 and 2 rows, weighted 4/6 and 2/6
        batch = collator(part)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total = total + len(part) / 6 * mean_token_nll(logits, batch["labels"])
    total.backward()
    assert torch.allclose(grads["q"], model.model.layers[0].self_attn.q_proj.weight.grad, atol=1e-6)


def test_zero_shares_change_nothing_and_the_grid_reports_every_cell(tmp_path, attack_run):
    summary = attack_run(tmp_path, SetDifferencePruning(p=[0.0], q=[0.0], k=5, utility_rows=8), limit=10)
    assert summary["after"] == summary["before"] and summary["attack"]["grid"][0]["pruned"] == 0
    grid = attack_run(tmp_path / "grid", SetDifferencePruning(p=[0.0, 50.0], q=[1.0], k=5, utility_rows=8), limit=10)
    cells = grid["attack"]["grid"]
    assert [(c["p"], c["q"]) for c in cells] == [(0.0, 1.0), (50.0, 1.0)]
    assert cells[0]["pruned"] == round(0.01 * 192 * 192) * 16 + round(0.01 * 192 * 512) * 12  # q = 1% of each matrix
    assert 0 < cells[1]["pruned"] < cells[0]["pruned"]
    best = max(cells, key=lambda c: c["forget/mcq_acc"])
    assert grid["attack"]["best"] == {"p": best["p"], "q": best["q"]}
    assert grid["after"]["forget/mcq_acc"] == best["forget/mcq_acc"]
