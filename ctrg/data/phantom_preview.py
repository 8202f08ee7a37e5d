"""Preview PNG of a phantom case: axial, coronal and sagittal slices with the report text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ctrg.data.phantom_case import PhantomCase
from ctrg.runtime import atomic_path


def _slice_centre(case: PhantomCase) -> tuple[int, int, int]:
    """The centroid of the finding map if any, else of the lung label (canonical indices)."""
    mask = case.finding_map > 0
    if not mask.any():
        mask = case.structures == 3
    if not mask.any():
        return tuple(n // 2 for n in case.hu.shape)  # type: ignore[return-value]
    return tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0))  # type: ignore[return-value]


def write_preview(case: PhantomCase, path: Path, window: tuple[float, float] = (-1000, 400)) -> None:
    """Write a PNG: three planes (finding outlines in colour) above the wrapped report.

    Axial is shown in radiological convention (patient's right on the image's left),
    anterior up; coronal and sagittal have superior up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, h, w = _slice_centre(case)
    sz, sy, sx = case.grid.spacing
    planes = [
        ("axial", case.hu[d][::-1, ::-1], case.finding_map[d][::-1, ::-1], sy / sx),
        ("coronal", case.hu[:, h, ::-1][::-1], case.finding_map[:, h, ::-1][::-1], sz / sx),
        ("sagittal", case.hu[:, :, w][::-1], case.finding_map[:, :, w][::-1], sz / sy),
    ]
    fig = plt.figure(figsize=(12, 8.5), dpi=90)
    for i, (name, image, overlay, aspect) in enumerate(planes):
        ax = fig.add_axes([0.01 + i * 0.33, 0.42, 0.31, 0.55])
        ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect)
        if overlay.any():
            ax.contour(overlay > 0, levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(f"{case.case_id} {name}", fontsize=9)
        ax.axis("off")
    labels = [k for k, v in case.labels.items() if v] or ["normal"]
    text = "Labels: " + ", ".join(labels) + "\n\n" + textwrap.fill(case.report, 160)
    fig.text(0.01, 0.40, text, fontsize=7.5, va="top", family="monospace", wrap=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
