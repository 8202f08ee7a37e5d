"""Tiny on-disk data for the stage-1 tests: .npy volumes, label maps, texts and a text cache.

Each case has a "lung" box (label 3 = structure index 2 + 1) and, in most cases, a bright
nodule in one lung quadrant; the lung text names the quadrant (or is the default
sentence), every other structure has its default sentence. The text cache maps each
distinct text to a fixed random unit vector (no text encoder needed), so tests are fast.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.models.text_cache import texts_sha256

# A StructureObserver on 16^3 volumes (8 patches), for the feature-extraction tests.
TINY_OBSERVER = dict(
    volume_shape=(16, 16, 16),
    patch_shape=(8, 8, 8),
    vision_dim=16,
    vision_heads=2,
    vision_dim_head=8,
    spatial_depth=1,
    temporal_depth=1,
    query_dim=16,
    query_heads=2,
    coattention_layers=1,
    embed_dim=8,
    text_dim=8,
)

QUADRANTS = ["upper left", "upper right", "lower left", "lower right"]


def text_vector(text: str, dim: int) -> torch.Tensor:
    """A fixed random unit vector per distinct text."""
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    vector = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


def tiny_config(**loop: object) -> dict:
    """A stage1.json payload for 16x32x32 volumes (4x4x4 = 64 patches)."""
    section = {
        "model": {
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
        },
        "queue": {"size": 16},
        "loop": {
            "max_steps": 6,
            "batch_size": 4,
            "eval_every": 3,
            "checkpoint_every": 2,
            "log_every": 1,
            "tensorboard": False,
            **loop,
        },
        "optim": {"lr": 1e-3},
    }
    return {"run": "test", "seed": 0, "device": "cpu", "section": "stage1", "stage1": section}


def make_tiny_data(root: Path, n_cases: int = 16, dim: int = 16, seed: int = 0) -> dict[str, Path]:
    """Write volumes/manifest.csv, structure_texts.csv and text_cache.safetensors under root."""
    rng = np.random.default_rng(seed)
    volumes = root / "volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    rows, text_rows = [], []
    for i in range(n_cases):
        case = f"case_{i:03d}"
        labels = np.zeros((16, 32, 32), np.uint8)
        labels[4:12, 8:24, 4:28] = 3  # lung
        volume = np.where(labels > 0, -0.8, -1.0).astype(np.float32)
        quadrant = int(rng.integers(0, 5))
        if quadrant < 4:
            y0, x0 = 8 + 8 * (quadrant // 2), 4 + 12 * (quadrant % 2)
            volume[6:10, y0 : y0 + 8, x0 : x0 + 12] = 0.9
            lung_text = f"A nodule in the {QUADRANTS[quadrant]} lung."
        else:
            lung_text = "No abnormality found in lung."
        volume += rng.normal(0, 0.02, volume.shape).astype(np.float32)
        np.save(volumes / f"{case}.npy", volume.astype(np.float16))
        np.save(volumes / f"{case}_structures.npy", labels)
        split = "valid" if i >= n_cases * 3 // 4 else "train"
        rows.append(
            {
                "case_id": case,
                "split": split,
                "path": f"{case}.npy",
                "structure_path": f"{case}_structures.npy",
            }
        )
        texts = {s: f"No abnormality found in {s}." for s in CHEST_STRUCTURES}
        texts["lung"] = lung_text
        text_rows.append({"case_id": case, **texts, "defaulted": ""})
    pd.DataFrame(rows).to_csv(volumes / "manifest.csv", index=False)
    pd.DataFrame(text_rows).to_csv(root / "structure_texts.csv", index=False)
    case_ids = [r["case_id"] for r in text_rows]
    texts = [[r[s] for s in CHEST_STRUCTURES] for r in text_rows]
    embeddings = torch.stack([torch.stack([text_vector(t, dim) for t in row]) for row in texts])
    reports = torch.stack([text_vector(" ".join(row), dim) for row in texts])
    metadata = {
        "case_ids": json.dumps(case_ids),
        "structures": json.dumps(list(CHEST_STRUCTURES)),
        "encoder_path": "random",
        "texts_sha256": texts_sha256(case_ids, texts),
        "pooling": "cls",
        "max_length": "200",
    }
    cache = root / "text_cache.safetensors"
    save_file(
        {"embeddings": embeddings, "report_embeddings": reports}, str(cache), metadata=metadata
    )
    return {
        "manifest": volumes / "manifest.csv",
        "texts": root / "structure_texts.csv",
        "cache": cache,
    }


def write_config(root: Path, payload: dict) -> Path:
    path = root / "stage1.json"
    path.write_text(json.dumps(payload))
    return path


def stage1_argv(paths: dict[str, Path], config: Path, out: Path, resume: str = "auto") -> list[str]:
    return [
        "--config",
        str(config),
        "--volumes",
        str(paths["manifest"]),
        "--texts",
        str(paths["texts"]),
        "--text-cache",
        str(paths["cache"]),
        "--out",
        str(out),
        "--resume",
        resume,
    ]
