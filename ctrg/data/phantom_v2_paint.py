"""Phantom v2 painters: every finding large and contrasted enough for a 6 x 3.6 x 3.6 mm reader.

Findings that look alike differ in shape and zone: a nodule is a round solid ball in an
upper lobe, a ground-glass opacity a large hazy (-500 HU) blob of the mid zone, a
consolidation a large solid blob of a lower lobe with air bronchograms, atelectasis a
solid horizontal plate of the right middle or left upper lobe, a pleural effusion a dependent fluid crescent.
Each painter writes HU, the finding map (``FINDING_VALUES``) and ``f.n_voxels``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ctrg.data.phantom_anatomy import HU, LABEL, Anatomy
from ctrg.data.phantom_findings import Finding
from ctrg.data.phantom_grid import FULL, Canvas, ellipsoid, smooth_field, tube
from ctrg.data.phantom_lung_findings import (
    _side_mask,
    _sides,
    bronchial_cuff,
    dependent_fluid,
    lobe_point,
    lung_mask,
)
from ctrg.data.phantom_v2_findings import FINDING_VALUES

Painter = Callable[[Canvas, Anatomy, Finding, np.random.Generator], None]


def _record(f: Finding, mask: np.ndarray | None) -> np.ndarray:
    """Count a painted mask on the finding (0 when it missed the grid)."""
    f.n_voxels += int(mask.sum()) if mask is not None else 0
    return mask


def _height(canvas: Canvas, anat: Anatomy) -> np.ndarray:
    """0 at the left dome -> 1 at the lung apex, ``(D, 1, 1)``."""
    return (canvas.grid.z - anat.z_dome_l) / (anat.z_apex - anat.z_dome_l)


def _zone_blob(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator, lobe: str
) -> np.ndarray | None:
    """A lumpy ellipsoid of diameter ``f.size_mm`` in a lobe, restricted to lung."""
    radius = f.size_mm / 2.0
    centre = lobe_point(canvas, anat, f.side, lobe, radius * 0.5, rng)
    if centre is None:
        return None
    radii = radius * np.array([0.8, 0.9, 0.9]) * rng.uniform(0.9, 1.1, 3)
    full = np.zeros(canvas.grid.shape, dtype=bool)
    hit = canvas.grid.box(centre - radii, centre + radii)
    if hit is None:
        return None
    region, z, y, x = hit
    lump = smooth_field(rng, full[region].shape, (3, 3, 3))
    dist = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
    dist = dist + ((x - centre[2]) / radii[2]) ** 2
    full[region] = (dist <= 1.0 + 0.25 * lump) & lung_mask(canvas)[region]
    return full


def paint_nodule(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A round solid nodule (+80 HU) of diameter ``f.size_mm`` in the upper lobe."""
    radius = f.size_mm / 2.0
    centre = lobe_point(canvas, anat, f.side, "upper lobe", radius, rng)
    if centre is not None:
        mask = ellipsoid(
            canvas, centre, (radius,) * 3, 80.0, None, FINDING_VALUES[f.label], lung_mask(canvas)
        )
        _record(f, mask)


