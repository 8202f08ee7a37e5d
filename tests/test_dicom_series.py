"""DICOM series: real pydicom CT files, generated shuffled series, series choice, de-identification."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctrg.data import ingest
from ctrg.data.dicom import read_dicom_series, write_dicom_series
from ctrg.data.nifti import VolumeError

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
PHI = {
    "PatientName": "Fakename^Johnny",
    "PatientID": "PID99881177",
    "PatientBirthDate": "19510203",
    "AccessionNumber": "ACC778899",
}
ARGS = ["--spacing", "3", "2", "2", "--shape", "8", "12", "12"]


def test_real_multislice_ct_series_is_ordered_by_position(tmp_path):
    """pydicom's CT5N: 5 real 16x16 CT slices, 2.5 mm apart, InstanceNumber runs superior->inferior."""
    source = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"
    volume = read_dicom_series(shutil.copytree(source, tmp_path / "ct5n"))
    assert volume.data.shape == (5, 16, 16) and volume.meta["slices"] == 5
    z = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in volume.files]
    assert z == sorted(z) and z[0] == pytest.approx(-1.2375)
    np.testing.assert_array_equal(volume.data[0], pydicom.dcmread(source / "3353").pixel_array)
    expected = np.array([
        [-0.488281, 0, 0, 72.199997],  # LPS x negated; column spacing along i
        [0, -0.488281, 0, 143.0],
        [0, 0, 2.5, -1.2375],
        [0, 0, 0, 1],
    ])  # fmt: skip
    np.testing.assert_allclose(volume.affine, expected, atol=1e-5)
    assert (volume.slope, volume.inter) == (1.0, -1024.0)


def test_real_series_with_a_gap_is_rejected_as_missing_slices(tmp_path):
    source = TEST_FILES / "dicomdirtests" / "77654033" / "CT2"  # z = -99.48, 103.02, 104.27, 105.52
    with pytest.raises(VolumeError, match=r"missing slice.*gap of 202\.500 mm.*expected 1\.250"):
        read_dicom_series(shutil.copytree(source, tmp_path / "ct2"))


def test_real_single_ct_file_is_a_2d_image():
    with pytest.raises(VolumeError, match="2D image"):
        read_dicom_series(get_testdata_file("CT_small.dcm"))


def phantom_hu(shape=(9, 20, 18)) -> np.ndarray:
    hu = np.full(shape, -1000, np.int16)
    hu[2:7, 5:15, 4:14] = 60
    hu[5:7, 5:8, 4:8] = 700  # an asymmetric bright corner: superior, anterior(-ish), right
    return hu


def test_shuffled_series_round_trips_and_equals_the_nifti_path(tmp_path):
    hu = phantom_hu()
    order = list(np.random.default_rng(1).permutation(len(hu)))
    assert order != sorted(order)
    spacing, origin = (2.5, 0.8, 0.6), (-30.0, -40.0, 100.0)
    write_dicom_series(hu, tmp_path / "dcm", spacing=spacing, origin=origin, file_order=order)
    volume = read_dicom_series(tmp_path / "dcm")
    np.testing.assert_array_equal(volume.data * volume.slope + volume.inter, hu)
    affine = np.array([[-0.6, 0, 0, 30.0], [0, -0.8, 0, 40.0], [0, 0, 2.5, 100.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(volume.affine, affine)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.T), affine), tmp_path / "same.nii.gz")
    rows = [
        {"case_id": "from_dicom", "image": "dcm", "split": "test"},
        {"case_id": "from_nifti", "image": "same.nii.gz", "split": "test"},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    assert ingest.main([str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"), *ARGS]) == 0
    from_dicom, from_nifti = (
        np.load(tmp_path / "out" / f"{c}.npy") for c in ("from_dicom", "from_nifti")
    )
    np.testing.assert_array_equal(from_dicom, from_nifti)
    # at the native spacing nothing is interpolated: LPS -> (S, A, R) flips rows and columns
    native = [
        "--spacing",
        "2.5",
        "0.8",
        "0.6",
        "--shape",
        "9",
        "20",
        "18",
        "--out",
        str(tmp_path / "n"),
    ]
    assert ingest.main([str(tmp_path / "manifest.csv"), *native]) == 0
    expected = (hu[:, ::-1, ::-1] / 1000.0).astype(np.float16)
    np.testing.assert_array_equal(np.load(tmp_path / "n" / "from_dicom.npy"), expected)
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv").set_index("case_id")
    assert manifest.loc["from_dicom", "orig_spacing"] == "2.5 0.8 0.6"
    assert "DICOM" not in str(manifest.loc["from_dicom", "warnings"])


def test_two_series_pick_by_rule_warn_or_reject(tmp_path):
    write_dicom_series(phantom_hu((9, 20, 18)), tmp_path / "two" / "a", series_number=3)
    write_dicom_series(phantom_hu((5, 20, 18)), tmp_path / "two" / "b", series_number=4)
    volume = read_dicom_series(tmp_path / "two")
    assert volume.data.shape == (9, 20, 18)
    assert any(
        "2 CT series" in w and "picked series 3 by rule most_slices" in w for w in volume.warnings
    )
    with pytest.raises(VolumeError, match="2 CT series"):
        read_dicom_series(tmp_path / "two", multiple="reject")
    write_dicom_series(phantom_hu((9, 20, 18)), tmp_path / "tie" / "a", series_number=1)
    write_dicom_series(phantom_hu((9, 20, 18)), tmp_path / "tie" / "b", series_number=2)
    with pytest.raises(VolumeError, match="tie"):
        read_dicom_series(tmp_path / "tie")


def test_duplicated_slice_is_dropped_with_a_warning(tmp_path):
    hu = phantom_hu()
    write_dicom_series(hu, tmp_path / "dup")
    shutil.copy(tmp_path / "dup" / "IM0003.dcm", tmp_path / "dup" / "IM9999.dcm")
    volume = read_dicom_series(tmp_path / "dup")
    assert volume.data.shape == hu.shape and any("duplicated" in w for w in volume.warnings)


def test_identifying_headers_never_reach_outputs_or_logs(tmp_path, caplog, capsys):
    write_dicom_series(
        phantom_hu(), tmp_path / "patient", header=PHI, file_order=[3, 1, 4, 0, 8, 2, 6, 5, 7]
    )
    write_dicom_series(phantom_hu((4, 20, 18)), tmp_path / "patient" / "scout", header=PHI)
    write_dicom_series(phantom_hu((5, 20, 18)), tmp_path / "other", header=PHI)
    (tmp_path / "other" / "IM0002.dcm").unlink()  # missing slice -> rejected, reason logged
    rows = [{"case_id": "anon_001", "image": "patient", "split": "train"},
            {"case_id": "anon_002", "image": "other", "split": "train"}]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "out"
    with caplog.at_level("DEBUG"):
        assert ingest.main([str(tmp_path / "manifest.csv"), "--out", str(out), *ARGS]) == 0
    captured = capsys.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "anon_001" in logs and "anon_002" in logs  # the logs are really there
    assert (
        len(pd.read_csv(out / "rejected.csv")) == 1 and len(pd.read_csv(out / "manifest.csv")) == 1
    )
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert len(blobs) >= 5
    for value in PHI.values():
        for token in {value, *value.split("^")}:
            assert token not in logs
            assert all(token.encode() not in blob for blob in blobs)
    _, info = ingest.load_and_preprocess(
        tmp_path / "patient", {"spacing": [3, 2, 2], "shape": [8, 12, 12]}
    )
    assert info["case_id"].startswith("dcm_") and all(v not in str(info) for v in PHI.values())
