"""Accuracy metrics against hand counts over several updates, reset, and a simulated two-rank merge."""

import pytest
import torch

from unlearn.answers import normalize_answer
from unlearn.eval.metrics import MCQAccuracy, QAAccuracy

NEG_INF = float("-inf")
NO_UPDATE_WARNING = "ignore:The ``compute`` method of metric"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat!", "cat"),
        ("  An apple,   the pear. ", "apple pear"),
        ("theater and anthem", "theater and anthem"),  # articles only as whole words
        ("Rock-and-roll", "rockandroll"),
        ("A\tB\nC", "b c"),  # "a" is an article even as a letter
        ("...", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.filterwarnings(NO_UPDATE_WARNING)
def test_qa_accuracy_counts_exact_matches_after_normalisation():
    """Update 1: 2 of 3 match (case/article/punctuation forgiven); update 2: 1 of 2; so 3/5 = 0.6."""
    metric = QAAccuracy()
    metric.update(["The Velmora.", "tarsk", "Rook"], ["velmora", "Tarsk!", "Brask"])
    metric.update(["in Quillon", "1947"], ["Quillon", "1947"])
    value = metric.compute()
    assert value.shape == () and value.item() == pytest.approx(0.6)
    metric.reset()
    with pytest.raises(ValueError, match="no items"):
        metric.compute()
    metric.update(["x"], ["x"])
    assert metric.compute().item() == 1.0


def test_qa_accuracy_rejects_length_mismatch():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        QAAccuracy().update(["a", "b"], ["a"])


@pytest.mark.filterwarnings(NO_UPDATE_WARNING)
def test_mcq_accuracy_counts_argmax_hits_with_ragged_choices():
    """Update 1: argmaxes 1, 0, 2 vs answers 1, 2, 2 → 2 hits; update 2: argmax 0 vs 0 → 1 hit; 3/4 = 0.75."""
    metric = MCQAccuracy()
    metric.update(
        torch.tensor([[-2.0, -1.0, -3.0], [-0.5, -1.0, NEG_INF], [-9.0, -8.0, -7.0]]), torch.tensor([1, 2, 2])
    )
    metric.update(torch.tensor([[-1.0, -4.0, NEG_INF]]), torch.tensor([0]))
    metric.update(torch.empty(0, 0), torch.empty(0, dtype=torch.long))
    value = metric.compute()
    assert value.shape == () and value.item() == pytest.approx(0.75)
    metric.reset()
    with pytest.raises(ValueError, match="no items"):
        metric.compute()


def test_mcq_accuracy_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="scores"):
        MCQAccuracy().update(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))


def test_states_sum_across_ranks():
    """Two ranks with 1/3 and 2/2 correct merge to 3/5 = 0.6, not the mean 2/3 of the per-rank accuracies."""
    rank0, rank1 = QAAccuracy(), QAAccuracy()
    rank0.update(["a", "b", "c"], ["a", "c", "b"])
    rank1.update(["d", "e"], ["d", "e"])
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(0.6)
