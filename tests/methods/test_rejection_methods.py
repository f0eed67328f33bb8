"""IDK fine-tuning, IDK+AP, DPO and AltPO wired into Lightning: refusals, refusal pairing on retain, preference
pairs row for row, self-generated alternates."""

import math

import pytest

from unlearn.answers import normalize_answer
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import REFUSALS, Refusals, SyntheticQA
from unlearn.methods import DPO, IDKAP, AltPO, IDKFineTune


def test_idk_fine_tuning_makes_refusals_likely(tmp_path, fit, adam):
    forget = Refusals(SyntheticQA("forget01"))
    rows = forget.load()
    assert [r["question"] for r in rows] == [r["question"] for r in SyntheticQA("forget01").load()]
    assert {r["answer"] for r in rows} <= set(REFUSALS) and rows == forget.load()
    steps = fit(
        IDKFineTune(model="tiny-scratch", retain_weight=0.0, optimizer=adam(1e-2)), tmp_path, steps=15, forget=forget
    )
    assert steps[-1]["train/forget"] < 0.5 * steps[0]["train/forget"], "the refusal NLL must fall"


def test_dpo_starts_at_log_two_and_references_agree(tmp_path, fit, adam):
    """Policy = reference at step 0: both log-ratios are 0, so L = (2/β)·log 2; cached and frozen then agree."""

    def fit_dpo(reference):
        module = DPO(model="tiny-scratch", reference=reference, optimizer=adam(1e-3))
        return fit(module, tmp_path / reference, steps=4, forget_alt=Refusals(SyntheticQA("forget01")))

    cached, frozen = fit_dpo("cached"), fit_dpo("frozen")
    assert cached[0]["train/forget"] == pytest.approx(20 * math.log(2), rel=1e-5)
    assert [s["train/loss"] for s in cached] == pytest.approx([s["train/loss"] for s in frozen], rel=1e-4)
    assert cached[-1]["train/forget"] < cached[0]["train/forget"]


def test_forget_alt_must_pair_row_for_row():
    data = UnlearnDataModule("tiny-scratch", forget=SyntheticQA("forget01"), forget_alt=SyntheticQA("forget05"))
    with pytest.raises(ValueError, match="must pair row for row"):
        data.setup("fit")


def test_idk_ap_pairs_retain_questions_with_forget_refusals_and_preserves_answers(tmp_path, fit, adam):
    """The AP batch asks the retain questions with the forget source's refusals; γ > 0 keeps the true answers ahead.

    β = 0.01 keeps the AP term off its saturation on the untrained model (refusals are longer than the answers).
    """
    forget = Refusals(SyntheticQA("forget01"))
    runs = {}
    for gamma in (0.0, 5.0):
        module = IDKAP(model="tiny-scratch", retain_weight=0.0, beta=0.01, gamma=gamma, optimizer=adam(1e-2))
        runs[gamma] = fit(module, tmp_path / str(gamma), steps=3, forget=forget)
    assert runs[0.0][0]["train/ap"] == pytest.approx(runs[5.0][0]["train/ap"], rel=1e-6)
    assert runs[5.0][-1]["train/ap"] < runs[0.0][-1]["train/ap"] - 1.0, "AP must hold the true answers above IDK"
    data = module.trainer.datamodule
    retain_rows = data.rows_of("retain")
    retain = data.collate(retain_rows[:6])
    refusal = module.refusal_batch(retain)
    tokenizer = module.tokenizer
    refusals = {row["answer"] for row in forget.load()}
    for k, index in enumerate(retain["index"].tolist()):
        prompt = (refusal["labels"][k] == -100) & (refusal["attention_mask"][k] == 1)
        question = tokenizer.decode(refusal["input_ids"][k][prompt], skip_special_tokens=True)
        answer = tokenizer.decode(refusal["labels"][k][refusal["labels"][k] != -100], skip_special_tokens=True)
        assert question == f"Question: {retain_rows[index]['question']}\nAnswer:"
        assert answer.strip() in refusals


def test_idk_ap_needs_qa_retain_rows(tmp_path, fit, adam):
    from unlearn.data.sources import SyntheticPassages

    module = IDKAP(model="tiny-scratch", optimizer=adam(1e-3))
    with pytest.raises(ValueError, match="data.retain must be a qa source"):
        fit(module, tmp_path, steps=1, forget=Refusals(SyntheticQA("forget01")), retain=SyntheticPassages("retain"))


def test_altpo_alternates_differ_from_the_truth_and_are_reproducible():
    """tiny-target knows every answer, so many samples equal the truth and must be drawn again."""
    rows = SyntheticQA("forget01").load()
    module = AltPO(model="tiny-target", alternate_seed=3)
    module.configure_model()
    alternates = module.alternates(rows)
    assert [a["question"] for a in alternates] == [r["question"] for r in rows]
    for alternate, row in zip(alternates, rows, strict=True):
        assert normalize_answer(alternate["answer"]) not in ("", normalize_answer(row["answer"]))
    assert module.alternates(rows) == alternates
    other = AltPO(model="tiny-target", alternate_seed=4)
    other.configure_model()
    assert other.alternates(rows) != alternates, "the seed, not chance, fixes the alternates"


def test_altpo_trains_dpo_on_its_alternates(tmp_path, fit, adam):
    """DPO starts at (2/β) log 2 with the alternates' reference NLLs cached; the data module serves them row for row."""
    module = AltPO(model="tiny-scratch", beta=0.1, max_new_tokens=4, optimizer=adam(1e-3))
    steps = fit(module, tmp_path, steps=2)
    assert steps[0]["train/forget"] == pytest.approx(20 * math.log(2), rel=1e-5)
    assert steps[-1]["train/forget"] < steps[0]["train/forget"]
    data = module.trainer.datamodule
    assert [a["question"] for a in data.rows_of("forget_alt")] == [f["question"] for f in data.rows_of("forget")]


def test_altpo_rejects_a_configured_forget_alt(tmp_path, fit, adam):
    module = AltPO(model="tiny-scratch", optimizer=adam(1e-3))
    with pytest.raises(ValueError, match="remove data.forget_alt"):
        fit(module, tmp_path, steps=1, forget_alt=Refusals(SyntheticQA("forget01")))
