"""Renamed arguments (issue 15): a config giving the old key (`alpha`) still loads for one release, as the new key
(`retain_weight`, PDU's `dual_init`, LoRA's `lora_alpha`, SampledQATask's `delta`), with one FutureWarning naming it."""

import warnings
from pathlib import Path

import pytest
import yaml

from tests.helpers import CONFIGS
from unlearn.cli import main
from unlearn.config import compose, load_config, upgrade


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def printed_config(capsys, *args: str) -> dict:
    """The config `fit --print_config` resolves from these arguments."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def future_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, FutureWarning)]


def test_old_key_loads_as_the_new_one_and_warns_once(tmp_path, capsys):
    npo = {"model": {"class_path": "unlearn.methods.NPO", "init_args": {"beta": 0.1, "alpha": 5.0}}}
    old = write(tmp_path / "old.yaml", {"defaults": [str(CONFIGS / "npo.yaml")], **npo})
    npo["model"]["init_args"] = {"beta": 0.1, "retain_weight": 5.0}
    new = write(tmp_path / "new.yaml", {"defaults": [str(CONFIGS / "npo.yaml")], **npo})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        from_old = printed_config(capsys, "--config", str(old))
    messages = future_warnings(record)
    assert len(messages) == 1 and "model.init_args.alpha is deprecated" in messages[0]
    assert "rename it to retain_weight" in messages[0]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        from_new = printed_config(capsys, "--config", str(new))
    assert not future_warnings(record)
    assert from_old == from_new
    assert from_old["model"]["init_args"]["retain_weight"] == 5.0 and "alpha" not in from_old["model"]["init_args"]


def test_a_plain_file_with_the_old_key_loads_too(tmp_path, capsys):
    config = load_config(CONFIGS / "pdu.yaml")  # no defaults left: compose would hand the file to jsonargparse as is
    config["model"]["init_args"]["alpha"] = config["model"]["init_args"].pop("dual_init")
    with pytest.warns(FutureWarning, match=r"model\.init_args\.alpha is deprecated.*rename it to dual_init"):
        printed = printed_config(capsys, "--config", str(write(tmp_path / "pdu.yaml", config)))
    assert printed["model"]["init_args"]["dual_init"] == 1.0


def test_each_class_maps_alpha_to_its_own_new_name():
    config = load_config(CONFIGS / "npo_lora.yaml")
    config["model"]["init_args"]["alpha"] = config["model"]["init_args"].pop("retain_weight")
    adapter = config["model"]["init_args"]["adapter"]["init_args"]
    adapter["alpha"] = adapter.pop("lora_alpha")
    probabilistic = load_config(CONFIGS / "probabilistic.yaml")
    task = probabilistic["trainer"]["callbacks"][0]["init_args"]["tasks"][1]["init_args"]
    task["alpha"] = task.pop("delta")
    with pytest.warns(FutureWarning) as record:
        upgraded, evaluation = upgrade(config), upgrade(probabilistic)
    assert len(future_warnings(record)) == 3
    assert upgraded == load_config(CONFIGS / "npo_lora.yaml")
    assert evaluation == load_config(CONFIGS / "probabilistic.yaml")


def test_a_child_config_without_class_path_renames_by_its_parent_class(tmp_path):
    write(tmp_path / "parent.yaml", {"model": {"class_path": "unlearn.methods.RMU", "init_args": {"layer": 2}}})
    child = write(tmp_path / "child.yaml", {"defaults": ["parent.yaml"], "model": {"init_args": {"alpha": 3.0}}})
    with pytest.warns(FutureWarning, match="rename it to retain_weight"):
        config = load_config(child)
    assert config["model"]["init_args"] == {"layer": 2, "retain_weight": 3.0}


def test_the_old_key_overrides_a_parent_that_gives_the_new_one(tmp_path):
    child = write(
        tmp_path / "child.yaml", {"defaults": [str(CONFIGS / "npo.yaml")], "model": {"init_args": {"alpha": 5}}}
    )
    with pytest.warns(FutureWarning):
        assert load_config(child)["model"]["init_args"]["retain_weight"] == 5


def test_both_keys_is_a_clear_error(tmp_path, capsys):
    both = {"model": {"class_path": "unlearn.methods.GradDiff", "init_args": {"alpha": 1.0, "retain_weight": 2.0}}}
    with pytest.raises(
        ValueError, match=r"model\.init_args gives both alpha and retain_weight.*keep only retain_weight"
    ):
        upgrade(both)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(write(tmp_path / "both.yaml", both))])
    assert exit_info.value.code == 2
    assert "gives both alpha and retain_weight" in capsys.readouterr().err


def test_configs_without_old_keys_pass_through_unchanged(tmp_path):
    plain = write(tmp_path / "plain.yaml", {"model": {"class_path": "unlearn.methods.NPO", "init_args": {"beta": 0.1}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compose(str(plain)) == str(plain)
        assert compose("trainer: {max_steps: 3}") == "trainer: {max_steps: 3}"
        unknown = {"model": {"class_path": "no.such.Class", "init_args": {"alpha": 1}}}
        assert upgrade(unknown) == unknown  # jsonargparse reports the class
