"""Every kind of bad input gives one rejected.csv row and a warning; the other cases finish."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
from pydicom.data import get_testdata_file

from ctrg.data import gather, ingest
from ctrg.data.dicom import write_dicom_series

AFFINE = np.diag([1.5, 1.5, 2.5, 1.0])


def body(shape=(16, 16, 10)) -> np.ndarray:
    hu = np.full(shape, -1000, np.int16)
    hu[3:13, 3:13, 2:8] = 30
    return hu


def build_inputs(folder):
    """Returns manifest rows: (case_id, image, expected reason regex or None for good)."""
    nib.save(nib.Nifti1Image(body(), AFFINE), folder / "good.nii.gz")
    nib.save(nib.Nifti1Image(body(), AFFINE), folder / "full.nii.gz")
    data = (folder / "full.nii.gz").read_bytes()
    (folder / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "fake.nii.gz").write_text("plain text pretending to be NIfTI\n")
    shutil.copy(get_testdata_file("MR_small.dcm"), folder / "mr.dcm")
    write_dicom_series(body().T, folder / "two" / "a", series_number=1)
    write_dicom_series(body().T, folder / "two" / "b", series_number=2)
    write_dicom_series(body((16, 16, 12)).T, folder / "two_unequal" / "a", series_number=5)
    write_dicom_series(body((16, 16, 6)).T, folder / "two_unequal" / "b", series_number=6)
    write_dicom_series(body().T, folder / "gap")
    (folder / "gap" / "IM0004.dcm").unlink()
    nib.save(
        nib.Nifti1Image(np.full((16, 16, 10), -1000, np.int16), AFFINE), folder / "constant.nii.gz"
    )
    with_nan = body().astype(np.float32)
    with_nan[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(with_nan, AFFINE), folder / "nan.nii.gz")
    nib.save(nib.Nifti1Image(body((16, 16, 1)), AFFINE), folder / "flat.nii.gz")
    return [
        ("good", "good.nii.gz", None),
        ("two_unequal", "two_unequal", None),  # picked by rule, with a warning
        ("truncated", "truncated.nii.gz", r"truncated or corrupt"),
        ("notes", "notes.txt", r"not an image"),
        ("fake", "fake.nii.gz", r"not a readable NIfTI image"),
        ("mr", "mr.dcm", r"no CT series \(modalities found: MR\)"),
        ("two", "two", r"2 CT series.*tie"),
        ("gap", "gap", r"missing slice"),
        ("constant", "constant.nii.gz", r"constant volume: every voxel is -1000"),
        ("nan", "nan.nii.gz", r"1 NaN voxel"),
        ("flat", "flat.nii.gz", r"2D image"),
        ("ct_small", get_testdata_file("CT_small.dcm"), r"2D image"),
        ("missing", "does/not/exist.nii.gz", r"unreadable path"),
        ("missing_dicom", "no_such_folder", r"unreadable path"),
    ]


def test_each_bad_input_is_one_rejected_row_and_a_warning(tmp_path, caplog):
    cases = build_inputs(tmp_path)
    rows = [{"case_id": c, "image": i, "report": "", "split": "train"} for c, i, _ in cases]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "out"
    args = ["--spacing", "3", "3", "3", "--shape", "8", "8", "8"]
    with caplog.at_level("WARNING"):
        assert (
            ingest.main([str(tmp_path / "manifest.csv"), "--out", str(out / "shard-000"), *args])
            == 0
        )
        assert gather.main([str(out / "shard-000"), "--out", str(out)]) == 0
    rejected = pd.read_csv(out / "rejected.csv", keep_default_na=False)
    accepted = pd.read_csv(out / "manifest.csv", keep_default_na=False).set_index("case_id")
    assert sorted(accepted.index) == ["good", "two_unequal"]
    assert (out / accepted.loc["good", "path"]).is_file()
    assert "picked series 5 by rule most_slices" in accepted.loc["two_unequal", "warnings"]
    bad = [(c, i, reason) for c, i, reason in cases if reason]
    assert list(rejected["case_id"]) == [c for c, _, _ in bad]  # one row each, in order
    for (case_id, image, reason), row in zip(bad, rejected.itertuples()):
        assert row.file == image
        assert pd.Series([row.reason]).str.contains(reason).item(), (case_id, row.reason)
        warnings = [r for r in caplog.records if r.getMessage().startswith(f"rejected {case_id} (")]
        assert warnings, f"no warning logged for {case_id}"
