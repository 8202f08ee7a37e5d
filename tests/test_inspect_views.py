"""ctrg inspect: attention maps to voxels, NIfTI alignment, report diff, curves, case and phantom views."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.cli import main as ctrg
from ctrg.features.cache import save_case_features
from ctrg.inspect import attention_volume, report_markdown, selected_mask, write_nifti

GRID = (2, 2, 2)
SHAPE = (4, 6, 8)


def test_attention_volume_by_hand():
    attention = np.arange(8, dtype=np.float32)[None]  # token n = (ti*2 + hi)*2 + wi
    maps = attention_volume(attention, GRID, SHAPE)
    assert maps.shape == (1, 4, 6, 8)
    # voxel (d, h, w) lies in patch (d // 2, h // 3, w // 4)
    assert maps[0, 0, 0, 0] == 0 and maps[0, 3, 5, 7] == 7
    assert maps[0, 1, 4, 2] == (0 * 2 + 1) * 2 + 0
    assert maps[0, 2, 0, 4] == (1 * 2 + 0) * 2 + 1
    with pytest.raises(ValueError, match="does not fit grid"):
        attention_volume(np.zeros((1, 7)), GRID, SHAPE)


def test_selected_mask_marks_chosen_patches_only():
    mask = selected_mask(np.array([[7, 0]]), GRID, SHAPE)
    assert mask.sum() == 2 * (2 * 3 * 4)
    assert mask[0, 3, 5, 7] and mask[0, 0, 0, 0] and not mask[0, 0, 0, 4]


def test_nifti_axes_and_affine(tmp_path):
    volume = np.zeros(SHAPE, dtype=np.float32)
    volume[3, 1, 2] = 5.0  # d (S), h (A), w (R)
    write_nifti(volume, (6.0, 3.6, 2.0), tmp_path / "v.nii.gz")
    write_nifti(np.stack([volume, 2 * volume]), (6.0, 3.6, 2.0), tmp_path / "a.nii.gz")
    image = nib.load(tmp_path / "v.nii.gz")
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.diag(image.affine), [2.0, 3.6, 6.0, 1.0])
    assert image.get_fdata()[2, 1, 3] == 5.0  # x = w, y = h, z = d
    frames = nib.load(tmp_path / "a.nii.gz")
    assert frames.shape == (8, 6, 4, 2) and frames.get_fdata()[2, 1, 3, 1] == 10.0
    np.testing.assert_allclose(frames.affine, image.affine)


def test_report_markdown_marks_missed_and_extra():
    text = report_markdown(
        "c1",
        "Emphysema. Effusion.",
        "Emphysema. Nodule.",
        {"generated": {"Emphysema", "Lung nodule"}, "reference": {"Emphysema", "Pleural effusion"}},
        {"reference": {"lung": "Emphysema."}, "generated": {"lung": "Emphysema. Nodule."}},
    )
    assert "| Pleural effusion |  | x | **missed** |" in text
    assert "| Lung nodule | x |  | **extra** |" in text
    assert "| Emphysema | x | x |  |" in text
    assert "| lung | Emphysema. | Emphysema. Nodule. |" in text


def test_curves_from_train_logs(tmp_path):
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    records = [{"kind": "train", "step": s, "epoch": 0, "loss": 1.0 / s} for s in range(1, 6)]
    records.append({"kind": "valid", "step": 5, "epoch": 0, "recall_at_1": 0.4})
    (run / "stage1" / "train_log.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    assert ctrg(["inspect", "curves", str(run), "--out", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "stage1_curves.png").size[0] > 200
    assert not (tmp_path / "o" / "stage2_curves.png").exists()
    with pytest.raises(FileNotFoundError, match="no stage1/ or stage2/"):
        ctrg(["inspect", "curves", str(tmp_path / "none")])


def _fake_run(tmp_path):
    """volumes manifest + one feature file + per_case.csv laid out like results/."""
    results = tmp_path / "results"
    (results / "volumes").mkdir(parents=True)
    volume = np.linspace(-1, 1, np.prod(SHAPE), dtype=np.float16).reshape(SHAPE)
    np.save(results / "volumes" / "c1.npy", volume)
    pd.DataFrame(
        {"case_id": ["c1"], "split": ["test"], "path": ["c1.npy"], "spacing": ["6 3.6 2"]}
    ).to_csv(results / "volumes" / "manifest.csv", index=False)
    run = results / "r"
    (run / "features").mkdir(parents=True)
    s = len(CHEST_STRUCTURES)
    attention = torch.rand(s, 8).half()
    tensors = {
        "observation_tokens": torch.zeros(s, 4),
        "selected_patch_tokens": torch.zeros(s, 2, 4),
        "selected_patch_index": attention.float().topk(2, dim=1).indices,
        "selected_patch_score": torch.zeros(s, 2),
        "attention": attention,
    }
    save_case_features(
        run / "features" / "c1.safetensors",
        tensors,
        {"frozen_hash": "h", "case_id": "c1", "top_k": "2", "patch_grid": "[2, 2, 2]"},
    )
    pd.DataFrame(
        {"case_id": ["c1"], "split": ["test"], "path": ["c1.safetensors"], "frozen_hash": ["h"]}
    ).to_csv(run / "features" / "index.csv", index=False)
    (run / "eval").mkdir()
    pd.DataFrame(
        {
            "case_id": ["c1"],
            "reference": ["Small left pleural effusion."],
            "prediction": ["The heart is normal."],
            "predicted_labels": [""],
            "reference_labels": ["Pleural effusion"],
        }
    ).to_csv(run / "eval" / "per_case.csv", index=False)
    return run, attention


def test_case_view_writes_aligned_outputs(tmp_path):
    run, attention = _fake_run(tmp_path)
    out = tmp_path / "case"
    assert ctrg(["inspect", "case", "c1", "--run", str(run), "--out", str(out)]) == 0
    maps = nib.load(out / "attention.nii.gz")
    volume = nib.load(out / "volume.nii.gz")
    assert maps.shape == (8, 6, 4, len(CHEST_STRUCTURES)) and volume.shape == (8, 6, 4)
    np.testing.assert_allclose(maps.affine, volume.affine)
    # structure 0, token 7 = patch (1, 1, 1) covers x 4..7, y 3..5, z 2..3
    assert maps.get_fdata()[7, 5, 3, 0] == pytest.approx(float(attention[0, 7]), rel=1e-3)
    report = (out / "report.md").read_text()
    assert "**missed**" in report and "Pleural effusion" in report
    assert "## Structure sentences" in report
    assert Image.open(out / "attention.png").size[1] > 500


def test_phantom_view(tmp_path):
    root = tmp_path / "phantom"
    for folder in ("volumes", "structures", "findings"):
        (root / folder).mkdir(parents=True)
    hu = np.full((16, 16, 12), -1000, dtype=np.int16)
    hu[4:12, 4:12, 2:10] = 40
    labels = np.zeros_like(hu, dtype=np.uint8)
    labels[4:12, 4:12, 2:10] = 3
    finding = np.zeros_like(labels)
    finding[6:8, 6:8, 5:7] = CTRATE_LABELS.index("Lung nodule") + 1
    for folder, data in (("volumes", hu), ("structures", labels), ("findings", finding)):
        nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 5.0, 1.0])), root / folder / "p0.nii.gz")
    pd.DataFrame(
        {
            "case_id": ["p0"],
            "image": ["volumes/p0.nii.gz"],
            "report": ["A nodule."],
            "split": ["test"],
            "structure_map": ["structures/p0.nii.gz"],
            "finding_map": ["findings/p0.nii.gz"],
        }
    ).to_csv(root / "manifest.csv", index=False)
    assert ctrg(["inspect", "phantom", "p0", "--phantom", str(root), "--out", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "phantom_p0.png").size[0] > 500
    with pytest.raises(ValueError, match="no phantom case for case 'p9'"):
        ctrg(["inspect", "phantom", "p9", "--phantom", str(root), "--out", str(tmp_path)])
