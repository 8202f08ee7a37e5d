"""Phantom v2 findings: which abnormalities a case has, drawn so that each is visible.

Version 2 of the phantom (``synth.version: 2``) draws the 18 CT-RATE labels independently
(``synth.prevalence``; no forced normal cases, no "at least one" rule), gives every
lateralised finding one side, and adds one finding of its own to each structure that has
no CT-RATE label (bone, thyroid, breast, abdomen) so that every structure query has
something to find. Sizes are drawn large enough to be seen at the model resolution; the
painters are in :mod:`ctrg.data.phantom_v2_paint`, the wording in
:mod:`ctrg.data.phantom_v2_report`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ctrg.anatomy import CTRATE_LABELS
from ctrg.data.phantom_findings import LABEL_STRUCTURE, Finding

STRUCTURE_FINDINGS: dict[str, str] = {
    "Sclerotic bone lesion": "bone",
    "Thyroid goitre": "thyroid",
    "Breast mass": "breast",
    "Hepatic cyst": "abdomen",
}
"""Findings outside the 18 labels (v2), one per structure that has no label of its own."""

FINDING_VALUES: dict[str, int] = {
    **{label: i + 1 for i, label in enumerate(CTRATE_LABELS)},
    **{name: len(CTRATE_LABELS) + 1 + i for i, name in enumerate(STRUCTURE_FINDINGS)},
}
"""Finding-map value of every v2 finding (CT-RATE labels 1..18, structure findings 19..)."""

SIDED = {
    "Lung nodule",
    "Lung opacity",
    "Consolidation",
    "Atelectasis",
    "Bronchiectasis",
    "Sclerotic bone lesion",
    "Thyroid goitre",
    "Breast mass",
}
"""Findings drawn on one side (right or left)."""

SIDED_OR_BILATERAL = {"Emphysema", "Pulmonary fibrotic sequela", "Pleural effusion"}
"""Findings on one side or on both (one in three bilateral)."""


VARIED_WORDING: dict[str, dict[str, Any]] = {
    "Lung nodule": {"lobe": "upper lobe"},
    "Consolidation": {"lobe": "lower lobe"},
    "Bronchiectasis": {"lobe": "lower lobe", "location": "cylindrical"},
    "Emphysema": {"lobe": "upper lobe", "location": "centrilobular", "amount": "severe"},
    "Pulmonary fibrotic sequela": {"lobe": "upper lobe", "count": 5},
    "Interlobular septal thickening": {"lobe": "lower lobe"},
    "Pleural effusion": {"amount": "moderate"},
    "Arterial wall calcification": {"amount": "marked", "count": 14},
    "Cardiomegaly": {"amount": "marked"},
    "Pericardial effusion": {"amount": "moderate"},
    "Coronary artery wall calcification": {"location": "LAD,RCA,circumflex", "count": 12},
}
"""Attributes that only the varied wording (``synth.wording: varied``) names: the fixed
lobe, kind or amount of what the v2 painters draw."""


def _side(rng: np.random.Generator, bilateral_allowed: bool) -> str:
    if bilateral_allowed and rng.random() < 1.0 / 3.0:
        return "bilateral"
    return "right" if rng.random() < 0.5 else "left"


def _attributes(label: str, rng: np.random.Generator) -> dict[str, Any]:
    """Side, size and kind of one v2 finding (only what the painter makes visible)."""
    side = ""
    if label in SIDED or label in SIDED_OR_BILATERAL:
        side = _side(rng, label in SIDED_OR_BILATERAL)
    if label == "Medical material":
        device = "pacemaker" if rng.random() < 0.5 else "port catheter"
        return {"side": "left" if device == "pacemaker" else "right", "location": device}
    if label in ("Mosaic attenuation pattern", "Interlobular septal thickening"):
        side = "bilateral"
    size = {
        "Lung nodule": (40.0, 48.0),
        "Lung opacity": (70.0, 90.0),
        "Consolidation": (70.0, 90.0),
        "Atelectasis": (70.0, 90.0),
        "Pleural effusion": (30.0, 45.0),
        "Pericardial effusion": (16.0, 24.0),
        "Hiatal hernia": (60.0, 75.0),
        "Lymphadenopathy": (32.0, 40.0),
        "Sclerotic bone lesion": (24.0, 30.0),
        "Breast mass": (34.0, 44.0),
        "Hepatic cyst": (45.0, 60.0),
    }.get(label, (0.0, 0.0))
    out: dict[str, Any] = {"side": side, "size_mm": float(np.round(rng.uniform(*size)))}
    out.update(VARIED_WORDING.get(label, {}))
    if label == "Lung opacity" or label == "Atelectasis":
        out["lobe"] = "middle lobe" if side == "right" else "upper lobe"
    if label == "Cardiomegaly":
        out["extra"] = {"factor": float(rng.uniform(1.38, 1.52))}
    return out


def sample_findings_v2(rng: np.random.Generator, synth: dict[str, Any]) -> list[Finding]:
    """Draw one v2 case's findings: every label and structure finding independently.

    Args:
        synth: the synth config section (``prevalence`` per label,
            ``structure_findings`` per structure finding).
    """
    labels = rng.random(len(CTRATE_LABELS)) < np.array(
        [synth["prevalence"][label] for label in CTRATE_LABELS]
    )
    extras = rng.random(len(STRUCTURE_FINDINGS)) < np.array(
        [synth["structure_findings"][name] for name in STRUCTURE_FINDINGS]
    )
    findings: list[Finding] = []
    for label, on in zip(CTRATE_LABELS, labels):
        if on:
            attrs = _attributes(label, rng)
            findings.append(Finding(label, LABEL_STRUCTURE[label], **attrs))
    for (name, structure), on in zip(STRUCTURE_FINDINGS.items(), extras):
        if on:
            findings.append(Finding(name, structure, ctrate=False, **_attributes(name, rng)))
    return findings
