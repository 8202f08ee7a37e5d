"""Phantom content: tissue HU, visible findings, structure maps, and reports that match labels."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.config import load_stage_config
from ctrg.data.phantom_case import generate_case
from ctrg.data.phantom_findings import LABEL_STRUCTURE

LUNG, PLEURA, HEART, ESOPHAGUS, BONE, ABDOMEN, OTHERS = 3, 5, 2, 4, 6, 9, 10
N_CASES = 14


def tiny_settings(**changes) -> dict:
    synth = load_stage_config(None, "synth")["synth"]
    synth.update(shape=[32, 32, 32], vary_slices=False, normal_fraction=0.1, version=1)
    synth["position_jitter_mm"] = 20.0  # the version-1 default
    synth["prevalence"] = {label: 0.45 for label in CTRATE_LABELS}
    synth.update(changes)
    return synth


@pytest.fixture(scope="module")
def cases():
    synth = tiny_settings()
    return [generate_case(synth, 11, i) for i in range(N_CASES)]


@pytest.fixture(scope="module")
def clean_case():
    """A case without blur and noise, so that tissue values are exact."""
    return generate_case(tiny_settings(blur_mm=[0, 0, 0], noise_hu=[0, 0]), 5, 1)


def test_tissue_values_without_noise(clean_case):
    hu, st = clean_case.hu, clean_case.structures
    grid = clean_case.grid
    inside_fov = np.broadcast_to(
        (grid.x**2 + grid.y**2) < (0.45 * grid.shape[2] * grid.spacing[2]) ** 2, hu.shape
    )
    air = hu[(st == 0) & inside_fov & (hu < -500)]
    assert air.size > 100 and np.all(air == -1000)
    lung = hu[(st == LUNG) & (clean_case.finding_map == 0) & (hu < -500)]
    assert -900 <= np.median(lung) <= -800  # parenchyma, denser posteriorly
    chest_wall = hu[st == CHEST_STRUCTURES.index("breast") + 1]
    fat = np.count_nonzero((chest_wall >= -100) & (chest_wall <= -90))
    muscle = np.count_nonzero(chest_wall == 50)
    assert fat > 0.15 * chest_wall.size and muscle > 0.1 * chest_wall.size
    liver_like = hu[(st == ABDOMEN) & (hu > 0)]
    assert 40 <= np.median(liver_like) <= 65  # liver 58, spleen 48, stomach fluid
    assert np.median(hu[st == BONE]) > 300


def test_tissue_values_with_noise(cases):
    for case in cases[:6]:
        hu, st = case.hu, case.structures
        background = ndimage.binary_erosion(st == 0, iterations=2)
        assert abs(np.median(hu[background]) + 1000) < 30, case.case_id
        lung = ndimage.binary_erosion((st == LUNG) & (case.finding_map == 0))
        assert -910 <= np.median(hu[lung]) <= -760, case.case_id
        assert np.percentile(hu[st == BONE], 90) > 300, case.case_id  # thin bone blurs at 32^3


def _ring(mask: np.ndarray, width: int = 1) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


def _inner_ring(mask: np.ndarray) -> np.ndarray:
    """Ring voxels nearer to the mask's centroid than the mask itself (inside a shell)."""
    ring = _ring(mask)
    centre = np.argwhere(mask).mean(axis=0)
    shell_radius = np.median(np.linalg.norm(np.argwhere(mask) - centre, axis=1))
    inner = np.zeros_like(mask)
    points = np.argwhere(ring)
    keep = np.linalg.norm(points - centre, axis=1) < shell_radius
    inner[tuple(points[keep].T)] = True
    return inner


def _heart_fraction(case) -> float:
    """Blood/soft-tissue voxels of the heart structure over the thoracic voxels."""
    heart = (case.structures == HEART) & (case.hu > 20) & (case.hu < 100)
    thorax = np.isin(case.structures, (LUNG, HEART, PLEURA))
    return heart.sum() / max(thorax.sum(), 1)


def test_every_positive_label_is_visible_where_its_mask_says(cases):
    seen = set()
    for case in cases:
        for label, positive in case.labels.items():
            value = CTRATE_LABELS.index(label) + 1
            mask = case.finding_map == value
            assert mask.any() == bool(positive), (case.case_id, label)
            if not positive or label == "Cardiomegaly":
                continue
            seen.add(label)
            if label == "Pericardial effusion":  # fluid vs the heart inside the sac
                reference = _inner_ring(mask) & (case.structures == HEART)
            elif label == "Hiatal hernia":  # gas-filled sac vs mediastinal / abdominal tissue
                near = np.isin(case.structures, (HEART, ESOPHAGUS, ABDOMEN))
                reference = _ring(mask) & (case.finding_map == 0) & near
            elif LABEL_STRUCTURE[label] in ("lung", "pleura", "trachea and bronchi"):
                # vs the normal lung (its median is parenchyma, not vessels)
                reference = (case.finding_map == 0) & (case.structures == LUNG)
            else:
                reference = _ring(mask) & (case.finding_map == 0) & (case.structures > 0)
            assert reference.any(), (case.case_id, label)
            contrast = abs(np.median(case.hu[mask]) - np.median(case.hu[reference]))
            assert contrast > 25, (case.case_id, label, contrast)
    assert len(seen) >= 12, sorted(seen)


