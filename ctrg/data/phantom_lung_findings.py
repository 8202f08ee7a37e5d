"""Paint the lung, airway and pleural findings into a phantom case.

Each painter writes the finding's HU signature only where the structure map says lung (or
the pleural space for effusions), sets the finding map to the label's value and records the
number of voxels on the ``Finding``.
"""

from __future__ import annotations

import numpy as np

from ctrg.anatomy import CTRATE_LABELS
from ctrg.data.phantom_anatomy import HU, LABEL, Anatomy, cavity_profile
from ctrg.data.phantom_findings import LOBE_CODE, Finding
from ctrg.data.phantom_grid import FULL, Canvas, ellipse_mask, ellipsoid, smooth_field, tube


def value(label: str) -> int:
    """Finding-map value of a CT-RATE label (index + 1)."""
    return CTRATE_LABELS.index(label) + 1


def lung_mask(canvas: Canvas) -> np.ndarray:
    return canvas.structures == LABEL["lung"]


def parenchyma(canvas: Canvas) -> np.ndarray:
    """Aerated lung without vessels or earlier lesions (where diffuse patterns are drawn)."""
    return lung_mask(canvas) & (canvas.hu < -500) & (canvas.findings == 0)


def _sides(side: str) -> tuple[str, ...]:
    return ("right", "left") if side == "bilateral" else (side,)


def _side_mask(canvas: Canvas, anat: Anatomy, side: str) -> np.ndarray:
    """Voxels on one side (or both) of the mediastinal midline, ``(1, 1, W)``."""
    if side == "bilateral":
        return np.ones_like(canvas.grid.x, dtype=bool)
    return canvas.grid.x > anat.mx if side == "right" else canvas.grid.x <= anat.mx


def lobe_point(
    canvas: Canvas, anat: Anatomy, side: str, lobe: str, radius: float, rng: np.random.Generator
) -> np.ndarray | None:
    """A random lung point of a lobe whose +-0.7 radius neighbours are lung too.

    Returns:
        world ``(z, y, x)`` mm, or None when the lobe has no room.
    """
    mask = lung_mask(canvas)
    idx = np.argwhere(mask[:, ::2, ::2]) * np.array([1, 2, 2])
    if len(idx) == 0:
        return None
    world = canvas.grid.to_world(idx)
    codes = anat.lobe(world[:, 0], world[:, 1], world[:, 2])
    pool = world[codes == LOBE_CODE.get((side, lobe), -1)]
    if len(pool) == 0:
        pool = world[(world[:, 2] > anat.mx) == (side == "right")]
    for point in pool[rng.choice(len(pool), size=min(60, len(pool)), replace=False)]:
        offsets = np.vstack([np.eye(3), -np.eye(3)]) * 0.7 * radius
        if all(mask[canvas.grid.to_index(point + o)] for o in offsets):
            return point
    return pool[int(rng.integers(len(pool)))] if len(pool) else None


