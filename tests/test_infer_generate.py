"""ctrg generate: NIfTI in, report + structure sentences + labels out, with tiny real models."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.cli import main as ctrg
from ctrg.features.cache import save_frozen
from ctrg.features.extract import extract_batch, load_frozen_observer
from ctrg.models.decoder import DecoderConfig, ReportDecoder
from ctrg.models.observer import ObserverConfig, StructureObserver, observer_config_dict
from ctrg.models.tokenizer import train_tokenizer

REPORTS = [
    "No pleural effusion. The heart is normal.",
    "Emphysema in both lungs.",
    "A nodule in the right upper lobe. No effusion.",
] * 4
OBSERVER = {
    "volume_shape": [16, 32, 32],
    "patch_shape": [4, 8, 8],
    "vision_dim": 32,
    "vision_heads": 2,
    "vision_dim_head": 16,
    "spatial_depth": 1,
    "temporal_depth": 1,
    "query_dim": 32,
    "query_heads": 2,
    "embed_dim": 32,
}


def _write(path, section, body, model_stage=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"seed": 0, "section": section, section: body}
    if model_stage:
        payload.update(run="r", device="cpu")
    path.write_text(json.dumps(payload))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.manual_seed(0)
    results = tmp_path_factory.mktemp("results")
    run = results / "r"
    config = ObserverConfig.from_dict(OBSERVER)
    observer = StructureObserver(config)
    content = save_frozen(
        run / "frozen" / "model.safetensors", observer.state_dict(), observer_config_dict(config)
    )
    tokenizer = train_tokenizer(REPORTS, "bpe", 300, 1)
    dcfg = DecoderConfig(
        vocab_size=tokenizer.vocab_size,
        visual_dim=32,
        d_model=32,
        num_layers=1,
        num_heads=2,
        ff_dim=64,
        max_length=24,
        pad_id=tokenizer.pad_id,
    )
    (run / "stage2").mkdir()
    torch.save(
        {
            "model": ReportDecoder(dcfg).state_dict(),
            "kind": "transformer",
            "decoder_config": dcfg.to_dict(),
            "tokenizer": tokenizer.to_json(),
            "frozen_hash": content,
            "visual_tokens": "selected",
        },
        run / "stage2" / "model.pt",
    )
    _write(
        results / "configs" / "preprocess.json",
        "preprocess",
        {"spacing": [6.0, 3.6, 3.6], "shape": [16, 32, 32]},
        model_stage=False,
    )
    _write(results / "configs" / "text.json", "text", {}, model_stage=False)
    _write(run / "configs" / "features.json", "features", {"top_k": 3})
    _write(
        run / "configs" / "generate.json",
        "generate",
        {"decoding": {"strategy": "greedy", "min_length": 2, "max_length": 12}},
    )
    return run


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    hu = np.full((40, 40, 30), -1000, dtype=np.int16)
    hu[10:30, 8:32, 5:25] = 40
    nib.save(nib.Nifti1Image(hu, np.diag([3.0, 3.0, 5.0, 1.0])), folder / "case_a.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not a nifti")
    return folder


def test_generate_prints_report_structures_and_labels(run_dir, nifti, capsys):
    assert ctrg(["generate", str(nifti / "case_a.nii.gz"), "--run", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("== case_a (")
    for name in CHEST_STRUCTURES:
        assert f"  {name}" in text
    assert "Labels:" in text and "Seconds: preprocess_s" in text


def test_batch_over_manifest_writes_outputs_and_skips_bad_input(run_dir, nifti, tmp_path):
    manifest = nifti / "manifest.csv"
    pd.DataFrame({"case_id": ["a", "bad"], "image": ["case_a.nii.gz", "broken.nii.gz"]}).to_csv(
        manifest, index=False
    )
    out = tmp_path / "out"
    rc = ctrg(
        [
            "generate",
            "--manifest",
            str(manifest),
            "--run",
            str(run_dir),
            "--out",
            str(out),
            "--inspect",
        ]
    )
    assert rc == 1  # one input failed
    reports = pd.read_csv(out / "reports.csv", keep_default_na=False)
    assert reports["case_id"].tolist() == ["a"]
    assert set(CHEST_STRUCTURES) <= set(reports.columns)
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected["input"].str.endswith("broken.nii.gz").all()
    result = json.loads((out / "a.json").read_text())
    assert (
        result["preprocess"]["shape"] == [16, 32, 32] and result["report"] == reports["report"][0]
    )
    assert (out / "a" / "attention.nii.gz").is_file() and (out / "a" / "attention.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reports"] == 1 and summary["mean_case_s"] > 0


def test_same_features_as_the_extraction_path(run_dir, nifti):
    """The report comes from exactly the features ctrg extract would cache for this volume."""
    from ctrg.data.ingest import load_and_preprocess
    from ctrg.infer import Pipeline, build_parser

    pipeline = Pipeline(build_parser().parse_args(["--run", str(run_dir)]))
    volume, _ = load_and_preprocess(nifti / "case_a.nii.gz", pipeline.preprocess)
    observer, _ = load_frozen_observer(
        run_dir / "frozen" / "model.safetensors", torch.device("cpu")
    )
    cached = extract_batch(observer, volume[None], 3, False, torch.device("cpu"))[0]
    result, (_, features, _) = pipeline.run(nifti / "case_a.nii.gz")
    for key, value in cached.items():
        torch.testing.assert_close(features[key], value)
    assert result["report"] == pipeline.decode(cached)


def test_decoder_of_another_frozen_model_is_refused(run_dir, nifti, tmp_path):
    state = torch.load(run_dir / "stage2" / "model.pt", weights_only=True)
    state["frozen_hash"] = "0" * 64
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="trained on features of frozen model 000000000000"):
        ctrg(
            [
                "generate",
                str(nifti / "case_a.nii.gz"),
                "--run",
                str(run_dir),
                "--model",
                str(tmp_path / "other.pt"),
            ]
        )


def test_missing_run_files_are_named(tmp_path, nifti):
    with pytest.raises(FileNotFoundError, match="preprocess config not found"):
        ctrg(["generate", str(nifti / "case_a.nii.gz"), "--run", str(tmp_path / "r")])
