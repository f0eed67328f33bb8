"""Set-difference pruning (Wei et al. 2024, "Assessing the brittleness of safety alignment", arXiv:2402.05162)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import torch

from unlearn.data.collate import Collator
from unlearn.losses import mean_token_nll
from unlearn.robustness.base import Attack, Target
from unlearn.robustness.finetune import held_out_split, seeded_subset
from unlearn.robustness.linears import decoder_linear_weights
from unlearn.robustness.mcq import forget_mcq, mcq_accuracies


def snip_importance(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """SNIP's |W| · |∇W L| per entry: the first-order change of the loss L when that weight is zeroed."""
    return weight.abs() * grad.abs()


def top_percent(scores: torch.Tensor, percent: float) -> torch.Tensor:
    """A boolean mask of the round(percent / 100 · n) entries of `scores` with the highest score."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a top share is a percentage in [0, 100], got {percent}")
    count = round(percent / 100 * scores.numel())
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[torch.topk(scores.flatten(), count).indices] = True
    return mask.view_as(scores)


def set_difference_mask(forget: torch.Tensor, utility: torch.Tensor, p: float, q: float) -> torch.Tensor:
    """The weights in the top q% by forget importance and not in the top p% by utility importance (one matrix)."""
    return top_percent(forget, q) & ~top_percent(utility, p)


def answer_nll_gradients(
    model: torch.nn.Module,
    collator: Collator,
    rows: list[dict],
    weights: dict[str, torch.nn.Parameter],
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """∇ of the answer NLL (each batch's token mean, weighted by its share of the rows) for each of `weights`."""
    grads = {name: torch.zeros_like(w) for name, w in weights.items()}
    device = next(model.parameters()).device
    model.requires_grad_(False)
    for weight in weights.values():
        weight.requires_grad_(True)
    for start in range(0, len(rows), batch_size):
        batch = {key: value.to(device) for key, value in collator(rows[start : start + batch_size]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        share = len(batch["input_ids"]) / len(rows)
        batch_grads = torch.autograd.grad(mean_token_nll(logits, batch["labels"]), list(weights.values()))
        for name, grad in zip(grads, batch_grads, strict=True):
            grads[name] += share * grad
    model.requires_grad_(False)
    return grads


class SetDifferencePruning(Attack):
    """Zero the weights that matter for the forget answers but not for the retain ones, per linear matrix."""

    def __init__(
        self, p: Sequence[float] = (1.0, 5.0), q: Sequence[float] = (0.5, 1.0, 2.0, 5.0), k: int = 20,
        utility_rows: int = 128, batch_size: int = 16, seed: int = 0,
    ) -> None:  # fmt: skip
        """
        Args:
            p: percentages of each matrix's weights most important for utility (retain answers) that are kept.
            q: percentages of each matrix's weights most important for the forget answers that are pruned (less those
                in the top p%). Several p or q search the (p, q) grid: every cell is evaluated on MCQ and the attacked
                model is the cell with the best forget MCQ accuracy (an oracle choice, so an upper bound).
            k: forget rows the importance is measured on, drawn by `seed`; their questions are left out of every
                evaluation task.
            utility_rows: retain rows the utility importance is measured on (all of them if fewer).
            batch_size: rows per forward and backward.
            seed: chooses the k forget rows and the retain rows.
        """
        self.p, self.q, self.k = list(p), list(q), k
        self.utility_rows, self.batch_size, self.seed = utility_rows, batch_size, seed

    def seen(self, forget: list[dict]) -> list[dict]:
        return held_out_split(forget, self.k, self.seed, "SetDifferencePruning")

    def run(self, target: Target) -> dict:
        if not target.retain:
            raise ValueError("SetDifferencePruning measures utility on the retain rows: set data.retain")
        retain = target.retain
        if self.utility_rows < len(retain):
            retain = seeded_subset(retain, self.utility_rows, self.seed)
        weights = decoder_linear_weights(target.model)
        originals = {name: w.detach().clone() for name, w in weights.items()}
        args = (target.model, target.data.collator)
        forget_grads = answer_nll_gradients(*args, self.seen(target.forget), weights, self.batch_size)
        utility_grads = answer_nll_gradients(*args, retain, weights, self.batch_size)
        forget_scores = {n: snip_importance(originals[n], g) for n, g in forget_grads.items()}
        utility_scores = {n: snip_importance(originals[n], g) for n, g in utility_grads.items()}
        total = sum(w.numel() for w in originals.values())

        def prune(p: float, q: float) -> dict:
            pruned = 0
            with torch.no_grad():
                for name, weight in weights.items():
                    mask = set_difference_mask(forget_scores[name], utility_scores[name], p, q)
                    weight.copy_(originals[name].masked_fill(mask, 0))
                    pruned += int(mask.sum())
            return {"p": p, "q": q, "pruned": pruned, "pruned_share": pruned / total}

        cells = list(product(self.p, self.q))
        if len(cells) == 1:
            return {"grid": [prune(*cells[0])], "best": dict(zip("pq", cells[0], strict=True)), "weights": total}
        forget = forget_mcq(target, "SetDifferencePruning's grid")
        grid = [{**prune(p, q), **mcq_accuracies(target, self.batch_size)} for p, q in cells]
        best = max(grid, key=lambda cell: cell[forget])
        prune(best["p"], best["q"])
        return {"grid": grid, "best": {"p": best["p"], "q": best["q"]}, "chosen_by": f"best {forget}", "weights": total}
