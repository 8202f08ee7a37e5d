"""Phantom skeleton: vertebrae and discs, ribs, sternum, clavicles, scapulae; bone findings.

Bone findings here (degenerative osteophytes, a vertebral compression deformity) are not
among the 18 CT-RATE labels: they enrich the bone sentences and ``findings.csv`` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ctrg.data.phantom_anatomy import HU, LABEL, Anatomy
from ctrg.data.phantom_grid import FULL, Canvas, ellipse_mask, ellipsoid, tube


def _vertebral_levels(anat: Anatomy, grid_z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Level index and phase within the level for every slice.

    Returns:
        ``level`` int ``(D, 1, 1)``, ``phase`` mm ``(D, 1, 1)``, and the level period (mm).
    """
    period = 25.0 * anat.k
    offset = grid_z - 3.0 * anat.k
    return np.floor(offset / period).astype(int), np.mod(offset, period), period


def draw_spine(canvas: Canvas, anat: Anatomy, bone: dict[str, Any]) -> None:
    """Vertebral bodies (cortex + cancellous), discs, canal, laminae and spinous processes.

    Args:
        bone: bone-finding settings: ``compressed_level`` (int or None) and ``osteophytes``.
    """
    grid = canvas.grid
    s, k = anat.s, anat.k
    level, phase, period = _vertebral_levels(anat, grid.z)
    disc = phase < 4.5 * k
    height = np.full(level.shape, period, dtype=np.float32)
    if bone.get("compressed_level") is not None:
        squashed = level == bone["compressed_level"]
        height = np.where(squashed, 0.55 * period, height)
    in_body = ~disc & (phase < height)
    rx, ry = anat.r_vertebra * 1.05, anat.r_vertebra * 0.85
    outer = ellipse_mask(grid, anat.bx, anat.y_spine, rx, ry)
    inner = ellipse_mask(grid, anat.bx, anat.y_spine, rx - 2.5, ry - 2.5)
    canvas.paint(FULL, outer & (disc | ~in_body), HU["soft"] + 50.0, LABEL["bone"])
    canvas.paint(FULL, outer & in_body, HU["cortical"], LABEL["bone"])
    squash_hu = np.where(height < period, HU["cancellous"] + 150.0, HU["cancellous"])
    canvas.paint(FULL, inner & in_body, np.broadcast_to(squash_hu, grid.shape), LABEL["bone"])
    y_canal = anat.y_spine - ry - 8.0 * s
    ring = ellipse_mask(grid, anat.bx, y_canal, 12.0 * s, 11.0 * s) & ~disc
    canvas.paint(FULL, ring, HU["cortical"] - 200.0, LABEL["bone"])
    canal = ellipse_mask(grid, anat.bx, y_canal, 7.5 * s, 7.0 * s)
    canvas.paint(FULL, canal, HU["water"] + 10.0, LABEL["bone"])
    spinous = (np.abs(grid.x - anat.bx) < 4.5 * s) & (grid.y < y_canal - 8.0 * s)
    back = anat.by - anat.b + anat.fat + 4.0
    spinous = spinous & (grid.y > max(y_canal - 38.0 * s, back)) & ~disc & (phase > 0.4 * period)
    canvas.paint(FULL, spinous, HU["cortical"] - 250.0, LABEL["bone"])
    transverse = (np.abs(grid.x - anat.bx) < 30.0 * s) & (np.abs(grid.y - y_canal) < 4.0 * s)
    transverse = transverse & (phase > 0.5 * period) & (phase < 0.8 * period)
    canvas.paint(FULL, transverse, HU["cortical"] - 250.0, LABEL["bone"])
    if bone.get("osteophytes"):
        _draw_osteophytes(canvas, anat, period)


def _draw_osteophytes(canvas: Canvas, anat: Anatomy, period: float) -> None:
    """Bony spurs at the anterolateral margins of the vertebral bodies next to the discs."""
    s = anat.s
    z = np.floor(anat.z_bottom / period) * period + 3.0 * anat.k
    while z < anat.z_top:
        for side in (1.0, -1.0):
            centre = (
                z,
                anat.y_spine + 0.6 * anat.r_vertebra,
                anat.bx + side * 0.85 * anat.r_vertebra,
            )
            ellipsoid(
                canvas, centre, (4.0 * anat.k, 4.5 * s, 4.5 * s), HU["cortical"], LABEL["bone"]
            )
        z += period


def draw_ribs(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Ribs as a periodic band in the chest wall, sloping down anteriorly to costal cartilage."""
    grid = canvas.grid
    band = anat.masks["rib_band"]
    k = anat.k
    theta = np.arctan2(np.abs(grid.x - anat.bx) / anat.ac, -(grid.y - anat.by) / anat.bc) / np.pi
    drop = 55.0 * k
    period = 27.0 * k
    thick = 9.0 * anat.s
    shifted = grid.z + drop * theta
    in_range = (shifted < anat.z_apex + 10.0 * k) & (shifted > -140.0 * k)
    rib = np.mod(shifted + float(rng.uniform(0, period)), period) < thick
    rib &= band & in_range
    cartilage = rib & (theta > 0.78)
    canvas.paint(FULL, rib & ~cartilage, HU["rib"], LABEL["bone"])
    canvas.paint(FULL, cartilage, HU["cartilage"], LABEL["bone"])
    sternum = band & (np.abs(grid.x - anat.bx) < 15.0 * anat.s) & (grid.y > anat.by)
    sternum &= (grid.z > -75.0 * k) & (grid.z < 48.0 * k)
    canvas.paint(FULL, sternum, HU["cancellous"] + 100.0, LABEL["bone"])


def draw_shoulder_girdle(canvas: Canvas, anat: Anatomy) -> None:
    """Clavicles from the manubrium to the shoulders and flat scapulae behind the ribs."""
    s, k = anat.s, anat.k
    body = anat.masks["body"]
    outside_cavity = body & ~anat.masks["cavity"]
    for side in (1.0, -1.0):
        clavicle = [
            (48.0 * k, anat.by + 0.72 * anat.b, anat.bx + side * 18.0 * s),
            (58.0 * k, anat.by + 0.45 * anat.b, anat.bx + side * 0.55 * anat.a),
            (62.0 * k, anat.by + 0.05 * anat.b, anat.bx + side * 0.82 * anat.a),
        ]
        tube(canvas, clavicle, 6.0 * s, HU["rib"] + 100.0, LABEL["bone"], within=body)
        scapula = (15.0 * k, anat.by - 0.78 * anat.b, anat.bx + side * 0.55 * anat.a)
        ellipsoid(
            canvas,
            scapula,
            (55.0 * k, 4.0 * s, 38.0 * s),
            HU["rib"],
            LABEL["bone"],
            within=outside_cavity,
        )
