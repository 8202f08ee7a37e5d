"""Phantom anatomy: per-case body geometry, body wall, thoracic cavity, lungs, diaphragm, abdomen.

All sizes are in millimetres in RAS+ world coordinates (``x`` to the patient's right, ``y``
anterior, ``z`` superior), with the carina at ``z = 0``. ``k`` scales cranio-caudal
distances (scan coverage / 300 mm) and ``s`` scales in-plane distances (body half-width /
160 mm), so that small and large patients keep their proportions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.data.phantom_grid import FULL, Canvas, Grid, ellipse_mask, ellipsoid, smooth_field

LABEL: dict[str, int] = {name: i + 1 for i, name in enumerate(CHEST_STRUCTURES)}
"""Structure label value in the structure map (index in CHEST_STRUCTURES + 1)."""

HU: dict[str, float] = {
    "air": -1000.0,
    "lung": -860.0,
    "fat": -95.0,
    "water": 5.0,
    "fluid": 12.0,
    "soft": 40.0,
    "muscle": 50.0,
    "blood": 42.0,
    "liver": 58.0,
    "spleen": 48.0,
    "thyroid": 105.0,
    "cartilage": 120.0,
    "cancellous": 330.0,
    "cortical": 850.0,
    "rib": 550.0,
    "skin": 25.0,
    "table": 60.0,
}
"""Nominal tissue densities (HU) before blur and noise."""


@dataclass
class Anatomy:
    """Sampled geometry of one case (mm, world coordinates) and masks filled while drawing."""

    coverage: float  # cranio-caudal extent of the scan
    k: float  # coverage / 300
    s: float  # body half-width / 160
    bx: float  # body centre x
    by: float  # body centre y
    a: float  # body half-width at chest level
    b: float  # body half-depth at chest level
    fat: float  # subcutaneous fat thickness
    muscle: float  # chest wall muscle thickness
    ac: float  # thoracic cavity half-width
    bc: float  # thoracic cavity half-depth
    z_top: float
    z_bottom: float
    z_apex: float  # lung apex
    z_dome_r: float  # right hemidiaphragm dome
    z_dome_l: float  # left hemidiaphragm dome
    female: bool
    cardio_factor: float = 1.0  # heart size factor (> 1.2 for cardiomegaly)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    paths: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict, repr=False)

    @property
    def mx(self) -> float:
        """Mediastinal midline x."""
        return self.bx - 4.0 * self.s

    @property
    def r_vertebra(self) -> float:
        return 17.0 * self.s

    @property
    def y_spine(self) -> float:
        """Centre y of the vertebral bodies (they bulge into the posterior cavity)."""
        return self.by - self.bc + self.r_vertebra * 0.9

    @property
    def y_esophagus(self) -> float:
        return self.y_spine + self.r_vertebra + 9.0 * self.s

    @property
    def r_trachea(self) -> float:
        return 9.0 * self.s

    @property
    def y_trachea(self) -> float:
        return self.y_esophagus + 8.0 * self.s + self.r_trachea + 2.0

    def heart_geometry(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Heart ellipsoid ``(centre, radii)`` as ``(z, y, x)``; grows with ``cardio_factor``."""
        f = self.cardio_factor
        rx, ry, rz = 0.40 * self.ac * f, 0.42 * self.bc * f, 48.0 * self.k * min(f, 1.15)
        cy = self.by + self.bc - ry - 4.0
        cx = self.bx - 0.14 * self.ac * f
        cz = min(self.z_dome_r, self.z_dome_l) - 8.0 * self.k + rz
        return (cz, cy, cx), (rz, ry, rx)

    def diaphragm_z(self, grid: Grid) -> np.ndarray:
        """Diaphragm surface height over the axial plane: max of two paraboloid domes.

        Returns:
            float32 ``(1, H, W)``.
        """
        depth = 70.0 * self.k
        domes = []
        for z_peak, side in ((self.z_dome_r, 1.0), (self.z_dome_l, -1.0)):
            px = self.bx + side * 0.45 * self.ac
            dome = z_peak - depth * (
                ((grid.x - px) / (0.75 * self.ac)) ** 2
                + ((grid.y - self.by) / (1.1 * self.bc)) ** 2
            )
            domes.append(dome)
        return np.maximum(domes[0], domes[1]).astype(np.float32)

    def lobe(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Lobe code of points (0 RUL, 1 RML, 2 RLL, 3 LUL, 4 LLL) from approximate fissures.

        The oblique fissure runs from posterior-superior to anterior-inferior; the right
        horizontal fissure separates the middle lobe below it from the upper lobe.
        """
        z_hilum, y_hilum = -15.0 * self.k, self.by
        oblique = z_hilum - 0.9 * (y - y_hilum) * self.k / self.s
        lower = z < oblique
        right = x > self.mx
        middle = right & ~lower & (z < z_hilum - 5.0 * self.k) & (y > y_hilum - 10.0 * self.s)
        code = np.where(right, np.where(lower, 2, np.where(middle, 1, 0)), np.where(lower, 4, 3))
        return code.astype(np.int8)


def sample_anatomy(
    rng: np.random.Generator, geometry: dict[str, Any], synth: dict[str, Any]
) -> Anatomy:
    """Draw one patient's body geometry.

    Args:
        geometry: ``coverage``, ``fov`` (mm) and ``z_bottom`` of the scan.
        synth: the synth config section (body size ranges, female fraction).
    """
    a = float(rng.uniform(*synth["body_half_width_mm"]))
    a = min(a, 0.44 * geometry["fov"])
    s = a / 160.0
    b = a * float(rng.uniform(0.62, 0.74))
    fat = float(rng.uniform(6.0, 30.0)) * s
    muscle = float(rng.uniform(7.0, 13.0)) * s
    wall = 11.0 * s
    k = geometry["coverage"] / 300.0
    dome_r = -115.0 * k + float(rng.uniform(-12, 12)) * k
    return Anatomy(
        coverage=geometry["coverage"],
        k=k,
        s=s,
        bx=float(rng.uniform(-1, 1) * synth["position_jitter_mm"]),
        by=float(rng.uniform(-1, 1) * synth["position_jitter_mm"]) + 10.0,
        a=a,
        b=b,
        fat=fat,
        muscle=muscle,
        ac=a - fat - muscle - wall,
        bc=b - fat - muscle - wall,
        z_top=geometry["z_bottom"] + geometry["coverage"],
        z_bottom=geometry["z_bottom"],
        z_apex=float(rng.uniform(78, 92)) * k,
        z_dome_r=dome_r,
        z_dome_l=dome_r - float(rng.uniform(8, 22)) * k,
        female=bool(rng.random() < synth["female_fraction"]),
    )


def _profile(anat: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Body half-width and half-depth per slice: chest, narrowing into the neck.

    Returns:
        two float32 ``(D, 1, 1)`` arrays.
    """
    k = anat.k
    t = np.clip((grid.z - 45.0 * k) / (60.0 * k), 0.0, 1.0)
    widen = 1.0 + 0.04 * np.clip((grid.z + 60.0 * k) / (120.0 * k), 0.0, 1.0)
    half_w = anat.a * widen * (1.0 - 0.55 * t)
    half_d = anat.b * (1.0 - 0.35 * t)
    return half_w.astype(np.float32), half_d.astype(np.float32)


def cavity_profile(anat: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Thoracic cavity half-axes per slice; zero above the lung apex.

    Returns:
        two float32 ``(D, 1, 1)`` arrays.
    """
    k = anat.k
    z_shoulder = anat.z_apex - 70.0 * k
    frac = np.clip((grid.z - z_shoulder) / (anat.z_apex - z_shoulder), 0.0, 1.0)
    shrink = np.sqrt(np.clip(1.0 - frac**2, 0.0, 1.0))
    taper = 0.92 + 0.08 * np.clip((grid.z + 80.0 * k) / (100.0 * k), 0.0, 1.0)
    ac = anat.ac * taper * np.maximum(shrink, 0.0)
    bc = anat.bc * (0.45 + 0.55 * shrink)
    bc = np.where(frac >= 1.0, 0.0, bc)
    return ac.astype(np.float32), bc.astype(np.float32)


def draw_body_wall(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Table, skin, subcutaneous fat, chest-wall muscle and the intercostal band."""
    grid = canvas.grid
    half_w, half_d = _profile(anat, grid)
    table_y = anat.by - anat.b - 6.0
    table = (
        (grid.y < table_y) & (grid.y > table_y - 8.0) & (np.abs(grid.x - anat.bx) < 0.9 * anat.a)
    )
    canvas.paint(FULL, np.broadcast_to(table, grid.shape), HU["table"], 0)
    body = ellipse_mask(grid, anat.bx, anat.by, half_w, half_d)
    canvas.paint(FULL, body, HU["skin"], LABEL["breast"])
    inner = ellipse_mask(grid, anat.bx, anat.by, half_w - 2.0, half_d - 2.0)
    canvas.paint(FULL, inner, HU["fat"], LABEL["breast"])
    muscle = ellipse_mask(grid, anat.bx, anat.by, half_w - 2.0 - anat.fat, half_d - 2.0 - anat.fat)
    canvas.paint(FULL, muscle, HU["muscle"], LABEL["breast"])
    s = anat.s
    y_canal = anat.y_spine - 0.85 * anat.r_vertebra - 8.0 * s
    y_back = anat.by - anat.b + 3.0
    for side in (1.0, -1.0):  # erector spinae between the laminae and the skin of the back
        cx, cy = anat.bx + side * 22.0 * s, 0.5 * (y_canal + y_back)
        ry = max(0.5 * (y_canal - y_back) + 4.0 * s, 6.0 * s)
        back = ((grid.x - cx) / (17.0 * s)) ** 2 + ((grid.y - cy) / ry) ** 2 <= 1.0
        canvas.paint(FULL, back & inner, HU["muscle"], LABEL["breast"])
    anat.masks["body"] = body
    cav_a, cav_b = cavity_profile(anat, grid)
    band_a = np.where(cav_b > 0, cav_a + 11.0 * anat.s, 0.0)
    band_b = np.where(cav_b > 0, cav_b + 11.0 * anat.s, 0.0)
    band = ellipse_mask(grid, anat.bx, anat.by, band_a, band_b) & muscle
    canvas.paint(FULL, band, HU["muscle"], LABEL["pleura"])
    anat.masks["rib_band"] = band & ~ellipse_mask(grid, anat.bx, anat.by, cav_a, cav_b)
    if anat.female:
        _draw_breasts(canvas, anat, rng)


def _draw_breasts(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Two breast mounds anterior to the chest wall: fat with fibroglandular tissue."""
    size = float(rng.uniform(35.0, 60.0)) * anat.s
    z = -55.0 * anat.k
    for side in (1.0, -1.0):
        centre = (z, anat.by + anat.b * 0.78, anat.bx + side * 0.5 * anat.a)
        radii = (size * 1.1, size, size * 1.15)
        mask = ellipsoid(canvas, centre, radii, HU["fat"], LABEL["breast"])
        if mask is None:
            continue
        gland = ellipsoid(canvas, centre, [r * 0.6 for r in radii], 20.0, LABEL["breast"])
        if gland is not None:
            anat.masks.setdefault("breast", np.zeros(canvas.grid.shape, bool))
            anat.masks["breast"] |= mask


def draw_cavity(canvas: Canvas, anat: Anatomy, rng: np.random.Generator) -> None:
    """Lungs (with a gravity gradient and texture), pleural lining, diaphragm and abdomen."""
    grid = canvas.grid
    cav_a, cav_b = cavity_profile(anat, grid)
    cavity = ellipse_mask(grid, anat.bx, anat.by, cav_a, cav_b)
    zd = anat.diaphragm_z(grid)
    below = grid.z < zd
    anat.masks["cavity"] = cavity
    abdomen_a = anat.ac * 1.02
    abdomen = ellipse_mask(grid, anat.bx, anat.by, abdomen_a, anat.bc) & below
    canvas.paint(FULL, abdomen, HU["fat"], LABEL["abdomen"])
    anat.masks["abdomen"] = abdomen
    thorax = cavity & ~below
    gradient = (anat.by + anat.bc - grid.y) / (2.0 * anat.bc)  # 0 anterior -> 1 posterior
    texture = smooth_field(rng, grid.shape, tuple(max(2, n // 12) for n in grid.shape))
    lung_hu = HU["lung"] - 25.0 + 60.0 * gradient + 15.0 * texture
    canvas.paint(FULL, thorax, lung_hu, LABEL["lung"])
    lining = thorax & ~ellipse_mask(grid, anat.bx, anat.by, cav_a - 3.0, cav_b - 3.0)
    canvas.paint(FULL, lining, HU["fat"] + 40.0, LABEL["pleura"])
    diaphragm = cavity & ~below & (grid.z < zd + 6.0 * anat.s)
    canvas.paint(FULL, diaphragm, HU["muscle"] - 5.0, LABEL["pleura"])
    anat.masks["thorax"] = thorax
    _draw_abdominal_organs(canvas, anat, zd)


def _draw_abdominal_organs(canvas: Canvas, anat: Anatomy, zd: np.ndarray) -> None:
    """Liver (right, under the dome), stomach with a gas cap and spleen (left)."""
    grid = canvas.grid
    abdomen = anat.masks["abdomen"]
    liver = abdomen & (grid.x > anat.bx - 0.25 * anat.ac) & (grid.z < zd - 2.0)
    liver &= ((grid.x - anat.bx - 0.1 * anat.ac) / (1.0 * anat.ac)) ** 2 + (
        (grid.y - anat.by) / (0.95 * anat.bc)
    ) ** 2 <= 1.0
    canvas.paint(FULL, liver, HU["liver"], LABEL["abdomen"])
    s, k = anat.s, anat.k
    z_st = anat.z_dome_l - 45.0 * k
    centre = (z_st, anat.by + 0.2 * anat.bc, anat.bx - 0.45 * anat.ac)
    radii = (40.0 * k, 0.4 * anat.bc, 0.35 * anat.ac)
    stomach = ellipsoid(canvas, centre, radii, HU["fluid"] + 8.0, LABEL["abdomen"], within=abdomen)
    if stomach is not None:
        gas = stomach & (grid.y > centre[1] + 0.35 * radii[1])
        canvas.paint(FULL, gas, HU["air"], LABEL["abdomen"])
        anat.masks["stomach"] = stomach
    spleen_c = (anat.z_dome_l - 40.0 * k, anat.by - 0.55 * anat.bc, anat.bx - 0.7 * anat.ac)
    ellipsoid(
        canvas,
        spleen_c,
        (45.0 * k, 35.0 * s, 22.0 * s),
        HU["spleen"],
        LABEL["abdomen"],
        within=abdomen,
    )
