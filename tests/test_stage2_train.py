"""ctrg stage2 + ctrg generate-features on a synthetic feature cache with real files.

Two kinds of case (a cluster of visual tokens each) with two report templates: the decoder
must train, export, reload, generate, refuse features of another frozen model (both
commands), and the shuffled-image control must really decode another case's features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from stage2_helpers import stage2_argv, tiny_stage2_section, write_config

from ctrg import generate
from ctrg.features.cache import FrozenHashMismatch, MissingFeatures, save_case_features
from ctrg.models.decoder import load_stage2
from ctrg.train import stage2

HASH_A, HASH_B = "a" * 64, "b" * 64
TEXTS = (
    "The heart is enlarged. Small pleural effusion on the left.",
    "The heart is normal in size. No pleural effusion. The lungs are clear.",
)


@pytest.fixture(autouse=True)
def one_thread():
    """The commands get --threads 1; restore the process setting afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _cache(root: Path, frozen_hash: str, cases: int = 32) -> Path:
    root.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    proto = torch.randn(2, 10, 16, generator=generator)
    rows, reports = [], []
    for i in range(cases):
        kind = i % 2
        obs = proto[kind] + 0.3 * torch.randn(10, 16, generator=generator)
        patches = obs.unsqueeze(1).repeat(1, 3, 1) + 0.1 * torch.randn(
            10, 3, 16, generator=generator
        )
        tensors = {
            "observation_tokens": obs,
            "selected_patch_tokens": patches,
            "selected_patch_index": torch.arange(30).view(10, 3),
            "selected_patch_score": torch.rand(10, 3, generator=generator),
            "attention": torch.rand(10, 27, generator=generator).half(),
        }
        case = f"case_{i:03d}"
        save_case_features(root / f"{case}.safetensors", tensors, {"frozen_hash": frozen_hash})
        split = "train" if i < 22 else ("valid" if i < 26 else "test")
        rows.append(
            {
                "case_id": case,
                "split": split,
                "path": f"{case}.safetensors",
                "frozen_hash": frozen_hash,
            }
        )
        reports.append({"case_id": case, "split": split, "report": TEXTS[kind]})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    pd.DataFrame(reports).to_csv(root / "reports.csv", index=False)
    return root


def _stage2_config(path: Path, **overrides: object) -> Path:
    return write_config(path, "stage2", tiny_stage2_section(**overrides))


def _generate_config(path: Path) -> Path:
    decoding = {"strategy": "beam", "num_beams": 2, "min_length": 1, "max_length": 30}
    return write_config(path, "generate", {"batch_size": 4, "decoding": decoding})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stage2")
    cache = _cache(root / "features", HASH_A)
    before = torch.get_num_threads()
    argv = stage2_argv(_stage2_config(root / "stage2.json"), cache, root / "stage2")
    assert stage2.main(argv) == 0
    torch.set_num_threads(before)
    return {"root": root, "cache": cache, "model": root / "stage2" / "model.pt"}


def test_stage2_outputs_and_reload(trained: dict[str, Path]) -> None:
    out = trained["model"].parent
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frozen_hash"] == HASH_A and summary["steps"] == 40
    assert summary["train_cases"] == 22 and summary["valid_cases"] == 4
    assert summary["visual_tokens_per_case"] == 10 + 10 * 4
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [20, 40] and all("bleu_4" in r for r in valid)
    train_losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert train_losses[-1] < train_losses[0]
    model, tokenizer, meta = load_stage2(trained["model"])
    assert meta["frozen_hash"] == HASH_A and meta["visual_tokens"] == "selected"
    assert (out / "tokenizer.json").is_file() and tokenizer.decode(
        tokenizer.encode(TEXTS[0])
    ) == TEXTS[0]


def test_generate_and_shuffled_control(trained: dict[str, Path]) -> None:
    cache, root = trained["cache"], trained["root"]
    base = [
        "--model",
        str(trained["model"]),
        "--reports",
        str(cache / "reports.csv"),
        "--config",
        str(_generate_config(root / "generate.json")),
        "--threads",
        "1",
    ]
    plain, shuffled = root / "eval" / "predictions.csv", root / "eval" / "shuffled.csv"
    assert generate.main([str(cache / "index.csv"), *base, "--out", str(plain)]) == 0
    assert (
        generate.main(
            [
                str(cache / "index.csv"),
                *base,
                "--out",
                str(shuffled),
                "--shuffle-features",
                "--shuffle-seed",
                "3",
            ]
        )
        == 0
    )
    first = pd.read_csv(plain, keep_default_na=False)
    assert list(first.columns) == ["case_id", "split", "reference", "prediction"]
    assert first["case_id"].tolist() == [f"case_{i:03d}" for i in range(26, 32)]
    assert set(first["split"]) == {"test"}
    control = pd.read_csv(shuffled, keep_default_na=False)
    assert (control["features_of"] != control["case_id"]).all()
    assert sorted(control["features_of"]) == sorted(control["case_id"])
    by_case = dict(zip(first["case_id"], first["prediction"]))
    assert control["prediction"].tolist() == [by_case[c] for c in control["features_of"]]
    summary = json.loads((root / "eval" / "shuffled.summary.json").read_text())
    assert summary["shuffle_features"] and summary["cases"] == 6
    assert 0 < summary["most_frequent_share"] <= 1


