"""Preview PNG of a phantom case: axial, coronal and sagittal slices with the report text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ctrg.data.phantom_case import PhantomCase
from ctrg.plotting import pyplot, save_figure


def _slice_centre(case: PhantomCase) -> tuple[int, int, int]:
    """The centroid of the finding map if any, else of the lung label (canonical indices)."""
    mask = case.finding_map > 0
    if not mask.any():
        mask = case.structures == 3
    if not mask.any():
        return tuple(n // 2 for n in case.hu.shape)  # type: ignore[return-value]
    return tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0))  # type: ignore[return-value]


def write_preview(case: PhantomCase, path: Path) -> None:
    """Write a PNG: three planes in lung and mediastinal windows above the wrapped report.

    Finding outlines (red) are drawn on the lung-window row.

    Axial is shown in radiological convention (patient's right on the image's left),
    anterior up; coronal and sagittal have superior up.
    """
    plt = pyplot()
    d, h, w = _slice_centre(case)
    sz, sy, sx = case.grid.spacing
    planes = [
        ("axial", case.hu[d][::-1, ::-1], case.finding_map[d][::-1, ::-1], sy / sx),
        ("coronal", case.hu[:, h, ::-1][::-1], case.finding_map[:, h, ::-1][::-1], sz / sx),
        ("sagittal", case.hu[:, :, w][::-1], case.finding_map[:, :, w][::-1], sz / sy),
    ]
    fig = plt.figure(figsize=(13, 11), dpi=80)
    windows = ((-1350.0, 150.0, "lung"), (-160.0, 240.0, "mediastinal"))
    for row, (lo, hi, wname) in enumerate(windows):
        for i, (name, image, overlay, aspect) in enumerate(planes):
            ax = fig.add_axes([0.005 + i * 0.333, 0.66 - row * 0.33, 0.325, 0.31])
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect=aspect)
            if overlay.any() and row == 0:
                ax.contour(overlay > 0, levels=[0.5], colors="red", linewidths=0.7)
            ax.set_title(f"{case.case_id} {name} ({wname} window)", fontsize=8)
            ax.axis("off")
    labels = [k for k, v in case.labels.items() if v] or ["normal"]
    text = "Labels: " + ", ".join(labels) + "\n\n" + textwrap.fill(case.report, 175)
    fig.text(0.01, 0.33, text, fontsize=7.5, va="top", family="monospace", wrap=True)
    save_figure(fig, path)
