"""Torch dataset over model-ready volumes joined with the cached structure-text embeddings.

Reads ``results/volumes/manifest.csv`` (``case_id, split, path[, structure_path]``; paths
relative to the manifest's folder), keeps the rows of the requested split whose case has
an entry in the text cache, and memory-maps each ``.npy`` volume on access. A volume that
cannot be read is logged and dropped from the batch by :func:`collate_cases`; a batch
left empty is an error.

Optional light augmentation (training only): a random shift of up to ``shift`` voxels per
axis (edges padded with the air value -1) and an intensity jitter ``x * (1 + a) + b`` with
``|a|, |b| <= intensity``. No flips: left and right are part of the reports. The random
draw is a pure function of (seed, epoch, index), so a resumed run sees the same volumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ctrg.models.text_cache import TextCache

log = logging.getLogger(__name__)


@dataclass
class Augment:
    """Light augmentation settings (shift in voxels, intensity jitter)."""

    shift: int = 2
    intensity: float = 0.05


def read_volume_manifest(path: str | Path, split: str | None = None) -> pd.DataFrame:
    """Read a volume manifest; resolve ``path``/``structure_path`` to absolute paths.

    Raises:
        ValueError: naming the file when ``case_id``/``path`` columns are missing.
    """
    frame = pd.read_csv(path, dtype={"case_id": str, "split": str})
    missing = {"case_id", "path"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    root = Path(path).parent
    for column in ("path", "structure_path"):
        if column in frame.columns:
            frame[column] = [
                str(root / p) if isinstance(p, str) and p else None for p in frame[column]
            ]
    if split is not None:
        if "split" not in frame.columns:
            raise ValueError(f"{path}: no split column to select split {split!r}")
        frame = frame[frame["split"] == split]
    return frame.reset_index(drop=True)


class VolumeTextDataset(Dataset):
    """(volume, structure-text features) pairs of one split.

    Args:
        manifest: volume manifest path. cache: loaded text cache. split: split name or None.
        augment: augmentation settings or None. seed: augmentation seed.
        max_cases: keep at most this many cases (first in manifest order), None = all.
        expected_shape: (D, H, W); cases whose file is missing, unreadable or of another
            shape are logged and left out (only the .npy header is read).
        stored_dtype: without augmentation, give ``volume`` in the file's dtype (float16 as
            ingested) instead of float32: half the bytes through loader workers, pinning
            and the host-to-device copy; ``ctrg.train.loop_config.move_to_device`` widens it
            to float32 on the device (exactly: float16 -> float32 is lossless).

    Items are dicts: ``volume`` (1, D, H, W) float32 (or stored), ``text_features`` (S, H),
    ``report_features`` (H,) (zeros when the cache has none), ``index``, ``case_id`` and,
    after :meth:`set_labels`, ``labels`` (L,) float in {0, 1, NaN}.
    """

    def __init__(
        self,
        manifest: str | Path,
        cache: TextCache,
        split: str | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        max_cases: int | None = None,
        expected_shape: tuple[int, int, int] | None = None,
        stored_dtype: bool = False,
    ) -> None:
        frame = read_volume_manifest(manifest, split)
        index = cache.index
        known = frame["case_id"].isin(index.keys())
        if (~known).any():
            log.warning(
                "%s: %d %s cases have no structure texts in the cache: skipped (%s...)",
                manifest,
                int((~known).sum()),
                split,
                ", ".join(frame.loc[~known, "case_id"].head(3)),
            )
        frame = frame[known].reset_index(drop=True)
        if max_cases is not None:
            frame = frame.head(max_cases)
        if expected_shape is not None:
            frame = frame[[self._readable(frame, i, expected_shape) for i in range(len(frame))]]
            frame = frame.reset_index(drop=True)
        self.frame, self.cache, self.augment, self.seed = frame, cache, augment, seed
        self.stored_dtype = stored_dtype and augment is None
        self.rows = [index[c] for c in frame["case_id"]]
        self.epoch = 0
        self.labels: torch.Tensor | None = None  # (N, L) in {0, 1, NaN}, see set_labels

    def set_labels(self, path: str | Path, names: tuple[str, ...]) -> int:
        """Attach report-derived 0/1 labels (``ctrg label`` output); absent cases get NaN.

        Returns:
            how many of this dataset's cases have labels.

        Raises:
            ValueError: naming the file for a missing column or values other than 0/1.
        """
        from ctrg.evaluate.clinical import label_matrix

        labels, found = label_matrix(path, self.case_ids, names)
        self.labels = torch.from_numpy(labels)
        return found

    @staticmethod
    def _readable(frame: pd.DataFrame, i: int, shape: tuple[int, int, int]) -> bool:
        path = frame.at[frame.index[i], "path"]
        try:
            found = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as error:
            log.error("case %s: cannot read %s (%s): skipped", frame.iat[i, 0], path, error)
            return False
        if tuple(found) != tuple(shape):
            log.error(
                "case %s: %s has shape %s, expected %s: skipped",
                frame.iat[i, 0],
                path,
                tuple(found),
                tuple(shape),
            )
            return False
        return True

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop at each epoch (changes the augmentation draw)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def case_ids(self) -> list[str]:
        return list(self.frame["case_id"])

    def structure_map_path(self, i: int) -> str | None:
        """Path of case i's structure label map, when the manifest has one."""
        if "structure_path" not in self.frame.columns:
            return None
        value = self.frame.at[i, "structure_path"]
        return value if isinstance(value, str) else None

    def load_volume(self, i: int, stored: bool = False) -> np.ndarray:
        """Case i's volume (D, H, W) as float32, or in the file's float dtype (``stored``)."""
        array = np.load(self.frame.at[i, "path"], mmap_mode="r")
        if array.ndim != 3:
            raise ValueError(f"{self.frame.at[i, 'path']}: expected (D, H, W), got {array.shape}")
        keep = stored and array.dtype in (np.float16, np.float32)
        return np.array(array) if keep else np.asarray(array, dtype=np.float32)

    def _augment(self, volume: np.ndarray, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        shifts = rng.integers(-self.augment.shift, self.augment.shift + 1, size=3)
        shifted = np.full_like(volume, -1.0)
        src = tuple(slice(max(0, -k), n - max(0, k)) for k, n in zip(shifts, volume.shape))
        dst = tuple(slice(max(0, k), n - max(0, -k)) for k, n in zip(shifts, volume.shape))
        shifted[dst] = volume[src]
        a, b = rng.uniform(-self.augment.intensity, self.augment.intensity, size=2)
        return np.clip(shifted * (1 + a) + b, -1.0, 1.0).astype(np.float32)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        case_id = self.frame.at[i, "case_id"]
        try:
            volume = self.load_volume(i, self.stored_dtype)
        except (OSError, ValueError) as error:
            log.error(
                "case %s: cannot read volume %s (%s): skipped",
                case_id,
                self.frame.at[i, "path"],
                error,
            )
            return None
        if self.augment is not None:
            volume = self._augment(volume, i)
        row = self.rows[i]
        reports = self.cache.report_embeddings
        report = (
            reports[row] if reports is not None else torch.zeros(self.cache.embeddings.shape[-1])
        )
        item = {
            "volume": torch.from_numpy(np.ascontiguousarray(volume)).unsqueeze(0),
            "text_features": self.cache.embeddings[row],
            "report_features": report,
            "index": i,
            "case_id": case_id,
        }
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def collate_cases(items: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack items, dropping unreadable ones (None).

    Raises:
        RuntimeError: when every case of the batch was unreadable.
    """
    kept = [item for item in items if item is not None]
    if not kept:
        raise RuntimeError("every volume of this batch was unreadable (see the errors above)")
    return {
        "volume": torch.stack([k["volume"] for k in kept]),
        "text_features": torch.stack([k["text_features"] for k in kept]),
        "report_features": torch.stack([k["report_features"] for k in kept]),
        "index": torch.tensor([k["index"] for k in kept]),
        "case_id": [k["case_id"] for k in kept],
        **({"labels": torch.stack([k["labels"] for k in kept])} if "labels" in kept[0] else {}),
    }
