"""``ctrg inspect``: look inside a run's artifacts.

* ``ctrg inspect case CASE_ID --run results/<run> --out DIR``: orthogonal slices of the
  preprocessed volume through each structure query's attention peak, with the attention as a
  heat map and the selected top-k patches outlined (``attention.png``); the attention maps as a
  4D NIfTI (``attention.nii.gz``, one frame per structure) beside the preprocessed volume
  (``volume.nii.gz``, same affine, so any viewer overlays them); ``report.md``: reference vs
  generated report, per-structure sentences, and the label differences in bold.
* ``ctrg inspect curves results/<run> --out DIR``: training curves (``stage1_curves.png``,
  ``stage2_curves.png``) from each stage's ``train_log.jsonl``.
* ``ctrg inspect phantom CASE_ID --phantom results/phantom --out DIR``: a phantom case's
  slices with structure and finding outlines, and its report (``phantom_<case>.png``).

Display convention: axial in radiological view (patient's right on the image's left),
anterior up; coronal and sagittal with superior up. Arrays are (D, H, W) = (S, A, R) as
written by ingestion; the NIfTI files store them as (x=R, y=A, z=S) with a diagonal affine of
the preprocessed spacing.
"""

from __future__ import annotations

import argparse
import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.plotting import pyplot, save_figure, training_curves
from ctrg.runtime import atomic_path, atomic_write_text, setup_logging

log = logging.getLogger(__name__)


def attention_volume(
    attention: np.ndarray, grid: tuple[int, int, int], shape: tuple[int, int, int]
) -> np.ndarray:
    """Patch attention (S, N) -> voxel maps (S, D, H, W); token n = (ti * h + hi) * w + wi."""
    t, h, w = grid
    if attention.shape[-1] != t * h * w or any(s % g for s, g in zip(shape, grid)):
        raise ValueError(f"attention {attention.shape} does not fit grid {grid} / shape {shape}")
    maps = attention.reshape(-1, t, h, w).astype(np.float32)
    for axis, (size, cells) in enumerate(zip(shape, grid)):
        maps = np.repeat(maps, size // cells, axis=axis + 1)
    return maps


def selected_mask(
    index: np.ndarray, grid: tuple[int, int, int], shape: tuple[int, int, int]
) -> np.ndarray:
    """Selected patch indices (S, k) -> (S, D, H, W) bool mask of those patches' voxels."""
    chosen = np.zeros((index.shape[0], int(np.prod(grid))), dtype=np.float32)
    for s, row in enumerate(index):
        chosen[s, row] = 1.0
    return attention_volume(chosen, grid, shape) > 0.5


def write_nifti(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    """(D, H, W) or (S, D, H, W) array -> NIfTI (x=R, y=A, z=S[, frame]) with affine diag(spacing)."""
    import nibabel as nib

    if array.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a (D, H, W) or (S, D, H, W) array, got {array.shape}")
    data = array.transpose(2, 1, 0) if array.ndim == 3 else array.transpose(3, 2, 1, 0)
    sz, sy, sx = spacing
    affine = np.diag([sx, sy, sz, 1.0])
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), affine), tmp)


def _planes(volume: np.ndarray, centre: tuple[int, int, int], spacing) -> list[tuple]:
    d, h, w = centre
    sz, sy, sx = spacing
    return [
        ("axial", lambda a: a[d][::-1, ::-1], sy / sx),
        ("coronal", lambda a: a[:, h, ::-1][::-1], sz / sx),
        ("sagittal", lambda a: a[:, :, w][::-1], sz / sy),
    ]