def test_cardiomegaly_enlarges_the_heart(cases):
    big = [_heart_fraction(c) for c in cases if c.labels["Cardiomegaly"]]
    normal = [_heart_fraction(c) for c in cases if not c.labels["Cardiomegaly"]]
    assert big and normal
    assert np.mean(big) > 1.3 * np.mean(normal)  # radii x1.24-1.42: volume about x1.8


def test_finding_voxels_lie_in_their_structure(cases):
    expected = {label: CHEST_STRUCTURES.index(st) + 1 for label, st in LABEL_STRUCTURE.items()}
    expected["Lung nodule"] = LUNG
    for case in cases:
        for label, positive in case.labels.items():
            if not positive or label in ("Arterial wall calcification", "Lymphadenopathy"):
                continue
            mask = case.finding_map == CTRATE_LABELS.index(label) + 1
            share = np.mean(case.structures[mask] == expected[label])
            assert share > 0.6, (case.case_id, label, share)


def test_structure_map_has_every_structure(cases):
    for case in cases:
        present = set(np.unique(case.structures)) - {0}
        assert present <= set(range(1, 11))
        assert set(range(1, 10)) - {CHEST_STRUCTURES.index("thyroid") + 1} <= present, case.case_id
        assert (OTHERS in present) == bool(case.labels["Medical material"]), case.case_id


LABEL_PATTERNS = {
    "Medical material": r"catheter|pacemaker|\btube\b",
    "Arterial wall calcification": r"aort.*(calci)|(calci).*aort",
    "Cardiomegaly": r"cardiomegaly|heart is (\w+ )?enlarged|cardiac dimensions are increased",
    "Pericardial effusion": r"pericardial effusion",
    "Coronary artery wall calcification": r"coronary",
    "Hiatal hernia": r"hiatal hernia",
    "Lymphadenopathy": r"lymph ?node|lymphadenopathy",
    "Emphysema": r"emphysem",
    "Atelectasis": r"atelecta",
    "Lung nodule": r"nodul",
    "Lung opacity": r"ground.?glass",
    "Pulmonary fibrotic sequela": r"fibrotic",
    "Pleural effusion": r"pleural effusion",
    "Mosaic attenuation pattern": r"mosaic",
    "Peribronchial thickening": r"peribronchial|bronchial wall",
    "Consolidation": r"consolidat",
    "Bronchiectasis": r"bronchiecta",
    "Interlobular septal thickening": r"interlobular sept",
}
NEGATION = re.compile(r"\b(no|not|without)\b", re.IGNORECASE)
STRUCTURE_KEYWORDS = {
    "trachea and bronchi": r"trache|bronch",
    "heart": r"heart|cardi|aort|mediastin|pericard|coronary|lymph|vascular",
    "esophagus": r"esophag|hiatal",
    "thyroid": r"thyroid",
    "lung": r"lung|lobe|pulmonary|parenchym|nodul|emphysem|atelecta|bronchiect|septa|consolidat",
    "pleura": r"pleura|diaphragm",
    "abdomen": r"abdom|liver|spleen|adrenal",
    "bone": r"bone|bony|vertebra",
    "breast": r"breast|axill|chest wall",
    "others": r"catheter|pacemaker|tube",
}


def test_report_sentences_agree_with_labels(cases):
    for case in cases:
        sentences = [s for _, s in case.sentences]
        assert case.report == " ".join(sentences)
        for label, positive in case.labels.items():
            mentions = [s for s in sentences if re.search(LABEL_PATTERNS[label], s, re.IGNORECASE)]
            affirmed = [s for s in mentions if not NEGATION.search(s)]
            if positive:
                assert affirmed, (case.case_id, label, mentions)
            else:
                assert not affirmed, (case.case_id, label, affirmed)


def test_structure_sentences_carry_their_keywords(cases):
    for case in cases:
        for structure, sentence in case.sentences:
            assert structure in CHEST_STRUCTURES
            assert re.search(STRUCTURE_KEYWORDS[structure], sentence, re.IGNORECASE), (
                structure,
                sentence,
            )


def test_reports_are_varied_and_normal_cases_exist():
    synth = tiny_settings(normal_fraction=0.3)
    reports = [generate_case(synth, 3, i) for i in range(10)]
    assert len({c.report for c in reports}) == 10
    assert any(sum(c.labels.values()) == 0 for c in reports)
    normal = next(c for c in reports if sum(c.labels.values()) == 0)
    assert not normal.finding_map.any()
    assert any(NEGATION.search(s) for _, s in normal.sentences)  # negated absent findings
