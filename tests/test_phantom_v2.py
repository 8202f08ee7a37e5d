"""Phantom v2: independent labels, every finding painted, templated reports that parse and
label back to the ground truth, and the version-1 phantom still reachable byte for byte."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
import yaml

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.bench.rows import deep_merge
from ctrg.config import load_stage_config, resolve
from ctrg.data.phantom_case import generate_case
from ctrg.data.phantom_findings import Finding
from ctrg.data.phantom_report import REPORT_ORDER
from ctrg.data.phantom_v2 import PAINT_ORDER_V2
from ctrg.data.phantom_v2_findings import FINDING_VALUES, STRUCTURE_FINDINGS, sample_findings_v2
from ctrg.data.phantom_v2_report import NORMAL_SENTENCE, TEMPLATES, structure_sentences_v2
from ctrg.text.labeller import Labeller
from ctrg.text.structures import StructureParser

V1_HASHES = {
    0: "77b4aa55a2c43649641cd74a27dd2000f1141ec461ce408ff781acae507f68f3",
    3: "dd95cdaa591531bb0d5e5e6bc20d324958aebe7ffadbb00b3bf72e30ec8ac444",
}
"""sha256 of HU, finding map and report of version-1 cases (32x48x48) at commit e45f28f."""


def v2_settings(**changes) -> dict:
    synth = load_stage_config(None, "synth")["synth"]
    synth.update(changes)
    return synth


def structure_of(label: str) -> str:
    from ctrg.anatomy import CTRATE_LABEL_STRUCTURE

    return CTRATE_LABEL_STRUCTURE.get(label) or STRUCTURE_FINDINGS[label]


def test_defaults_are_version_2_with_1000_cases():
    synth = v2_settings()
    assert (synth["version"], synth["wording"], synth["n_cases"]) == (2, "templated", 1000)


def test_labels_are_drawn_independently_at_their_prevalence():
    synth = v2_settings()
    rows = []
    for i in range(3000):
        found = {f.label for f in sample_findings_v2(np.random.default_rng([1, i]), synth)}
        rows.append([name in found for name in FINDING_VALUES])
    matrix = np.array(rows, dtype=float)
    assert np.all(np.abs(matrix.mean(0) - 0.3) < 0.035), matrix.mean(0)
    corr = np.corrcoef(matrix.T)
    off_diagonal = corr[~np.eye(len(corr), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.08  # 3,000 draws: |r| of independent pairs < ~0.06
    assert (matrix[:, : len(CTRATE_LABELS)].sum(1) == 0).mean() == pytest.approx(0.7**18, abs=0.01)


def test_paint_order_covers_every_finding_once():
    names = [name for name, _ in PAINT_ORDER_V2]
    assert sorted(names) == sorted(FINDING_VALUES)


def test_every_finding_is_painted_into_its_own_value():
    everything = {label: 1.0 for label in CTRATE_LABELS}
    extras = {name: 1.0 for name in STRUCTURE_FINDINGS}
    synth = v2_settings(shape=[48, 96, 96], prevalence=everything, structure_findings=extras)
    for index in range(2):
        case = generate_case(synth, 4, index)
        assert case.dropped == []
        present = set(np.unique(case.finding_map))
        for f in case.findings:
            assert f.n_voxels > 0, f.label
            assert FINDING_VALUES[f.label] in present, f.label
        assert sorted(f.label for f in case.findings) == sorted(FINDING_VALUES)


def _sentences_of(key: str) -> list[tuple[str, str]]:
    """(finding, sentence) for every paraphrase and side of one template key."""
    label = "Medical material" if key in ("pacemaker", "port catheter") else key
    out = []
    for template, side in itertools.product(TEMPLATES[key], ("right", "left", "bilateral")):
        f = Finding(label, structure_of(label), side=side, location=key)
        out.append((label, structure_sentences_v2([f], np.random.default_rng(0), "{structure}")))
        fields = {
            "side": side,
            "lung": "both lungs" if side == "bilateral" else f"the {side} lung",
            "side_adj": "bilateral" if side == "bilateral" else f"{side}-sided",
        }
        out.append((label, template.format(**fields)))
    return [(label, s) for label, s in out if isinstance(s, str)]


@pytest.fixture(scope="module")
def parser():
    return StructureParser("chest")


def test_every_template_parses_to_its_own_structure_and_label(parser):
    labeller = Labeller()
    for key in TEMPLATES:
        for label, sentence in _sentences_of(key):
            assert parser.keyword_structures(sentence) == (structure_of(label),), sentence
            positives = {name for name, v in labeller.label(sentence).items() if v}
            expected = {label} if label in CTRATE_LABELS else set()
            assert positives == expected, (sentence, positives)


def test_normal_sentences_parse_to_their_structure(parser):
    for structure in CHEST_STRUCTURES:
        if structure == "others":
            continue
        sentence = NORMAL_SENTENCE.format(structure=structure)
        assert parser.keyword_structures(sentence) == (structure,), sentence


def test_templated_reports_follow_the_fixed_order():
    synth = v2_settings(shape=[32, 48, 48])
    for index in range(6):
        case = generate_case(synth, 2, index)
        order = [REPORT_ORDER.index(structure) for structure, _ in case.sentences]
        assert order == sorted(order)
        with_findings = {f.structure for f in case.findings}
        for structure in REPORT_ORDER:
            said = [s for st, s in case.sentences if st == structure]
            if structure in with_findings:
                assert len(said) == sum(f.structure == structure for f in case.findings)
            elif structure != "others":
                assert said == [NORMAL_SENTENCE.format(structure=structure)]


def test_version_1_preset_reproduces_the_earlier_phantom(repo_root):
    base = yaml.safe_load((repo_root / "config.yaml").read_text())
    preset = yaml.safe_load((repo_root / "presets" / "phantom_v1.yaml").read_text())
    synth = resolve(deep_merge(base, preset))["synth"]
    synth.update(shape=[32, 48, 48])
    for index, expected in V1_HASHES.items():
        case = generate_case(synth, 0, index)
        digest = hashlib.sha256(case.hu.tobytes() + case.finding_map.tobytes())
        digest.update(case.report.encode())
        assert digest.hexdigest() == expected, index


def test_varied_wording_on_version_2_labels_back_to_the_ground_truth():
    labeller = Labeller()
    extras = {name: 0.5 for name in STRUCTURE_FINDINGS}
    synth = v2_settings(shape=[32, 48, 48], wording="varied", structure_findings=extras)
    cases = [generate_case(synth, 6, index) for index in range(12)]
    named = set()
    for case in cases:
        assert labeller.label(case.report) == case.labels, case.report
        named |= {f.label for f in case.findings if not f.ctrate}
    assert named == set(STRUCTURE_FINDINGS)
    assert len({c.report for c in cases}) == len(cases)


def test_every_sentence_of_both_wordings_parses_to_its_own_structure(parser):
    extras = {name: 0.5 for name in STRUCTURE_FINDINGS}
    for wording in ("templated", "varied"):
        synth = v2_settings(shape=[32, 48, 48], wording=wording, structure_findings=extras)
        for index in range(40):
            for structure, sentence in generate_case(synth, 1, index).sentences:
                assert structure in parser.keyword_structures(sentence), (structure, sentence)
