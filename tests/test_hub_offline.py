"""Hub ids on a machine that cannot reach the hub (issue 13): refused in seconds, before any model loads, with one
paragraph naming the setting and the fix, unless the local cache holds them; local paths and built-in names are never
looked up. Nothing here leaves the machine: the hub endpoint is a closed local port and the caches under tmp_path."""

import re
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import constants

from tests.helpers import CONFIGS, TINY, configured, evaluator, source
from unlearn import hub
from unlearn.cli import main
from unlearn.robustness.__main__ import main as suite_main
from unlearn.validate import Named, hub_problems

CLOSED_PORT = "http://127.0.0.1:9"  # refuses at once: the "no network" of these tests
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def hub_out_of_reach(tmp_path, monkeypatch):
    """Empty hub and datasets caches under tmp_path, and a hub endpoint that refuses every connection."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # datasets' own view (HF_DATASETS_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.chdir(tmp_path)
    hub.unreachable.cache_clear()


@pytest.fixture(name="probes")
def probes_fixture(monkeypatch):
    """The endpoint of every network probe (the real one, against the closed port), recorded."""
    calls = []
    probe = hub.unreachable
    monkeypatch.setattr(hub, "unreachable", lambda endpoint: calls.append(endpoint) or probe(endpoint))
    return calls


def cache_entry(repo_type: str, repo_id: str) -> None:
    """A snapshot in the hub cache's own layout: <type>s--owner--name/refs/main naming snapshots/<hash>/."""
    repo = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


# id: (CLI arguments, config edit or None, the setting named)
HUB_IDS = {
    "model": (["--model.init_args.model=meta-llama/Llama-2-7b-hf"], None, "model.init_args.model"),
    "retain-model": (
        [],
        evaluator(full=True, retain_model="locuslab/tofu_ft_retain"),
        "trainer.callbacks[0].init_args.retain_model",
    ),
    "nli-model": (
        [],
        evaluator(nli_model="sileod/deberta-v3-base-tasksource-nli"),
        "trainer.callbacks[0].init_args.nli_model",
    ),
    "data-path": (source("QASource", "locuslab/TOFU", name="forget10"), None, "data.forget.init_args.path"),
}


def suite_config(tmp_path: Path, original: str) -> str:
    """A robustness suite of one DirectionAblation against `original`, over the attack configs' base."""
    attacks = [{"class_path": "unlearn.robustness.DirectionAblation", "init_args": {"original": original}}]
    config = {"defaults": [str(CONFIGS / "base" / "attack.yaml")], "attacks": attacks}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def attack(name: str, *args: str) -> Callable[[Path], None]:
    """`python -m unlearn attack` with configs/attacks/<name>.yaml on the tiny target, with `args`."""
    config = str(CONFIGS / "attacks" / f"{name}.yaml")
    return lambda tmp_path: main(["attack", "--config", config, "--model.init_args.model", str(TINY), *args])


# id: (the command, a function of tmp_path, and the setting named)
ATTACK_HUB_IDS = {
    "ablation-original": (
        attack("direction_ablation", "--attack.init_args.original=owner/base"),
        "attack.init_args.original",
    ),
    "perturbation-original": (
        attack("informed_perturbation", "--attack.init_args.original=owner/base"),
        "attack.init_args.original",
    ),
    "attack-source": (
        attack(
            "ood_finetune",
            "--attack.init_args.source.class_path=unlearn.data.sources.QASource",
            "--attack.init_args.source.init_args.path=owner/gsm8k",
        ),
        "attack.init_args.source.init_args.path",
    ),
    "suite-model": (
        lambda tmp: suite_main(["owner/unlearned", "--config", suite_config(tmp, "tiny-target"), "--out", "out"]),
        "model",
    ),
    "suite-original": (
        lambda tmp: suite_main([str(TINY), "--config", suite_config(tmp, "owner/base"), "--out", "out"]),
        "attacks[0].init_args.original",
    ),
}


def refused(command: Callable[[], object], capsys) -> tuple[str, float]:
    """The one paragraph (no traceback) that `command` exits 2 with, and how many seconds it took to refuse."""
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        command()
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    message = err[err.index("error: ") :]
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "\n\n" not in message.strip(), "one paragraph"
    return message, seconds


def unreachable(setting: str) -> str:
    """The refusal of an uncached hub id named by `setting`, with the hub out of reach."""
    return (
        rf"{re.escape(setting)}: '[\w./-]+' is no local path, so it names a hub (model|dataset); the hub cannot be "
        rf"reached \({re.escape(CLOSED_PORT)}: ConnectError.*\), and it is not in the local cache .*Give a local "
        r"folder.*download it on a machine with network \(`hf download .*then set HF_HUB_OFFLINE=1"
    )


@pytest.mark.parametrize("case", HUB_IDS, ids=list(HUB_IDS))
def test_uncached_hub_id_is_refused_in_seconds(case, tmp_path, capsys, probes, loads):
    args, edit, setting = HUB_IDS[case]
    message, seconds = refused(lambda: main(["fit", "--config", str(configured(tmp_path, "npo", edit)), *args]), capsys)
    assert re.search(unreachable(setting), message, re.DOTALL), message
    assert not loads, "refused before any model was loaded"
    assert probes == [CLOSED_PORT], "probed once"
    assert seconds < 10, f"{seconds:.1f} s"


