"""Phantom mediastinum: heart and pericardium, great vessels, airway, esophagus, thyroid.

Centre lines of the tubes that findings need later (aorta, airway branches, esophagus) are
stored on the ``Anatomy`` as ``anat.paths[name] = (points (N, 3) mm, radius mm)``.
"""

from __future__ import annotations

import numpy as np

from ctrg.data.phantom_anatomy import HU, LABEL, Anatomy
from ctrg.data.phantom_grid import FULL, Canvas, ellipsoid, tube


def draw_mediastinum(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Mediastinal fat between the lungs, the heart inside its pericardial fat, vessels."""
    grid = canvas.grid
    thorax = anat.masks["thorax"]
    s, k = anat.s, anat.k
    arch_bump = np.exp(-(((grid.z - 5.0 * k) / (45.0 * k)) ** 2))
    front = anat.by + anat.bc
    forward = np.clip((grid.y - anat.y_trachea) / (front - anat.y_trachea), 0.0, 1.0)
    half_width = (24.0 * s + 16.0 * s * arch_bump) * (1.0 - 0.55 * forward**2)
    slab = (np.abs(grid.x - anat.mx) < half_width) & (grid.y > anat.y_spine - 0.4 * anat.r_vertebra)
    slab = slab & thorax
    canvas.paint(FULL, slab, HU["fat"], LABEL["heart"])
    centre, radii = anat.heart_geometry()
    margin = 4.0 * s
    outer = ellipsoid(
        canvas,
        centre,
        [r + margin for r in radii],
        HU["fat"],
        LABEL["heart"],
        within=thorax | anat.masks["abdomen"],
    )
    heart = ellipsoid(canvas, centre, radii, HU["blood"], LABEL["heart"])
    anat.masks["mediastinum"] = slab | (outer if outer is not None else False)
    anat.masks["heart"] = heart if heart is not None else np.zeros(grid.shape, bool)
    for _ in range(int(rng.integers(2, 5))):  # normal small nodes in the fat
        point = (
            float(rng.uniform(-40, 20)) * k,
            anat.y_trachea + float(rng.uniform(-5, 25)) * s,
            anat.mx + float(rng.uniform(-20, 20)) * s,
        )
        ellipsoid(canvas, point, (4.0, 3.5, 3.5), HU["soft"], LABEL["heart"], within=slab)
    _draw_great_vessels(canvas, anat)


def _draw_great_vessels(canvas: Canvas, anat: Anatomy) -> None:
    """Aorta (ascending, arch, descending), pulmonary trunk and arteries, superior vena cava."""
    s, k = anat.s, anat.k
    (hz, hy, hx), (rz, ry, rx) = anat.heart_geometry()
    r_ao = 12.5 * s
    x_desc = anat.mx - anat.r_vertebra - 0.5 * r_ao
    y_desc = anat.y_spine + 0.5 * anat.r_vertebra
    x_asc = anat.mx + 10.0 * s
    y_asc = anat.y_trachea + anat.r_trachea + 10.0 * s + r_ao
    z_arch = 22.0 * k
    aorta = np.array(
        [
            (hz + 0.55 * rz, hy - 0.2 * ry, x_asc - 2.0 * s),
            (z_arch - 12.0 * k, y_asc, x_asc),
            (z_arch + 8.0 * k, 0.5 * (y_asc + y_desc) + 6.0 * s, 0.5 * (x_asc + x_desc)),
            (z_arch - 12.0 * k, y_desc, x_desc),
            (anat.z_bottom - 10.0, y_desc + 4.0 * s, x_desc + 6.0 * s),
        ]
    )
    tube(canvas, aorta, r_ao, HU["blood"], LABEL["heart"])
    anat.paths["aorta"] = (aorta, r_ao)
    below = canvas.grid.z < np.minimum(anat.z_dome_l, anat.z_dome_r) - 30.0 * k
    abdominal = anat.masks["abdomen"] & below
    tube(canvas, aorta[3:], r_ao, HU["blood"], LABEL["abdomen"], within=abdominal)
    bif = (-8.0 * k, y_asc - 4.0 * s, anat.mx - 20.0 * s)
    trunk = [(hz + 0.5 * rz, hy + 0.25 * ry, hx + 0.1 * rx), bif]
    tube(canvas, trunk, 12.0 * s, HU["blood"], LABEL["heart"])
    hilum_y = anat.y_trachea - 4.0 * s
    for side, z_end in ((1.0, -18.0 * k), (-1.0, -8.0 * k)):
        branch = [bif, (z_end, hilum_y, anat.mx + side * 0.42 * anat.ac)]
        tube(canvas, branch, 8.5 * s, HU["blood"], LABEL["heart"], within=anat.masks["thorax"])
    x_svc = x_asc + r_ao + 8.0 * s
    svc = [(anat.z_top + 10.0, y_asc - 6.0 * s, x_svc), (hz + 0.4 * rz, hy - 0.3 * ry, x_svc)]
    tube(canvas, svc, 8.5 * s, HU["blood"], LABEL["heart"])
    anat.paths["svc"] = (np.array(svc), 8.5 * s)


def draw_airway(canvas: Canvas, anat: Anatomy) -> None:
    """Trachea, main and lobar bronchi: soft-tissue wall around an air lumen."""
    s, k, mx = anat.s, anat.k, anat.mx
    yt, rt = anat.y_trachea, anat.r_trachea
    trachea = np.array([(anat.z_top + 10.0, yt, mx), (0.0, yt, mx)])
    carina = trachea[-1]
    branches: dict[str, np.ndarray] = {}
    for side, name in ((1.0, "right"), (-1.0, "left")):
        hilum = (-22.0 * k, yt - 6.0 * s, mx + side * 0.33 * anat.ac)
        upper = (8.0 * k, yt - 2.0 * s, mx + side * 0.55 * anat.ac)
        lower = (-80.0 * k, yt - 30.0 * s, mx + side * 0.5 * anat.ac)
        anterior = (-50.0 * k, yt + 25.0 * s, mx + side * 0.55 * anat.ac)
        branches[f"{name}_main"] = np.array([carina, hilum])
        branches[f"{name}_upper"] = np.array([hilum, upper])
        branches[f"{name}_lower"] = np.array([hilum, lower])
        branches[f"{name}_anterior"] = np.array([hilum, anterior])
    tube(canvas, trachea, rt + 2.0, HU["soft"], LABEL["trachea and bronchi"])
    tube(canvas, trachea, rt, HU["air"], LABEL["trachea and bronchi"])
    for name, points in branches.items():
        radius = 6.5 * s if name.endswith("main") else 4.0 * s
        tube(canvas, points, radius + 1.6, HU["soft"], LABEL["trachea and bronchi"])
    for name, points in branches.items():
        radius = 6.5 * s if name.endswith("main") else 4.0 * s
        tube(canvas, points, radius, HU["air"], LABEL["trachea and bronchi"])
    anat.paths.update({name: (points, 4.0 * s) for name, points in branches.items()})


def draw_esophagus(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Esophagus behind the trachea down to the hiatus and stomach; thin air lumen sometimes."""
    s, k = anat.s, anat.k
    ye = anat.y_esophagus
    hiatus_z = anat.z_dome_l - 8.0 * k
    points = np.array(
        [
            (anat.z_top + 10.0, ye, anat.mx - 3.0 * s),
            (-60.0 * k, ye + 3.0 * s, anat.mx - 6.0 * s),
            (hiatus_z, ye + 10.0 * s, anat.bx - 0.25 * anat.ac),
            (hiatus_z - 25.0 * k, anat.by + 0.1 * anat.bc, anat.bx - 0.4 * anat.ac),
        ]
    )
    tube(canvas, points, 7.5 * s, HU["soft"], LABEL["esophagus"])
    if rng.random() < 0.4:
        tube(canvas, points[:2], 2.0, HU["air"], LABEL["esophagus"])
    anat.paths["esophagus"] = (points, 7.5 * s)


def draw_thyroid(canvas: Canvas, anat: Anatomy) -> None:
    """Two thyroid lobes beside the trachea and the isthmus in front of it (neck level)."""
    s, k = anat.s, anat.k
    z = anat.z_apex + 18.0 * k
    y = anat.y_trachea + 3.0 * s
    for side in (1.0, -1.0):
        centre = (z, y, anat.mx + side * (anat.r_trachea + 9.0 * s))
        ellipsoid(canvas, centre, (22.0 * k, 10.0 * s, 8.5 * s), HU["thyroid"], LABEL["thyroid"])
    isthmus = (z - 8.0 * k, anat.y_trachea + anat.r_trachea + 5.0 * s, anat.mx)
    ellipsoid(canvas, isthmus, (6.0 * k, 3.5 * s, 12.0 * s), HU["thyroid"], LABEL["thyroid"])


def draw_lung_vessels(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Branching pulmonary vessels fanning out from each hilum (part of the lung label)."""
    s, k = anat.s, anat.k
    lungs = anat.masks["thorax"] & (canvas.structures == LABEL["lung"])
    for side in (1.0, -1.0):
        hilum = np.array([-15.0 * k, anat.y_trachea - 4.0 * s, anat.mx + side * 0.4 * anat.ac])
        for _ in range(7):
            direction = np.array(
                [rng.uniform(-1.2, 1.0), rng.uniform(-1, 1), side * rng.uniform(0.3, 1)]
            )
            direction /= np.linalg.norm(direction)
            length = float(rng.uniform(50, 90)) * s
            mid = hilum + direction * length * 0.5
            end = hilum + direction * length + rng.normal(0, 8 * s, 3)
            tube(
                canvas,
                [hilum, mid, end],
                [4.0 * s, 2.8 * s, 1.6 * s],
                HU["blood"],
                LABEL["lung"],
                within=lungs,
            )
