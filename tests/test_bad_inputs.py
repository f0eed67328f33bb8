"""The catalogue of bad inputs (issue 13): each is refused before any model loads, with one paragraph naming the
setting and the fix, no traceback, and the earlier results in the run folder intact."""

import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

from tests.helpers import EARLIER, TINY, configured, earlier_result, evaluator, quick_config, source
from unlearn.checks import DegenerateRunWarning, UsageError
from unlearn.cli import DEBUG, main
from unlearn.data.datamodule import UnlearnDataModule
from unlearn.data.sources import SyntheticQA


def write(tmp_path: Path, name: str, lines: list) -> str:
    """A data file of JSON lines (or raw text lines) under tmp_path; its path."""
    path = tmp_path / name
    path.write_text("".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines))
    return str(path)


def model_copy(tmp_path: Path, drop: tuple[str, ...] = (), truncate_to: int | None = None) -> str:
    """The tiny target model copied under tmp_path without the `drop` files, its weights cut to `truncate_to` bytes."""
    folder = tmp_path / "copied-model"
    shutil.copytree(TINY, folder)
    for name in drop:
        (folder / name).unlink()
    if truncate_to is not None:
        with (folder / "model.safetensors").open("r+b") as weights:
            weights.truncate(truncate_to)
    return str(folder)


def finetune_without_retain(config: dict) -> None:
    """FineTune (which trains on data.retain) given forget data only."""
    config["model"] = {"class_path": "unlearn.methods.FineTune", "init_args": {"model": "tiny-target"}}
    del config["data"]["retain"]


