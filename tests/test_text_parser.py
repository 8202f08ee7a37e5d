"""Sentence splitting, cleaning and structure assignment (real spaCy, hand-written reports)."""

from __future__ import annotations

import pytest

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.text.evaluation import fold_of, merge_orders
from ctrg.text.sentences import clean_report, looks_english, split_many, split_sentences
from ctrg.text.structures import StructureParser, compile_lexicon, load_lexicon, set_names


@pytest.fixture(scope="module")
def parser() -> StructureParser:
    return StructureParser()


def test_split_protects_decimals_abbreviations_and_list_numbers():
    text = (
        "1. A nodule of 4.6 mm is seen in the right lung, e.g. in the apex. "
        "2. The lesion measures 13x9.3 mm. 3) Heart is normal."
    )
    assert split_sentences(text) == [
        "A nodule of 4.6 mm is seen in the right lung, e.g. in the apex.",
        "The lesion measures 13x9.3 mm.",
        "Heart is normal.",
    ]


def test_semicolon_window_header_stays_in_one_sentence():
    text = "When examined in the lung parenchyma window; Mild emphysema was observed in both lungs."
    assert split_sentences(text) == [text]


def test_split_many_equals_split_sentences():
    texts = ["Heart is normal. Lungs are clear.", "", "No effusion."]
    assert split_many(texts) == [split_sentences(t) for t in texts]


@pytest.mark.parametrize(
    ("raw", "text", "warnings"),
    [
        (None, "", ["empty"]),
        (float("nan"), "", ["empty"]),
        ("   \n\t ", "", ["empty"]),
        (
            "<p>No pleural effusion.</p><br/>Heart &amp; lungs normal.",
            "No pleural effusion. Heart & lungs normal.",
            ["markup"],
        ),
        ('Trachea is open. "" Thoracic CT normal', "Trachea is open. Thoracic CT normal", []),
    ],
)
def test_clean_report(raw, text, warnings):
    cleaned = clean_report(raw)
    assert cleaned.text == text
    assert cleaned.warnings == warnings


def test_non_english_and_truncation_warnings():
    assert (
        "not_english" in clean_report("Akciğerlerde nodül izlenmedi. Plevral efüzyon yok.").warnings
    )
    assert looks_english("No pleural effusion was detected in both lungs.")
    long = "No pleural effusion was detected. " * 2000  # ~68k characters
    cleaned = clean_report(long, max_chars=1000)
    assert "truncated" in cleaned.warnings
    assert len(cleaned.text) <= 1000 and cleaned.text.endswith(".")


def test_keywords_and_exact_rules(parser):
    kw = parser.keyword_structures
    assert kw("Trachea and both main bronchi are open.") == ("trachea and bronchi",)
    assert kw("No pleural or pericardial effusion was detected.") == ("pleura",)
    assert kw("Pericardial effusion-thickening was not observed.") == ("heart",)
    assert kw("No enlarged lymph nodes in the mediastinum and hilar regions.") == ("heart",)
    assert kw("Hiatal hernia is observed.") == ("esophagus",)
    assert kw("There is a 5 mm nodule in the left thyroid lobe.") == ("thyroid",)
    assert kw("Liver parenchyma density decreased.") == ("abdomen",)  # weak "parenchyma"
    # window header is ignored, the finding decides
    assert kw("When examined in the lung parenchyma window; Pleural effusion is seen.") == (
        "pleura",
    )
    # devices go to "others" (the method's definition) and to the structure they lie in
    assert kw("A central venous catheter is observed in the vena cava.") == ("heart", "others")
    assert kw("A catheter is observed.") == ("others",)


def test_continuation_default_and_flags(parser):
    text = (
        "Heart contour and size are normal. It is not enlarged. "
        "No pleural effusion. Clinical correlation is recommended. Bone structures are natural."
    )
    parsed = parser.parse(text)
    assert [s for _, s in parsed.sentences] == [
        ("heart",),
        ("heart",),
        ("pleura",),
        ("pleura",),
        ("bone",),
    ]
    assert parsed.defaulted == [n for n in CHEST_STRUCTURES if n not in ("heart", "pleura", "bone")]
    assert parsed.texts["lung"] == "No abnormality found in lung."
    assert parsed.texts["heart"] == "Heart contour and size are normal. It is not enlarged."
    assert list(parsed.texts) == list(CHEST_STRUCTURES)


def test_first_sentence_without_keyword_goes_to_fallback(parser):
    parsed = parser.parse("Clinical correlation is recommended. Heart is normal.")
    assert parsed.sentences[0][1] == ("others",)
    assert "others" not in parsed.defaulted


def test_custom_default_sentence():
    parser = StructureParser(default_sentence="{structure}: normal.")
    assert parser.parse("Heart is normal.").texts["bone"] == "bone: normal."


def test_bad_inputs_never_raise_and_are_deterministic(parser):
    bad = [
        "",
        "   ",
        None,
        "<div><b>",
        "Akciğerlerde nodül izlenmedi.",
        "x" * 50000,
        "Heart is normal. " * 3000,
        12345,
    ]
    first = parser.parse_many(bad)
    second = parser.parse_many(bad)
    assert [p.sentences for p in first] == [p.sentences for p in second]
    assert first[0].sentences == [] and first[0].warnings == ["empty"]
    assert set(first[0].defaulted) == set(CHEST_STRUCTURES)
    assert "not_english" in first[4].warnings
    assert "truncated" in first[6].warnings


def test_unknown_structure_set_is_a_clear_error():
    with pytest.raises(ValueError, match="brain"):
        StructureParser("brain")


def test_lexicon_compiles_for_every_structure():
    lexicon = load_lexicon("chest")
    assert lexicon.names == CHEST_STRUCTURES
    assert lexicon.fallback == "others"
    assert lexicon.continuation_mode in ("cue", "always", "never")


def test_a_new_structure_set_is_data_only():
    brain = {
        "names": ["ventricles", "white matter", "others"],
        "continuation": {"mode": "cue", "cues": ["it"]},
        "structures": {
            "ventricles": {"keywords": ["ventric\\w*"]},
            "white matter": {"keywords": ["white matter", "periventricular"]},
        },
    }
    names = set_names("brain", brain, "lexicon_brain.yaml")
    assert names == ("ventricles", "white matter", "others")
    parser = StructureParser("brain", lexicon=compile_lexicon(brain, names, "lexicon_brain.yaml"))
    parsed = parser.parse(
        "The ventricles are normal. It is symmetric. Periventricular white matter is normal. "
        "No acute finding."
    )
    assert [s for _, s in parsed.sentences] == [
        ("ventricles",),
        ("ventricles",),
        ("white matter",),
        ("others",),
    ]
    assert parsed.defaulted == []
    with pytest.raises(ValueError, match="list its names"):
        set_names("brain", {}, "lexicon_brain.yaml")


def test_merge_orders_keeps_each_sequence_order():
    a = ["s1", "s2", "s4"]
    b = ["s2", "s3", "s4"]
    order = merge_orders([a, b])
    assert order == ["s1", "s2", "s3", "s4"]
    assert merge_orders([["x", "y"], ["y", "x"]]) == ["x", "y"]  # a cycle is broken, no loss


def test_fold_of_is_stable_and_spread():
    assert fold_of("train_1") == fold_of("train_1")
    folds = {fold_of(f"train_{i}") for i in range(200)}
    assert folds == {0, 1, 2, 3, 4}