def paint_opacity(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A large ground-glass blob (about -400 HU) of the mid zone."""
    blob = _zone_blob(canvas, anat, f, rng, "middle lobe" if f.side == "right" else "upper lobe")
    if blob is not None:
        canvas.paint(FULL, blob, -400.0, None, FINDING_VALUES[f.label])
    _record(f, blob)


def paint_consolidation(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """A large solid blob of the lower lobe with branching air bronchograms."""
    blob = _zone_blob(canvas, anat, f, rng, "lower lobe")
    if blob is None:
        return
    canvas.paint(FULL, blob, HU["soft"], None, FINDING_VALUES[f.label])
    centre = canvas.grid.to_world(np.argwhere(blob).mean(axis=0, keepdims=True))[0]
    for _ in range(3):
        end = centre + rng.normal(0.0, f.size_mm / 4.0, 3)
        tube(canvas, [centre, end], 2.5, HU["air"], None, None, within=blob)
    _record(f, blob)


def paint_atelectasis(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A solid horizontal plate (plate-like atelectasis) of the right middle or left upper lobe."""
    lobe = "middle lobe" if f.side == "right" else "upper lobe"
    centre = lobe_point(canvas, anat, f.side, lobe, 12.0, rng)
    if centre is None:
        return
    radii = (12.0, f.size_mm / 2.0, f.size_mm / 2.0)
    lungs = lung_mask(canvas) & _side_mask(canvas, anat, f.side)
    mask = ellipsoid(canvas, centre, radii, HU["soft"] - 5.0, None, FINDING_VALUES[f.label], lungs)
    _record(f, mask)


def paint_effusion(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Dependent pleural fluid ``f.size_mm`` deep at the base, tapering upwards."""
    fluid = dependent_fluid(canvas, anat, f.side, f.size_mm, (2.0 * f.size_mm + 50.0) * anat.k)
    canvas.paint(FULL, fluid, HU["fluid"], LABEL["pleura"], FINDING_VALUES[f.label])
    _record(f, fluid)


def paint_emphysema(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """The upper zone of the lung near air density (-990 HU) with large bullae."""
    lungs = lung_mask(canvas) & _side_mask(canvas, anat, f.side)
    zone = lungs & (_height(canvas, anat) > 0.6) & (canvas.hu < -500)
    canvas.paint(FULL, zone, -990.0, None, FINDING_VALUES[f.label])
    _record(f, zone)


def paint_mosaic(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Coarse geographic mosaic of the mid zone: lobules of air trapping (-975) beside dense lung (-650)."""
    grid = canvas.grid
    lungs = lung_mask(canvas) & (canvas.hu < -500)
    height = _height(canvas, anat)
    zone = lungs & (height > 0.3) & (height < 0.65)
    pattern = smooth_field(rng, grid.shape, tuple(max(3, n // 5) for n in grid.shape))
    hu = np.where(pattern > 0.0, -975.0, -650.0).astype(np.float32)
    canvas.paint(FULL, zone, hu, None, FINDING_VALUES[f.label])
    _record(f, zone)


def paint_septal(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Reticulation of both lower zones: thick septa (-150 HU) on hazy lung (-650 HU)."""
    grid = canvas.grid
    lungs = lung_mask(canvas) & (canvas.hu < -500)
    zone = lungs & (_height(canvas, anat) < 0.3)
    step = 12.0 * anat.s
    septa = (np.mod(grid.x, step) < 4.0) | (np.mod(grid.y, step) < 4.0)
    hu = np.where(septa, -150.0, -650.0).astype(np.float32)
    canvas.paint(FULL, zone, hu, None, FINDING_VALUES[f.label])
    _record(f, zone)


def paint_fibrosis(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Eight thick dense linear bands per side radiating from the apex of the upper lobe."""
    lungs = lung_mask(canvas)
    record = np.zeros(canvas.grid.shape, dtype=bool)
    for side in _sides(f.side):
        start = lobe_point(canvas, anat, side, "upper lobe", 8.0, rng)
        if start is None:
            continue
        start[0] = max(start[0], anat.z_apex - 0.35 * (anat.z_apex - anat.z_dome_l))
        for _ in range(8):
            direction = rng.normal(0, 1, 3)
            direction[0] = -abs(direction[0])
            end = start + direction / np.linalg.norm(direction) * 55.0 * anat.s
            tube(canvas, [start, end], 9.0, 40.0, None, FINDING_VALUES[f.label], lungs, record)
    _record(f, record)


def paint_bronchiectasis(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """Five dilated thick-walled bronchi (lumen 6-8 mm radius) in the lower lobe."""
    lungs = lung_mask(canvas)
    record = np.zeros(canvas.grid.shape, dtype=bool)
    points, _ = anat.paths[f"{f.side}_lower"]
    hilum, tip = points
    for _ in range(5):
        end = tip + rng.normal(0, 16.0, 3) * anat.s
        start = hilum + (tip - hilum) * 0.2
        r = float(rng.uniform(6.0, 8.0))
        tube(
            canvas, [start, end], r + 5.0, HU["soft"], None, FINDING_VALUES[f.label], lungs, record
        )
        tube(canvas, [start, end], r, HU["air"], None, None, within=record)
    _record(f, record)


def paint_peribronchial(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """A thick soft-tissue cuff (8 mm) around the main and lobar bronchi."""
    value = FINDING_VALUES[f.label]
    record = bronchial_cuff(canvas, anat, 8.0, HU["soft"], value)
    _record(f, record & (canvas.findings == value))