# id: (method config, CLI arguments or a function of tmp_path giving them, config edit or None, expected message)
CASES = {
    # numbers
    "lr-zero": ("npo", ["--model.init_args.optimizer.init_args.lr=0"], None, r"lr=0\.0: no update.*set a positive"),
    "lr-negative": ("npo", ["--model.init_args.optimizer.init_args.lr=-1e-4"], None, r"lr=-0\.0001.*set a positive"),
    "max-steps-zero": ("npo", ["--trainer.max_steps=0"], None, r"max_steps=0 trains no step.*set a positive"),
    "max-steps-below-minus-one": ("npo", ["--trainer.max_steps=-5"], None, r"max_steps=-5 is not.*or -1"),
    "npo-retain-weight-negative": (
        "npo",
        ["--model.init_args.retain_weight=-1"],
        None,
        r"retain_weight=-1\.0 would reward.*retain_weight >= 0",
    ),
    "graddiff-retain-weight-negative": (
        "graddiff",
        ["--model.init_args.retain_weight=-0.5"],
        None,
        r"retain_weight=-0\.5.*retain_weight >= 0",
    ),
    "pdu-dual-init-negative": ("pdu", ["--model.init_args.dual_init=-1"], None, r"dual_init=-1\.0.*dual_init >= 0"),
    "pdu-retain-weight-given": (
        "pdu",
        ["--model.init_args.retain_weight=2"],
        None,
        r"retain_weight=2\.0 does not apply to PDU.*set model\.init_args\.dual_init",
    ),
    "rmu-layer-out-of-range": (
        "rmu",
        ["--model.init_args.layer=9"],
        None,
        r"model\.init_args\.layer=9: tiny-target has 4 decoder layers.*indices in 0\.\.3",
    ),
    "grun-layers-out-of-range": (
        "grun_npo",
        ["--model.init_args.adapter.init_args.layers=[-5, 1]"],
        None,
        r"adapter\.init_args\.layers=\[-5, 1\]: .* so \[-5\] does not exist; use indices in -4\.\.3",
    ),
    "rmu-steering-zero": ("rmu", ["--model.init_args.steering_coeff=0"], None, r"steering_coeff=0.*set it > 0"),
    "rmu-retain-weight-negative": (
        "rmu",
        ["--model.init_args.retain_weight=-2"],
        None,
        r"retain_weight=-2\.0.*retain_weight >= 0",
    ),
    "max-length-one": ("npo", ["--data.max_length=1"], None, r"data\.max_length=1.*2 or more"),
    "max-length-zero": ("npo", ["--data.max_length=0"], None, r"data\.max_length=0.*2 or more"),
    "max-length-past-positions": (
        "npo",
        ["--data.max_length=300"],
        None,
        r"data\.max_length=300 exceeds tiny-target's max_position_embeddings=256.*set data\.max_length <= 256",
    ),
    "batch-size-zero": ("npo", ["--data.batch_size=0"], None, r"data\.batch_size=0.*1 or more"),
    "batch-size-negative": ("npo", ["--data.batch_size=-2"], None, r"data\.batch_size=-2.*1 or more"),
    "retain-batch-size-zero": ("npo", ["--data.retain_batch_size=0"], None, r"retain_batch_size=0.*1 or more"),
    "evaluator-limit-negative": ("npo", [], evaluator(limit=-1), r"limit=-1 would drop rows.*1 or more"),
    "evaluator-limit-zero": ("npo", [], evaluator(limit=0), r"limit=0 would drop rows.*1 or more"),
    "dtype-unknown": ("npo", ["--model.init_args.dtype=float64"], None, r"dtype='float64'.*one of"),
    "lora-rank-zero": ("npo_lora", ["--model.init_args.adapter.init_args.r=0"], None, r"LoRA needs r >= 1"),
    "sam-rho-negative": ("npo_sam", ["--model.init_args.rho=-1"], None, r"rho must be >= 0"),
    "entropy-temperature-zero": ("npo_entropy", ["--model.init_args.temperature=0"], None, r"temperature must be > 0"),
    "several-at-once": (
        "npo",
        ["--data.batch_size=0", "--model.init_args.optimizer.init_args.lr=0", "--trainer.max_steps=0"],
        None,
        r"3 problems:\n  - .*lr=0\.0.*\n  - .*max_steps=0.*\n  - .*batch_size=0",
    ),
    # paths
    "model-relative-typo": ("npo", ["--model.init_args.model=runs/npo/modle"], None, r"'runs/npo/modle' does not"),
    "model-absolute-missing": ("npo", ["--model.init_args.model=/no/such/model"], None, r"'/no/such/model' does not"),
    "model-dot-missing": ("npo", ["--model.init_args.model=./missing"], None, r"'\./missing' does not exist"),
    "model-without-tokenizer": (
        "npo",
        lambda tmp: [f"--model.init_args.model={model_copy(tmp, drop=('tokenizer.json',))}"],
        None,
        r"has no tokenizer files \(none of tokenizer\.json.*save the tokenizer",
    ),
    "model-truncated-weights": (
        "npo",
        lambda tmp: [f"--model.init_args.model={model_copy(tmp, truncate_to=100_000)}"],
        None,
        r"model\.safetensors: truncated or corrupt weights.*download the file again",
    ),
    "model-weights-header-only": (
        "npo",
        lambda tmp: [f"--model.init_args.model={model_copy(tmp, truncate_to=5)}"],
        None,
        r"model\.safetensors: truncated or corrupt.*header too small",
    ),
    "evaluator-retain-model-missing": (
        "npo",
        [],
        evaluator(full=True, retain_model="runs/retain/modle"),
        r"trainer\.callbacks\[0\]\.init_args\.retain_model: model path 'runs/retain/modle' does not exist",
    ),
    "evaluator-nli-model-missing": (
        "npo",
        [],
        evaluator(nli_model="./nli-model"),
        r"trainer\.callbacks\[0\]\.init_args\.nli_model: model path '\./nli-model' does not exist",
    ),
    "save-dir-unwritable": (
        "npo",
        lambda tmp: [f"--model.init_args.save_dir={write(tmp, 'a-file', ['x'])}/model"],
        None,
        r"cannot write to .*a-file.*model\.init_args\.save_dir",
    ),
    "config-file-missing": ("npo", ["--config=no-such-config.yaml"], None, r"no-such-config\.yaml"),
    "unknown-setting": ("npo", ["--trainer.max_stepz=3"], None, r"max_stepz.*--print_config"),
    "unknown-method": ("npo", ["--model.class_path=unlearn.methods.NoSuchMethod"], None, r"NoSuchMethod"),
    # data
    "split-forget250": ("npo", ["--data.forget.init_args.split=forget250"], None, r"'forget250'.*choose one of train"),
    "split-typo": ("npo", ["--data.forget.init_args.split=forgt10"], None, r"'forgt10'.*forget10"),
    "retain-split-unknown": ("npo", ["--data.retain.init_args.split=retain_all"], None, r"'retain_all'.*retain,"),
    "evaluator-split-forget250": ("npo", [], evaluator(forget="forget250"), r"'forget250'.*choose one of"),
    "data-file-empty": ("npo", lambda tmp: source("QASource", write(tmp, "e.jsonl", [])), None, r"e\.jsonl is empty"),
    "data-file-blank-lines": (
        "npo",
        lambda tmp: source("QASource", write(tmp, "b.jsonl", ["", "  "])),
        None,
        r"b\.jsonl is empty.*point path=",
    ),
    "data-file-missing": ("npo", source("QASource", "data/nothere.jsonl"), None, r"no such file.*'data/nothere"),
    "data-file-type": ("npo", lambda tmp: source("QASource", write(tmp, "d.txt", ["x"])), None, r"'\.txt' files"),
    "data-column-missing": (
        "npo",
        lambda tmp: source("QASource", write(tmp, "c.jsonl", [{"prompt": "Who?", "response": "No one"}])),
        None,
        r"no column 'question'.*set question_key= to one of",
    ),
    "forget-texts-all-empty": (
        "npo",
        lambda tmp: source("TextSource", write(tmp, "t.jsonl", [{"text": ""}, {"text": " "}])),
        None,
        r"all 2 rows of the forget set .* empty text.*text_key",
    ),
    "forget-answers-all-empty": (
        "npo",
        lambda tmp: source("QASource", write(tmp, "a.jsonl", [{"question": "Who?", "answer": ""}])),
        None,
        r"all 1 rows of the forget set .*nothing to train on",
    ),
    "min-chars-drops-all": (
        "npo",
        lambda tmp: source("TextSource", write(tmp, "s.jsonl", [{"text": "short"}]), min_chars=100),
        None,
        r"shorter than min_chars=100; lower min_chars",
    ),
    "source-limit-zero": (
        "npo",
        lambda tmp: source("QASource", write(tmp, "q.jsonl", [{"question": "Who?", "answer": "Ann"}]), limit=0),
        None,
        r"limit=0 keeps no rows; give a positive limit",
    ),
    # the method and its data
    "npo-without-forget": ("npo", ["--data.forget=null"], None, r"NPO unlearns data\.forget.*add a forget source"),
    "finetune-without-retain": ("npo", [], finetune_without_retain, r"FineTune trains on data\.retain.*add a retain"),
    "graddiff-without-retain": (
        "graddiff",
        ["--data.retain=null"],
        None,
        r"retain_weight=.*data\.retain.*retain_weight: 0",
    ),
    "pdu-without-retain": ("pdu", ["--data.retain=null"], None, r"PDU constrains.*add a retain source"),
    "no-data-at-all": ("npo", ["--data.forget=null", "--data.retain=null"], None, r"neither data\.forget nor"),
    "grun-on-passages": (
        "grun_rmu",
        ["--data.forget.class_path=unlearn.data.sources.SyntheticPassages", "--data.forget.init_args.split=forget10"],
        None,
        r"GRUN intervenes at the end of a prompt, which the passages of data\.forget do not have.*QASource",
    ),
    "grun-without-retain": ("grun_npo", ["--data.retain=null"], None, r"GRUN trains its gate.*add data\.retain"),
    # precision and strategy against the device
    "fp16-mixed-on-cpu": ("npo", ["--trainer.precision=16-mixed"], None, r"precision=16-mixed.*bf16-mixed or 32-true"),
    "fp16-true-on-cpu": ("npo", ["--trainer.precision=16-true"], None, r"precision=16-true.*bf16-mixed"),
    "zero3-on-cpu": ("npo", ["--trainer.strategy=deepspeed_stage_3"], None, r"deepspeed_stage_3 needs CUDA.*_3_cpu"),
    "zero2-offload-on-cpu": (
        "npo",
        ["--trainer.strategy=deepspeed_stage_2_offload"],
        None,
        r"deepspeed_stage_2_offload needs CUDA.*deepspeed_stage_2_cpu",
    ),
}


