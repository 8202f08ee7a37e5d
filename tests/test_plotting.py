"""ctrg.plotting: headless figures, atomic PNG writes, training-curve panels and their errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ctrg.plotting import pyplot, save_figure, training_curves


def _write_log(path, records):
    path.write_text("\n".join(map(json.dumps, records)) + "\n")


def test_save_figure_writes_png_and_leaves_no_temp_file(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    out = tmp_path / "sub" / "line.png"
    assert save_figure(fig, out, dpi=50) == str(out)
    assert Image.open(out).size == (100, 50)  # 2 x 1 inch at 50 dpi
    assert [p.name for p in out.parent.iterdir()] == ["line.png"]
    assert not plt.fignum_exists(fig.number)  # closed


def test_training_curves_plots_numeric_fields_only(tmp_path):
    log = tmp_path / "train_log.jsonl"
    records = [{"kind": "train", "step": s, "epoch": 0, "loss": 1 / s, "note": "x"} for s in (1, 2)]
    records.append({"kind": "valid", "step": 2, "epoch": 0, "recall_at_1": 0.5})
    _write_log(log, records)
    fields = training_curves(log, "t", tmp_path / "c.png")
    assert fields == ["loss", "recall_at_1"]  # step/epoch/kind and text fields are not panels
    assert (tmp_path / "c.png").is_file()


def test_training_curves_caps_panels_at_twelve(tmp_path):
    log = tmp_path / "train_log.jsonl"
    _write_log(log, [{"step": 1, **{f"m{i:02d}": float(i) for i in range(15)}}])
    assert training_curves(log, "t", tmp_path / "c.png") == [f"m{i:02d}" for i in range(12)]


@pytest.mark.parametrize(
    ("records", "message"),
    [([], "empty training log"), ([{"step": 1, "kind": "train", "note": "x"}], "no numeric")],
)
def test_training_curves_errors_name_the_file(tmp_path, records, message):
    log = tmp_path / "train_log.jsonl"
    _write_log(log, records)
    with pytest.raises(ValueError, match=message) as err:
        training_curves(log, "t", tmp_path / "c.png")
    assert str(log) in str(err.value)
    assert not (tmp_path / "c.png").exists()
