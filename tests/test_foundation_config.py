"""Config schema, per-stage resolved files and the CLI dispatcher."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ctrg import __version__, config
from ctrg.cli import COMMANDS


def test_every_key_in_every_schema_has_default_and_description():
    def walk(schema, where):
        for name, sub in schema.get("properties", {}).items():
            assert "description" in sub, f"{where}.{name} has no description"
            assert "default" in sub, f"{where}.{name} has no default"
            if sub.get("type") == "object":
                walk(sub, f"{where}.{name}")

    for section in ("config", *config.SECTIONS):
        walk(config.load_schema(section), section)


def test_resolve_fills_defaults_and_rejects_bad_values():
    resolved = config.resolve({})
    assert resolved["run"] == "default"
    assert resolved["preprocess"]["shape"] == [48, 96, 96]
    with pytest.raises(ValueError, match=r"preprocess\.shape"):
        config.resolve({"preprocess": {"shape": [48, 96]}})
    with pytest.raises(ValueError, match="device"):
        config.resolve({"device": "tpu"})


def test_default_config_yaml_is_valid(repo_root):
    raw = yaml.safe_load((repo_root / "config.yaml").read_text())
    resolved = config.resolve(raw)
    assert resolved["data"]["source"] == "phantom"


@pytest.mark.parametrize("preset", ["ctrate", "ctrg_chest", "phantom_v1"])
def test_presets_merged_over_config_yaml_are_valid(repo_root, preset):
    from ctrg.bench.rows import deep_merge

    base = yaml.safe_load((repo_root / "config.yaml").read_text())
    overrides = yaml.safe_load((repo_root / "presets" / f"{preset}.yaml").read_text())
    resolved = config.resolve(deep_merge(base, overrides))  # as snakemake --configfile merges
    if preset == "phantom_v1":
        assert (resolved["synth"]["version"], resolved["synth"]["n_cases"]) == (1, 300)
        assert resolved["preprocess"] == config.resolve(base)["preprocess"]
    else:
        assert resolved["data"]["source"] == preset


def test_section_payload_isolates_sections(tmp_path):
    base = config.section_payload({}, "stage2")
    edited = config.section_payload({"preprocess": {"shards": 5}}, "stage2")
    assert base == edited  # editing another section leaves stage 2's file unchanged
    shared = config.section_payload({"run": "other", "device": "cpu"}, "preprocess")
    assert "run" not in shared and "device" not in shared  # data prep is shared by runs
    out = tmp_path / "stage2.json"
    config.write_section({}, "stage2", out)
    assert config.load_stage_config(out, "stage2") == json.loads(out.read_text())
    with pytest.raises(ValueError, match="expected 'stage1'"):
        config.load_stage_config(out, "stage1")


def test_cli_version_and_command_modules_exist():
    out = subprocess.run(
        [sys.executable, "-m", "ctrg", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"ctrg {__version__}"
    import importlib.util

    missing = [m for m, _ in COMMANDS.values() if importlib.util.find_spec(m) is None]
    assert not missing, f"subcommands without a module: {missing}"


def test_config_files_merge_in_order_and_name_a_missing_file(tmp_path):
    base, override = tmp_path / "base.yaml", tmp_path / "override.yaml"
    base.write_text("seed: 3\nstage1:\n  model: {vision_dim: 64, vision_heads: 4}\n")
    override.write_text("stage1:\n  model: {vision_dim: 96}\n")
    resolved = config.load_config_files([base, override])
    model = resolved["stage1"]["model"]
    assert resolved["seed"] == 3 and model["vision_dim"] == 96 and model["vision_heads"] == 4
    assert resolved["stage2"]["batch_size"] == 16  # defaults filled
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        config.load_config_files([base, tmp_path / "absent.yaml"])