def assert_intact(run: Path) -> None:
    """Each earlier output is unchanged, in place or moved aside to `<name>.prev-*`."""
    for name, text in EARLIER.items():
        top, _, inner = name.partition("/")
        copies = [c / inner if inner else c for c in [run / top, *run.glob(f"{top}.prev-*")]]
        assert [c for c in copies if c.exists() and c.read_text() == text], name


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_refused_in_one_paragraph(case, tmp_path, capsys, loads, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name, args, edit, expected = CASES[case]
    config = configured(tmp_path, name, edit)
    earlier_result(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), *(args(tmp_path) if callable(args) else args)])
    err = capsys.readouterr().err
    assert exit_info.value.code in (1, 2)
    assert "Traceback" not in err and "usage:" not in err
    message = err[err.index("error: ") :]
    assert "\n\n" not in message.strip(), "one paragraph"
    assert re.search(expected, message, re.DOTALL), message
    assert not loads, "refused before any model was loaded"
    assert_intact(tmp_path / "run")


def test_debug_shows_the_traceback(tmp_path, monkeypatch, loads):
    monkeypatch.setenv(DEBUG, "1")
    with pytest.raises(UsageError, match="lr=0"):
        main(["fit", "--config", str(quick_config(tmp_path)), "--model.init_args.optimizer.init_args.lr=0"])


