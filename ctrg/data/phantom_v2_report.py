"""Phantom v2 templated reports: per structure, in a fixed order, one sentence per finding.

Each present finding gets one of two or three paraphrases that name only what the image
shows (the finding, its side, the device kind); a structure without findings gets the
normal sentence (``text.default_sentence``, e.g. "No abnormality found in lung."), except
"others", which no keyword names: the report parser gives it that sentence itself. The
structure order is ``REPORT_ORDER`` and the finding order within a structure is
``FINDING_ORDER``, so two cases with the same findings differ only in the paraphrases.
"""

from __future__ import annotations

import numpy as np

from ctrg.data.phantom_findings import Finding
from ctrg.data.phantom_report import REPORT_ORDER

TEMPLATES: dict[str, tuple[str, ...]] = {
    "Peribronchial thickening": (
        "Bronchial wall thickening is seen in the main bronchi.",
        "The main bronchi show bronchial wall thickening.",
    ),
    "Cardiomegaly": (
        "Cardiomegaly is present.",
        "The heart is enlarged, consistent with cardiomegaly.",
    ),
    "Pericardial effusion": (
        "There is a pericardial effusion.",
        "Pericardial effusion is present.",
    ),
    "Coronary artery wall calcification": (
        "Calcified plaques are seen in the coronary arteries.",
        "There is coronary artery calcification.",
    ),
    "Arterial wall calcification": (
        "Calcified atherosclerotic plaques are seen in the wall of the aorta.",
        "There is calcification of the aortic wall.",
    ),
    "Lymphadenopathy": (
        "Enlarged mediastinal lymph nodes are present.",
        "There is mediastinal lymphadenopathy.",
    ),
    "Emphysema": (
        "Emphysema is seen in the upper zone of {lung}.",
        "There are emphysematous changes in the upper zone of {lung}.",
    ),
    "Lung nodule": (
        "A solid nodule is seen in the {side} upper lobe.",
        "There is a solid nodule in the {side} upper lobe.",
    ),
    "Lung opacity": (
        "A ground-glass opacity is seen in the mid zone of the {side} lung.",
        "There is a ground-glass opacity in the mid zone of the {side} lung.",
    ),
    "Consolidation": (
        "Consolidation is seen in the {side} lower lobe.",
        "There is consolidation in the {side} lower lobe.",
    ),
    "Atelectasis": (
        "Plate-like atelectasis is seen in the {side} lung.",
        "There is plate-like atelectasis in the {side} lung.",
    ),
    "Pulmonary fibrotic sequela": (
        "Fibrotic sequelae are seen in the upper lobe of {lung}.",
        "There are fibrotic sequelae in the upper lobe of {lung}.",
    ),
    "Mosaic attenuation pattern": (
        "A mosaic attenuation pattern is seen in both lungs.",
        "There is mosaic attenuation in both lungs.",
    ),
    "Bronchiectasis": (
        "Bronchiectasis is seen in the {side} lower lobe.",
        "There is bronchiectasis in the {side} lower lobe.",
    ),
    "Interlobular septal thickening": (
        "Interlobular septal thickening is seen in both lower lobes.",
        "There is interlobular septal thickening in both lower lobes.",
    ),
    "Hiatal hernia": (
        "A large hiatal hernia is present.",
        "There is a large hiatal hernia.",
    ),
    "Pleural effusion": (
        "There is a {side_adj} pleural effusion.",
        "A {side_adj} pleural effusion is present.",
    ),
    "Sclerotic bone lesion": (
        "A sclerotic lesion is seen in a thoracic vertebra.",
        "There is a sclerotic lesion in a thoracic vertebral body.",
    ),
    "Thyroid goitre": (
        "The {side} lobe of the thyroid gland is enlarged.",
        "There is enlargement of the {side} thyroid lobe.",
    ),
    "Breast mass": (
        "A soft-tissue mass is seen in the {side} breast.",
        "There is a soft-tissue mass in the {side} breast.",
    ),
    "Hepatic cyst": (
        "A cyst is seen in the liver.",
        "There is a hypodense cyst in the liver.",
    ),
    "pacemaker": (
        "A pacing device with an electrode is present.",
        "There is a pacing device with an electrode lead.",
    ),
    "port catheter": (
        "A port catheter is present.",
        "There is a venous port catheter.",
    ),
}
"""Paraphrases per finding (Medical material by device kind)."""

FINDING_ORDER: tuple[str, ...] = tuple(k for k in TEMPLATES if k not in ("port catheter",))
"""Order of the sentences within a structure (the devices share one slot)."""


def _fields(f: Finding) -> dict[str, str]:
    bilateral = f.side == "bilateral"
    return {
        "side": f.side,
        "lung": "both lungs" if bilateral else f"the {f.side} lung",
        "side_adj": "bilateral" if bilateral else f"{f.side}-sided",
    }


def finding_sentence(f: Finding, rng: np.random.Generator) -> str:
    """One of the finding's paraphrases, filled with its side."""
    key = f.location if f.label == "Medical material" else f.label
    options = TEMPLATES[key]
    return options[int(rng.integers(len(options)))].format(**_fields(f))


def _order(f: Finding) -> int:
    key = "pacemaker" if f.label == "Medical material" else f.label
    return FINDING_ORDER.index(key)


def structure_sentences_v2(
    findings: list[Finding], rng: np.random.Generator, normal_sentence: str
) -> list[tuple[str, str]]:
    """The report as ``(structure, sentence)`` pairs in ``REPORT_ORDER``.

    Args:
        findings: the case's findings (CT-RATE labels and structure findings).
        normal_sentence: the sentence of a structure without findings, with ``{structure}``.
    """
    out: list[tuple[str, str]] = []
    for structure in REPORT_ORDER:
        own = sorted((f for f in findings if f.structure == structure), key=_order)
        if not own and structure != "others":
            out.append((structure, normal_sentence.format(structure=structure)))
        out.extend((structure, finding_sentence(f, rng)) for f in own)
    return out


NORMAL_SENTENCE = "No abnormality found in {structure}."
"""The sentence of a structure without findings (the default of ``text.default_sentence``)."""

VARIED_FIXES: dict[str, str] = {
    "Interlobular septal thickening is seen in the subpleural parts of both lower lobes.": (
        "Interlobular septal thickening is seen in the peripheral parts of both lower lobes."
    ),
    "There is subpleural interlobular septal thickening at the lung bases.": (
        "There is peripheral interlobular septal thickening at the lung bases."
    ),
    "No peribronchial thickening is seen.": "No bronchial wall thickening is seen.",
}
"""Version 1 sentences that the report parser assigns to another structure ("subpleural" ->
pleura, "peribronchial" -> lung), reworded when version 2 uses the varied wording (version 1
keeps them, so that its reports reproduce)."""


def reword_varied(sentences: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Apply ``VARIED_FIXES`` to ``(structure, sentence)`` pairs."""
    return [(structure, VARIED_FIXES.get(s, s)) for structure, s in sentences]
