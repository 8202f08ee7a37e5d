"""Which abnormalities a phantom case has, and their attributes (side, lobe, size, amount).

Sampling is separate from painting (``phantom_lesions``) and from the report writer
(``phantom_report``): all three read the same ``Finding`` records, so the report's sides,
lobes and sizes match the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctrg.anatomy import CTRATE_LABEL_STRUCTURE, CTRATE_LABELS

LOBES = ("upper lobe", "middle lobe", "lower lobe")
LOBE_CODE = {
    ("right", "upper lobe"): 0,
    ("right", "middle lobe"): 1,
    ("right", "lower lobe"): 2,
    ("left", "upper lobe"): 3,
    ("left", "lower lobe"): 4,
}
"""(side, lobe) -> code of ``Anatomy.lobe``."""

LABEL_STRUCTURE: dict[str, str] = CTRATE_LABEL_STRUCTURE
"""The structure whose sentences describe each label (one table with the model's finding head)."""

STATIONS = ("right paratracheal", "subcarinal", "aortopulmonary window", "prevascular")


@dataclass
class Finding:
    """One abnormality of one case (a label may have several, e.g. two nodules)."""

    label: str
    structure: str
    side: str = ""  # right | left | bilateral | ""
    lobe: str = ""  # upper lobe | middle lobe | lower lobe | ""
    size_mm: float = 0.0  # diameter / thickness / short axis, as reported
    amount: str = ""  # minimal | small | moderate | mild | marked ...
    location: str = ""  # station, segment, device kind, vessel ...
    count: int = 1
    ctrate: bool = True  # False for findings outside the 18 labels (bone)
    n_voxels: int = 0  # filled by the painter
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, case_id: str) -> dict[str, Any]:
        """The ``findings.csv`` row."""
        return {
            "case_id": case_id,
            "label": self.label,
            "structure": self.structure,
            "side": self.side,
            "lobe": self.lobe,
            "size_mm": round(self.size_mm, 1),
            "amount": self.amount,
            "location": self.location,
            "count": self.count,
            "n_voxels": self.n_voxels,
            "ctrate": int(self.ctrate),
        }


def _side(rng: np.random.Generator, p_bilateral: float = 0.3) -> str:
    if rng.random() < p_bilateral:
        return "bilateral"
    return "right" if rng.random() < 0.5 else "left"


def _lobe(rng: np.random.Generator, side: str, lower_bias: float = 0.0) -> str:
    lobes = ["upper lobe", "lower lobe"] + (["middle lobe"] if side == "right" else [])
    weights = np.array([1.0, 1.0 + lower_bias] + ([0.6] if side == "right" else []))
    return lobes[int(rng.choice(len(lobes), p=weights / weights.sum()))]


def _one_side(rng: np.random.Generator) -> str:
    return "right" if rng.random() < 0.5 else "left"


def _lung_lesions(
    rng: np.random.Generator, label: str, n: int, sizes: tuple[float, float], lower_bias: float
) -> list[Finding]:
    found = []
    for _ in range(n):
        side = _one_side(rng)
        found.append(
            Finding(
                label,
                "lung",
                side=side,
                lobe=_lobe(rng, side, lower_bias),
                size_mm=float(np.round(rng.uniform(*sizes))),
            )
        )
    return found


def _sample_mediastinal(rng: np.random.Generator, label: str, st: str) -> list[Finding] | None:
    """Medical material, hiatal hernia, lymphadenopathy; None for other labels."""
    if label == "Medical material":
        device = ("port catheter", "pacemaker", "nasogastric tube")[
            int(rng.choice(3, p=[0.45, 0.35, 0.2]))
        ]
        return [
            Finding(
                label, st, location=device, side="right" if device == "port catheter" else "left"
            )
        ]
    if label == "Hiatal hernia":
        return [Finding(label, st, size_mm=float(np.round(rng.uniform(35, 60))))]
    if label == "Lymphadenopathy":
        n = int(rng.integers(1, 3))
        stations = rng.choice(len(STATIONS), size=n, replace=False)
        return [
            Finding(
                label,
                st,
                location=STATIONS[i],
                size_mm=float(np.round(rng.uniform(13, 24))),
                extra={"long": float(rng.uniform(1.2, 1.6))},
            )
            for i in stations
        ]
    return None


