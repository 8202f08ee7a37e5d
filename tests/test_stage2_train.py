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


def _cache(root: Path, frozen_hash: str, cases: int = 32, texts: tuple[str, str] = TEXTS) -> Path:
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
        reports.append({"case_id": case, "split": split, "report": texts[kind]})
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
    assert [r["step"] for r in valid] == [20, 40]
    assert all("bleu_4" in r and 0 <= r["clinical_f1"] <= 1 for r in valid)
    # model.pt is the step with the best validation clinical micro-F1 (default), ties by BLEU-4
    best = max(valid, key=lambda r: (r["clinical_f1"], r["bleu_4"], -r["step"]))
    selection = summary["selection"]
    assert selection["metric"] == "clinical_f1" and selection["tiebreak"] == "bleu_4"
    assert selection["step"] == summary["exported_step"] == best["step"]
    assert selection["value"] == best["clinical_f1"]
    assert selection["tiebreak_value"] == best["bleu_4"]
    assert [r["step"] for r in records if r["kind"] == "best"][-1] == best["step"]
    assert summary["train_reports_truncated"] == 0.0  # both texts fit 320 tokens
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


SCRIPTED = {  # validation metrics per step: each rule picks another step
    1: {"loss": 0.5, "bleu_4": 0.30, "clinical_f1": 0.20},
    2: {"loss": 0.8, "bleu_4": 0.10, "clinical_f1": 0.50},
    3: {"loss": 0.7, "bleu_4": 0.20, "clinical_f1": 0.50},  # F1 ties step 2, higher BLEU-4
    4: {"loss": 0.6, "bleu_4": 0.40, "clinical_f1": 0.25},
    5: {"loss": 0.9, "bleu_4": 0.20, "clinical_f1": 0.50},  # ties step 3 on both: 3 stays
}


@pytest.mark.parametrize(
    ("metric", "step", "best_steps"),
    [("clinical_f1", 3, [1, 2, 3]), ("bleu_4", 4, [1, 4]), ("loss", 1, [1])],
)
def test_selection_by_validation_metric(
    tmp_path: Path, metric: str, step: int, best_steps: list[int]
) -> None:
    """clinical_f1 picks step 3 (F1 0.5; tie with step 2 broken by BLEU-4 0.2 > 0.1; step 5
    ties on both and the earlier step stays) where BLEU-4 picks step 4 and loss step 1."""
    from torch.utils.data import TensorDataset

    from ctrg.train.loop import LoopConfig, Trainer
    from ctrg.train.stage2_validation import selection

    config = LoopConfig(
        max_steps=5,
        eval_every=1,
        checkpoint_every=5,
        log_every=5,
        amp="off",
        tensorboard=False,
        **selection(metric),
    )
    trainer = Trainer(
        torch.nn.Linear(1, 1),
        config,
        tmp_path,
        TensorDataset(torch.ones(4, 1)),
        lambda model, batch: (model(batch[0]).square().mean(), {}),
        evaluate_fn=lambda module, at: SCRIPTED[at],
        batch_size=2,
    )
    result = trainer.fit(resume="never")
    assert result["best"]["metric"] == metric and result["best"]["step"] == step
    assert result["best"]["value"] == SCRIPTED[step][metric]
    assert torch.load(tmp_path / "work" / "best.pt", weights_only=True)["step"] == step
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "best"] == best_steps


def test_micro_f1_by_hand_and_without_positive_labels() -> None:
    import numpy as np

    from ctrg.train.stage2_validation import micro_f1, selection

    truth = np.array([[1, 0, 1], [0, 0, 1]])
    pred = np.array([[1, 1, 0], [0, 0, 1]])  # TP 2, FP 1, FN 1
    assert micro_f1(truth, pred) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert micro_f1(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0  # undefined -> 0
    assert micro_f1(truth, np.zeros((2, 3))) == 0.0
    with pytest.raises(ValueError, match="best_metric 'cider'"):
        selection("cider")


def test_truncated_share_by_hand(caplog: pytest.LogCaptureFixture) -> None:
    from ctrg.train.stage2_inputs import report_truncation, truncated_share

    assert truncated_share([3, 5, 6, 10], 5) == 0.5  # 6 and 10 are cut; 5 fits exactly
    assert truncated_share([3, 5], 5) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        truncated_share([], 5)

    class Words:  # BOS + one id per word + EOS
        def encode(self, text: str) -> list[int]:
            return [0, *range(1, len(text.split()) + 1), 0]

    reports = ["a b c", "a b c d e f", "a", "a b c d"]  # 5, 8, 3, 6 ids
    with caplog.at_level("INFO", logger="ctrg.train.stage2_inputs"):
        found = report_truncation(Words(), reports, 5)
    assert found == {
        "train_reports_truncated": 0.5,
        "train_report_tokens_max": 8,
        "max_report_tokens": 5,
    }
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # 50% > 1%


QUIET_TEXTS = (  # no positive label (the labeller reads none), two lengths
    "The lungs are clear. The heart is normal in size. No pleural effusion.",
    "Trachea and both main bronchi are open. No mass or nodule is seen in the lungs. "
    "The heart is normal in size and no pericardial effusion is seen.",
)


def test_two_validation_cases_without_positive_labels_and_truncation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2-case validation split whose reports name no finding: clinical_f1 is 0 at every
    step, BLEU-4 breaks the tie (then the earlier step); the longer of the two training
    reports is cut at max_report_tokens, so half the training reports are truncated."""
    from ctrg.models.tokenizer import ReportTokenizer

    cache = _cache(tmp_path / "features", HASH_A, cases=26, texts=QUIET_TEXTS)
    loop = {"max_steps": 6, "eval_every": 2, "checkpoint_every": 6, "log_every": 2}
    validation = {"max_cases": 2, "decoding": {"min_length": 1, "max_length": 30}}
    config = _stage2_config(
        tmp_path / "stage2.json", loop=loop, validation=validation, max_report_tokens=50
    )
    with caplog.at_level("INFO"):
        assert stage2.main(stage2_argv(config, cache, tmp_path / "out")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["valid_cases"] == 2
    history = summary["history"]
    assert [r["step"] for r in history] == [2, 4, 6]
    assert all(r["clinical_f1"] == 0.0 for r in history)
    best = max(history, key=lambda r: (r["bleu_4"], -r["step"]))
    assert summary["selection"]["step"] == summary["exported_step"] == best["step"]
    assert summary["selection"]["tiebreak_value"] == best["bleu_4"]
    assert "no validation reference report has a positive label" in caplog.text
    tokenizer = ReportTokenizer.load(tmp_path / "out" / "tokenizer.json")
    lengths = [len(tokenizer.encode(text)) for text in QUIET_TEXTS]
    assert lengths[0] <= 50 < lengths[1]  # only the longer report is cut
    assert summary["train_reports_truncated"] == 0.5  # 11 of the 22 training reports
    assert summary["train_report_tokens_max"] == lengths[1]
    assert "50.0% of 22 training reports are truncated" in caplog.text
