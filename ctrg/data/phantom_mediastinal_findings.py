"""Paint the heart, vessel, mediastinal, esophageal and device findings into a phantom case."""

from __future__ import annotations

import numpy as np

from ctrg.data.phantom_anatomy import HU, LABEL, Anatomy
from ctrg.data.phantom_findings import Finding
from ctrg.data.phantom_grid import FULL, Canvas, ellipsoid, tube
from ctrg.data.phantom_lung_findings import value


def paint_cardiomegaly(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """The heart was drawn enlarged (``anat.cardio_factor``); mark its voxels."""
    heart = anat.masks["heart"] & (canvas.structures == LABEL["heart"])
    canvas.paint(FULL, heart, canvas.hu, None, value(f.label))
    f.n_voxels = int(heart.sum())


def paint_pericardial_effusion(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """Fluid (water density) between the heart and the pericardial fat, ``f.size_mm`` thick."""
    centre, radii = anat.heart_geometry()
    allowed = anat.masks["thorax"] | anat.masks["abdomen"] | anat.masks["heart"]
    t = f.size_mm
    ellipsoid(
        canvas, centre, [r + t + 3.0 for r in radii], HU["fat"], LABEL["heart"], 0, within=allowed
    )
    sac = ellipsoid(
        canvas,
        centre,
        [r + t for r in radii],
        HU["water"] - 3.0,
        LABEL["heart"],
        value(f.label),
        within=allowed,
    )
    heart = ellipsoid(canvas, centre, radii, HU["blood"], LABEL["heart"], 0)
    if sac is None or heart is None:
        return
    anat.masks["heart"] = heart
    f.n_voxels = int((sac & ~heart).sum())


def paint_coronary(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Calcified plaques in the epicardial fat along the named coronary courses."""
    centre, radii = anat.heart_geometry()
    course = {"LAD": (0.55, 0.8, -0.1), "RCA": (0.35, 0.3, 0.9), "circumflex": (0.45, -0.2, -0.85)}
    record = np.zeros(canvas.grid.shape, dtype=bool)
    vessels = f.location.split(",")
    for i in range(f.count):
        direction = np.array(course[vessels[i % len(vessels)]]) + rng.normal(0, 0.15, 3)
        direction /= np.linalg.norm(direction)
        point = np.asarray(centre) + direction * (np.asarray(radii) + 2.0)
        r = float(rng.uniform(3.5, 5.0))
        mask = ellipsoid(
            canvas, point, (r, r, r), float(rng.uniform(700, 1000)), LABEL["heart"], value(f.label)
        )
        if mask is not None:
            record |= mask
    f.n_voxels = int(record.sum())


def paint_aortic_calcification(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """Calcified plaques on the wall of the aortic arch and descending aorta."""
    points, radius = anat.paths["aorta"]
    record = np.zeros(canvas.grid.shape, dtype=bool)
    for _ in range(f.count):
        seg = int(rng.integers(1, 4))  # arch and descending thoracic aorta
        t = float(rng.uniform(0, 1))
        axis_point = points[seg] + t * (points[seg + 1] - points[seg])
        normal = rng.normal(0, 1, 3)
        axis = points[seg + 1] - points[seg]
        normal -= axis * (normal @ axis) / (axis @ axis)
        spot = axis_point + normal / np.linalg.norm(normal) * radius
        r = float(rng.uniform(3.5, 5.0))
        mask = ellipsoid(
            canvas,
            spot,
            (r * 1.4, r, r),
            float(rng.uniform(600, 950)),
            None,
            value(f.label),
            within=canvas.structures == LABEL["heart"],
        )
        if mask is not None:
            record |= mask
    f.n_voxels = int(record.sum())


def paint_hiatal_hernia(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """Stomach herniated above the hiatus behind the heart: wall, fluid and a gas cap."""
    points, _ = anat.paths["esophagus"]
    hiatus = points[2]
    r = f.size_mm / 2.0
    centre = (hiatus[0] + 0.7 * r, hiatus[1] + 0.3 * r, hiatus[2] + 0.3 * r)
    radii = (r * 0.9, r * 0.85, r)
    allowed = anat.masks["thorax"] | anat.masks["abdomen"]
    sac = ellipsoid(
        canvas, centre, radii, HU["soft"], LABEL["esophagus"], value(f.label), within=allowed
    )
    if sac is None:
        return
    inner = ellipsoid(
        canvas, centre, [x - 3.0 for x in radii], HU["fluid"] + 10.0, None, None, within=sac
    )
    if inner is not None:
        gas = inner & (canvas.grid.y > centre[1] - 0.1 * radii[1])  # supine: gas rises anteriorly
        canvas.paint(FULL, gas, HU["air"], None, None)
    f.n_voxels = int(sac.sum())


def paint_lymph_node(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """An enlarged node at a mediastinal station (short axis ``f.size_mm``)."""
    s, k = anat.s, anat.k
    r_short = f.size_mm / 2.0
    r_long = r_short * f.extra["long"]
    y_front = anat.y_trachea + anat.r_trachea
    where = {
        "right paratracheal": (20.0 * k, anat.y_trachea, anat.mx + anat.r_trachea + 4.0 + r_short),
        "subcarinal": (-18.0 * k - r_long * 0.5, anat.y_trachea - 4.0 * s, anat.mx),
        "aortopulmonary window": (8.0 * k, anat.y_trachea + 8.0 * s, anat.mx - 24.0 * s),
        "prevascular": (28.0 * k, y_front + 30.0 * s, anat.mx - 6.0 * s),
    }[f.location]
    allowed = anat.masks["mediastinum"] | anat.masks["thorax"]
    mask = ellipsoid(
        canvas,
        where,
        (r_long, r_short, r_short * 1.1),
        HU["soft"] + 8.0,
        LABEL["heart"],
        value(f.label),
        within=allowed,
    )
    f.extra["long_mm"] = float(np.round(2 * r_long))
    f.n_voxels = int(mask.sum()) if mask is not None else 0


def paint_device(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Port catheter, pacemaker (generator + lead) or nasogastric tube: metal/contrast density."""
    s, k = anat.s, anat.k
    record = np.zeros(canvas.grid.shape, dtype=bool)
    label, v = LABEL["others"], value(f.label)
    svc, _ = anat.paths["svc"]
    (hz, hy, hx), (rz, ry, rx) = anat.heart_geometry()
    if f.location == "nasogastric tube":
        points, _ = anat.paths["esophagus"]
        tube(canvas, points, 2.6, 900.0, label, v, record=record)
    else:
        side = 1.0 if f.location == "port catheter" else -1.0
        x_dev = anat.bx + side * 0.5 * anat.a
        y_dev = anat.by + anat.b * np.sqrt(1 - 0.25) - 2.0 - 0.45 * anat.fat
        z_dev = 35.0 * k
        size = (7.0, 5.0, 10.0) if side > 0 else (14.0 * k, 5.0, 22.0 * s)
        mask = ellipsoid(
            canvas, (z_dev, y_dev, x_dev), size, 2400.0, label, v, within=anat.masks["body"]
        )
        if mask is not None:
            record |= mask
        entry = (z_dev + 20.0 * k, anat.y_trachea + 20.0 * s, anat.bx + side * 0.3 * anat.a)
        path = [
            (z_dev, y_dev, x_dev),
            entry,
            (40.0 * k, svc[0][1], svc[0][2]),
            (hz + 0.45 * rz, svc[1][1], svc[1][2]),
        ]
        if f.location == "pacemaker":
            path.append((hz - 0.3 * rz, hy + 0.4 * ry, hx + 0.2 * rx))
        tube(canvas, path, 2.4, 2200.0, label, v, record=record)
    f.n_voxels = int(record.sum())
