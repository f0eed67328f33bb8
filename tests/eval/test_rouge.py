"""ROUGE-L recall against hand-computed LCS lengths, against the rouge-score package, and as a rank-merged metric."""

import random

import pytest

from unlearn.eval.metrics import RougeLRecall
from unlearn.eval.rouge import lcs_length, rouge_l_recall, rouge_tokens


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat is on the mat", 5 / 6),  # LCS "the cat on the mat", 5 of 6 tokens
        ("mat the", "the mat", 1 / 2),  # order matters: only one token in sequence
        ("In Velmora!", "velmora", 1.0),  # case and punctuation are separators, not tokens
        ("born in 1,947", "1947", 0.0),  # "1,947" splits into "1" and "947"
        ("", "a b", 0.0),
        ("a b", "", 0.0),  # an empty reference gives 0, not a division by zero
        ("a x b y c", "a b c d", 3 / 4),  # LCS a b c
    ],
)
def test_rouge_l_recall_by_hand(prediction, reference, expected):
    assert rouge_l_recall(prediction, reference) == pytest.approx(expected)


def test_lcs_length_is_symmetric_and_bounded():
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4  # the textbook example (CLRS 15.4): "bcba"
    assert lcs_length(list("bdcaba"), list("abcbdab")) == 4
    assert lcs_length([], list("abc")) == 0
    assert rouge_tokens("Rock-and-roll, 1947!") == ["rock", "and", "roll", "1947"]


def test_matches_rouge_score_package():
    """rouge-score's rougeL recall without stemming, on random sentences over a small vocabulary (many repeats)."""
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    words = "the a cat Dog sat, on mat! in Velmora 1947 blue".split()
    for _ in range(200):
        prediction = " ".join(rng.choices(words, k=rng.randint(0, 9)))
        reference = " ".join(rng.choices(words, k=rng.randint(1, 9)))
        expected = scorer.score(reference, prediction)["rougeL"].recall  # score(target, prediction)
        assert rouge_l_recall(prediction, reference) == pytest.approx(expected), (prediction, reference)


def test_metric_means_items_across_ranks():
    """Rank 0: 5/6 and 1; rank 1: 0.5; merged mean (5/6 + 1 + 0.5) / 3 = 0.777..., not the mean of rank means."""
    rank0, rank1 = RougeLRecall(), RougeLRecall()
    rank0.update(["the cat sat on the mat", "Velmora"], ["the cat is on the mat", "velmora"])
    rank1.update(["mat the"], ["the mat"])
    rank0.merge_state(rank1)
    assert float(rank0.compute()) == pytest.approx((5 / 6 + 1 + 0.5) / 3)
    with pytest.raises(ValueError, match="2 predictions for 1"):
        RougeLRecall().update(["a", "b"], ["a"])
