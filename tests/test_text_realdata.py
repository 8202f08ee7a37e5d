"""Regression guards on real CT-RATE reports from ../shared/data (skipped when absent).

The full measurements are ``ctrg bench text``; these check subsets against floors well
below the measured values so that a broken rule file or splitter fails loudly.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ctrg.anatomy import CTRATE_LABELS
from ctrg.bench.text import main as bench_main
from ctrg.text.evaluation import (
    f1_scores,
    fold_of,
    label_counts,
    load_region_references,
    score_parser,
)
from ctrg.text.labeller import Labeller
from ctrg.text.structures import StructureParser


def test_parser_on_region_texts(shared_data):
    path = shared_data / "ctrate-region-texts" / "dev.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    references = load_region_references(str(path))[:150]
    scores = score_parser(StructureParser(), references)
    assert scores.unmatched == 0  # the rebuilt report re-splits into the same sentences
    assert scores.hits_any / scores.n_sentences >= 0.95
    assert scores.assigned_correct / scores.assigned_pairs >= 0.90


def test_labeller_on_held_out_fold(shared_data):
    path = shared_data / "ctrate-labelled-reports" / "train.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frame = pd.read_csv(path)
    frame = frame[frame["AccessionNo"].map(fold_of) == 0].reset_index(drop=True)
    pred = pd.DataFrame(Labeller().label_many(frame["report_text"].tolist()))
    micro, macro, _ = f1_scores(label_counts(frame, pred, CTRATE_LABELS))
    assert micro >= 0.92
    assert macro >= 0.90


def test_bench_skips_cleanly_without_data(tmp_path, capsys):
    assert bench_main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SKIP parser benchmark" in out and "SKIP labeller benchmark" in out
