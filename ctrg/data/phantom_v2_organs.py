"""Phantom v2 painters of the heart, mediastinum, esophagus, devices and the structure findings.

Calcifications are many bright plaques, nodes and hernias are large, devices are bulky metal,
and the structures without a CT-RATE label get one visible finding each: a sclerotic
vertebral lesion (bone), a goitre (thyroid), a soft-tissue mass (breast) and a liver cyst
(abdomen). Each painter writes HU, the finding map (``FINDING_VALUES``) and ``f.n_voxels``.
"""

from __future__ import annotations

import numpy as np

from ctrg.data import phantom_mediastinal_findings as v1
from ctrg.data.phantom_anatomy import HU, LABEL, Anatomy
from ctrg.data.phantom_findings import STATIONS, Finding
from ctrg.data.phantom_grid import Canvas, ellipsoid, tube
from ctrg.data.phantom_v2_findings import FINDING_VALUES
from ctrg.data.phantom_v2_paint import _record

CORONARY_COURSES = {
    "LAD": (0.55, 0.8, -0.1),
    "RCA": (0.35, 0.3, 0.9),
    "circumflex": (0.45, -0.2, -0.85),
}


def paint_pericardial_effusion(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """A fluid ring ``f.size_mm`` thick between two fat lines (pericardial and epicardial)."""
    centre, radii = anat.heart_geometry()
    allowed = anat.masks["thorax"] | anat.masks["abdomen"] | anat.masks["heart"]
    t, heart_label = f.size_mm, LABEL["heart"]
    grow = [t + 8.0, t + 4.0, 4.0]
    hu = [HU["fat"], HU["water"], HU["fat"]]
    marks = [0, FINDING_VALUES[f.label], 0]
    masks = []
    for extra, value, mark in zip(grow, hu, marks):
        masks.append(
            ellipsoid(canvas, centre, [r + extra for r in radii], value, heart_label, mark, allowed)
        )
    heart = ellipsoid(canvas, centre, radii, HU["blood"], heart_label, 0)
    if heart is not None:
        anat.masks["heart"] = heart
    if masks[1] is not None and masks[2] is not None:
        _record(f, masks[1] & ~masks[2])


def paint_coronary(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Chains of five calcified plaques (1200 HU, 14 mm) along all three coronary courses."""
    centre, radii = anat.heart_geometry()
    record = np.zeros(canvas.grid.shape, dtype=bool)
    for course in CORONARY_COURSES.values():
        base = np.array(course)
        for _ in range(5):
            direction = base + rng.normal(0, 0.18, 3)
            direction /= np.linalg.norm(direction)
            point = np.asarray(centre) + direction * (np.asarray(radii) + 3.0)
            mask = ellipsoid(
                canvas, point, (7.0,) * 3, 1200.0, LABEL["heart"], FINDING_VALUES[f.label]
            )
            if mask is not None:
                record |= mask
    _record(f, record)


def paint_aortic_calcification(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """Twenty calcified plaques (1200 HU) on the wall of the arch and descending aorta."""
    points, radius = anat.paths["aorta"]
    record = np.zeros(canvas.grid.shape, dtype=bool)
    for _ in range(20):
        seg = int(rng.integers(1, 4))
        axis = points[seg + 1] - points[seg]
        axis_point = points[seg] + float(rng.uniform(0, 1)) * axis
        normal = rng.normal(0, 1, 3)
        normal -= axis * (normal @ axis) / (axis @ axis)
        spot = axis_point + normal / np.linalg.norm(normal) * radius
        mask = ellipsoid(
            canvas,
            spot,
            (9.0, 6.5, 6.5),
            1200.0,
            None,
            FINDING_VALUES[f.label],
            within=canvas.structures == LABEL["heart"],
        )
        if mask is not None:
            record |= mask
    _record(f, record)


def paint_lymph_nodes(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Three enlarged nodes (short axis ``f.size_mm``) at three mediastinal stations.

    ``f.location`` becomes the first station and ``f.extra["long_mm"]`` the long axis (the
    varied wording names one node).
    """
    stations = rng.choice(len(STATIONS), size=3, replace=False)
    f.location, f.extra["long_mm"] = STATIONS[stations[0]], float(np.round(1.3 * f.size_mm))
    for i in stations:
        node = Finding(
            f.label, f.structure, size_mm=f.size_mm, location=STATIONS[i], extra={"long": 1.3}
        )
        v1.paint_lymph_node(canvas, anat, node, rng)
        f.n_voxels += node.n_voxels


def paint_device(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A bulky metal generator (pacemaker, left) or port (right) with its lead to the heart."""
    s, k = anat.s, anat.k
    record = np.zeros(canvas.grid.shape, dtype=bool)
    label, value = LABEL["others"], FINDING_VALUES[f.label]
    svc, _ = anat.paths["svc"]
    (hz, hy, hx), (rz, ry, rx) = anat.heart_geometry()
    side = 1.0 if f.location == "port catheter" else -1.0
    x_dev = anat.bx + side * 0.5 * anat.a
    y_dev = anat.by + anat.b * np.sqrt(0.75) - 2.0 - 0.45 * anat.fat
    z_dev = 35.0 * k
    size = (12.0, 9.0, 16.0) if side > 0 else (16.0, 9.0, 26.0)
    mask = ellipsoid(canvas, (z_dev, y_dev, x_dev), size, 2500.0, label, value, anat.masks["body"])
    if mask is not None:
        record |= mask
    entry = (z_dev + 20.0 * k, anat.y_trachea + 20.0 * s, anat.bx + side * 0.3 * anat.a)
    path = [(z_dev, y_dev, x_dev), entry, (40.0 * k, svc[0][1], svc[0][2])]
    path.append((hz + 0.45 * rz, svc[1][1], svc[1][2]))
    if f.location == "pacemaker":
        path.append((hz - 0.3 * rz, hy + 0.4 * ry, hx + 0.2 * rx))
    tube(canvas, path, 3.5, 2500.0, label, value, record=record)
    _record(f, record)


def paint_bone_lesion(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A dense (1300 HU) expansile lesion in one side of a mid-thoracic vertebral body."""
    sign = 1.0 if f.side == "right" else -1.0
    z = float(rng.uniform(-60.0, 20.0)) * anat.k
    centre = (z, anat.y_spine, anat.bx + sign * 0.3 * anat.r_vertebra)
    allowed = canvas.structures == LABEL["bone"]
    r = f.size_mm / 2.0
    mask = ellipsoid(
        canvas, centre, (r, r * 0.9, r), 1300.0, LABEL["bone"], FINDING_VALUES[f.label], allowed
    )
    _record(f, mask)


def paint_goitre(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """One thyroid lobe enlarged about twofold (thyroid density) beside the trachea."""
    s, k = anat.s, anat.k
    sign = 1.0 if f.side == "right" else -1.0
    centre = (anat.z_apex + 14.0 * k, anat.y_trachea + 6.0 * s, anat.mx + sign * 26.0 * s)
    allowed = anat.masks["body"] & (canvas.structures != LABEL["trachea and bronchi"])
    mask = ellipsoid(
        canvas,
        centre,
        (36.0 * k, 20.0 * s, 17.0 * s),
        HU["thyroid"],
        LABEL["thyroid"],
        FINDING_VALUES[f.label],
        allowed,
    )
    _record(f, mask)


def paint_breast_mass(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A round soft-tissue mass in the anterior chest wall / breast of one side."""
    sign = 1.0 if f.side == "right" else -1.0
    r = f.size_mm / 2.0
    y_front = anat.by + anat.b * 0.9 - r
    centre = (-45.0 * anat.k, y_front, anat.bx + sign * 0.5 * anat.a)
    allowed = anat.masks["body"] & ~anat.masks["thorax"]
    mask = ellipsoid(
        canvas,
        centre,
        (r,) * 3,
        HU["soft"] + 5.0,
        LABEL["breast"],
        FINDING_VALUES[f.label],
        allowed,
    )
    _record(f, mask)


def paint_liver_cyst(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A water-density (0 HU) cyst in the liver under the right dome."""
    liver = (canvas.structures == LABEL["abdomen"]) & (canvas.hu == HU["liver"])
    idx = np.argwhere(liver[:, ::2, ::2]) * np.array([1, 2, 2])
    if len(idx) == 0:
        return
    centre = canvas.grid.to_world(idx.mean(axis=0, keepdims=True))[0]
    r = f.size_mm / 2.0
    mask = ellipsoid(canvas, centre, (r,) * 3, 0.0, None, FINDING_VALUES[f.label], liver)
    _record(f, mask)
