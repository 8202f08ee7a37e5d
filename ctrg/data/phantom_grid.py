"""Voxel grid and painting canvas of the phantom: physical coordinates, primitives, labels.

The phantom is drawn in one canonical array order, ``(D, H, W) = (S, A, R)``: index ``d``
runs inferior -> superior, ``h`` posterior -> anterior and ``w`` patient left -> right, with
RAS+ world coordinates in millimetres (``x`` towards the patient's right, ``y`` anterior,
``z`` superior). Writers turn this into the stored orientation (see ``phantom_io``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Region = tuple[slice, slice, slice]


@dataclass
class Grid:
    """A regular voxel grid in canonical ``(S, A, R)`` order.

    Attributes:
        shape: ``(D, H, W)`` voxels.
        spacing: ``(sz, sy, sx)`` in mm.
        origin: RAS world coordinates ``(z0, y0, x0)`` in mm of voxel ``[0, 0, 0]``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    z: np.ndarray = field(init=False, repr=False)  # (D, 1, 1) mm
    y: np.ndarray = field(init=False, repr=False)  # (1, H, 1) mm
    x: np.ndarray = field(init=False, repr=False)  # (1, 1, W) mm

    def __post_init__(self) -> None:
        axes = [
            (self.origin[i] + self.spacing[i] * np.arange(self.shape[i])).astype(np.float32)
            for i in range(3)
        ]
        self.z = axes[0].reshape(-1, 1, 1)
        self.y = axes[1].reshape(1, -1, 1)
        self.x = axes[2].reshape(1, 1, -1)

    def box(
        self, lo: Sequence[float], hi: Sequence[float]
    ) -> tuple[Region, np.ndarray, np.ndarray, np.ndarray] | None:
        """Voxel sub-box covering the world box ``[lo, hi]`` (both ``(z, y, x)`` mm).

        Returns:
            ``(region, z, y, x)`` with broadcastable coordinate arrays of the sub-box, or
            None when the box misses the grid.
        """
        region = []
        for axis in range(3):
            a = int(np.floor((lo[axis] - self.origin[axis]) / self.spacing[axis]))
            b = int(np.ceil((hi[axis] - self.origin[axis]) / self.spacing[axis])) + 1
            a, b = max(a, 0), min(b, self.shape[axis])
            if a >= b:
                return None
            region.append(slice(a, b))
        reg = (region[0], region[1], region[2])
        return reg, self.z[reg[0]], self.y[:, reg[1]], self.x[:, :, reg[2]]

    def to_index(self, point: Sequence[float]) -> tuple[int, int, int]:
        """Nearest voxel index of a world point ``(z, y, x)`` (clipped into the grid)."""
        return tuple(
            int(np.clip(round((point[i] - self.origin[i]) / self.spacing[i]), 0, self.shape[i] - 1))
            for i in range(3)
        )  # type: ignore[return-value]

    def to_world(self, index: np.ndarray) -> np.ndarray:
        """World ``(z, y, x)`` mm of integer indices ``(N, 3)``."""
        return np.asarray(self.origin) + np.asarray(index) * np.asarray(self.spacing)


FULL: Region = (slice(None), slice(None), slice(None))


@dataclass
class Canvas:
    """Three aligned arrays being painted: HU (float32), structure labels and finding labels."""

    grid: Grid
    hu: np.ndarray = field(init=False)  # (D, H, W) float32
    structures: np.ndarray = field(init=False)  # (D, H, W) uint8
    findings: np.ndarray = field(init=False)  # (D, H, W) uint8

    def __post_init__(self) -> None:
        self.hu = np.full(self.grid.shape, -1000.0, dtype=np.float32)
        self.structures = np.zeros(self.grid.shape, dtype=np.uint8)
        self.findings = np.zeros(self.grid.shape, dtype=np.uint8)

    def paint(
        self,
        region: Region,
        mask: np.ndarray,
        hu: float | np.ndarray,
        structure: int | None = None,
        finding: int | None = None,
    ) -> int:
        """Set HU (and optionally structure / finding labels) where ``mask`` holds.

        Args:
            region: the sub-box the mask refers to.
            mask: bool array broadcastable to the region's shape.
            hu: a value, or an array of the region's shape (its masked part is used).
            structure: label value to write (1..10), or None to keep.
            finding: finding value to write (1..18), or None to keep.

        Returns:
            the number of voxels painted.
        """
        target_shape = self.hu[region].shape
        mask = np.broadcast_to(mask, target_shape)
        count = int(mask.sum())
        if count == 0:
            return 0
        view = self.hu[region]
        if np.ndim(hu) == 0:
            view[mask] = hu
        else:
            view[mask] = np.broadcast_to(hu, target_shape)[mask]
        if structure is not None:
            self.structures[region][mask] = structure
        if finding is not None:
            self.findings[region][mask] = finding
        return count