def test_debug_flag_shows_the_traceback(tmp_path, monkeypatch, loads):
    monkeypatch.setenv(DEBUG, "0")  # off; --debug turns it on for the process, and the teardown restores it
    with pytest.raises(UsageError, match="max_steps=0"):
        main(["fit", "--debug", "--config", str(quick_config(tmp_path)), "--trainer.max_steps=0"])


def data_module(forget: str, retain: str, max_length: int = 256) -> UnlearnDataModule:
    """A data module on the embedded benchmark, set up (no trainer, no model)."""
    return UnlearnDataModule("tiny-target", SyntheticQA(forget), SyntheticQA(retain), max_length=max_length)


@pytest.mark.parametrize(
    ("forget", "retain", "max_length", "expected"),
    [
        ("forget10", "forget10", 256, r"every forget row is also a retain row.*give data\.retain other rows"),
        ("forget01", "forget10", 256, r"every forget row is also a retain row"),
        ("forget10", "retain", 8, r"of the forget rows are longer than data\.max_length=8.*raise data\.max_length"),
    ],
    ids=["retain-equals-forget", "forget-inside-retain", "most-rows-truncated"],
)
def test_degenerate_data_warns(forget, retain, max_length, expected):
    with pytest.warns(DegenerateRunWarning, match=expected):
        data_module(forget, retain, max_length).setup("fit")


def test_sound_data_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateRunWarning)
        data_module("forget10", "retain").setup("fit")


def test_warnings_reach_metrics_json(tmp_path):
    config = quick_config(tmp_path, steps=1)
    with pytest.warns(DegenerateRunWarning):
        main(["fit", "--config", str(config), "--data.retain.init_args.split=forget10"])
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["warnings"]
    assert len(recorded) == 1 and "every forget row is also a retain row" in recorded[0]
