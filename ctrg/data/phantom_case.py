"""Generate one phantom case: geometry, anatomy, findings, image formation and report.

A case depends only on ``(seed, index)`` and the synth settings: three random streams
``numpy.random.default_rng([seed, index, s])`` (s = 0 findings, 1 geometry and image,
2 report wording), so output bytes never depend on the number of worker processes or on
which cases are generated in the same run, and image changes leave labels and reports alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ctrg.anatomy import CTRATE_LABELS
from ctrg.data import phantom_lung_findings as lung
from ctrg.data import phantom_mediastinal_findings as med
from ctrg.data.phantom_anatomy import Anatomy, draw_body_wall, draw_cavity, sample_anatomy
from ctrg.data.phantom_bones import draw_ribs, draw_shoulder_girdle, draw_spine
from ctrg.data.phantom_findings import Finding, label_vector, sample_findings
from ctrg.data.phantom_grid import Canvas, Grid
from ctrg.data.phantom_organs import (
    draw_airway,
    draw_esophagus,
    draw_lung_vessels,
    draw_mediastinum,
    draw_thyroid,
)
from ctrg.data.phantom_report import compose_report, structure_sentences
from ctrg.data.phantom_v2 import PAINT_ORDER_V2, finding_value
from ctrg.data.phantom_v2_findings import sample_findings_v2
from ctrg.data.phantom_v2_report import NORMAL_SENTENCE, reword_varied, structure_sentences_v2

log = logging.getLogger(__name__)

Painter = Callable[[Canvas, Anatomy, Finding, np.random.Generator], None]

PAINT_ORDER: tuple[tuple[str, Painter], ...] = (
    ("Mosaic attenuation pattern", lung.paint_mosaic),
    ("Emphysema", lung.paint_emphysema),
    ("Interlobular septal thickening", lung.paint_septal),
    ("Pleural effusion", lung.paint_effusion),
    ("Atelectasis", lung.paint_atelectasis),
    ("Lung opacity", lung.paint_patch),
    ("Consolidation", lung.paint_patch),
    ("Pulmonary fibrotic sequela", lung.paint_fibrosis),
    ("Bronchiectasis", lung.paint_bronchiectasis),
    ("Peribronchial thickening", lung.paint_peribronchial),
    ("Lung nodule", lung.paint_nodule),
    ("Pericardial effusion", med.paint_pericardial_effusion),
    ("Cardiomegaly", med.paint_cardiomegaly),
    ("Coronary artery wall calcification", med.paint_coronary),
    ("Arterial wall calcification", med.paint_aortic_calcification),
    ("Lymphadenopathy", med.paint_lymph_node),
    ("Hiatal hernia", med.paint_hiatal_hernia),
    ("Medical material", med.paint_device),
)
"""Painting order: diffuse lung patterns first, focal lesions and devices last (they win)."""


@dataclass
class PhantomCase:
    """One generated case: arrays in canonical ``(S, A, R)`` order plus ground truth."""

    case_id: str
    grid: Grid
    descending: bool  # stored slice order
    hu: np.ndarray  # int16 (D, H, W)
    structures: np.ndarray  # uint8 (D, H, W)
    finding_map: np.ndarray  # uint8 (D, H, W)
    findings: list[Finding]
    sentences: list[tuple[str, str]]  # (structure, sentence)
    report: str
    female: bool
    noise_hu: float
    dropped: list[str]  # sampled labels that left no visible voxel (not in the ground truth)

    @property
    def labels(self) -> dict[str, int]:
        return label_vector(self.findings)


def case_grid(
    rng: np.random.Generator, synth: dict[str, Any]
) -> tuple[Grid, dict[str, float], bool]:
    """Per-case field of view, slice thickness and coverage -> grid and scan geometry.

    Returns:
        ``(grid, geometry, descending)`` where geometry has ``fov``, ``coverage``, ``z_bottom``.
    """
    depth, height, width = synth["shape"]
    fov = float(rng.uniform(*synth["fov_mm"]))
    coverage = float(rng.uniform(*synth["coverage_mm"]))
    if synth["vary_slices"]:
        factor = float(rng.uniform(*synth["slice_count_factor"]))
        depth = max(8, int(round(depth * factor)))
    sz, sxy = coverage / depth, fov / width
    carina_fraction = float(rng.uniform(0.6, 0.66))
    z_bottom = -carina_fraction * coverage
    origin = (z_bottom + sz / 2, -sxy * (height - 1) / 2, -sxy * (width - 1) / 2)
    grid = Grid((depth, height, width), (round(sz, 4), round(sxy, 4), round(sxy, 4)), origin)
    order = synth["slice_order"]
    descending = bool(rng.random() < 0.5) if order == "random" else order == "descending"
    return grid, {"fov": fov, "coverage": coverage, "z_bottom": z_bottom}, descending


def _draw_anatomy(
    canvas: Canvas, anat: Anatomy, findings: list[Finding], rng: np.random.Generator
) -> None:
    labels = {f.label for f in findings}
    bone = {
        "osteophytes": "Degenerative osteophytes" in labels,
        "compressed_level": int(rng.integers(-5, 1)) if "Vertebral compression" in labels else None,
    }
    draw_body_wall(canvas, anat, rng)
    draw_cavity(canvas, anat, rng)
    draw_mediastinum(canvas, anat, rng)
    draw_airway(canvas, anat)
    draw_esophagus(canvas, anat, rng)
    draw_thyroid(canvas, anat)
    draw_lung_vessels(canvas, anat, rng)
    draw_spine(canvas, anat, bone)
    draw_ribs(canvas, anat, rng)
    draw_shoulder_girdle(canvas, anat)


def _paint_findings(
    canvas: Canvas,
    anat: Anatomy,
    findings: list[Finding],
    rng: np.random.Generator,
    version: int = 1,
) -> list[Finding]:
    """Paint in the version's order; drop findings that left no voxel (so labels stay true).

    Version 1 keeps its findings outside the 18 labels (bone) whatever they left; version 2
    drops any finding that left no visible voxel.
    """
    order = PAINT_ORDER if version == 1 else PAINT_ORDER_V2
    for label, painter in order:
        for f in (f for f in findings if f.label == label):
            painter(canvas, anat, f, rng)
    counts = np.bincount(canvas.findings.ravel(), minlength=256)
    kept = []
    for f in findings:
        if version == 2 and counts[finding_value(f.label)] == 0:
            log.warning("%s left no visible voxel; dropped from the ground truth", f.label)
            continue
        if f.ctrate and counts[CTRATE_LABELS.index(f.label) + 1] == 0:
            log.warning("%s left no visible voxel; dropped from the ground truth", f.label)
            continue
        if f.ctrate and f.n_voxels == 0 and f.label == "Lung nodule":
            continue  # one of several nodules that found no room
        kept.append(f)
    return kept


def _form_image(
    canvas: Canvas, rng: np.random.Generator, synth: dict[str, Any], fov: float
) -> tuple[np.ndarray, float]:
    """Partial-volume blur, quantum noise, circular reconstruction field, int16 HU.

    Returns:
        int16 ``(D, H, W)`` HU and the noise standard deviation used.
    """
    grid = canvas.grid
    sigma = [mm / spacing for mm, spacing in zip(synth["blur_mm"], grid.spacing)]
    blurred = ndimage.gaussian_filter(canvas.hu, sigma=sigma, mode="nearest")
    noise = float(rng.uniform(*synth["noise_hu"]))
    blurred += rng.standard_normal(grid.shape, dtype=np.float32) * noise
    outside = (grid.x**2 + grid.y**2) > (fov / 2.0) ** 2
    blurred = np.where(np.broadcast_to(outside, grid.shape), synth["fov_pad_hu"], blurred)
    return np.clip(np.round(blurred), -3024, 3071).astype(np.int16), noise


def generate_case(synth: dict[str, Any], seed: int, index: int) -> PhantomCase:
    """Generate case ``index`` of a data set drawn with ``seed``.

    Args:
        synth: the resolved synth config section.
    """
    rng = np.random.default_rng([seed, index, 0])  # findings; then geometry and image
    case_id = f"phantom_{index:04d}"
    version = synth["version"]
    findings = sample_findings(rng, synth) if version == 1 else sample_findings_v2(rng, synth)
    rng = np.random.default_rng([seed, index, 1])  # own stream: image tweaks keep the labels
    grid, geometry, descending = case_grid(rng, synth)
    anat = sample_anatomy(rng, geometry, synth)
    for f in findings:
        if f.label == "Cardiomegaly":
            anat.cardio_factor = f.extra["factor"]
    canvas = Canvas(grid)
    _draw_anatomy(canvas, anat, findings, rng)
    sampled = {f.label for f in findings if f.ctrate}
    findings = _paint_findings(canvas, anat, findings, rng, version)
    hu, noise = _form_image(canvas, rng, synth, geometry["fov"])
    report_rng = np.random.default_rng([seed, index, 2])  # own stream: wording is stable
    if version == 2 and synth["wording"] == "templated":
        sentences = structure_sentences_v2(findings, report_rng, NORMAL_SENTENCE)
    else:
        sentences = structure_sentences(findings, anat.female, report_rng)
        sentences = reword_varied(sentences) if version == 2 else sentences
    return PhantomCase(
        case_id=case_id,
        grid=grid,
        descending=descending,
        hu=hu,
        structures=canvas.structures,
        finding_map=canvas.findings,
        findings=findings,
        sentences=sentences,
        report=compose_report(sentences),
        female=anat.female,
        noise_hu=noise,
        dropped=sorted(sampled - {f.label for f in findings}),
    )