def ellipse_mask(
    grid: Grid,
    cx: np.ndarray | float,
    cy: np.ndarray | float,
    ax: np.ndarray | float,
    ay: np.ndarray | float,
) -> np.ndarray:
    """Axial ellipses (one per slice when the parameters are ``(D, 1, 1)`` arrays).

    Returns:
        bool ``(D, H, W)`` mask.
    """
    ax = np.maximum(ax, 1e-3)
    ay = np.maximum(ay, 1e-3)
    return ((grid.x - cx) / ax) ** 2 + ((grid.y - cy) / ay) ** 2 <= 1.0


def ellipsoid(
    canvas: Canvas,
    center: Sequence[float],
    radii: Sequence[float],
    hu: float,
    structure: int | None = None,
    finding: int | None = None,
    within: np.ndarray | None = None,
) -> np.ndarray | None:
    """Paint an axis-aligned ellipsoid (``center``, ``radii`` as ``(z, y, x)`` mm).

    Args:
        within: optional full-size bool mask restricting where paint lands.

    Returns:
        the full-size bool mask of painted voxels, or None if it missed the grid.
    """
    lo = [c - r for c, r in zip(center, radii)]
    hi = [c + r for c, r in zip(center, radii)]
    hit = canvas.grid.box(lo, hi)
    if hit is None:
        return None
    region, z, y, x = hit
    mask = (
        ((z - center[0]) / radii[0]) ** 2
        + ((y - center[1]) / radii[1]) ** 2
        + ((x - center[2]) / radii[2]) ** 2
    ) <= 1.0
    if within is not None:
        mask = mask & within[region]
    canvas.paint(region, mask, hu, structure, finding)
    full = np.zeros(canvas.grid.shape, dtype=bool)
    full[region] = mask
    return full


def tube(
    canvas: Canvas,
    points: Sequence[Sequence[float]],
    radii: Sequence[float] | float,
    hu: float,
    structure: int | None = None,
    finding: int | None = None,
    within: np.ndarray | None = None,
    record: np.ndarray | None = None,
) -> int:
    """Paint a tube (capsules) along a polyline of world points ``(z, y, x)`` mm.

    Args:
        radii: one radius per point (linearly interpolated along segments) or one for all.
        within: optional full-size bool mask restricting where paint lands.
        record: optional full-size bool array; painted voxels are set True in it.

    Returns:
        number of voxels painted (counting overlaps between segments once per segment).
    """
    pts = np.asarray(points, dtype=np.float32)
    rad = np.broadcast_to(np.asarray(radii, dtype=np.float32), (len(pts),))
    total = 0
    for a, b, ra, rb in zip(pts[:-1], pts[1:], rad[:-1], rad[1:]):
        rmax = max(ra, rb)
        hit = canvas.grid.box(np.minimum(a, b) - rmax, np.maximum(a, b) + rmax)
        if hit is None:
            continue
        region, z, y, x = hit
        d = b - a
        length2 = float(d @ d) or 1e-6
        t = ((z - a[0]) * d[0] + (y - a[1]) * d[1] + (x - a[2]) * d[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        dist2 = (z - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (x - a[2] - t * d[2]) ** 2
        mask = dist2 <= (ra + t * (rb - ra)) ** 2
        if within is not None:
            mask = mask & within[region]
        total += canvas.paint(region, mask, hu, structure, finding)
        if record is not None:
            record[region] |= np.broadcast_to(mask, record[region].shape)
    return total


def _interpolation_matrix(n: int, c: int) -> np.ndarray:
    """Linear interpolation weights from ``c`` coarse samples to ``n`` points, ``(n, c)``."""
    pos = np.linspace(0.0, c - 1.0, n)
    lo = np.minimum(np.floor(pos).astype(int), c - 2)
    frac = (pos - lo).astype(np.float32)
    matrix = np.zeros((n, c), dtype=np.float32)
    matrix[np.arange(n), lo] = 1.0 - frac
    matrix[np.arange(n), lo + 1] = frac
    return matrix


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int, int], coarse: tuple[int, int, int]
) -> np.ndarray:
    """Smooth random field in about [-1, 1]: coarse Gaussian noise upsampled trilinearly.

    Separable interpolation by three small matrix products (much faster than ndimage.zoom).

    Returns:
        float32 ``shape`` array.
    """
    coarse = tuple(max(2, c) for c in coarse)
    small = rng.standard_normal(coarse).astype(np.float32)
    mz, my, mx = (_interpolation_matrix(n, c) for n, c in zip(shape, coarse))
    field_ = np.tensordot(mz, small, axes=(1, 0))  # (D, cy, cx)
    field_ = np.einsum("hy,dyx->dhx", my, field_)  # (D, H, cx)
    field_ = np.tensordot(field_, mx, axes=(2, 1))  # (D, H, W)
    return np.clip(field_ / 1.5, -1.0, 1.0).astype(np.float32)