def overlay_png(
    volume: np.ndarray,
    maps: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    path: Path,
    names: tuple[str, ...] = CHEST_STRUCTURES,
) -> None:
    """One row per structure: three planes through its attention peak (heat) + selected patches."""
    plt = pyplot()
    rows = maps.shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(9, 2.6 * rows), squeeze=False)
    for s in range(rows):
        peak = np.unravel_index(int(np.argmax(maps[s])), maps[s].shape)
        top = float(maps[s].max()) or 1.0
        for col, (plane, cut, aspect) in enumerate(_planes(volume, peak, spacing)):
            ax = axes[s, col]
            ax.imshow(cut(volume), cmap="gray", vmin=-1, vmax=1, aspect=aspect)
            heat = np.ma.masked_less(cut(maps[s]) / top, 0.25)  # keep anatomy visible
            ax.imshow(heat, cmap="hot", alpha=0.5, vmin=0, vmax=1, aspect=aspect)
            if cut(mask[s]).any():
                ax.contour(cut(mask[s]).astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{names[s] if s < len(names) else s}: {plane}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def _label_names(row: dict[str, Any], column: str) -> set[str]:
    value = row.get(column, "")
    return {v for v in str(value).split(";") if v} if isinstance(value, str) else set()


def report_markdown(
    case_id: str,
    reference: str,
    generated: str,
    labels: dict[str, set[str]],
    sentences: dict[str, dict[str, str]] | None = None,
) -> str:
    """Reference vs generated report; label differences (missed / extra) in bold.

    Args:
        labels: ``{"generated": names, "reference": names, "ground truth": names...}``.
        sentences: ``{"reference": {structure: text}, "generated": {structure: text}}``.
    """
    lines = [
        f"# {case_id}",
        "",
        "## Reference",
        "",
        reference or "_(none)_",
        "",
        "## Generated",
        "",
        generated or "_(empty)_",
        "",
        "## Labels",
        "",
        "| label | " + " | ".join(labels) + " | difference |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    truth_key = next((k for k in ("ground truth", "reference") if k in labels), None)
    for name in CTRATE_LABELS:
        marks = ["x" if name in found else "" for found in labels.values()]
        if not any(marks):
            continue
        diff = ""
        if truth_key and "generated" in labels:
            in_truth, in_gen = name in labels[truth_key], name in labels["generated"]
            diff = (
                "**missed**"
                if in_truth and not in_gen
                else "**extra**"
                if in_gen and not in_truth
                else ""
            )
        lines.append(f"| {name} | " + " | ".join(marks) + f" | {diff} |")
    if sentences:
        sources = list(sentences)
        lines += [
            "",
            "## Structure sentences",
            "",
            "| structure | " + " | ".join(sources) + " |",
            "|---|" + "---|" * len(sources),
        ]
        for name in CHEST_STRUCTURES:
            cells = [sentences[src].get(name, "").replace("|", "/") for src in sources]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def structure_sentences(texts: dict[str, str], text_section: dict[str, Any]) -> dict[str, dict]:
    """Per-structure texts of each report (ctrg.text.structures.StructureParser)."""
    from ctrg.text.structures import StructureParser

    parser = StructureParser(text_section["structure_set"], text_section["default_sentence"])
    return {source: parser.parse(text).texts for source, text in texts.items()}


def _case_row(path: Path, case_id: str, what: str) -> dict[str, Any]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = frame[frame["case_id"] == case_id]
    if rows.empty:
        raise ValueError(f"{path}: no {what} for case {case_id!r}")
    return rows.iloc[0].to_dict()


def _spacing(value: str, where: str) -> tuple[float, float, float]:
    parts = [float(v) for v in str(value).replace(",", " ").strip("[]() ").split()]
    if len(parts) != 3:
        raise ValueError(f"{where}: spacing {value!r} is not three numbers (Z Y X)")
    return parts[0], parts[1], parts[2]


def inspect_case(args: argparse.Namespace) -> int:
    """``ctrg inspect case`` (see module doc)."""
    from ctrg.config import load_stage_config
    from ctrg.features.cache import load_case_features

    run = Path(args.run)
    volumes = Path(args.volumes or run.parent / "volumes" / "manifest.csv")
    index = Path(args.features or run / "features" / "index.csv")
    vol_row = _case_row(volumes, args.case_id, "volume")
    volume = np.load(volumes.parent / vol_row["path"]).astype(np.float32)
    spacing = _spacing(vol_row["spacing"], str(volumes))
    feat_row = _case_row(index, args.case_id, "features")
    features = load_case_features(index.parent / feat_row["path"])
    grid = tuple(json.loads(features["metadata"]["patch_grid"]))
    maps = attention_volume(features["attention"].float().numpy(), grid, volume.shape)
    mask = selected_mask(features["selected_patch_index"].numpy(), grid, volume.shape)
    out = Path(args.out)
    write_case_view(out, volume, maps, mask, spacing)
    texts, labels = _case_texts(run, args, args.case_id)
    text_cfg = run.parent / "configs" / "text.json"
    section = load_stage_config(text_cfg if text_cfg.is_file() else None, "text")["text"]
    markdown = report_markdown(
        args.case_id,
        texts.get("reference", ""),
        texts["generated"],
        labels,
        structure_sentences(texts, section),
    )
    atomic_write_text(out / "report.md", markdown)
    log.info(
        "case %s -> %s (attention.png, attention.nii.gz, volume.nii.gz, report.md)",
        args.case_id,
        out,
    )
    return 0


def write_case_view(
    out: Path,
    volume: np.ndarray,
    maps: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
) -> None:
    """attention.png, attention.nii.gz (S frames) and volume.nii.gz into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    overlay_png(volume, maps, mask, spacing, out / "attention.png")
    write_nifti(maps, spacing, out / "attention.nii.gz")
    write_nifti(volume, spacing, out / "volume.nii.gz")


def _case_texts(run: Path, args: argparse.Namespace, case_id: str) -> tuple[dict, dict]:
    per_case = Path(args.per_case or run / "eval" / "per_case.csv")
    if per_case.is_file():
        row = _case_row(per_case, case_id, "evaluated report")
        labels = {
            "generated": _label_names(row, "predicted_labels"),
            "reference": _label_names(row, "reference_labels"),
        }
        if "gt_labels" in row:
            labels["ground truth"] = _label_names(row, "gt_labels")
        return {"reference": row["reference"], "generated": row["prediction"]}, labels
    row = _case_row(run / "eval" / "predictions.csv", case_id, "prediction")
    from ctrg.evaluate.clinical import run_labeller

    found = run_labeller([row["reference"], row["prediction"]])
    labels = {
        name: {k for k, v in f.items() if v} for name, f in zip(("reference", "generated"), found)
    }
    return {"reference": row["reference"], "generated": row["prediction"]}, labels


def inspect_curves(args: argparse.Namespace) -> int:
    """``ctrg inspect curves`` (see module doc)."""
    run, out = Path(args.run), Path(args.out or Path(args.run) / "inspect")
    found = 0
    for stage in ("stage1", "stage2"):
        log_path = run / stage / "train_log.jsonl"
        if not log_path.is_file():
            log.warning("%s: not found, no %s curves", log_path, stage)
            continue
        fields = training_curves(log_path, f"{run.name} {stage}", out / f"{stage}_curves.png")
        log.info("%s curves (%s) -> %s", stage, ", ".join(fields), out / f"{stage}_curves.png")
        found += 1
    if not found:
        raise FileNotFoundError(f"{run}: no stage1/ or stage2/ train_log.jsonl")
    return 0


def inspect_phantom(args: argparse.Namespace) -> int:
    """``ctrg inspect phantom`` (see module doc)."""
    import nibabel as nib

    root = Path(args.phantom)
    row = _case_row(root / "manifest.csv", args.case_id, "phantom case")
    loaded = {}
    for key in ("image", "structure_map", "finding_map"):
        image = nib.as_closest_canonical(nib.load(root / row[key]))
        loaded[key] = np.asarray(image.dataobj).transpose(2, 1, 0)  # (x,y,z) -> (S, A, R)
        zooms = image.header.get_zooms()[:3]
    spacing = (float(zooms[2]), float(zooms[1]), float(zooms[0]))
    hu, structures, findings = loaded["image"], loaded["structure_map"], loaded["finding_map"]
    focus = findings > 0 if (findings > 0).any() else structures == 3
    centre = (
        tuple(int(c) for c in np.argwhere(focus).mean(axis=0))
        if focus.any()
        else tuple(n // 2 for n in hu.shape)
    )
    plt = pyplot()
    fig = plt.figure(figsize=(10, 6.5))
    for col, (plane, cut, aspect) in enumerate(_planes(hu, centre, spacing)):
        ax = fig.add_axes([0.02 + col * 0.33, 0.38, 0.3, 0.58])
        ax.imshow(cut(hu), cmap="gray", vmin=-1000, vmax=400, aspect=aspect)
        if cut(structures).any():
            ax.contour(
                cut(structures).astype(float),
                levels=np.arange(0.5, 11),
                linewidths=0.5,
                cmap="tab10",
            )
        if cut(findings).any():
            ax.contour((cut(findings) > 0).astype(float), levels=[0.5], colors="red", linewidths=1)
        ax.set_title(plane)
        ax.axis("off")
    text = textwrap.fill(row["report"], 150)
    fig.text(
        0.02,
        0.34,
        f"{args.case_id} ({row.get('split', '')})\n{text}",
        va="top",
        fontsize=7,
        family="monospace",
    )
    out = Path(args.out)
    save_figure(fig, out / f"phantom_{args.case_id}.png", dpi=90)
    log.info("phantom case %s -> %s", args.case_id, out / f"phantom_{args.case_id}.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrg inspect", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    case = sub.add_parser("case", help="attention overlays, NIfTI maps and report diff of a case")
    case.add_argument("case_id")
    case.add_argument("--run", required=True, help="results/<run>")
    case.add_argument("--volumes", help="volumes manifest (default: <run>/../volumes/manifest.csv)")
    case.add_argument("--features", help="features index (default: <run>/features/index.csv)")
    case.add_argument("--per-case", help="per_case.csv (default: <run>/eval/per_case.csv)")
    case.add_argument("--out", required=True)
    curves = sub.add_parser("curves", help="training curves of a run")
    curves.add_argument("run", help="results/<run>")
    curves.add_argument("--out", help="output folder (default: <run>/inspect)")
    phantom = sub.add_parser("phantom", help="slices and report of a phantom case")
    phantom.add_argument("case_id")
    phantom.add_argument("--phantom", default="results/phantom")
    phantom.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    handlers = {"case": inspect_case, "curves": inspect_curves, "phantom": inspect_phantom}
    return handlers[args.what](args)
