"""Write a CT-RATE-style findings report for a phantom case, sentence by structure.

The report is built from the case's ``Finding`` records only: every positive label gets a
non-negated sentence with the sides, lobes and sizes that were painted, absent labels get a
negated sentence with a label-specific probability, and structures without findings get
normal boilerplate. Each sentence carries its ground-truth structure.
"""

from __future__ import annotations

import re

import numpy as np

from ctrg.data.phantom_findings import LABEL_STRUCTURE, Finding
from ctrg.data.phantom_phrases import LUNG_INTRO, NEGATIVE, NORMAL, POSITIVE

REPORT_ORDER = (
    "trachea and bronchi",
    "heart",
    "esophagus",
    "thyroid",
    "lung",
    "pleura",
    "abdomen",
    "bone",
    "breast",
    "others",
)
"""Order of the structure paragraphs (as radiologists usually dictate a chest CT)."""

VESSEL_NAMES = {
    "LAD": "left anterior descending",
    "RCA": "right coronary",
    "circumflex": "circumflex",
}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


BOILERPLATE_COUNT = {"heart": 2, "lung": 2, "abdomen": 3, "bone": 2}
"""Most normal sentences said about a structure (at least one when it is described)."""


def _pick_some(rng: np.random.Generator, options: list[str], most: int) -> list[str]:
    """1..most distinct options, in their listed order."""
    n = int(rng.integers(1, min(most, len(options)) + 1))
    chosen = sorted(rng.choice(len(options), size=n, replace=False))
    return [options[i] for i in chosen]


def _fields(f: Finding) -> dict[str, str]:
    """Template fields of one finding."""
    side = f.side or "bilateral"
    lung = "both lungs" if side == "bilateral" else f"the {side} lung"
    lobe_name = f.lobe or "lower lobe"
    lobe = f"both {lobe_name}s" if side == "bilateral" else f"{side} {lobe_name}"
    vessels = [VESSEL_NAMES[v] for v in f.location.split(",") if v in VESSEL_NAMES]
    vessel_text = " and ".join(
        [", ".join(vessels[:-1]), vessels[-1]] if len(vessels) > 1 else vessels
    )
    return {
        "size": f"{f.size_mm:.0f}",
        "long": f"{f.extra.get('long_mm', f.size_mm):.0f}",
        "amount": f.amount,
        "Amount": f.amount.capitalize(),
        "lung": lung,
        "lobe": lobe,
        "the_lobe": lobe if side == "bilateral" else f"the {lobe}",
        "side": side,
        "side_adj": "bilateral" if side == "bilateral" else f"{side}-sided",
        "on_side": "on both sides" if side == "bilateral" else f"on the {side}",
        "station": f.location,
        "kind": f.location,
        "Kind": f.location.capitalize(),
        "vessels": vessel_text,
        "arteries": "arteries" if len(vessels) > 1 else "artery",
    }


def positive_sentence(f: Finding, rng: np.random.Generator) -> str:
    """One sentence stating a finding (never negated)."""
    if f.label == "Medical material":
        key = f.location
    elif f.label == "Arterial wall calcification":
        key = f"{f.label} {f.amount}"
    else:
        key = f.label
    sentence = _pick(rng, POSITIVE[key]).format(**_fields(f))
    return re.sub(r"\bA (8|11|18)\b", r"An \1", sentence)


def _merge_nodules(findings: list[Finding]) -> list[Finding]:
    """Keep findings in order; several lesions of one label stay separate sentences."""
    return sorted(findings, key=lambda f: (REPORT_ORDER.index(f.structure), -f.size_mm))


def structure_sentences(
    findings: list[Finding], female: bool, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """The report as ``(structure, sentence)`` pairs in reading order.

    Args:
        findings: the case's findings (CT-RATE and bone ones).
        female: whether breast tissue is present (boilerplate choice).
    """
    present = {f.label for f in findings}
    by_structure: dict[str, list[str]] = {name: [] for name in REPORT_ORDER}
    for f in _merge_nodules(findings):
        by_structure[f.structure].append(positive_sentence(f, rng))
    out: list[tuple[str, str]] = []
    for structure in REPORT_ORDER:
        sentences = _normal_sentences(structure, by_structure[structure], present, female, rng)
        sentences += by_structure[structure]
        sentences += _negations(structure, present, rng)
        if structure == "lung" and sentences and rng.random() < 0.35:
            sentences.insert(0, _pick(rng, LUNG_INTRO))
        out.extend((structure, s) for s in sentences)
    if any(s == "others" for s, _ in out) and rng.random() < 0.5:  # devices often come first
        others = [pair for pair in out if pair[0] == "others"]
        out = others + [pair for pair in out if pair[0] != "others"]
    return out


def _normal_sentences(
    structure: str, positives: list[str], present: set[str], female: bool, rng: np.random.Generator
) -> list[str]:
    """Boilerplate for a structure: always for airway/heart, otherwise when it is normal."""
    if structure == "others":
        return []
    if structure == "breast":
        if "Lymphadenopathy" in present and not female:
            return [NORMAL["breast male"][0]]
        return (
            [_pick(rng, NORMAL["breast female" if female else "breast male"])]
            if rng.random() < 0.7
            else []
        )
    if structure == "thyroid":
        return [_pick(rng, NORMAL["thyroid"])] if rng.random() < 0.45 else []
    if structure == "bone":
        options = [s for s in NORMAL["bone"] if positives == [] or "heights" in s]
        if "Vertebral compression" in present:
            options = [s for s in options if "heights" not in s]
        if not options or rng.random() >= 0.9:
            return []
        return _pick_some(rng, options, BOILERPLATE_COUNT["bone"])
    if positives and structure not in ("trachea and bronchi", "heart"):
        return []
    return _pick_some(rng, NORMAL[structure], BOILERPLATE_COUNT.get(structure, 1))


def _negations(structure: str, present: set[str], rng: np.random.Generator) -> list[str]:
    """Negated statements of absent labels belonging to this structure."""
    out = []
    for label, (probability, templates) in NEGATIVE.items():
        if LABEL_STRUCTURE[label] != structure or label in present:
            continue
        if rng.random() < probability:
            out.append(_pick(rng, templates))
    return out


def compose_report(pairs: list[tuple[str, str]]) -> str:
    """Join the sentences into one findings paragraph."""
    return " ".join(sentence for _, sentence in pairs)
