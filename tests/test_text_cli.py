"""``ctrg parse-reports`` / ``ctrg label-reports`` end to end on small CSVs (real files)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.cli import main as ctrg_main
from ctrg.config import write_section

REPORTS = {
    "case_a": "Trachea is open. Heart size increased (cardiomegaly). No pleural effusion.",
    "case_b": "<p>Consolidation in the right lower lobe.</p> It is new.",
    "case_c": "   ",
    "case_d": "Akciğerlerde nodül izlenmedi.",
}


@pytest.fixture()
def manifest(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "case_e.txt").write_text("Sliding hiatal hernia is observed.\n")
    rows = [{"case_id": k, "report": v, "split": "train"} for k, v in REPORTS.items()]
    rows.append({"case_id": "case_e", "report": "reports/case_e.txt", "split": "test"})
    rows.append({"case_id": "case_f", "report": "reports/missing.txt", "split": "test"})
    path = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_parse_reports_cli(manifest, tmp_path):
    cfg = tmp_path / "text.json"
    write_section({"text": {"default_sentence": "Normal {structure}."}}, "text", cfg)
    out = tmp_path / "out"
    argv = [
        "parse-reports",
        str(manifest),
        "--id-column",
        "case_id",
        "--text-column",
        "report",
        "--config",
        str(cfg),
        "--out",
        str(out / "sentences.csv"),
        "--texts-out",
        str(out / "structure_texts.csv"),
        "--reports-out",
        str(out / "reports.csv"),
        "--summary-out",
        str(out / "parse_summary.json"),
    ]
    assert ctrg_main(argv) == 0
    sentences = pd.read_csv(out / "sentences.csv")
    assert list(sentences.columns) == ["id", "sentence_index", "sentence", "structures"]
    a = sentences[sentences.id == "case_a"]
    assert a.structures.tolist() == ["trachea and bronchi", "heart", "pleura"]
    b = sentences[sentences.id == "case_b"]
    assert b.sentence.tolist() == ["Consolidation in the right lower lobe.", "It is new."]
    assert b.structures.tolist() == ["lung", "lung"]
    e = sentences[sentences.id == "case_e"]
    assert e.structures.tolist() == ["esophagus"]  # read from reports/case_e.txt

    texts = pd.read_csv(out / "structure_texts.csv", keep_default_na=False)
    assert list(texts.columns) == ["case_id", *CHEST_STRUCTURES, "defaulted"]
    assert texts.case_id.tolist() == ["case_a", "case_b", "case_c", "case_d", "case_e", "case_f"]
    row_c = texts.set_index("case_id").loc["case_c"]
    assert row_c["lung"] == "Normal lung."
    assert row_c["defaulted"].split(";") == list(CHEST_STRUCTURES)

    reports = pd.read_csv(out / "reports.csv", keep_default_na=False)
    assert list(reports.columns) == ["case_id", "split", "report"]
    assert reports.report.tolist()[1] == "Consolidation in the right lower lobe. It is new."

    summary = json.loads((out / "parse_summary.json").read_text())
    assert summary["n_cases"] == 6
    assert summary["warnings"] == {
        "empty": 2,
        "markup": 1,
        "not_english": 1,
        "unreadable_report_file": 1,
    }
    assert summary["coverage"]["lung"] == pytest.approx(1 / 6)
    assert (out / "summary.json").is_file() and (out / "resolved_config.json").is_file()


def test_label_reports_cli(manifest, tmp_path):
    out = tmp_path / "labels.csv"
    argv = [
        "label-reports",
        str(manifest),
        "--id-column",
        "case_id",
        "--text-column",
        "report",
        "--out",
        str(out),
    ]
    assert ctrg_main(argv) == 0
    labels = pd.read_csv(out).set_index("case_id")
    assert list(labels.columns) == list(CTRATE_LABELS)
    assert labels.loc["case_a"][labels.loc["case_a"] == 1].index.tolist() == ["Cardiomegaly"]
    assert labels.loc["case_b", "Consolidation"] == 1
    assert labels.loc["case_e", "Hiatal hernia"] == 1
    assert labels.loc[["case_c", "case_d", "case_f"]].values.sum() == 0
    summary = json.loads(out.with_name("labels.summary.json").read_text())
    assert summary["positives"]["Cardiomegaly"] == 1


def test_missing_column_is_a_clear_error(manifest, tmp_path):
    with pytest.raises(ValueError, match="no column 'findings'"):
        ctrg_main(
            [
                "label-reports",
                str(manifest),
                "--id-column",
                "case_id",
                "--text-column",
                "findings",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