def test_generate_refuses_features_of_another_frozen_model(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    other = _cache(tmp_path / "other", HASH_B)
    argv = [
        str(other / "index.csv"),
        "--model",
        str(trained["model"]),
        "--config",
        str(_generate_config(tmp_path / "g.json")),
        "--out",
        str(tmp_path / "p.csv"),
    ]
    with pytest.raises(FrozenHashMismatch, match="trained on features of frozen model aaaa"):
        generate.main(argv)
    assert not (tmp_path / "p.csv").exists()


def test_stage2_refuses_features_of_another_frozen_model(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "features", HASH_A)
    config = _stage2_config(tmp_path / "stage2.json")
    frozen_json = tmp_path / "frozen.json"
    frozen_json.write_text(json.dumps({"frozen_hash": HASH_B}))
    argv = stage2_argv(config, cache, tmp_path / "out")
    with pytest.raises(FrozenHashMismatch, match="re-extract"):
        stage2.main([*argv, "--frozen", str(frozen_json)])
    # one feature file re-extracted with another model behind the index's back
    from ctrg.features.cache import load_case_features

    stale = load_case_features(cache / "case_003.safetensors")
    stale.pop("metadata")
    save_case_features(cache / "case_003.safetensors", stale, {"frozen_hash": HASH_B})
    with pytest.raises(FrozenHashMismatch, match="case_003"):
        stage2.main(argv)
    assert not (tmp_path / "out" / "model.pt").exists()


def test_all_patches_mode_needs_them_cached(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "features", HASH_A, cases=4)
    config = _stage2_config(tmp_path / "stage2.json", visual_tokens="all")
    argv = stage2_argv(config, cache, tmp_path / "out")
    with pytest.raises(MissingFeatures, match="store_all_patches"):
        stage2.main(argv)


def test_visual_noise_scales_with_each_tokens_spread() -> None:
    from ctrg.features.select import VisualTokens
    from ctrg.train.stage2 import add_visual_noise

    torch.manual_seed(0)
    spread = torch.tensor([0.5, 4.0]).view(1, 2, 1)  # two tokens, very different scales
    tokens = torch.randn(64, 2, 256) * spread  # (B, T, C)
    visual = VisualTokens(tokens, torch.tensor([0, 1]), torch.tensor([0, 10]))
    assert add_visual_noise(visual, 0.0) is visual
    noisy = add_visual_noise(visual, 0.3)
    assert torch.equal(noisy.kind, visual.kind) and torch.equal(noisy.structure, visual.structure)
    assert torch.equal(visual.tokens, tokens)  # the input is not modified
    relative = (noisy.tokens - tokens) / tokens.std(dim=-1, keepdim=True)  # (B, T, C)
    assert relative.std().item() == pytest.approx(0.3, rel=0.05)
    for t in range(2):  # noise in units of the token's own spread, not a global scale
        assert relative[:, t].std().item() == pytest.approx(0.3, rel=0.05)


def test_length_bucketed_batches_train_and_pad_less(tmp_path: Path) -> None:
    """stage2.loop.bucket_pool trains and exports; ctrg bench bucketing measures on the
    same training set that sorted pools pad less than random batches (2 report lengths)."""
    from ctrg.bench import bucketing

    cache = _cache(tmp_path / "features", HASH_A)
    loop = {**tiny_stage2_section()["loop"], "max_steps": 6, "bucket_pool": 2}
    config = _stage2_config(tmp_path / "stage2.json", batch_size=4, loop=loop)
    assert stage2.main(stage2_argv(config, cache, tmp_path / "stage2")) == 0
    summary = json.loads((tmp_path / "stage2" / "summary.json").read_text())
    assert summary["steps"] == 6
    assert load_stage2(tmp_path / "stage2" / "model.pt")[2]["config"]["loop"]["bucket_pool"] == 2
    out = tmp_path / "bucketing.json"
    argv = ["--features", str(cache / "index.csv"), "--reports", str(cache / "reports.csv")]
    argv += ["--config", str(config), "--pools", "2", "--steps", "1", "--repeats", "1"]
    assert bucketing.main([*argv, "--threads", "1", "--out-json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows["0"]["tokens"] == rows["2"]["tokens"]  # the same reports once each
    assert rows["2"]["positions"] < rows["0"]["positions"]
    assert rows["0"]["speedup"] == 1.0
