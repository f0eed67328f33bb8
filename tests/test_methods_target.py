"""The methods table's target reads float32 accuracies: a count at the bound passes, one question past it fails."""

import numpy as np

from benchmarks.methods import meets_target


def run(forget: int, retain: int) -> dict:
    """A run scored as the evaluator stores it: float32 ratios of counts out of 100 forget and 90 retain questions."""
    after = {"forget/mcq_acc": float(np.float32(forget / 100)), "retain/mcq_acc": float(np.float32(retain / 90))}
    return {"before": {"retain/mcq_acc": 1.0}, "after": after}


def test_counts_at_the_bounds_meet_the_target_and_one_question_past_them_does_not():
    assert float(np.float32(81 / 90)) < 0.9  # the rounding the target must not trip on
    assert meets_target(run(35, 81))
    assert not meets_target(run(36, 81))
    assert not meets_target(run(35, 80))
