"""``ctrg bench preprocess`` runs end to end on a tiny volume (numbers printed, not asserted)."""

from __future__ import annotations

import re

import pytest

from ctrg.bench import preprocess

pytest.importorskip("monai")


def test_bench_preprocess_runs_on_a_tiny_volume(capsys, tmp_path):
    argv = ["--size", "30", "40", "40", "--repeat", "1", "--threads", "1", "--tmp", str(tmp_path)]
    assert preprocess.main(argv) == 0
    table = capsys.readouterr().out
    for method in (
        "bare F.interpolate",
        "ctrg stage",
        "MONAI Spacingd",
        "ctrg read+preprocess+write",
    ):
        assert method in table
    diffs = [float(d) for d in re.findall(r"max\|diff\| (\S+)", table)]
    assert len(diffs) == 2 and all(d < 1e-3 for d in diffs)  # equal output to MONAI's
