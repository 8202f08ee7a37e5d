"""``ctrg make-manifest`` for the CT-RATE and CTRG-Chest-548K layouts, then ingestion."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd

from ctrg.data import adapters, ingest


def hu_box(shift=0) -> np.ndarray:
    hu = np.full((16, 16, 10), -1000, np.int16)
    hu[4:12, 4:12, 2:8] = 50
    return (hu + shift).astype(np.int16)


def write_data_json(path, **data):
    payload = {"seed": 0, "section": "data", "data": data}
    path.write_text(json.dumps(payload))
    return path


def make_ctrate(root):
    """train_1_a (2 reconstructions: raw stored values, wrong header spacing), valid_7_a (HU)."""
    wrong = np.diag([1.0, 1.0, 1.0, 1.0])
    right = np.diag([0.75, 0.75, 1.5, 1.0])
    volumes = {
        "train/train_1/train_1_a/train_1_a_1.nii.gz": (hu_box(shift=1024), wrong),
        "train/train_1/train_1_a/train_1_a_2.nii.gz": (hu_box(shift=1024), wrong),
        "train/train_2/train_2_a/train_2_a_1.nii.gz": (hu_box(), right),  # no report
        "valid/valid_7/valid_7_a/valid_7_a_1.nii.gz": (hu_box(), right),
    }
    for name, (data, affine) in volumes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), root / name)
    names = ["train_1_a_1.nii.gz", "train_1_a_2.nii.gz", "valid_7_a_1.nii.gz"]
    pd.DataFrame({
        "VolumeName": names,
        "Findings_EN": ["Heart normal.", "Heart normal (soft kernel).", "Small nodule in the right lung."],
        "Impressions_EN": ["Normal.", "Normal.", "Nodule."],
    }).to_csv(root / "radiology_text_reports.csv", index=False)  # fmt: skip
    pd.DataFrame({
        "VolumeName": names,
        "RescaleSlope": [1.0, 1.0, 1.0],
        "RescaleIntercept": [-1024.0, -1024.0, -1024.0],
        "XYSpacing": ["[0.75, 0.75]"] * 3,
        "ZSpacing": [1.5, 1.5, 1.5],
    }).to_csv(root / "metadata.csv", index=False)  # fmt: skip


def test_ctrate_manifest_one_reconstruction_and_hu_rules(tmp_path):
    root = tmp_path / "CT-RATE"
    make_ctrate(root)
    config = write_data_json(tmp_path / "data.json", source="ctrate", root=str(root))
    out = tmp_path / "source" / "manifest.csv"
    assert adapters.main(["--config", str(config), "--out", str(out)]) == 0
    manifest = pd.read_csv(out, keep_default_na=False)
    assert list(manifest["case_id"]) == ["train_1_a_1", "valid_7_a_1"]
    assert list(manifest["split"]) == ["train", "test"]  # CT-RATE valid is the usual test set
    assert manifest.loc[0, "report"] == "Heart normal."
    assert all((out.parent / image).is_file() for image in manifest["image"])
    assert manifest.loc[0, "xy_spacing"] == 0.75 and manifest.loc[0, "rescale_intercept"] == -1024

    volumes = tmp_path / "volumes"
    args = ["--spacing", "3", "3", "3", "--shape", "8", "8", "8", "--out", str(volumes)]
    assert ingest.main([str(out), *args]) == 0
    result = pd.read_csv(volumes / "manifest.csv", keep_default_na=False).set_index("case_id")
    assert (
        result.loc["train_1_a_1", "hu_min"] == -1000
        and result.loc["valid_7_a_1", "hu_min"] == -1000
    )
    assert "applied manifest slope 1 intercept -1024" in result.loc["train_1_a_1", "hu_rule"]
    assert "already HU" in result.loc["valid_7_a_1", "hu_rule"]
    assert result.loc["train_1_a_1", "orig_spacing"] == "1.5 0.75 0.75"  # from the metadata
    assert "replaced by manifest 0.75 mm" in result.loc["train_1_a_1", "warnings"]
    assert result.loc["valid_7_a_1", "warnings"] == ""
    np.testing.assert_array_equal(
        np.load(volumes / "train_1_a_1.npy"), np.load(volumes / "valid_7_a_1.npy")
    )

    config = write_data_json(
        tmp_path / "all.json", source="ctrate", root=str(root), one_reconstruction_per_scan=False
    )
    assert adapters.main(["--config", str(config), "--out", str(tmp_path / "all.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 3


def test_ctrg_chest_manifest(tmp_path):
    root = tmp_path / "CTRG"
    (root / "images").mkdir(parents=True)
    for case in (11, 12, 13):
        nib.save(
            nib.Nifti1Image(hu_box(), np.diag([0.7, 0.7, 1.25, 1])),
            root / "images" / f"patient_{case}.nii.gz",
        )
    annotation = {
        "train": [{"id": "11", "report": "The heart is normal.", "split": "train"}],
        "val": [{"id": "12", "report": "Pleural effusion on the left."}],
        "test": [{"id": "13", "finding": "No nodules."}, {"id": "14", "report": ""}],
    }
    (root / "annotation.json").write_text(json.dumps(annotation))
    config = write_data_json(
        tmp_path / "data.json", source="ctrg_chest", root=str(root), ctrg_images="images"
    )
    out = tmp_path / "manifest.csv"
    assert adapters.main(["--config", str(config), "--out", str(out)]) == 0
    manifest = pd.read_csv(out)
    assert list(manifest["case_id"]) == ["patient_11", "patient_12", "patient_13"]
    assert list(manifest["split"]) == ["train", "valid", "test"]
    assert manifest.loc[2, "report"] == "No nodules."
    assert all((tmp_path / image).is_file() for image in manifest["image"])
