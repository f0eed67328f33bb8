"""`python -m unlearn attack`: metrics.json with before/after/attack, kept results, and errors before any loading."""

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import CONFIGS
from unlearn import robustness
from unlearn.cli import main
from unlearn.config import load_config
from unlearn.models import BUILTIN
from unlearn.validate import MODEL_ARGS

TARGET = str(BUILTIN["tiny-target"])  # a Hugging Face model folder, as fit saves an unlearned model


def quick_attack(tmp_path: Path, name: str = "relearn", **attack_args) -> Path:
    """A shipped attack config on a few evaluation rows, writing under tmp_path."""
    config = load_config(CONFIGS / "attacks" / f"{name}.yaml")
    config["trainer"].update(default_root_dir=str(tmp_path / "run"), enable_progress_bar=False)
    config["trainer"]["callbacks"][0]["init_args"].update(limit=10, holdout=None, progress=False)
    config["attack"]["init_args"].update(attack_args)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_attack_writes_before_after_and_attack_and_keeps_earlier_results(tmp_path):
    config = quick_attack(tmp_path, steps=2)
    main(["attack", "--config", str(config), "--model.init_args.model", TARGET])
    run = tmp_path / "run"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["model"] == TARGET and summary["method"] == "FineTune"
    assert set(summary["before"]) == set(summary["after"]) and "forget/mcq_acc" in summary["after"]
    assert summary["attack"]["name"] == "Relearn" and summary["attack"]["config"]["k"] == 20
    assert len(summary["attack"]["split"]["trained"]) == 20
    main(["attack", "--config", str(config), "--model.init_args.model", TARGET])
    assert len(list(run.glob("metrics.json.prev-*"))) == 1, "the first result is moved aside, not overwritten"


@pytest.fixture(name="no_loading")
def no_loading_fixture(monkeypatch):
    """Fail the test if any model or tokenizer is loaded."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded")

    for module in (
        "unlearn.methods.base",
        "unlearn.methods.saved",
        "unlearn.data.datamodule",
        "unlearn.robustness.ablation",
    ):
        for name in ("load_model", "load_tokenizer"):
            monkeypatch.setattr(f"{module}.{name}", refuse, raising=False)


def test_missing_model_folder_is_refused_before_loading(tmp_path, no_loading, capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--config", str(quick_attack(tmp_path)), "--model.init_args.model", "runs/nope/model"])
    assert "model path 'runs/nope/model' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_original_model_is_refused_before_loading(tmp_path, no_loading, capsys):
    config = quick_attack(tmp_path, "direction_ablation", original=str(tmp_path / "nope"))
    with pytest.raises(SystemExit):
        main(["attack", "--config", str(config), "--model.init_args.model", TARGET])
    assert re.search(r"attack\.init_args\.original: model path '.*nope' does not exist", capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_every_model_an_attack_loads_is_an_argument_the_cli_checks():
    """The CLI finds the models to check by argument name (MODEL_ARGS), before any attack is built."""
    attacks = [getattr(robustness, name) for name in robustness.__all__]
    for attack in [a() for a in attacks if issubclass(a, robustness.Attack) and a is not robustness.Attack]:
        checked = {getattr(attack, key) for key in MODEL_ARGS if hasattr(attack, key)}
        assert set(attack.models().values()) <= checked, type(attack).__name__


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--attack.class_path", "unlearn.robustness.NoSuchAttack"], "NoSuchAttack"),
     (["--attack.init_args.no_such_key", "3"], "no_such_key")],
)  # fmt: skip
def test_unknown_attack_or_key_is_a_parse_error(tmp_path, capsys, no_loading, args, named):
    with pytest.raises(SystemExit):
        main(["attack", "--config", str(quick_attack(tmp_path)), "--model.init_args.model", TARGET, *args])
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unwritable_run_folder_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("a file where the run folder should go")
    monkeypatch.setattr("unlearn.methods.saved.load_model", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    args = ["--model.init_args.model", TARGET, "--trainer.default_root_dir", str(tmp_path / "file" / "run")]
    with pytest.raises(SystemExit):
        main(["attack", "--config", str(quick_attack(tmp_path)), *args])
    assert re.search(r"cannot write to .*file/run .*trainer\.default_root_dir", capsys.readouterr().err)


def test_a_name_under_a_local_folder_is_a_path_for_the_runner_as_for_the_loader(tmp_path, monkeypatch):
    """`runs/model` is owner/name in shape, but with runs/ here the loader reads a path: a missing one is refused."""
    from unlearn.robustness.checks import check_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="'runs/model' is not an existing model folder"):
        check_model("runs/model", "model")
    check_model("owner/model", "model")  # no owner/ folder here: a hub id, fetched (or refused) by the hub check
