"""The CLI end to end: fit then test on the embedded default, and clear errors that leave no output."""

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import StrategyRegistry
from transformers import AutoModelForCausalLM

from tests.helpers import CONFIGS, quick_config
from unlearn.cli import UnlearnCLI, main
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.methods import UnlearnModule
from unlearn.models import load_model
from unlearn.robustness.__main__ import main as suite
from unlearn.strategies import CPUDeepSpeedStrategy


def test_fit_then_test(tmp_path):
    config = quick_config(tmp_path)
    main(["fit", "--config", str(config)])
    run = tmp_path / "run"
    fitted = json.loads((run / "metrics.json").read_text())
    assert fitted["method"] == "NPO" and fitted["model"] == "tiny-target"
    expected = {f"{split}/{name}" for split in ("forget", "retain") for name in ("qa_acc", "qa_rougeL", "mcq_acc")}
    assert set(fitted["before"]) == set(fitted["after"]) == expected
    assert fitted["config"]["model"]["beta"] == 0.1
    assert len(fitted["items"]["after"]["forget/qa_acc"]) == 10

    unlearned = AutoModelForCausalLM.from_pretrained(run / "model")
    target = load_model("tiny-target")
    assert any(not torch.equal(a, b) for a, b in zip(unlearned.parameters(), target.parameters(), strict=True))

    main(["test", "--config", str(config), "--model.init_args.model", str(run / "model")])
    tested = json.loads((run / "metrics.json").read_text())
    assert set(tested) >= {"method", "model", "config", "after"} and "before" not in tested
    assert tested["after"] == pytest.approx(fitted["after"]), "test must reproduce fit's final evaluation"
    assert len(list(run.glob("metrics.json.prev-*"))) == 1, "the fit result is kept, not overwritten"


def assert_no_output(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists() and not (run / "model").exists()


def test_unknown_method_class(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(quick_config(tmp_path)), "--model.class_path", "unlearn.methods.NoSuchMethod"])
    assert "NoSuchMethod" in capsys.readouterr().err
    assert_no_output(tmp_path)


def test_rmu_layer_out_of_range_found_after_loading(tmp_path, capsys):
    """A model without a local config.json (here built in memory, as a hub model would be downloaded) is checked
    once loaded (tests/test_bad_inputs.py holds those refused before): still one paragraph."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(quick_config(tmp_path, "rmu", layer=9, model="tiny-scratch"))])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "out of range" in err and "Traceback" not in err
    assert_no_output(tmp_path)


@pytest.mark.parametrize("config", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_parses_and_says_what_it_runs(config, capsys, tmp_path):
    assert config.read_text().startswith("# "), "each config starts with a comment: what it runs and the command"
    if config.parent.name == "base":
        return  # parents: partial configs, parsed through every config that names them under `defaults:`
    # configs/scale/ holds overlays that shard a method config: check them on top of one.
    method = ["--config", str(CONFIGS / "npo.yaml")] if config.parent.name == "scale" else []
    subcommand = "attack" if config.parent.name == "attacks" else "fit"
    with pytest.raises(SystemExit) as exit_info:
        if config.name.startswith("suite"):  # several attacks: python -m unlearn.robustness
            suite(["tiny-target", "--config", str(config), "--out", str(tmp_path), "--print_config"])
        main([subcommand, *method, "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def test_the_cli_registers_the_cpu_deepspeed_presets(monkeypatch):
    """Importing unlearn registers no strategy: the CLI names the CPU presets before it builds the Trainer."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # CPUDeepSpeedStrategy sets it; the teardown takes it back
    for stage in (2, 3):
        monkeypatch.delitem(StrategyRegistry, f"deepspeed_stage_{stage}_cpu", raising=False)
    args = ["--config", str(CONFIGS / "npo.yaml"), "--config", str(CONFIGS / "scale" / "zero3_cpu.yaml")]
    cli = UnlearnCLI(UnlearnModule, UnlearnDataModule, subclass_mode_model=True, run=False, args=args)
    assert isinstance(cli.trainer.strategy, CPUDeepSpeedStrategy) and cli.trainer.strategy.zero_stage_3


@pytest.mark.parametrize("config", ["npo.yaml", "real/npo.yaml"])
def test_prompt_format_reaches_the_data_module(config):
    """Training rows must be put to the model as the evaluators put them: the CLI links the two settings."""
    cli = UnlearnCLI(UnlearnModule, UnlearnDataModule, subclass_mode_model=True, run=False,
                     args=["--config", str(CONFIGS / config)])  # fmt: skip
    expected = "chat" if config.startswith("real/") else "plain"
    assert cli.model.prompt_format.style == cli.datamodule.prompt_format.style == expected
