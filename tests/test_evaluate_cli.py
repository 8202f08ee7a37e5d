"""``ctrg evaluate``, ``ctrg evaluate-text`` and ``ctrg bench paired`` end to end on tiny CSVs
(one METEOR JVM)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from ctrg.anatomy import CTRATE_LABELS
from ctrg.bench import paired
from ctrg.cli import main as ctrg
from ctrg.evaluate import run, text_cli
from ctrg.evaluate.nlg import NLGScorer

REFS = [
    "Emphysema in both lungs. No pleural effusion.",
    "Bilateral pleural effusion. The heart is normal.",
    "A 6 mm nodule in the right upper lobe.",
    "No abnormality.",
    "Cardiomegaly. Small pericardial effusion.",
]
WORSE = ["No abnormality."] * 5


class _Shared:
    """Hands the module's scorer to the CLIs and keeps it open between calls."""

    def __init__(self, scorer):
        self.scorer = scorer

    def __call__(self):
        return self

    def __enter__(self):
        return self.scorer

    def __exit__(self, *exc):
        return None


@pytest.fixture(scope="module")
def scorer():
    with NLGScorer() as nlg:
        yield nlg


@pytest.fixture()
def shared_scorer(scorer, monkeypatch):
    monkeypatch.setattr(run, "NLGScorer", _Shared(scorer))
    monkeypatch.setattr(text_cli, "NLGScorer", _Shared(scorer))
    monkeypatch.setattr(paired, "NLGScorer", _Shared(scorer))


@pytest.fixture()
def data(tmp_path):
    ids = [f"phantom_{i:04d}" for i in range(len(REFS))]
    frame = pd.DataFrame(
        {
            "case_id": ids + ["phantom_0099"],
            "split": ["test"] * 5 + ["train"],
            "reference": REFS + ["x"],
            "prediction": REFS + ["y"],
        }
    )
    frame.to_csv(tmp_path / "perfect.csv", index=False)
    frame.assign(prediction=WORSE + ["y"]).to_csv(tmp_path / "worse.csv", index=False)
    half = REFS[:2] + WORSE[2:] + ["y"]
    frame.assign(prediction=half).drop(index=4).to_csv(tmp_path / "half.csv", index=False)
    labels = pd.DataFrame(0, index=range(5), columns=list(CTRATE_LABELS))
    labels.insert(0, "case_id", ids)
    labels.loc[0, "Emphysema"] = 1
    labels.loc[1, "Pleural effusion"] = 1
    labels.to_csv(tmp_path / "labels.csv", index=False)
    cfg = {
        "seed": 0,
        "run": "t",
        "device": "cpu",
        "section": "evaluate",
        "evaluate": {"bootstrap_resamples": 20, "also_normalise": ["ptb", "lower-nopunct"]},
    }
    (tmp_path / "evaluate.json").write_text(json.dumps(cfg))
    return tmp_path


