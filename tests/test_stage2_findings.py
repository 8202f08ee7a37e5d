"""stage2.finding_tokens: the decoder reads one finding state per label.

The synthetic cache's visual tokens are noise of one distribution for both kinds of case.
On the training cases the finding head's logits are noise too; only the training reports'
own labels (the teacher states, ``stage2.finding_teacher``) say which report a case has.
On the test cases the head's logits are right. So the decoder can only name the right
finding at test if it learned label -> words from the teacher states and is then given the
head's decisions: generation must use each case's own states (the shuffled control the
other case's), and a cache without logits or a run without --labels is refused.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from stage2_helpers import stage2_argv, tiny_decoder, tiny_stage2_section, write_config

from ctrg import generate
from ctrg.anatomy import CTRATE_LABELS
from ctrg.features.cache import MissingFeatures, save_case_features
from ctrg.features.select import assemble_visual_tokens
from ctrg.models.decoder import ReportDecoder, load_stage2
from ctrg.train import stage2

HASH = "c" * 64
TEXTS = (
    "The heart is enlarged. Small pleural effusion on the left.",
    "The heart is normal in size. No pleural effusion. The lungs are clear.",
)
L = len(CTRATE_LABELS)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _decoder(num_findings: int = 3) -> ReportDecoder:
    return tiny_decoder(num_findings=num_findings)


def _visual(findings: torch.Tensor | None):
    generator = torch.Generator().manual_seed(1)
    observation = torch.randn(2, 2, 6, generator=generator)
    patches = torch.randn(2, 2, 3, 6, generator=generator)
    visual = assemble_visual_tokens(observation, patches, "selected")
    visual.findings = findings
    return visual


def test_finding_tokens_condition_the_decoder_and_are_required():
    model = _decoder()
    ids = torch.tensor([[1, 5, 6, 7], [1, 5, 6, 7]])
    findings = torch.tensor([[1.0, -1.0, 0.0], [1.0, -1.0, 0.0]])  # states (B, L)
    visual = _visual(findings)
    state = model.encode_visual(visual)
    assert state.shape == (2, 10 + 3, 32)  # T visual + L finding tokens
    base = model.token_logits(state, ids)
    flipped = findings.clone()
    flipped[1, 0] = -1.0  # case 1 loses finding 0
    other = model.token_logits(model.encode_visual(_visual(flipped)), ids)
    assert torch.allclose(other[0], base[0])
    assert not torch.allclose(other[1], base[1], atol=1e-4)
    with pytest.raises(ValueError, match="expects 3 finding states"):
        model.encode_visual(_visual(None))
    # cached decoding steps read the same memory (finding tokens included)
    cache = model.init_cache(state)
    for length in range(1, 5):
        step_logits, cache = model.step(state, cache, ids[:, :length])
        torch.testing.assert_close(step_logits, base[:, length - 1], atol=1e-5, rtol=1e-5)


def _cache(root: Path, with_findings: bool = True, cases: int = 40) -> Path:
    root.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    rows, reports, labels = [], [], []
    for i in range(cases):
        kind = i % 2
        obs = torch.randn(10, 16, generator=generator)  # no image signal
        tensors = {
            "observation_tokens": obs,
            "selected_patch_tokens": torch.randn(10, 3, 16, generator=generator),
            "selected_patch_index": torch.arange(30).view(10, 3),
            "selected_patch_score": torch.rand(10, 3, generator=generator),
            "attention": torch.rand(10, 27, generator=generator).half(),
        }
        split = "train" if i < 28 else ("valid" if i < 32 else "test")
        if with_findings:
            logits = torch.full((L,), -4.0)
            says = kind == 0 if split != "train" else bool(torch.rand(1, generator=generator) < 0.5)
            logits[CTRATE_LABELS.index("Cardiomegaly")] = 4.0 if says else -4.0
            tensors["finding_logits"] = logits
        case = f"case_{i:03d}"
        save_case_features(root / f"{case}.safetensors", tensors, {"frozen_hash": HASH})
        labels.append({"case_id": case, **{name: 0 for name in CTRATE_LABELS}})
        labels[-1]["Cardiomegaly"] = int(kind == 0)
        rows.append({"case_id": case, "split": split, "path": f"{case}.safetensors"})
        rows[-1]["frozen_hash"] = HASH
        reports.append({"case_id": case, "split": split, "report": TEXTS[kind]})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    pd.DataFrame(reports).to_csv(root / "reports.csv", index=False)
    pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)
    return root


def _configs(root: Path) -> tuple[Path, Path]:
    loop = {"max_steps": 300, "eval_every": 150, "checkpoint_every": 150, "log_every": 50}
    section = tiny_stage2_section(finding_tokens=True, loop=loop)
    decoding = {"strategy": "greedy", "min_length": 1, "max_length": 30}
    generate_section = {"batch_size": 4, "decoding": decoding}
    return (
        write_config(root / "stage2.json", "stage2", section),
        write_config(root / "generate.json", "generate", generate_section),
    )


def _train_argv(config: Path, cache: Path, out: Path, labels: bool = True) -> list[str]:
    return stage2_argv(config, cache, out, labels=labels)


def test_decoder_names_what_the_finding_states_say(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "features")
    train, gen = _configs(tmp_path)
    with pytest.raises(ValueError, match="finding_teacher needs --labels"):
        stage2.main(_train_argv(train, cache, tmp_path / "stage2", labels=False))
    assert stage2.main(_train_argv(train, cache, tmp_path / "stage2")) == 0
    model_path = tmp_path / "stage2" / "model.pt"
    model, _, meta = load_stage2(model_path)
    assert meta["finding_tokens"] is True and model.cfg.num_findings == L
    base = [str(cache / "index.csv"), "--model", str(model_path), "--reports"]
    base += [str(cache / "reports.csv"), "--config", str(gen), "--threads", "1"]
    plain, shuffled = tmp_path / "predictions.csv", tmp_path / "shuffled.csv"
    assert generate.main([*base, "--out", str(plain)]) == 0
    frame = pd.read_csv(plain, keep_default_na=False)
    assert len(frame) == 8
    # only the teacher-trained states tell the kinds apart (chance 4 of 8; >= 7: p = 0.035)
    assert (frame["prediction"] == frame["reference"]).sum() >= 7
    assert generate.main([*base, "--out", str(shuffled), "--shuffle-features"]) == 0
    control = pd.read_csv(shuffled, keep_default_na=False)
    by_case = dict(zip(frame["case_id"], frame["prediction"]))
    assert control["prediction"].tolist() == [by_case[c] for c in control["features_of"]]


def test_finding_tokens_need_finding_logits_in_the_cache(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "features", with_findings=False, cases=12)
    train, _ = _configs(tmp_path)
    with pytest.raises(MissingFeatures, match="finding head: stage1.findings.weight > 0"):
        stage2.main(_train_argv(train, cache, tmp_path / "stage2"))
    assert not (tmp_path / "stage2" / "model.pt").exists()
