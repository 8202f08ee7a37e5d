"""Resampling to a target spacing, HU windowing and centre crop/pad in one canonical orientation.

Conventions (the ones every other stage relies on):

* **Native layout.** A volume enters as an array ``(K, J, I)``: the voxel axes ``(i, j, k)``
  of its affine, reversed. NIfTI data (stored with ``i`` fastest) is then C-contiguous, and
  DICOM slices are stacked the same way (slice, row, column).
* **Canonical orientation.** Outputs are nibabel's RAS+ canonical orientation transposed to
  ``(S, A, R)``: ``array[d, h, w]`` with ``d`` inferior->superior, ``h`` posterior->anterior,
  ``w`` left->right. Reorientation is a permutation plus flips (closest axes, as
  ``nibabel.as_closest_canonical``); oblique affines are not rotated.
* **Grid (align_corners=True).** Along an axis with ``n`` voxels of spacing ``s`` and target
  spacing ``t`` the output has ``m = round((n - 1) * s / t) + 1`` voxels, and output voxel
  ``q`` samples input index ``q * (n - 1) / (m - 1)``: the first and the last voxel centres
  coincide, nothing is extrapolated, and the *achieved* spacing ``(n - 1) * s / (m - 1)``
  (within half an output voxel over the field of view of the target) is what the manifest
  records. This is exactly ``F.interpolate(..., align_corners=True)``, and exactly MONAI
  ``Spacingd(pixdim=<achieved spacing>)`` (MONAI aligns the first voxel centres and keeps
  ``pixdim``), which the benchmark uses for its equal-output check.
* **Crop/pad.** Centred in the canonical orientation: crop starts at ``(m - size) // 2``, pad
  puts ``(size - m) // 2`` voxels before; the pad value is the window's low end (-1 after
  normalisation; 0 for label maps).
* **Intensity.** ``clip(HU, lo, hi)`` scaled linearly to ``[-1, 1]``. Everything linear
  (rescale slope/intercept, window scale) is folded into the one pass that casts the stored
  values to float32 while reorienting them; only the offset and the clip follow interpolation.
* **Speed/memory.** One full-size float32 copy at most (reused from case to case); strong
  downsampling (the CPU default grid) reads only the planes the output samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ResamplePlan:
    """How one native volume maps onto the output grid (all tuples in canonical S, A, R order).

    Attributes:
        axis_of_output: for output axis ``o`` (0=S, 1=A, 2=R) the native array axis feeding it.
        flipped: for output axis ``o``, whether the native axis runs opposite to it.
        shape: canonical shape before resampling.
        spacing: canonical spacing ``(Z, Y, X)`` mm before resampling.
        resampled_shape: canonical shape after resampling (before crop/pad).
        resampled_spacing: achieved spacing ``(Z, Y, X)`` mm.
        start: first resampled index kept per axis (negative = padding before).
        out_shape: the final ``(D, H, W)``.
    """

    axis_of_output: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    resampled_shape: tuple[int, int, int]
    resampled_spacing: tuple[float, float, float]
    start: tuple[int, int, int]
    out_shape: tuple[int, int, int]


def resampled_size(n: int, spacing: float, target: float) -> tuple[int, float]:
    """Output voxel count and achieved spacing along one axis (align_corners=True grid)."""
    if n <= 1:
        return 1, float(target)
    m = max(2, int(round((n - 1) * spacing / target)) + 1)
    return m, (n - 1) * spacing / (m - 1)


def plan_resample(
    affine: np.ndarray,
    native_shape: tuple[int, ...],
    target_spacing: tuple[float, float, float],
    target_shape: tuple[int, int, int],
) -> ResamplePlan:
    """Plan reorientation, resampling and crop/pad for a volume.

    Args:
        affine: 4x4 voxel ``(i, j, k)`` -> RAS mm affine.
        native_shape: array shape ``(K, J, I)``.
        target_spacing: target ``(Z, Y, X)`` spacing in mm (canonical S, A, R axes).
        target_shape: final ``(D, H, W)``.
    """
    affine = np.asarray(affine, dtype=float)
    ornt = nib.orientations.io_orientation(affine)  # per voxel axis: (RAS axis, +-1)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))  # per voxel axis i, j, k
    axes, flipped, shape, spacing, res_shape, res_spacing, start = [], [], [], [], [], [], []
    for o in range(3):  # o: 0=S, 1=A, 2=R  <->  RAS axis 2 - o
        v = int(np.flatnonzero(ornt[:, 0] == 2 - o)[0])
        axes.append(2 - v)
        flipped.append(bool(ornt[v, 1] < 0))
        shape.append(int(native_shape[2 - v]))
        spacing.append(float(zooms[v]))
        m, achieved = resampled_size(shape[o], spacing[o], float(target_spacing[o]))
        res_shape.append(m)
        res_spacing.append(achieved)
        size = int(target_shape[o])
        start.append((m - size) // 2 if m >= size else -((size - m) // 2))
    return ResamplePlan(
        tuple(axes), tuple(flipped), tuple(shape), tuple(spacing), tuple(res_shape),  # type: ignore[arg-type]
        tuple(res_spacing), tuple(start), tuple(int(s) for s in target_shape),  # type: ignore[arg-type]
    )  # fmt: skip


def canonical_view(native: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """A ``(S, A, R)`` view of a native ``(K, J, I)`` array (transpose + flips, no copy)."""
    view = native.transpose(plan.axis_of_output)
    flips = tuple(o for o in range(3) if plan.flipped[o])
    return np.flip(view, axis=flips) if flips else view


def to_float_canonical(native: np.ndarray, plan: ResamplePlan, scale: float = 1.0) -> torch.Tensor:
    """One pass: reorient, cast to float32 and multiply by ``scale``.

    Returns:
        ``plan.shape`` C-contiguous float32 tensor (the only full-size float copy), valid until
        the next call (it lives in a reused buffer).
    """
    out = _float_buffer(plan.shape)
    np.multiply(canonical_view(native, plan), np.float32(scale), out=out, casting="unsafe")
    return torch.from_numpy(out)


_BUFFER = np.empty(0, dtype=np.float32)


def _float_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of ``shape`` backed by one buffer reused from case to case.

    Fresh pages for a few hundred MB cost as much as the cast itself; a shard processes its
    cases one at a time and every consumer copies out of this array before the next case.
    """
    global _BUFFER
    size = int(np.prod(shape))
    if _BUFFER.size < size:
        _BUFFER = np.empty(0, dtype=np.float32)  # release the old one first
        _BUFFER = np.empty(size, dtype=np.float32)
    return _BUFFER[:size].reshape(shape)


