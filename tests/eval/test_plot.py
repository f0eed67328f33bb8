"""`python -m unlearn.report`: one PNG of before → after arrows across runs, written atomically, clear errors."""

import json

import pytest

from unlearn.eval.plot import RunPoint, axis_limits, figure, load_runs
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


def test_small_drop_looks_small_and_overlapping_runs_stay_visible():
    """A 1.3-point retain drop on the whole [0, 1] axis; two runs on one spot: two markers and two readable names."""
    points = [RunPoint("NPO", (0.0, 1.0), (0.6, 0.987)), RunPoint("SimNPO", (0.0, 1.0), (0.6, 0.987))]
    fig = figure(points, "1-forget/mcq_acc", "retain/mcq_acc")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low <= 0.0 and high >= 1.0, "accuracies are drawn on their whole range"
    fig.canvas.draw()
    names = {text.get_text(): text.get_window_extent() for text in ax.texts if text.get_text()}
    assert set(names) == {"NPO", "SimNPO"} and not names["NPO"].overlaps(names["SimNPO"])
    after = [c.get_sizes()[0] for c in ax.collections if (c.get_offsets()[0] == (0.6, 0.987)).all()]
    assert len(set(after)) == 2, "the later run's marker is drawn inside the earlier one, not hidden under it"


def test_unbounded_axis_has_a_minimum_span():
    low, high = axis_limits([40.0, 38.7])  # PrivLeak, in %: 1.3 points
    assert high - low >= 20 and low < 38.7 and high > 40.0
    assert axis_limits([0.2, 0.9]) == pytest.approx((-0.05, 1.05))
