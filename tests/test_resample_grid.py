"""Resampling grid, orientation, crop/pad and label maps, on tiny volumes with known affines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrg.data.resample import (
    crop_or_pad,
    normalise_,
    output_affine,
    plan_resample,
    resample_gathered,
    resample_intensity,
    resample_labels,
    resample_stored,
    resampled_size,
    to_float_canonical,
    window_bounds,
)


def pipeline(native: np.ndarray, plan, fill=np.nan) -> np.ndarray:
    return crop_or_pad(
        resample_intensity(to_float_canonical(native, plan), plan), plan, fill, np.float32
    )


def test_resampled_size_hand_values():
    assert resampled_size(11, 1.5, 3.0) == (6, 3.0)  # 15 mm field of view, exactly 5 steps
    m, achieved = resampled_size(20, 1.5, 3.0)  # 28.5 mm / 3 = 9.5 steps -> round to 10
    assert m == 11 and achieved == pytest.approx(2.85)
    assert resampled_size(300, 1.25, 1.5) == (250, pytest.approx(299 * 1.25 / 249))


AFFINES = {
    "RAS": np.diag([1.5, 2.0, 2.5, 1.0]),
    "LPS": np.diag([-1.5, -2.0, 2.5, 1.0]),
    "LPI": np.diag([-1.5, -2.0, -2.5, 1.0]),
    # voxel i runs anterior->posterior, j inferior->superior, k right->left
    "permuted": np.array([[0, 0, -2.5, 0], [-1.5, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1.0]]),
}


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_canonical_orientation_and_affine_from_a_world_ramp(name):
    """HU = linear function of world position; trilinear resampling reproduces it exactly."""
    affine = AFFINES[name].copy()
    affine[:3, 3] = [12.0, -7.0, 30.0]
    shape_ijk = (11, 9, 13)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape_ijk], indexing="ij"), axis=-1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]  # (I, J, K, 3) RAS mm
    hu = (3.0 * world[..., 0] - 2.0 * world[..., 1] + 5.0 * world[..., 2]).astype(np.float32)
    native = np.ascontiguousarray(hu.transpose(2, 1, 0))  # (K, J, I)
    plan = plan_resample(affine, native.shape, (4.0, 3.0, 2.0), (10, 12, 14))
    out = pipeline(native, plan)
    out_affine = output_affine(affine, plan)
    # canonical: d -> +S, h -> +A, w -> +R, all positive
    rot = out_affine[:3, :3]
    assert np.all(np.diag(rot[::-1]) > 0) and np.count_nonzero(np.abs(rot) > 1e-9) == 3
    np.testing.assert_allclose(rot[::-1].diagonal(), plan.resampled_spacing)  # (Z, Y, X)
    dhw = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), axis=-1)
    expected_world = dhw @ out_affine[:3, :3].T + out_affine[:3, 3]
    expected = (
        3.0 * expected_world[..., 0] - 2.0 * expected_world[..., 1] + 5.0 * expected_world[..., 2]
    )
    inside = ~np.isnan(out)
    assert inside.sum() > 0.2 * out.size and (~inside).sum() > 0  # both data and padding
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-3)


def test_centre_crop_and_pad_offsets():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    native = np.broadcast_to(np.arange(70, dtype=np.float32).reshape(7, 10, 1), (7, 10, 4))
    plan = plan_resample(affine, (7, 10, 4), (1.0, 1.0, 1.0), (4, 13, 4))
    assert plan.start == (1, -1, 0)  # crop 7 -> 4 from (7-4)//2; pad 10 -> 13 with 1 before
    out = pipeline(native, plan, fill=-1.0)
    assert out.shape == (4, 13, 4)
    assert np.all(out[:, 0] == -1) and np.all(out[:, 11:] == -1)
    np.testing.assert_array_equal(out[:, 1:11, 0], native[1:5, :, 0])


def test_normalise_maps_window_to_unit_range():
    values = torch.tensor([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
    normalise_(values, -1000.0, 1000.0)
    np.testing.assert_allclose(values.numpy(), [-1, -1, 0, 0.5, 1, 1])
    values = torch.tensor([-160.0, 40.0, 240.0])
    np.testing.assert_allclose(normalise_(values, -160.0, 240.0).numpy(), [-1, 0, 1], atol=1e-6)
    # stored as float16 the window's ends are exactly the pad value -1 and 1
    assert values.half()[0] == -1.0 and values.half()[2] == 1.0


def test_folded_window_equals_rescale_then_window():
    stored = np.array([-5000.0, 0.0, 24.0, 1024.0, 1500.0, 2100.0, 9000.0], dtype=np.float32)
    slope, inter, lo, hi = 1.0, -1024.0, -160.0, 240.0
    expected = np.clip(((stored * slope + inter) - lo) * 2 / (hi - lo) - 1, -1, 1)
    scale, offset = window_bounds(lo, hi, slope, inter)
    folded = np.clip(stored * scale, -1 - offset, 1 - offset) + offset
    np.testing.assert_allclose(folded, expected, atol=1e-6)


def test_labels_follow_the_intensity_grid():
    """A label map equal to a thresholded ramp stays aligned with the resampled ramp."""
    affine = np.diag([-0.8, 0.8, 2.0, 1.0])
    native = np.broadcast_to(np.arange(9, dtype=np.float32)[:, None, None], (9, 16, 16)).copy()
    labels = (native >= 4).astype(np.uint8) * 3
    plan = plan_resample(affine, native.shape, (1.0, 1.6, 1.6), (20, 8, 8))
    image = pipeline(native, plan, fill=-1.0)
    mask = crop_or_pad(resample_labels(labels, plan), plan, 0, np.uint8)
    assert mask.dtype == np.uint8 and mask.shape == image.shape == (20, 8, 8)
    assert set(np.unique(mask)) == {0, 3}
    # rows that sample slice index >= 3.5 round to label 3 (nearest), except padding
    z = image[:, 0, 0]
    data_rows = z != -1
    np.testing.assert_array_equal(mask[data_rows, 0, 0] == 3, z[data_rows] >= 3.5)
    assert np.all(mask[~data_rows] == 0)


@pytest.mark.parametrize("target", [(6.0, 3.6, 3.6), (1.0, 3.0, 0.5), (2.5, 1.5, 1.5)])
def test_gathered_resampling_equals_dense_trilinear(target):
    """The cheap route for strong downsampling gives F.interpolate's values (any axis ratio)."""
    rng = np.random.default_rng(3)
    native = rng.integers(-1000, 2000, size=(23, 31, 29)).astype(np.int16)
    plan = plan_resample(np.diag([-0.7, -0.8, 2.5, 1.0]), native.shape, target, (8, 8, 8))
    dense = resample_intensity(to_float_canonical(native, plan, 0.001), plan).clone()
    gathered = resample_gathered(native, plan, 0.001)
    assert tuple(gathered.shape) == plan.resampled_shape
    np.testing.assert_allclose(gathered.numpy(), dense.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        resample_stored(native, plan, 0.001).numpy(), dense.numpy(), atol=1e-5
    )