def resample_intensity(volume: torch.Tensor, plan: ResamplePlan) -> torch.Tensor:
    """Trilinear resampling onto the plan's grid.

    Args:
        volume: ``plan.shape`` float32 tensor (canonical).

    Returns:
        ``plan.resampled_shape`` float32 tensor (the input itself when the grid is unchanged).
    """
    if tuple(volume.shape) == plan.resampled_shape:
        return volume
    out = F.interpolate(
        volume[None, None], size=plan.resampled_shape, mode="trilinear", align_corners=True
    )
    return out[0, 0]


def resample_stored(native: np.ndarray, plan: ResamplePlan, scale: float = 1.0) -> torch.Tensor:
    """Stored values -> ``scale`` x trilinear-resampled values, choosing the cheaper route.

    Strong downsampling (e.g. to the CPU default grid) reads only the input planes that the
    output actually samples (:func:`resample_gathered`); otherwise the whole volume is cast
    once (:func:`to_float_canonical`) and resampled with ``F.interpolate``. Both give the
    same trilinear values up to float rounding.

    Args:
        native: ``(K, J, I)`` stored values.

    Returns:
        ``plan.resampled_shape`` float32 tensor (canonical).
    """
    needed = np.prod([len(_needed(n, m)[0]) for n, m in zip(plan.shape, plan.resampled_shape)])
    if needed < 0.35 * np.prod(plan.shape):
        return resample_gathered(native, plan, scale)
    return resample_intensity(to_float_canonical(native, plan, scale), plan)