@pytest.mark.parametrize("case", ATTACK_HUB_IDS, ids=list(ATTACK_HUB_IDS))
def test_attacks_refuse_an_uncached_hub_id_in_seconds(case, tmp_path, capsys, probes, loads):
    command, setting = ATTACK_HUB_IDS[case]
    message, seconds = refused(lambda: command(tmp_path), capsys)
    assert re.search(unreachable(setting), message, re.DOTALL), message
    assert not loads, "refused before any model was loaded"
    assert probes == [CLOSED_PORT], "probed once"
    assert seconds < 10, f"{seconds:.1f} s"


def test_suite_refuses_every_model_at_once(tmp_path, capsys, probes, loads):
    models = ["owner/first", "owner/second", "runs/npo/modle"]
    message, _ = refused(
        lambda: suite_main([*models, "--config", suite_config(tmp_path, "tiny-target"), "--out", "o"]), capsys
    )
    assert message.startswith("error: 3 problems:"), message
    assert all(f"'{model}'" in message for model in models) and "model path 'runs/npo/modle' does not exist" in message
    assert not loads and set(probes) == {CLOSED_PORT}


def test_offline_mode_refuses_without_probing(tmp_path, capsys, monkeypatch, probes, loads):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(configured(tmp_path, "npo", None)), "--model.init_args.model=owner/model"])
    message = capsys.readouterr().err
    assert re.search(r"'owner/model' .*HF_HUB_OFFLINE=1 keeps the hub from being asked, and it is not in", message)
    assert "then set HF_HUB_OFFLINE" not in message
    assert not probes and not loads


def test_datasets_offline_mode_refuses_a_hub_dataset_without_probing(tmp_path, capsys, monkeypatch, probes, loads):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # what datasets reads from HF_DATASETS_OFFLINE=1
    args = source("QASource", "owner/data")
    message, seconds = refused(lambda: main(["fit", "--config", str(configured(tmp_path, "npo", None)), *args]), capsys)
    expected = (
        r"data\.forget\.init_args\.path: 'owner/data' .*HF_DATASETS_OFFLINE=1 keeps the hub from being asked, and"
    )
    assert re.search(expected, message), message
    assert "then set HF_HUB_OFFLINE" not in message
    assert not probes and not loads and seconds < 10


def test_datasets_offline_mode_leaves_models_to_the_hub_check(monkeypatch, probes):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    (problem,) = hub_problems([Named("setting", "owner/model")])
    assert "the hub cannot be reached" in problem and probes == [CLOSED_PORT], "transformers does not read it"


def test_one_problem_per_hub_id(tmp_path, capsys, probes, loads):
    args = [*source("QASource", "locuslab/TOFU"), "--data.retain=unlearn.data.sources.QASource"]
    args += ["--data.retain.init_args.path=locuslab/TOFU", "--data.retain.init_args.name=retain90"]
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(configured(tmp_path, "npo", None)), *args])
    message = capsys.readouterr().err
    assert message.count("is no local path") == 1, message
    assert "data.forget.init_args.path, data.retain.init_args.path: 'locuslab/TOFU'" in message
    assert "--repo-type dataset" in message and probes == [CLOSED_PORT]


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_cached_hub_id_passes_without_probing(repo_type, probes):
    cache_entry(repo_type, "owner/cached")
    assert hub_problems([Named("setting", "owner/cached", repo_type)]) == []
    assert not probes


def test_dataset_prepared_by_datasets_passes_without_probing(probes):
    (Path(datasets.config.HF_DATASETS_CACHE) / "owner___tofu" / "forget10" / "0.0.0" / COMMIT).mkdir(parents=True)
    assert hub_problems([Named("setting", "owner/TOFU", "dataset")]) == []
    assert not probes


def test_reachable_hub_leaves_an_uncached_id_to_the_loader(monkeypatch):
    monkeypatch.setattr(hub, "unreachable", lambda endpoint: None)
    assert hub_problems([Named("setting", "owner/model")]) == []


def test_local_paths_and_built_in_names_are_never_looked_up(tmp_path, capsys, monkeypatch, probes):
    monkeypatch.setattr(hub, "cached", lambda *args: pytest.fail(f"looked up {args}"))
    (tmp_path / "data").mkdir()
    names = ["tiny-target", "tiny-retain", "smollm2-135m", "tiny-scratch", str(TINY), "data/model"]
    assert hub_problems([Named("setting", name) for name in names]) == []
    assert hub_problems([Named("setting", "data/nothere.jsonl", "dataset")]) == []
    with pytest.raises(SystemExit):  # refused for the step count only: the shipped config's names are not looked up
        main(["fit", "--config", str(configured(tmp_path, "npo", evaluator(full=True))), "--trainer.max_steps=0"])
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: trainer\.max_steps=0 trains no step[^\n]*\n[^\n]*\n", err[err.index("error: ") :])
    assert not probes


def test_unused_retain_model_is_not_checked(tmp_path, capsys):
    config = configured(tmp_path, "npo", evaluator(retain_model="/no/such"))  # full: false never loads it
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--trainer.max_steps=0"])
    assert "/no/such" not in capsys.readouterr().err


def test_probe_is_bounded_and_asked_once(monkeypatch):
    asked = []
    monkeypatch.setattr(hub, "PROBE_SECONDS", 0.2)
    monkeypatch.setattr(hub, "_ask", lambda endpoint: asked.append(endpoint) or time.sleep(5))
    start = time.perf_counter()
    assert hub.unreachable("http://silent") == "http://silent gave no answer within 0.2 s"
    assert hub.unreachable("http://silent") == "http://silent gave no answer within 0.2 s"
    assert time.perf_counter() - start < 2 and asked == ["http://silent"]
