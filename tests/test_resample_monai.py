"""Our resampling equals MONAI Spacingd + ScaleIntensityRanged on the same grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrg.data.resample import normalise_, plan_resample, resample_intensity, to_float_canonical

monai = pytest.importorskip("monai")


def monai_reference(hu_ijk: np.ndarray, affine: np.ndarray, pixdim, window) -> np.ndarray:
    """MONAI's Spacingd (default: first voxel centres aligned, pixdim kept) + intensity window."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, ScaleIntensityRanged, Spacingd

    transform = Compose([
        Spacingd(keys="image", pixdim=pixdim, mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=window[0], a_max=window[1], b_min=-1.0, b_max=1.0, clip=True),
    ])  # fmt: skip
    image = MetaTensor(torch.from_numpy(hu_ijk)[None], affine=torch.from_numpy(affine))
    return transform({"image": image})["image"][0].numpy()  # (I', J', K')


def test_equal_to_monai_spacingd_at_achieved_spacing():
    rng = np.random.default_rng(0)
    shape_ijk = (27, 23, 17)
    hu = rng.normal(0, 400, size=shape_ijk).astype(np.float32)  # rough, worst case for offsets
    hu[5:20, 4:18, 3:12] += 800
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    plan = plan_resample(affine, hu.T.shape, (1.5, 0.75 * 1.4, 0.75 * 1.7), (8, 8, 8))
    ours = resample_intensity(to_float_canonical(np.ascontiguousarray(hu.T), plan), plan)
    ours = (
        normalise_(ours, -1000.0, 1000.0).numpy().T
    )  # RAS affine: canonical (S, A, R) = (k, j, i)
    pixdim = tuple(plan.resampled_spacing[::-1])  # (i, j, k) order
    reference = monai_reference(hu, affine, pixdim, (-1000.0, 1000.0))
    assert reference.shape == ours.shape
    assert float(np.abs(reference - ours).max()) < 1e-3
    # and the grids really differ from a half-voxel-shifted one (the check can fail)
    shifted = torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(hu.T))[None, None], size=plan.resampled_shape,
        mode="trilinear", align_corners=False,
    )[0, 0]  # fmt: skip
    assert float(np.abs(normalise_(shifted, -1000.0, 1000.0).numpy().T - reference).max()) > 1e-2