def _needed(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Input indices one axis needs, and per output voxel its two neighbours (local) and weight."""
    if n == 1:
        zero = np.zeros(m, dtype=np.int64)
        return np.zeros(1, dtype=np.int64), zero, zero, np.zeros(m)
    position = np.arange(m, dtype=np.float64) * ((n - 1) / (m - 1) if m > 1 else 0.0)
    lower = np.minimum(np.floor(position).astype(np.int64), n - 2)
    weight = position - lower
    needed = np.unique(np.concatenate([lower, lower + 1]))
    return needed, np.searchsorted(needed, lower), np.searchsorted(needed, lower + 1), weight


def resample_gathered(native: np.ndarray, plan: ResamplePlan, scale: float = 1.0) -> torch.Tensor:
    """Trilinear (align_corners=True) by gathering the sampled planes, then one lerp per axis.

    Returns:
        ``plan.resampled_shape`` float32 tensor (canonical), ``scale`` x the stored values.
    """
    parts = [_needed(n, m) for n, m in zip(plan.shape, plan.resampled_shape)]
    subset = native
    for o, axis in enumerate(plan.axis_of_output):  # gather in the native layout: block copies
        needed = parts[o][0]
        index = (plan.shape[o] - 1 - needed)[::-1] if plan.flipped[o] else needed
        subset = subset.take(index, axis=axis)
    x = np.multiply(canonical_view(subset, plan), np.float32(scale), dtype=np.float32)
    for axis, (_, lower, upper, weight) in enumerate(parts):
        shape = [1, 1, 1]
        shape[axis] = -1
        a = np.take(x, lower, axis=axis)
        b = np.take(x, upper, axis=axis)
        b -= a
        b *= weight.astype(np.float32).reshape(shape)
        a += b  # a + w * (b - a)
        x = a
    return torch.from_numpy(x)


def resample_labels(native_labels: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto the intensities' grid.

    Output voxel ``q`` takes canonical input index ``round(q * (n - 1) / (m - 1))``.

    Args:
        native_labels: ``(K, J, I)`` integer array in the image's native layout.

    Returns:
        ``plan.resampled_shape`` uint8 array (canonical).
    """
    index = []
    for n, m in zip(plan.shape, plan.resampled_shape):
        q = np.arange(m, dtype=np.float64)
        index.append(np.rint(q * (n - 1) / max(m - 1, 1)).astype(np.intp))
    return np.asarray(canonical_view(native_labels, plan)[np.ix_(*index)], dtype=np.uint8)


def window_bounds(lo: float, hi: float, slope: float = 1.0, inter: float = 0.0):
    """Fold HU rescale and the ``[lo, hi] -> [-1, 1]`` window into ``scale`` and ``offset``.

    ``normalised = clip(stored * scale, -1 - offset, 1 - offset) + offset``, which equals
    ``clip(((stored * slope + inter) - lo) * 2 / (hi - lo) - 1, -1, 1)``.

    Returns:
        ``(scale, offset)``.
    """
    a = 2.0 / (hi - lo)
    return slope * a, inter * a - lo * a - 1.0


def normalise_(volume: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """In place: ``clip(volume, lo, hi)`` scaled linearly to ``[-1, 1]`` (HU input)."""
    scale, offset = window_bounds(lo, hi)
    volume.mul_(scale).add_(offset)
    return volume.clamp_(-1.0, 1.0)


def crop_or_pad(
    resampled: np.ndarray | torch.Tensor, plan: ResamplePlan, fill: float, dtype
) -> np.ndarray:
    """Centre crop/pad a canonical resampled volume to ``plan.out_shape``.

    Args:
        resampled: ``plan.resampled_shape`` array or tensor.
        fill: pad value.
        dtype: numpy dtype of the result (float16 volumes, uint8 label maps).

    Returns:
        ``plan.out_shape`` C-contiguous numpy array.
    """
    t = torch.as_tensor(resampled)
    torch_dtype = {np.float16: torch.float16, np.float32: torch.float32, np.uint8: torch.uint8}[
        np.dtype(dtype).type
    ]
    out = torch.empty(plan.out_shape, dtype=torch_dtype)
    src, dst = [], []
    for start, size, m in zip(plan.start, plan.out_shape, t.shape):
        lo, hi = max(start, 0), min(start + size, m)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = t[tuple(src)]  # one strided copy with the dtype cast
    for axis, kept in enumerate(dst):  # fill only the padding slabs
        before = [slice(None)] * 3
        before[axis] = slice(0, kept.start)
        out[tuple(before)] = fill
        before[axis] = slice(kept.stop, None)
        out[tuple(before)] = fill
    return out.numpy()


def output_affine(affine: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """The 4x4 affine of the output array: ``(d, h, w)`` index -> RAS mm."""
    index_map = np.zeros((4, 4))  # output (d, h, w, 1) -> original voxel (i, j, k, 1)
    index_map[3, 3] = 1.0
    for o, p in enumerate(plan.axis_of_output):
        v = 2 - p
        n, m = plan.shape[o], plan.resampled_shape[o]
        ratio = (n - 1) / (m - 1) if m > 1 else 1.0
        if plan.flipped[o]:  # native index = n - 1 - ratio * (q + start)
            index_map[v, o] = -ratio
            index_map[v, 3] = n - 1 - ratio * plan.start[o]
        else:
            index_map[v, o] = ratio
            index_map[v, 3] = ratio * plan.start[o]
    return np.asarray(affine, dtype=float) @ index_map