def _sample_cardiovascular(rng: np.random.Generator, label: str, st: str) -> list[Finding] | None:
    """Heart and vessel labels; None for other labels."""
    if label == "Arterial wall calcification":
        marked = rng.random() < 0.4
        return [
            Finding(
                label,
                st,
                amount="marked" if marked else "mild",
                count=int(rng.integers(7, 12) if marked else rng.integers(3, 6)),
            )
        ]
    if label == "Cardiomegaly":
        factor = float(rng.uniform(1.24, 1.42))
        return [
            Finding(
                label, st, amount="marked" if factor > 1.33 else "mild", extra={"factor": factor}
            )
        ]
    if label == "Pericardial effusion":
        size = float(np.round(rng.uniform(7, 18)))
        return [Finding(label, st, size_mm=size, amount="small" if size < 12 else "moderate")]
    if label == "Coronary artery wall calcification":
        vessels = ["LAD", "RCA", "circumflex"]
        chosen = sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False))
        return [
            Finding(
                label,
                st,
                location=",".join(vessels[i] for i in chosen),
                count=len(chosen) * int(rng.integers(1, 3)),
            )
        ]
    return None


def _sample_pulmonary(rng: np.random.Generator, label: str, st: str) -> list[Finding] | None:
    """Lung, airway and pleura labels with attributes; None for other labels."""
    if label == "Emphysema":
        kind = "paraseptal" if rng.random() < 0.3 else "centrilobular"
        return [
            Finding(
                label,
                st,
                side=_side(rng, 0.75),
                lobe="upper lobe",
                location=kind,
                amount=("mild", "moderate", "severe")[int(rng.integers(0, 3))],
            )
        ]
    if label == "Atelectasis":
        return [
            Finding(
                label,
                st,
                side=_side(rng, 0.35),
                lobe="lower lobe",
                location="posterobasal",
                size_mm=float(np.round(rng.uniform(14, 24))),
            )
        ]
    if label == "Lung nodule":
        return _lung_lesions(rng, label, int(rng.integers(1, 4)), (10, 25), 0.3)
    if label == "Lung opacity":
        return _lung_lesions(rng, label, int(rng.integers(1, 3)), (30, 60), 0.5)
    if label == "Pulmonary fibrotic sequela":
        side = _side(rng, 0.4)
        return [Finding(label, st, side=side, lobe="upper lobe", count=int(rng.integers(2, 5)))]
    if label == "Pleural effusion":
        amount = ("minimal", "small", "moderate")[int(rng.choice(3, p=[0.3, 0.45, 0.25]))]
        size = {"minimal": 12.0, "small": 22.0, "moderate": 40.0}[amount] + float(
            rng.integers(-3, 4)
        )
        return [Finding(label, st, side=_side(rng, 0.4), amount=amount, size_mm=size)]
    if label == "Consolidation":
        return _lung_lesions(rng, label, 1, (35, 65), 1.5)
    if label == "Bronchiectasis":
        kind = "varicose" if rng.random() < 0.25 else "cylindrical"
        return [Finding(label, st, side=_side(rng, 0.5), lobe="lower lobe", location=kind)]
    return None


def _sample_label(rng: np.random.Generator, label: str) -> list[Finding]:
    """Attributes of one positive label (one or more Finding records)."""
    st = LABEL_STRUCTURE[label]
    for sampler in (_sample_mediastinal, _sample_cardiovascular, _sample_pulmonary):
        found = sampler(rng, label, st)
        if found is not None:
            return found
    # Mosaic attenuation pattern, Peribronchial thickening, Interlobular septal thickening
    lobe = "lower lobe" if label == "Interlobular septal thickening" else ""
    return [Finding(label, st, side="bilateral", lobe=lobe)]


def sample_findings(rng: np.random.Generator, synth: dict[str, Any]) -> list[Finding]:
    """Draw one case's findings: none for a normal case, else at least one positive label.

    Args:
        synth: the synth config section (``normal_fraction``, ``prevalence`` per label,
            ``bone_findings`` probabilities).
    """
    findings: list[Finding] = []
    if rng.random() >= synth["normal_fraction"]:
        prevalence = np.array([synth["prevalence"][label] for label in CTRATE_LABELS])
        positive = rng.random(len(CTRATE_LABELS)) < prevalence
        if not positive.any():
            positive[int(rng.choice(len(CTRATE_LABELS), p=prevalence / prevalence.sum()))] = True
        for label, on in zip(CTRATE_LABELS, positive):
            if on:
                findings.extend(_sample_label(rng, label))
        bone = synth["bone_findings"]
        if rng.random() < bone["osteophytes"]:
            findings.append(Finding("Degenerative osteophytes", "bone", ctrate=False))
        if rng.random() < bone["compression"]:
            findings.append(
                Finding(
                    "Vertebral compression",
                    "bone",
                    ctrate=False,
                    amount=("mild", "moderate")[int(rng.integers(0, 2))],
                )
            )
    return findings


def label_vector(findings: list[Finding]) -> dict[str, int]:
    """The 18-label 0/1 vector of a case."""
    present = {f.label for f in findings if f.ctrate}
    return {label: int(label in present) for label in CTRATE_LABELS}
