"""``ctrg ingest`` + ``ctrg gather-volumes`` on NIfTI manifests (phantom-style, CT-RATE HU rules)."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ctrg.data import gather, ingest

AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, -1.5, 0, 15.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
ARGS = ["--spacing", "3", "3", "3", "--shape", "12", "16", "16"]


def write_case(folder, name, offset=0, stored_shift=0, labels=True):
    """A (I, J, K) = (20, 24, 14) int16 volume: air with a box of soft tissue (+ label maps)."""
    hu = np.full((20, 24, 14), -1000, np.int16)
    hu[4:16, 6:18, 3:11] = 40 + offset
    hu[4:16, 6:18, 9:11] = 300  # superior part of the box is bone-like
    nib.save(
        nib.Nifti1Image((hu + stored_shift).astype(np.int16), AFFINE), folder / f"{name}.nii.gz"
    )
    row = {"case_id": name, "image": f"{name}.nii.gz", "report": "No findings.", "split": "train"}
    if labels:
        structures = (hu > -1000).astype(np.uint8) * 2
        findings = (hu == 300).astype(np.uint8) * 7
        nib.save(nib.Nifti1Image(structures, AFFINE), folder / f"{name}_s.nii.gz")
        nib.save(nib.Nifti1Image(findings, AFFINE), folder / f"{name}_f.nii.gz")
        row |= {"structure_map": f"{name}_s.nii.gz", "finding_map": f"{name}_f.nii.gz"}
    return row


@pytest.fixture(scope="module")
def phantom_like(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantom")
    rows = [write_case(folder, f"phantom_{i:04d}", offset=i) for i in range(6)]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def run_sharded(manifest, out, num_shards=2, extra=()):
    shards = []
    for shard in range(num_shards):
        shard_dir = out / f"shard-{shard:03d}"
        argv = [str(manifest), "--shard", f"{shard:03d}", "--num-shards", str(num_shards)]
        assert ingest.main([*argv, "--threads", "1", "--out", str(shard_dir), *ARGS, *extra]) == 0
        shards.append(shard_dir)
    assert gather.main([*map(str, shards), "--out", str(out)]) == 0
    return shards


def test_shards_are_disjoint_and_gather_rewrites_paths(phantom_like, tmp_path):
    out = tmp_path / "volumes"
    shards = run_sharded(phantom_like / "manifest.csv", out)
    parts = [set(pd.read_csv(s / "manifest.csv")["case_id"]) for s in shards]
    assert not parts[0] & parts[1] and parts[0] | parts[1] == {f"phantom_{i:04d}" for i in range(6)}
    for case_id, part in ((c, p) for p, ids in enumerate(parts) for c in ids):
        expected = int(hashlib.sha256(case_id.encode()).hexdigest()[:15], 16) % 2
        assert part == expected == ingest.shard_of(case_id, 2)
    merged = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert list(merged["case_id"]) == sorted(merged["case_id"])
    for row in merged.itertuples():
        assert row.path.startswith("shard-00") and (out / row.path).is_file()
        assert (out / row.structure_path).is_file() and (out / row.finding_path).is_file()
        # achieved spacing: 13*2.5/11, 23*1.5/12, 19*1.5/10 (first/last voxel centres kept)
        assert (
            row.spacing == "2.95455 2.875 2.85"
            and row.shape == "12 16 16"
            and row.orig_shape == "14 24 20"
        )
        assert row.orig_spacing == "2.5 1.5 1.5" and len(row.source_sha256) == 64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 6 and summary["rejected"] == 0
    assert pd.read_csv(out / "rejected.csv").empty


def test_volume_values_orientation_and_label_maps(phantom_like, tmp_path):
    out = tmp_path / "volumes"
    run_sharded(phantom_like / "manifest.csv", out)
    row = pd.read_csv(out / "manifest.csv").set_index("case_id").loc["phantom_0002"]
    volume = np.load(out / row["path"], mmap_mode="r")
    structures = np.load(out / row["structure_path"])
    findings = np.load(out / row["finding_path"])
    assert volume.dtype == np.float16 and volume.shape == (12, 16, 16)
    assert structures.dtype == findings.dtype == np.uint8 and structures.shape == (12, 16, 16)
    assert set(np.unique(structures)) == {0, 2} and set(np.unique(findings)) == {0, 7}
    assert volume.min() == -1.0 and np.isclose(volume.max(), 0.3, atol=1e-3)  # 300 HU / 1000
    # the bone-like slab is at the superior end of the box: larger d index = superior
    bone_d = np.unique(np.nonzero(findings)[0])
    tissue_d = np.unique(np.nonzero(structures)[0])
    assert bone_d.min() > tissue_d.min() and bone_d.max() == tissue_d.max()
    # tissue voxels away from edges hold 42 HU -> 0.042
    centre = volume[tissue_d[1], 8, 8]
    assert structures[tissue_d[1], 8, 8] == 2 and np.isclose(centre, 0.042, atol=2e-3)
    # labels sit exactly where the intensities are (nearest neighbour on the same grid)
    assert np.all(volume[structures == 0] < -0.5)
    bone_mask = np.asarray(volume) > 0.17  # halfway between 42 HU and 300 HU
    centroid_labels = np.argwhere(findings == 7).mean(axis=0)
    centroid_values = np.argwhere(bone_mask).mean(axis=0)
    np.testing.assert_allclose(centroid_labels, centroid_values, atol=0.5)
    affine = np.array([float(v) for v in row["affine"].split()]).reshape(4, 4)
    assert np.all(np.diag(affine[:3, :3][::-1]) > 0)  # canonical S, A, R axes


def test_load_and_preprocess_matches_the_written_volume(phantom_like, tmp_path):
    out = tmp_path / "volumes"
    ingest.main([str(phantom_like / "manifest.csv"), "--out", str(out), *ARGS])
    section = {"spacing": [3, 3, 3], "shape": [12, 16, 16]}
    array, info = ingest.load_and_preprocess(phantom_like / "phantom_0001.nii.gz", section)
    assert array.dtype == np.float32 and array.flags.c_contiguous and array.shape == (12, 16, 16)
    written = np.load(out / "phantom_0001.npy")
    np.testing.assert_allclose(array, written.astype(np.float32), atol=1e-3)
    assert info["case_id"] == "phantom_0001" and info["spacing"] == pytest.approx(
        (32.5 / 11, 2.875, 2.85)
    )


def test_ctrate_rescale_applied_once(tmp_path):
    """Stored values (HU + 1024) get the manifest intercept; HU volumes are never shifted again."""
    rows = [write_case(tmp_path, "raw", stored_shift=1024, labels=False),
            write_case(tmp_path, "hu", labels=False)]  # fmt: skip
    for row in rows:
        row |= {"rescale_slope": "1", "rescale_intercept": "-1024"}
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    ingest.main([str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"), *ARGS])
    result = pd.read_csv(tmp_path / "out" / "manifest.csv").set_index("case_id")
    assert result.loc["raw", "hu_min"] == -1000 and result.loc["hu", "hu_min"] == -1000
    assert "applied manifest slope 1 intercept -1024" in result.loc["raw", "hu_rule"]
    assert (
        "already HU" in result.loc["hu", "hu_rule"] and "not applied" in result.loc["hu", "hu_rule"]
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "out/raw.npy"), np.load(tmp_path / "out/hu.npy")
    )
    # forcing the rescale on an HU volume shifts it (so the auto rule is what protects it)
    section = ingest.resolve_section(
        {"spacing": [3, 3, 3], "shape": [12, 16, 16], "hu_detection": "rescale"}
    )
    volume = ingest.read_volume(tmp_path / "hu.nii.gz", section)
    _, info = ingest.preprocess_volume(volume, section, rows[1])
    assert info["hu_min"] == -2024


def test_nifti_header_scaling_is_applied_after_resampling(tmp_path):
    """scl_slope/scl_inter (stored = (HU + 1024) / 2) give the same output as plain HU."""
    hu = np.full((20, 24, 14), -1000, np.int16)
    hu[4:16, 6:18, 3:11] = 40
    img = nib.Nifti1Image(((hu + 1024) // 2).astype(np.int16), AFFINE)
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    nib.save(nib.Nifti1Image(hu, AFFINE), tmp_path / "plain.nii.gz")
    section = {"spacing": [3, 3, 3], "shape": [12, 16, 16]}
    scaled, info = ingest.load_and_preprocess(tmp_path / "scaled.nii.gz", section)
    plain, _ = ingest.load_and_preprocess(tmp_path / "plain.nii.gz", section)
    assert info["hu_min"] == -1000 and info["hu_max"] == 40
    assert "header slope 2 intercept -1024" in info["hu_rule"]
    np.testing.assert_allclose(scaled, plain, atol=1e-3)
