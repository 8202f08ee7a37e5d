"""METEOR from sufficient statistics: by hand, and against the real METEOR 1.5 jar."""

from __future__ import annotations

import numpy as np
import pytest

from ctrg.evaluate import meteor
from ctrg.evaluate.nlg import NLGScorer

# Two segments as the jar writes them: "no pleural effusion ." against "no pleural effusion is
# seen ." (4 of 6 reference words matched exactly, 2 chunks), and a perfect match in one chunk.
PARTIAL = "4.0 6.0 2.0 3.0 2.0 2.0 2.0 2.0 " + "0.0 " * 12 + "2.0 4.0 4.0"
PERFECT = "4.0 4.0 2.0 2.0 2.0 2.0 2.0 2.0 " + "0.0 " * 12 + "1.0 4.0 4.0"


def _by_hand(p: float, r: float, chunks: float, matches: float) -> float:
    f_mean = 1 / (0.15 / p + 0.85 / r)  # alpha 0.85
    return f_mean * (1 - 0.6 * (chunks / matches) ** 0.2)  # gamma 0.6, beta 0.2


@pytest.fixture(scope="module")
def scorer():
    with NLGScorer() as nlg:
        yield nlg


def test_segment_and_corpus_scores_by_hand():
    stats = meteor.parse_stats([PARTIAL, PERFECT])
    # Partial: weighted test length 0.75*2 + 0.25*2 = 2, reference 0.75*3 + 0.25*3 = 3; weighted
    # matches 2*0.75 + 2*0.25 = 2 on both sides, so P = 1, R = 2/3; frag = 2 / (8/2).
    np.testing.assert_allclose(meteor.score(stats), [_by_hand(1, 2 / 3, 2, 4), 1.0], rtol=1e-12)
    # Corpus: the perfect segment's chunk is not summed (addStats), so chunks = 2 of 8 matches
    # per side; P = 4/4, R = 4/5.
    assert float(meteor.aggregate(stats)) == pytest.approx(_by_hand(1, 0.8, 2, 8), rel=1e-12)


def test_resamples_count_repeated_segments():
    stats = meteor.parse_stats([PARTIAL, PERFECT])
    idx = np.array([[0, 0], [1, 1], [0, 1]])
    # Two copies of the partial segment: lengths and matches double, chunks 4 of 8 matches.
    expected = [_by_hand(1, 2 / 3, 4, 8), 1.0, float(meteor.aggregate(stats))]
    np.testing.assert_allclose(meteor.aggregate(stats, idx), expected, rtol=1e-12)


def test_empty_prediction_scores_zero():
    empty = "0.0 5.0 0.0 2.0 " + "0.0 " * 16 + "0.0 0.0 0.0"
    assert meteor.score(meteor.parse_stats([empty]))[0] == 0.0


def test_a_line_with_the_wrong_field_count_is_named():
    with pytest.raises(ValueError, match="line 1 has 3 fields, expected 23"):
        meteor.parse_stats([PARTIAL, "1.0 2.0 3.0"])


def test_disagreement_with_the_jar_raises():
    stats = meteor.parse_stats([PARTIAL, PERFECT])
    with pytest.raises(RuntimeError, match="segment 0"):
        meteor.check_against_jar(stats, [0.3, 1.0], 0.45)
    good = meteor.score(stats).tolist()
    with pytest.raises(RuntimeError, match="corpus METEOR"):
        meteor.check_against_jar(stats, good, 0.5)


def test_matches_the_jar_on_random_resamples(scorer):
    rng = np.random.default_rng(3)
    words = "no pleural effusion nodule lung right left lobe heart normal size . , is seen".split()
    refs = [" ".join(rng.choice(words, rng.integers(3, 14))) for _ in range(40)]
    preds = [" ".join(rng.choice(words, rng.integers(0, 14))) for _ in range(40)]
    preds[:3] = refs[:3]  # perfect segments take the chunk rule of addStats
    lines = scorer.meteor_case_stats(refs, preds)
    stats = meteor.parse_stats(lines)
    total, cases = scorer.meteor_from_stats(lines)
    meteor.check_against_jar(stats, cases, total)
    idx = rng.integers(0, len(lines), size=(15, len(lines)))
    jar = [scorer.meteor_from_stats([lines[i] for i in row])[0] for row in idx]
    np.testing.assert_allclose(meteor.aggregate(stats, idx), jar, rtol=0, atol=1e-12)
    assert scorer.score(refs, preds).corpus["meteor"] == pytest.approx(total, abs=1e-12)


def test_bench_bootstrap_reports_both_methods_on_the_same_resamples(tmp_path, capsys):
    import json

    from ctrg.bench.bootstrap import main

    path = tmp_path / "predictions.csv"
    rows = ["case_id,split,reference,prediction"]
    rows += [f"c{i},test,the heart is normal size {i % 3},heart normal {i % 2}" for i in range(12)]
    rows += ["v0,valid,no effusion,no effusion"]
    path.write_text("\n".join(rows) + "\n")
    assert main([str(path), "--resamples", "8", "--out-json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["cases"] == 12 and result["resamples"] == 8
    assert result["max_abs_difference"] < 1e-12
    assert result["jar_ms_per_resample"] > 0 and result["numpy_ms_per_resample"] > 0
    assert result["machine"]["device"] == "cpu"
    assert "jar EVAL (baseline)" in capsys.readouterr().out
