"""Phantom files: contract layout, byte determinism, worker-count independence, affine, DICOM."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.config import load_stage_config
from ctrg.data.phantom_case import generate_case
from ctrg.data.phantom_io import nifti_bytes, stored_affine, to_stored
from ctrg.data.phantom_v2_findings import FINDING_VALUES
from ctrg.data.synth import generate_dataset
from ctrg.data.synth_cli import main

TINY = ["--shape", "32", "32", "32", "--n-cases", "4"]


def payload(n_cases: int = 3, seed: int = 0, **changes) -> dict:
    stage = load_stage_config(None, "synth")
    stage["seed"] = seed
    stage["synth"].update(n_cases=n_cases, shape=[32, 32, 32], **changes)
    return stage


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file except the run summary (it holds timings and provenance)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("summary.json",)
    }


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    assert main([*TINY, "--out", str(out), "--preview", "1", "--seed", "3"]) == 0
    return out


def test_cli_writes_the_contract_layout(cli_run):
    manifest = pd.read_csv(cli_run / "manifest.csv")
    assert list(manifest.columns) == [
        "case_id",
        "image",
        "report",
        "split",
        "structure_map",
        "finding_map",
    ]
    assert list(manifest.case_id) == [f"phantom_{i:04d}" for i in range(4)]
    assert set(manifest.split) <= {"train", "valid", "test"}
    labels = pd.read_csv(cli_run / "labels.csv")
    assert list(labels.columns) == ["case_id", *CTRATE_LABELS]
    assert set(np.unique(labels[list(CTRATE_LABELS)].to_numpy())) <= {0, 1}
    sentences = pd.read_csv(cli_run / "structure_sentences.csv")
    assert set(sentences.structure) <= set(CHEST_STRUCTURES)
    findings = pd.read_csv(cli_run / "findings.csv")
    assert {"case_id", "label", "structure", "side", "lobe", "size_mm", "amount"} <= set(
        findings.columns
    )
    for row in manifest.itertuples():
        image = nib.load(cli_run / row.image)
        structures = nib.load(cli_run / row.structure_map)
        finding_map = nib.load(cli_run / row.finding_map)
        assert image.get_data_dtype() == np.int16
        assert structures.get_data_dtype() == np.uint8 == finding_map.get_data_dtype()
        assert np.allclose(image.affine, structures.affine) and image.shape == finding_map.shape
        positive = {
            CTRATE_LABELS.index(k) + 1
            for k in CTRATE_LABELS
            if labels.set_index("case_id").loc[row.case_id, k]
        }
        own = findings[(findings.case_id == row.case_id) & (findings.ctrate == 0)]
        positive |= {FINDING_VALUES[name] for name in own.label}  # 19.. (phantom v2)
        assert set(np.unique(np.asarray(finding_map.dataobj))) - {0} == positive
        assert row.report == " ".join(sentences[sentences.case_id == row.case_id].sentence)
    assert (cli_run / "preview" / "phantom_0000.png").stat().st_size > 10_000
    assert (cli_run / "resolved_config.json").exists() and (cli_run / "summary.json").exists()


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, cli_run):
    again = tmp_path / "again"
    assert main([*TINY, "--out", str(again), "--preview", "1", "--seed", "3"]) == 0
    assert tree_hashes(again) == tree_hashes(cli_run)
    other = tmp_path / "other"
    generate_dataset(payload(n_cases=1, seed=4), other, threads=1)
    first = (cli_run / "volumes" / "phantom_0000.nii.gz").read_bytes()
    assert (other / "volumes" / "phantom_0000.nii.gz").read_bytes() != first


def test_gzip_header_has_no_timestamp():
    data = nifti_bytes(np.zeros((2, 2, 2), np.int16), np.eye(4))
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\x00\x00\x00\x00"


def test_output_does_not_depend_on_worker_count(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    generate_dataset(payload(n_cases=3, seed=9), one, threads=1)
    generate_dataset(payload(n_cases=3, seed=9), two, threads=2)
    assert tree_hashes(one) == tree_hashes(two)


@pytest.mark.parametrize("descending", [False, True])
def test_affine_maps_anatomy_to_ras(descending):
    synth = payload()["synth"]
    synth["slice_order"] = "descending" if descending else "ascending"
    case = generate_case(synth, 2, 0)
    assert case.descending == descending
    stored = to_stored(case.structures, case.descending)
    image = nib.Nifti1Image(stored, stored_affine(case.grid, case.descending))
    canonical = nib.as_closest_canonical(image)
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    # Canonical RAS array transposed to (S, A, R) is exactly the generator's array.
    np.testing.assert_array_equal(np.asarray(canonical.dataobj).transpose(2, 1, 0), case.structures)

    def centroid(structure: str) -> np.ndarray:
        ijk = np.argwhere(stored == CHEST_STRUCTURES.index(structure) + 1).mean(axis=0)
        return nib.affines.apply_affine(image.affine, ijk)  # world RAS (x, y, z) mm

    heart, abdomen, bone = centroid("heart"), centroid("abdomen"), centroid("bone")
    thyroid, trachea = centroid("thyroid"), centroid("trachea and bronchi")
    assert heart[0] < trachea[0]  # the heart lies to the patient's left (RAS x smaller)
    assert thyroid[2] > heart[2] > abdomen[2]  # superior to inferior
    assert bone[1] < heart[1]  # the spine dominates bone: posterior to the heart
    voxel = case.grid.spacing
    assert np.allclose(np.abs(np.diag(image.affine)[:3]), voxel[::-1])


def test_dicom_series_round_trips_to_hu(tmp_path):
    out = tmp_path / "dicom"
    generate_dataset(payload(n_cases=1, seed=6, format="dicom"), out, threads=1)
    manifest = pd.read_csv(out / "manifest.csv")
    folder = out / manifest.image[0]
    assert folder.is_dir()
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    case = generate_case(payload(n_cases=1, seed=6, format="dicom")["synth"], 6, 0)
    assert len(datasets) == case.hu.shape[0]
    first = datasets[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert (
        first.PatientName and first.PatientID and first.PatientBirthDate and first.AccessionNumber
    )
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert float(first.RescaleIntercept) != 0 and not np.array_equal(first.pixel_array, case.hu[0])
    volume = np.stack(
        [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets]
    )
    # DICOM rows run posterior and columns to the patient's left: flip back to (S, A, R).
    np.testing.assert_array_equal(volume[:, ::-1, ::-1], case.hu)
    sz, sy, sx = case.grid.spacing
    assert np.allclose([float(v) for v in first.PixelSpacing], [sy, sx])
    assert np.isclose(
        float(datasets[1].ImagePositionPatient[2]) - float(first.ImagePositionPatient[2]), sz
    )
    # LPS position of the first pixel = RAS corner of the structure map, x and y negated.
    structures = nib.load(out / manifest.structure_map[0])
    corner = nib.affines.apply_affine(structures.affine, [0, 0, 0])
    if structures.affine[2, 2] < 0:  # descending storage: voxel k=0 is the top slice
        corner = nib.affines.apply_affine(structures.affine, [0, 0, structures.shape[2] - 1])
    assert np.allclose(
        [float(v) for v in first.ImagePositionPatient], [-corner[0], -corner[1], corner[2]]
    )


def test_a_failing_case_is_reported_and_skipped(tmp_path, monkeypatch):
    import ctrg.data.synth as synth_module

    real = synth_module.generate_case

    def flaky(synth, seed, index):
        if index == 1:
            raise RuntimeError("broken on purpose")
        return real(synth, seed, index)

    monkeypatch.setattr(synth_module, "generate_case", flaky)
    out = tmp_path / "flaky"
    assert main([*TINY, "--out", str(out)]) == 1
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.case_id) == ["phantom_0000", "phantom_0002", "phantom_0003"]
    summary = pd.read_json(out / "summary.json", typ="series")
    assert "broken on purpose" in summary["failed"]["phantom_0001"]
