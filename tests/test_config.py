"""Configs that compose: `defaults:` parents merged in order under the file's own content, and the CLI reading them."""

from pathlib import Path

import pytest
import yaml

from tests.helpers import CONFIGS
from unlearn.cli import main
from unlearn.config import compose, load_config, merge


def write(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_dicts_merge_key_by_key_and_lists_replace():
    parent = {"trainer": {"max_steps": 80, "logger": False}, "layers": [1, 2], "seed": 0}
    child = {"trainer": {"max_steps": 200}, "layers": [3]}
    assert merge(parent, child) == {"trainer": {"max_steps": 200, "logger": False}, "layers": [3], "seed": 0}


def test_same_class_merges_its_init_args():
    parent = {"model": {"class_path": "NPO", "init_args": {"beta": 0.1, "retain_weight": 5.0}}}
    child = {"model": {"class_path": "NPO", "init_args": {"retain_weight": 1.0}}}
    assert merge(parent, child)["model"] == {"class_path": "NPO", "init_args": {"beta": 0.1, "retain_weight": 1.0}}


def test_another_class_replaces_wholesale():
    parent = {"model": {"class_path": "NPO", "init_args": {"beta": 0.1, "reference": "cached"}}}
    child = {"model": {"class_path": "RMU", "init_args": {"layer": 2}}}
    assert merge(parent, child)["model"] == {"class_path": "RMU", "init_args": {"layer": 2}}


def test_class_path_added_to_a_partial_parent_keeps_its_args_and_leads():
    merged = merge({"model": {"init_args": {"model": "tiny-target"}}}, {"model": {"class_path": "NPO"}})
    assert list(merged["model"].items()) == [("class_path", "NPO"), ("init_args", {"model": "tiny-target"})]


def test_nested_defaults_in_order_with_paths_relative_to_the_naming_file(tmp_path):
    write(tmp_path / "base" / "root.yaml", {"a": 1, "b": {"x": 1, "y": 1}})
    write(tmp_path / "base" / "mid.yaml", {"defaults": ["root.yaml"], "b": {"y": 2}})
    write(tmp_path / "other.yaml", {"a": 3, "c": 3})
    child = write(tmp_path / "runs" / "child.yaml", {"defaults": ["../base/mid.yaml", "../other.yaml"], "c": 4})
    assert load_config(child) == {"a": 3, "b": {"x": 1, "y": 2}, "c": 4}


def test_cycle_is_an_error_naming_the_files(tmp_path):
    write(tmp_path / "a.yaml", {"defaults": ["b.yaml"]})
    write(tmp_path / "b.yaml", {"defaults": ["a.yaml"]})
    with pytest.raises(ValueError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")


def test_missing_parent_names_the_file_that_referenced_it(tmp_path):
    child = write(tmp_path / "child.yaml", {"defaults": ["base/nope.yaml"]})
    with pytest.raises(FileNotFoundError, match=r"child\.yaml: defaults entry 'base/nope\.yaml' not found"):
        load_config(child)


def test_defaults_must_be_a_list(tmp_path):
    with pytest.raises(ValueError, match="must be a list"):
        load_config(write(tmp_path / "child.yaml", {"defaults": "base.yaml"}))


def test_compose_leaves_plain_files_and_yaml_text_to_jsonargparse(tmp_path):
    plain = str(write(tmp_path / "plain.yaml", {"a": 1}))
    assert compose(plain) == plain
    assert compose("trainer: {max_steps: 3}") == "trainer: {max_steps: 3}"


def test_cli_reads_a_composed_config_and_overlays_another(tmp_path, capsys):
    child = tmp_path / "npo_short.yaml"
    child.write_text(f"defaults: [{CONFIGS / 'npo.yaml'}]\nmodel:\n  init_args:\n    optimizer:\n      init_args:\n"
                     "        lr: 1e-5\n")  # fmt: skip
    overlay = write(tmp_path / "overlay.yaml", {"defaults": [str(child)], "trainer": {"max_steps": 7}})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(child), "-c", str(overlay), "--data.batch_size", "5", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] == 7 and printed["data"]["batch_size"] == 5
    assert printed["model"]["class_path"] == "unlearn.methods.NPO"
    init_args = printed["model"]["init_args"]
    assert init_args["beta"] == 0.1 and init_args["optimizer"]["init_args"]["lr"] == 1e-5


def test_cli_error_for_a_missing_parent_names_the_referencing_file(tmp_path, capsys):
    child = write(tmp_path / "child.yaml", {"defaults": ["nope.yaml"]})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(child)])
    assert exit_info.value.code == 2
    assert f"{child}: defaults entry 'nope.yaml' not found" in capsys.readouterr().err


def test_every_base_is_a_parent_of_some_config():
    named = {
        (path.parent / parent).resolve()
        for path in CONFIGS.rglob("*.yaml")
        for parent in yaml.safe_load(path.read_text()).get("defaults", [])
    }
    assert {path.resolve() for path in CONFIGS.glob("base/*.yaml")} <= named