def test_evaluate_run_outputs(data, shared_scorer):
    out = data / "eval"
    rc = ctrg(
        [
            "evaluate",
            str(data / "worse.csv"),
            "--config",
            str(data / "evaluate.json"),
            "--ground-truth",
            str(data / "labels.csv"),
            "--compare",
            str(data / "perfect.csv"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_cases"] == 5  # the train row is left out
    for key in ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider", "ce_micro_f1", "ce_gt_micro_f1"):
        entry = metrics["headline"][key]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], key
        assert metrics[key] == entry["value"]
    # every prediction is the all-normal template: nothing predicted -> CE F1 0, bias 1
    assert metrics["ce_gt_micro_f1"] == 0.0
    assert metrics["collapse"]["share_most_frequent"] == 1.0
    assert metrics["collapse"]["normal_template_bias"] == 1.0
    assert metrics["collapse"]["truth"] == "gt"
    assert set(metrics["protocol_variants"]) == {"ptb", "lower-nopunct"}
    assert metrics["protocol"]["normalise"] == "raw"
    assert len(metrics["input"]["sha256"]) == 64 and "pycocoevalcap" in metrics["versions"]
    assert metrics["comparison"]["metrics"]["ce_gt_micro_f1"]["delta"] < 0
    comparison = metrics["comparison"]["metrics"]["bleu_1"]
    assert comparison["delta"] < 0 and comparison["b"] == pytest.approx(1.0)
    per_case = pd.read_csv(out / "per_case.csv", keep_default_na=False)
    assert list(per_case["case_id"]) == [f"phantom_{i:04d}" for i in range(5)]
    assert per_case.loc[0, "gt_labels"] == "Emphysema" and per_case.loc[0, "predicted_labels"] == ""
    assert "| bleu_1 |" in (out / "metrics.md").read_text()
    for name in ("per_label_f1.png", "length_histogram.png"):
        assert Image.open(out / "plots" / name).size[0] > 100
    assert json.loads((out / "summary.json").read_text())["stage"] == "evaluate"


def test_evaluate_text_keys_and_perfect_scores(data, shared_scorer):
    out = data / "text.json"
    pd.read_csv(data / "perfect.csv").head(5).to_csv(data / "five.csv", index=False)
    rc = ctrg(
        [
            "evaluate-text",
            str(data / "five.csv"),
            "--reference-column",
            "reference",
            "--prediction-column",
            "prediction",
            "--normalise",
            "lower",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_cases"] == 5
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["ce_micro_f1"] == pytest.approx(1.0)
    assert "ce_macro_f1" in metrics and metrics["protocol"]["normalise"] == "lower"
    off = data / "off.json"
    ctrg(
        [
            "evaluate-text",
            str(data / "perfect.csv"),
            "--reference-column",
            "reference",
            "--prediction-column",
            "prediction",
            "--labeller",
            "off",
            "--out",
            str(off),
        ]
    )
    assert "ce_micro_f1" not in json.loads(off.read_text())


def test_missing_columns_name_the_file(data, shared_scorer):
    with pytest.raises(ValueError, match=r"perfect.csv: missing columns \['report'\]"):
        ctrg(
            [
                "evaluate-text",
                str(data / "perfect.csv"),
                "--reference-column",
                "report",
                "--prediction-column",
                "prediction",
                "--out",
                str(data / "x.json"),
            ]
        )
    cfg = data / "evaluate.json"
    with pytest.raises(ValueError, match=r"no rows of splits \['valid'\]"):
        payload = json.loads(cfg.read_text())
        payload["evaluate"]["splits"] = ["valid"]
        cfg.write_text(json.dumps(payload))
        ctrg(
            ["evaluate", str(data / "perfect.csv"), "--config", str(cfg), "--out", str(data / "e")]
        )


def test_bench_paired_matches_compare_per_pair_and_pools_the_mean(data, shared_scorer):
    common = ["--config", str(data / "evaluate.json"), "--ground-truth", str(data / "labels.csv")]
    rc = ctrg(
        [
            "bench",
            "paired",
            "--a",
            str(data / "worse.csv"),
            str(data / "half.csv"),
            "--b",
            str(data / "perfect.csv"),
            str(data / "perfect.csv"),
            *common,
            "--out-md",
            str(data / "paired.md"),
            "--out-json",
            str(data / "paired.json"),
        ]
    )
    assert rc == 0
    result = json.loads((data / "paired.json").read_text())
    assert result["n_cases"] == 4 and result["n_pairs"] == 2  # half.csv lacks phantom_0004
    worse, half = (pair["metrics"] for pair in result["pairs"])
    assert worse["bleu_4"]["b"] == pytest.approx(1.0)
    for key in ("bleu_4", "ce_gt_micro_f1", "rouge_l"):
        assert worse[key]["delta"] < 0, key
        assert half[key]["delta"] > worse[key]["delta"], key  # two of four cases right
        pooled = result["pooled"][key]
        mean = (worse[key]["delta"] + half[key]["delta"]) / 2
        assert pooled["delta"] == pytest.approx(mean), key
        assert pooled["ci_low"] <= pooled["delta"] <= pooled["ci_high"], key
    # on the shared cases, pair 1 is the paired bootstrap of ctrg evaluate --compare (4 cases)
    compare = ["evaluate", str(data / "half.csv"), "--compare", str(data / "perfect.csv")]
    assert ctrg([*compare, *common, "--out", str(data / "eval_half")]) == 0
    reference = json.loads((data / "eval_half" / "metrics.json").read_text())["comparison"]
    assert reference["n_cases"] == 4
    for key in ("bleu_4", "ce_gt_micro_f1"):
        for field in ("delta", "ci_low", "ci_high", "p_value"):
            assert half[key][field] == pytest.approx(reference["metrics"][key][field]), key
    table = (data / "paired.md").read_text()
    assert "| BLEU-4 |" in table and "pooled" in table


def test_bench_paired_needs_as_many_a_as_b(data, shared_scorer):
    with pytest.raises(ValueError, match="as many --a as --b"):
        paired.compare([data / "worse.csv"], [], data / "evaluate.json", [])
