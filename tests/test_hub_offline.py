"""Hub ids on a machine that cannot reach the hub (issue 13): refused in seconds, before any model loads, with one
paragraph naming the setting and the fix, unless the local cache holds them; local paths and built-in names are never
looked up. Nothing here leaves the machine: the hub endpoint is a closed local port and the caches under tmp_path."""

import re
import time
from pathlib import Path

import datasets
import pytest
from huggingface_hub import constants

from tests.helpers import TINY, configured, evaluator, source
from unlearn import hub
from unlearn.cli import main
from unlearn.validate import Named, hub_problems

CLOSED_PORT = "http://127.0.0.1:9"  # refuses at once: the "no network" of these tests
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def hub_out_of_reach(tmp_path, monkeypatch):
    """Empty hub and datasets caches under tmp_path, and a hub endpoint that refuses every connection."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
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


@pytest.mark.parametrize("case", HUB_IDS, ids=list(HUB_IDS))
def test_uncached_hub_id_is_refused_in_seconds(case, tmp_path, capsys, probes, loads):
    args, edit, setting = HUB_IDS[case]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(configured(tmp_path, "npo", edit)), *args])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    message = err[err.index("error: ") :]
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "\n\n" not in message.strip(), "one paragraph"
    expected = (
        rf"{re.escape(setting)}: '[\w./-]+' is no local path, so it names a hub (model|dataset); the hub cannot be "
        rf"reached \({re.escape(CLOSED_PORT)}: ConnectError.*\), and it is not in the local cache .*Give a local "
        r"folder.*download it on a machine with network \(`hf download .*then set HF_HUB_OFFLINE=1"
    )
    assert re.search(expected, message, re.DOTALL), message
    assert not loads, "refused before any model was loaded"
    assert probes == [CLOSED_PORT], "probed once"
    assert seconds < 10, f"{seconds:.1f} s"


def test_offline_mode_refuses_without_probing(tmp_path, capsys, monkeypatch, probes, loads):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(configured(tmp_path, "npo", None)), "--model.init_args.model=owner/model"])
    message = capsys.readouterr().err
    assert re.search(r"'owner/model' .*HF_HUB_OFFLINE=1 keeps the hub from being asked, and it is not in", message)
    assert "then set HF_HUB_OFFLINE" not in message
    assert not probes and not loads


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
