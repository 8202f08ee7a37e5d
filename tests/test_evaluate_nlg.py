"""NLG metrics with the real pycocoevalcap scorers, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from ctrg.evaluate.nlg import (
    NLGScorer,
    bleu_case_stats,
    bleu_from_stats,
    normalise_texts,
    protocol,
)


@pytest.fixture(scope="module")
def scorer():
    """One METEOR JVM for the whole module."""
    with NLGScorer() as nlg:
        yield nlg


def test_bleu_single_pair_by_hand(scorer):
    # pred 5 words vs ref 6: p1 = 5/5, p2 = 3/4, p3 = 2/3, p4 = 1/2, BP = exp(1 - 6/5).
    result = scorer.score(["the cat sat on the mat"], ["the cat sat on mat"])
    bp = math.exp(1 - 6 / 5)
    assert result.corpus["bleu_1"] == pytest.approx(bp, abs=1e-6)
    assert result.corpus["bleu_2"] == pytest.approx(math.sqrt(3 / 4) * bp, abs=1e-6)
    assert result.corpus["bleu_3"] == pytest.approx((3 / 4 * 2 / 3) ** (1 / 3) * bp, abs=1e-6)
    assert result.corpus["bleu_4"] == pytest.approx((3 / 4 * 2 / 3 / 2) ** 0.25 * bp, abs=1e-6)
    # LCS 5: P = 1, R = 5/6; F = (1 + 1.2^2) P R / (R + 1.2^2 P).
    r = 5 / 6
    assert result.corpus["rouge_l"] == pytest.approx(2.44 * r / (r + 1.44), abs=1e-6)


def test_corpus_and_per_sample_differ_as_computed_by_hand(scorer):
    refs = ["no pleural effusion seen", "c d"]
    preds = ["no pleural effusion seen", "a b"]
    result = scorer.score(refs, preds)
    # corpus BLEU-1: (4 + 0) matches / (4 + 2) guesses, lengths equal -> 4/6.
    assert result.corpus["bleu_1"] == pytest.approx(4 / 6, abs=1e-6)
    # per-sample mean: (1 + ~0) / 2.
    assert result.per_sample_mean["bleu_1"] == pytest.approx(0.5, abs=1e-6)
    assert result.per_case["meteor"][0] == pytest.approx(1.0, abs=1e-6)
    assert result.per_case["meteor"][1] == 0.0
    assert 0.0 < result.corpus["meteor"] < 1.0


def test_cider_identical_reports_score_ten(scorer):
    refs = ["small left pleural effusion", "heart size is normal"]
    result = scorer.score(refs, list(refs))
    assert result.corpus["cider"] == pytest.approx(10.0, abs=1e-6)


def test_bleu_stats_reproduce_pycocoevalcap_on_a_random_corpus(scorer):
    rng = np.random.default_rng(1)
    words = "no pleural effusion nodule lung right left lobe heart normal size".split()
    refs = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(40)]
    preds = [" ".join(rng.choice(words, rng.integers(1, 12))) for _ in range(40)]
    expected, _ = Bleu(4).compute_score(
        dict(enumerate([[r] for r in refs])), dict(enumerate([[p] for p in preds])), verbose=0
    )
    ours = bleu_from_stats(bleu_case_stats(refs, preds).sum(0))
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert scorer.score(refs, preds).corpus["bleu_4"] == pytest.approx(expected[3], rel=1e-12)


def test_meteor_eval_of_stats_matches_pycocoevalcap(scorer):
    refs = ["the heart is enlarged", "no effusion", "nodule in the right lung"]
    preds = ["heart enlarged", "small effusion", "right lung nodule"]
    gts = {i: [r] for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    expected, expected_cases = scorer.meteor.compute_score(gts, res)
    total, cases = scorer.meteor_from_stats(scorer.meteor_case_stats(refs, preds))
    assert total == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(cases, expected_cases)


def test_normalisations():
    text = ["No pleural  effusion.\nHeart: normal-sized, (img 12)!"]
    assert normalise_texts(text, "raw") == ["No pleural effusion. Heart: normal-sized, (img 12)!"]
    assert normalise_texts(text, "lower") == ["no pleural effusion. heart: normal-sized, (img 12)!"]
    assert normalise_texts(text, "lower-nopunct") == [
        "no pleural effusion heart normal sized img 12"
    ]
    ptb = normalise_texts(text, "ptb")
    reference = PTBTokenizer().tokenize({0: [{"caption": text[0].replace("\n", " ")}]})[0]
    assert ptb == reference
    assert ptb == ["no pleural effusion heart normal-sized -lrb- img 12 -rrb-"]
    with pytest.raises(ValueError, match="normalise must be"):
        normalise_texts(text, "stem")


def test_protocol_states_spice_unavailable():
    assert "SPICE not computed" in protocol("raw", "corpus")["spice"]


def test_length_mismatch_is_an_error(scorer):
    with pytest.raises(ValueError, match="1 references but 2 predictions"):
        scorer.score(["a"], ["a", "b"])
