"""ROUGE-L recall, written out so open answers are scored without a tokenizer-dependent third-party package."""

from __future__ import annotations

import re

TOKEN = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenisation: lowercase, every run of non-alphanumerics is a separator (no stemming)."""
    return TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, by the standard O(|a|·|b|) dynamic programme in one row."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0  # row[j-1] of the previous line
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l_recall(prediction: str, answer: str) -> float:
    """How much of the true answer the prediction reproduces in order, the open-answer score TOFU reports.

    Paper: Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries" (ROUGE-L); TOFU (Maini et al. 2024,
    arXiv:2401.06121) reports its recall.

    ``R_lcs = LCS(prediction, answer) / |answer|`` over `rouge_tokens`; 0.0 for an empty answer.
    """
    answer_tokens = rouge_tokens(answer)
    if not answer_tokens:
        return 0.0
    return lcs_length(rouge_tokens(prediction), answer_tokens) / len(answer_tokens)
