"""ctrg bench label-ceiling on tiny real .npy volumes: a visible finding must be learned."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from ctrg.anatomy import CTRATE_LABELS
from ctrg.bench import label_ceiling


def _data(root, n_cases: int = 48):
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(n_cases):
        case, positive = f"case_{i:03d}", i % 2
        volume = rng.normal(-0.8, 0.05, (32, 32, 32)).astype(np.float32)
        if positive:  # a bright blob at a random place: "Pleural effusion"
            z, y, x = rng.integers(4, 20, size=3)
            volume[z : z + 8, y : y + 8, x : x + 8] = 0.8
        np.save(root / f"{case}.npy", volume.astype(np.float16))
        split = "train" if i < 32 else ("valid" if i < 40 else "test")
        rows.append({"case_id": case, "split": split, "path": f"{case}.npy"})
        labels.append({"case_id": case, **{name: 0 for name in CTRATE_LABELS}})
        labels[-1]["Pleural effusion"] = positive
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)


def test_supervised_reader_learns_a_visible_finding(tmp_path):
    _data(tmp_path)
    out = tmp_path / "ceiling.json"
    argv = ["--volumes", str(tmp_path / "manifest.csv"), "--labels", str(tmp_path / "labels.csv")]
    argv += ["--ground-truth", str(tmp_path / "labels.csv"), "--epochs", "12"]
    assert label_ceiling.main([*argv, "--out-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["train_cases"], result["valid_cases"], result["test_cases"]) == (32, 8, 8)
    assert len(result["history"]) == 12 and 0 <= result["best_epoch"] < 12
    # only Pleural effusion has both classes; a blob of 512 bright voxels is easy to see
    assert list(result["test_auc_per_label"]) == ["Pleural effusion"]
    assert result["test_auc_per_label"]["Pleural effusion"] >= 0.9
    assert result["test"]["micro_f1"] >= 0.8


def test_pooled_halves_the_in_plane_axes():
    volumes = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    pooled_volumes, labels = label_ceiling.pooled((volumes, "labels"), 2)
    assert pooled_volumes.shape == (2, 1, 4, 2, 2) and labels == "labels"
    # mean of the first 1x2x2 block: voxels 0, 1, 4, 5
    assert pooled_volumes[0, 0, 0, 0, 0].item() == 2.5
    assert label_ceiling.pooled((volumes, "labels"), 1)[0] is volumes
