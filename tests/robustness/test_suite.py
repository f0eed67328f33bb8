"""`python -m unlearn.robustness`: each attack on a fresh model, one shared `before`, errors recorded, one table."""

import json
import re
from pathlib import Path

import pytest
import yaml

from unlearn.data.sources import SyntheticQA
from unlearn.models import BUILTIN
from unlearn.robustness import LogitLens, Quantization, Relearn
from unlearn.robustness.__main__ import main
from unlearn.robustness.finetune import seeded_subset
from unlearn.robustness.suite import labels

BASE = Path(__file__).parents[2] / "configs" / "base" / "attack.yaml"
TARGET, RETAIN = str(BUILTIN["tiny-target"]), str(BUILTIN["tiny-retain"])


def suite_config(tmp_path: Path, attacks: list[dict]) -> str:
    """A suite over the attack base config, its evaluator cut to a few rows."""
    evaluator = {"class_path": "unlearn.eval.SyntheticEvaluator",
                 "init_args": {"limit": 10, "holdout": None, "progress": False}}  # fmt: skip
    config = {"defaults": [str(BASE)], "trainer": {"callbacks": [evaluator]}, "attacks": attacks}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


ATTACKS = [
    {"class_path": "unlearn.robustness.LogitLens", "init_args": {"layer": 0, "plot": False}},
    {"class_path": "unlearn.robustness.DirectionAblation", "init_args": {"original": "tiny-target"}},  # fails
    {"class_path": "unlearn.robustness.SetDifferencePruning", "init_args": {"p": [0.0], "q": [0.0], "k": 2}},
    {"class_path": "unlearn.robustness.Quantization", "init_args": {"bits": 16}},
]


def test_each_attack_starts_from_the_unattacked_model_and_a_failure_is_recorded(tmp_path, monkeypatch):
    phases = []
    evaluate = "unlearn.eval.evaluator.Evaluator.evaluate"
    original = __import__("unlearn.eval.evaluator", fromlist=["Evaluator"]).Evaluator.evaluate
    monkeypatch.setattr(evaluate, lambda self, t, m, phase: phases.append(phase) or original(self, t, m, phase))
    main([TARGET, "--config", suite_config(tmp_path, ATTACKS), "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert result["complete"] and len(result["models"]) == 1
    lens, ablation, pruning, quantization = result["models"][0]["attacks"]
    assert lens["after"]["forget/qa_acc"] < lens["before"]["forget/qa_acc"], "layer 0 does not answer like the model"
    assert "no direction to ablate" in ablation["error"] and "after" not in ablation
    assert pruning["after"] == pruning["before"], "pruning nothing after the lens: the lens's cut did not carry over"
    assert quantization["before"] == lens["before"] == result["models"][0]["before"]
    forget = SyntheticQA("forget10").load()
    scored = {r["question"] for r in seeded_subset(forget, 2, 0)} & {r["question"] for r in forget[:10]}
    assert phases.count("before") == 1 + bool(scored), "one shared before; pruning's own if it held rows out"
    for entry in (lens, pruning, quantization):
        before, after = entry["before"]["forget/mcq_acc"], entry["after"]["forget/mcq_acc"]
        assert entry["recovered"]["forget/mcq_acc"] == after - before
    table = (tmp_path / "out" / "robustness.md").read_text()
    assert table.count("\n") == 2 + 4 and "| error: ValueError: the unlearned" in table
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 0


def test_several_models_make_one_table_with_a_model_column(tmp_path):
    run = tmp_path / "runs" / "retain"
    (run / "model").mkdir(parents=True)
    for file in Path(RETAIN).iterdir():
        (run / "model" / file.name).symlink_to(file)
    attacks = [{"class_path": "unlearn.robustness.Quantization", "init_args": {"bits": 8}}]
    main(["--model", TARGET, str(run), "--config", suite_config(tmp_path, attacks), "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert [m["model"] for m in result["models"]] == [str(run / "model"), TARGET]
    rows = (tmp_path / "out" / "robustness.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| {run / 'model'}", f"| {TARGET}"]


def test_missing_model_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([TARGET, str(tmp_path / "no"), "--config", suite_config(tmp_path, ATTACKS), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert re.match(r"error: model: model path '.*/no' does not exist", err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [("--data.batch_size=0", "data.batch_size=0 gives empty batches"), ("--trainer.max_stepz=3", "unrecognized")],
)
def test_a_missing_model_and_a_bad_setting_are_one_error(tmp_path, capsys, setting, problem):
    """The models and the config with each model that exists are checked together: one error lists both problems."""
    config = suite_config(tmp_path, ATTACKS)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "no"), TARGET, "--config", config, "--out", str(tmp_path / "o"), setting])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: 2 problems:"), err
    assert "model: model path" in err and problem in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_labels_name_what_tells_attacks_of_a_class_apart():
    attacks = [Quantization(bits=8), Quantization(bits=4), LogitLens(), Relearn()]
    assert labels(attacks) == ["Quantization bits=8", "Quantization bits=4", "LogitLens", "Relearn"]
    with pytest.raises(ValueError, match="twice"):
        labels([Relearn(), Relearn()])
