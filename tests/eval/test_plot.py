"""`python -m unlearn.report`: one PNG of before → after arrows across runs, written atomically, clear errors."""

import json

import pytest

from unlearn.eval.plot import load_runs
from unlearn.report import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(path, method: str, before: dict | None, after: dict):
    path.mkdir(parents=True)
    summary = {"method": method, "model": "tiny-target", "config": {}, "after": after}
    if before is not None:
        summary["before"] = before
    (path / "metrics.json").write_text(json.dumps(summary))
    return path


def test_plot_across_runs(tmp_path, capsys):
    target = {"forget/mcq_acc": 1.0, "retain/mcq_acc": 1.0}
    rmu = write_run(tmp_path / "rmu", "RMU", target, {"forget/mcq_acc": 0.3, "retain/mcq_acc": 0.9})
    npo = write_run(tmp_path / "npo", "NPO", target, {"forget/mcq_acc": 0.5, "retain/mcq_acc": 0.7})
    tested = write_run(tmp_path / "tested", "NPO", None, {"forget/mcq_acc": 0.4, "retain/mcq_acc": 0.8})
    points = load_runs([rmu, npo, tested], "1-forget/mcq_acc", "retain/mcq_acc")
    assert [p.label for p in points] == ["RMU", "NPO (npo)", "NPO (tested)"], "repeated methods get their folder"
    assert points[0].before == (0.0, 1.0) and points[0].after == pytest.approx((0.7, 0.9)) and points[2].before is None

    out = tmp_path / "plots" / "ue_ut.png"
    assert main([str(rmu), str(npo), str(tested), "--out", str(out)]) == out
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert "retain/mcq_acc" in capsys.readouterr().out, "each run's table is printed"
    with pytest.warns(UserWarning, match="earlier result was moved"):
        main([str(rmu), "--out", str(out)])
    assert len(list(out.parent.glob("ue_ut.png.prev-*"))) == 1, "an earlier plot is moved aside, not overwritten"
    assert not list(out.parent.glob(".*.tmp")), "no temporary file is left behind"


def test_missing_metrics_json_or_metric_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert "has no metrics.json" in capsys.readouterr().err
    run = write_run(tmp_path / "run", "RMU", None, {"forget/mcq_acc": 0.3, "retain/mcq_acc": 0.9})
    with pytest.raises(SystemExit):
        main([str(run), "--y", "retain/model_utility", "--out", str(tmp_path / "x.png")])
    assert "no 'retain/model_utility'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
