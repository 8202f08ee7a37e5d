"""End to end: the whole default DAG on a tiny phantom config, through the real Snakemake."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TINY_CONFIG = Path(__file__).parent / "cluster" / "tiny_config.yaml"


def snakemake(repo: Path, workdir: Path, *args: str, configfile: Path = TINY_CONFIG) -> str:
    """Run snakemake on the repository's Snakefile in ``workdir``; return its combined output."""
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(repo / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(configfile),
        "--cores", "2",
        *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"snakemake {' '.join(args)} failed:\n{output[-6000:]}"
    return output


def planned_jobs(output: str) -> set[str]:
    """Rule names in a dry run's job-stats table."""
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", table, flags=re.M)} - {"total"}


@pytest.fixture(scope="module")
def finished_run(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("e2e")
    snakemake(repo_root, workdir)
    return workdir


def test_every_stage_produced_its_artifacts(finished_run: Path):
    run = finished_run / "results" / "tiny"
    for path in (
        "results/phantom/manifest.csv",
        "results/volumes/manifest.csv",
        "results/volumes/rejected.csv",
        "results/reports/structure_texts.csv",
        "results/reports/labels.csv",
        "results/text_cache/embeddings.safetensors",
    ):
        assert (finished_run / path).is_file(), path
    for stage in ("stage1", "stage2"):
        assert (run / stage / "model.pt").is_file()
        summary = json.loads((run / stage / "summary.json").read_text())
        assert summary["provenance"]["versions"]["ctrg"]
        assert (run / stage / "resolved_config.json").is_file()
    assert (run / "features" / "index.csv").is_file()
    predictions = pd.read_csv(run / "eval" / "predictions.csv", keep_default_na=False)
    phantom = pd.read_csv(finished_run / "results/phantom/manifest.csv")
    assert set(predictions["case_id"]) == set(phantom.loc[phantom["split"] == "test", "case_id"])
    assert predictions["prediction"].str.len().min() > 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    for key in ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider"):
        assert 0.0 <= float(metrics[key]) <= 1.0 or key == "cider"
    control = pd.read_csv(run / "control" / "predictions.csv", keep_default_na=False)
    assert set(control["case_id"]) == set(predictions["case_id"])
    assert (control["features_of"] != control["case_id"]).all()
    control_metrics = json.loads((run / "control" / "metrics.json").read_text())
    assert "comparison" in control_metrics
    for rule in ("synth", "stage1", "stage2", "evaluate", "generate_shuffled"):
        assert list((finished_run / "logs").rglob(f"*{rule}*.log")), f"no log for {rule}"
        assert list((finished_run / "benchmarks").rglob(f"*{rule}*.tsv")), (
            f"no benchmark for {rule}"
        )


def test_workflow_is_complete_after_a_run(repo_root: Path, finished_run: Path):
    output = snakemake(repo_root, finished_run, "-n")
    assert "Nothing to be done" in output


def test_editing_stage2_section_reruns_only_stage2_and_descendants(
    repo_root: Path, finished_run: Path, tmp_path: Path
):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config.setdefault("stage2", {})["label_smoothing"] = 0.05
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(repo_root, finished_run, "-n", configfile=edited))
    assert {"stage2", "generate", "evaluate"} <= jobs
    assert not jobs & {"stage1", "synth", "ingest", "extract_features", "encode_texts"}


def test_forcerun_and_until_select_the_right_jobs(repo_root: Path, finished_run: Path):
    jobs = planned_jobs(snakemake(repo_root, finished_run, "-n", "--forcerun", "stage2"))
    assert "stage2" in jobs and "stage1" not in jobs
    jobs = planned_jobs(snakemake(repo_root, finished_run, "-n", "-F", "--until", "stage1"))
    assert "stage1" in jobs and not jobs & {"freeze", "stage2", "evaluate"}