def paint_nodule(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """A solid, slightly ovoid nodule of diameter ``f.size_mm``."""
    radius = f.size_mm / 2.0
    centre = lobe_point(canvas, anat, f.side, f.lobe, radius, rng)
    if centre is None:
        return
    radii = radius * rng.uniform(0.88, 1.12, 3)
    mask = ellipsoid(
        canvas,
        centre,
        radii,
        float(rng.uniform(30, 55)),
        None,
        value(f.label),
        within=lung_mask(canvas),
    )
    f.n_voxels = int(mask.sum()) if mask is not None else 0


def paint_patch(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Ground-glass opacity (about -550 HU) or consolidation (soft tissue with air bronchogram)."""
    radius = f.size_mm / 2.0
    centre = lobe_point(canvas, anat, f.side, f.lobe, radius * 0.6, rng)
    if centre is None:
        return
    consolidation = f.label == "Consolidation"
    hu = HU["soft"] - 5.0 if consolidation else -560.0 + 40.0 * float(rng.standard_normal())
    radii = radius * rng.uniform(0.75, 1.15, 3)
    mask = ellipsoid(canvas, centre, radii, hu, None, value(f.label), within=lung_mask(canvas))
    if mask is None:
        return
    if consolidation:
        end = centre + np.array(
            [radii[0] * 0.5, radii[1] * 0.2, (1 if f.side == "right" else -1) * radii[2] * 0.7]
        )
        tube(canvas, [centre - (end - centre), end], 2.2, HU["air"], None, None, within=mask)
    f.n_voxels = int(mask.sum())


def paint_emphysema(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Patchy low attenuation (about -960 HU) of the upper zones with scattered bullae."""
    grid = canvas.grid
    lungs = parenchyma(canvas) & _side_mask(canvas, anat, f.side)
    depth = {"mild": 0.4, "moderate": 0.55, "severe": 0.7}[f.amount]
    height = (grid.z - anat.z_dome_l) / (anat.z_apex - anat.z_dome_l)  # 0 base -> 1 apex
    patches = smooth_field(rng, grid.shape, tuple(max(3, n // 8) for n in grid.shape))
    zone = lungs & (height + 0.4 * patches > 1.0 - depth)
    base = -962.0 + 10.0 * patches
    canvas.paint(FULL, zone, base, None, value(f.label))
    idx = np.argwhere(zone[:, ::3, ::3]) * np.array([1, 3, 3])
    n_bullae = min(len(idx), {"mild": 4, "moderate": 8, "severe": 14}[f.amount])
    for i in rng.choice(len(idx), size=n_bullae, replace=False) if n_bullae else []:
        centre = grid.to_world(idx[i])
        r = float(rng.uniform(5, 14)) * anat.s
        ellipsoid(canvas, centre, (r, r, r), HU["air"] + 8.0, None, value(f.label), within=zone)
    f.n_voxels = int(zone.sum())


def _posterior_band(mask: np.ndarray, depth_vox: np.ndarray | int) -> np.ndarray:
    """Voxels of ``mask`` within ``depth_vox`` rows of its most posterior voxel per column.

    Args:
        mask: bool ``(D, H, W)``; axis 1 runs posterior -> anterior.
        depth_vox: band depth in rows, scalar or ``(D, 1, W)``.
    """
    first = np.argmax(mask, axis=1)[:, None, :]  # (D, 1, W)
    rows = np.arange(mask.shape[1]).reshape(1, -1, 1)
    return mask & (rows < first + depth_vox)


def paint_atelectasis(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Collapsed (soft-tissue density) dependent band of the lower lobe base."""
    grid = canvas.grid
    zd = anat.diaphragm_z(grid)
    lungs = lung_mask(canvas) & _side_mask(canvas, anat, f.side)
    lungs &= grid.z < zd + 55.0 * anat.k
    band = _posterior_band(lungs, max(1, int(round(f.size_mm / grid.spacing[1]))))
    canvas.paint(FULL, band, HU["soft"] - 10.0, None, value(f.label))
    f.n_voxels = int(band.sum())


def dependent_fluid(
    canvas: Canvas, anat: Anatomy, side: str, depth_mm: float, height: float
) -> np.ndarray:
    """Pleural-space voxels of a dependent effusion ``depth_mm`` deep at the base, tapering
    to nothing ``height`` mm above the diaphragm; bool ``(D, H, W)``."""
    grid = canvas.grid
    zd = anat.diaphragm_z(grid)
    space = (lung_mask(canvas) | (canvas.structures == LABEL["pleura"])) & anat.masks["thorax"]
    space &= _side_mask(canvas, anat, side) & ~anat.masks["mediastinum"]
    taper = np.clip(1.0 - (grid.z - zd) / height, 0.0, 1.0)  # (D, H, W)
    depth = np.round(depth_mm * np.sqrt(taper).max(axis=1, keepdims=True) / grid.spacing[1])
    return _posterior_band(space, depth.astype(int)) & (grid.z < zd + height)


def paint_effusion(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Dependent pleural fluid: thickest at the base, tapering upwards; becomes pleura."""
    fluid = dependent_fluid(canvas, anat, f.side, f.size_mm, (2.5 * f.size_mm + 40.0) * anat.k)
    canvas.paint(FULL, fluid, HU["fluid"], LABEL["pleura"], value(f.label))
    f.n_voxels = int(fluid.sum())


def paint_fibrosis(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Linear fibrotic bands (parenchymal sequelae) in the upper lobes, reaching the pleura."""
    total = 0
    lungs = lung_mask(canvas)
    record = np.zeros(canvas.grid.shape, dtype=bool)
    for i in range(f.count):
        side = _sides(f.side)[i % len(_sides(f.side))]
        start = lobe_point(canvas, anat, side, "upper lobe", 6.0, rng)
        if start is None:
            continue
        direction = rng.normal(0, 1, 3)
        direction[2] = abs(direction[2]) * (1 if side == "right" else -1)
        end = start + direction / np.linalg.norm(direction) * rng.uniform(25, 45) * anat.s
        total += tube(
            canvas,
            [start, end],
            3.2 * anat.s,
            -80.0,
            None,
            value(f.label),
            within=lungs,
            record=record,
        )
    f.n_voxels = int(record.sum())


def paint_mosaic(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Geographic low-attenuation (air trapping) lobules next to denser normal lung."""
    grid = canvas.grid
    lungs = parenchyma(canvas)
    pattern = smooth_field(rng, grid.shape, tuple(max(3, n // 6) for n in grid.shape))
    low = lungs & (pattern > 0.1)
    canvas.paint(FULL, low, -935.0, None, value(f.label))
    f.n_voxels = int(low.sum())


def paint_septal(canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator) -> None:
    """Subpleural reticulation of the lower zones: thickened septa on a hazy background."""
    grid = canvas.grid
    cav_a, cav_b = cavity_profile(anat, grid)
    core = ellipse_mask(grid, anat.bx, anat.by, cav_a - 22.0 * anat.s, cav_b - 22.0 * anat.s)
    zone = parenchyma(canvas) & ~core & (grid.z < -20.0 * anat.k)
    step = 11.0 * anat.s
    septa = (
        (np.mod(grid.x, step) < 3.0) | (np.mod(grid.y, step) < 3.0) | (np.mod(grid.z, step) < 3.0)
    )
    hu = np.where(septa, -250.0, -720.0).astype(np.float32)
    canvas.paint(FULL, zone, hu, None, value(f.label))
    f.n_voxels = int(zone.sum())


def paint_bronchiectasis(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """Dilated thick-walled bronchi running out into the lower lobes."""
    lungs = lung_mask(canvas)
    record = np.zeros(canvas.grid.shape, dtype=bool)
    for side in _sides(f.side):
        points, _ = anat.paths[f"{side}_lower"]
        hilum, tip = points
        for _ in range(3):
            end = tip + rng.normal(0, 14.0, 3) * anat.s
            start = hilum + (tip - hilum) * 0.3
            r = float(rng.uniform(4.5, 6.5)) * anat.s + (1.5 if f.location == "varicose" else 0.0)
            tube(
                canvas,
                [start, end],
                r + 2.5,
                HU["soft"],
                None,
                value(f.label),
                within=lungs,
                record=record,
            )
            tube(canvas, [start, end], r, HU["air"], None, None, within=record)
    f.n_voxels = int(record.sum())


def bronchial_cuff(
    canvas: Canvas, anat: Anatomy, thickness: float, hu: float, finding: int
) -> np.ndarray:
    """Paint a soft-tissue cuff ``thickness`` mm thick around the main and lobar bronchi
    (structure: trachea and bronchi), then reopen their lumens; returns the cuff's bool mask."""
    record = np.zeros(canvas.grid.shape, dtype=bool)
    allowed = lung_mask(canvas) | (canvas.structures == LABEL["trachea and bronchi"])
    names = [n for n in anat.paths if n.split("_")[0] in ("right", "left")]
    for name in names:
        points, radius = anat.paths[name]
        tube(
            canvas,
            points,
            radius + thickness,
            hu,
            LABEL["trachea and bronchi"],
            finding,
            within=allowed,
            record=record,
        )
    for name in names:
        points, radius = anat.paths[name]
        lumen = radius * (1.6 if name.endswith("main") else 1.0)
        tube(canvas, points, lumen, HU["air"], None, 0, within=record)
    return record


def paint_peribronchial(
    canvas: Canvas, anat: Anatomy, f: Finding, rng: np.random.Generator
) -> None:
    """A soft-tissue cuff around the main and lobar bronchi (structure: trachea and bronchi)."""
    bronchial_cuff(canvas, anat, 5.0 * anat.s, HU["soft"] + 5.0, value(f.label))
    f.n_voxels = int((canvas.findings == value(f.label)).sum())
