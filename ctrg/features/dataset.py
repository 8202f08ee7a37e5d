"""Cached features joined with report texts: what stage 2 trains on and generation reads.

All feature tensors of the selected cases are loaded once into memory (a few MB for the
phantom; (S + S*(1+k)) x C floats per case). A feature file made by another frozen model
than the index says is refused (``FrozenHashMismatch``), as is a cache lacking the tensors
of the requested mode (``MissingFeatures``); a file that cannot be read is logged, listed in
``skipped`` and left out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ctrg.features.cache import (
    FrozenHashMismatch,
    MissingFeatures,
    feature_keys_for,
    load_case_features,
    visual_tokens_from_features,
)

log = logging.getLogger(__name__)


def read_reports(path: str | Path) -> pd.DataFrame:
    """Read ``reports.csv`` (case_id, split, report); empty reports are dropped with a warning.

    Raises:
        ValueError: naming the file when columns are missing or case ids repeat.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"case_id", "report"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: reports file lacks columns {sorted(missing)}")
    duplicated = frame["case_id"][frame["case_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: duplicate case ids {duplicated[:5]}")
    empty = frame["report"].str.strip() == ""
    if empty.any():
        log.warning("%s: %d empty report(s) dropped", path, int(empty.sum()))
    return frame[~empty].reset_index(drop=True)


def join_reports(index: pd.DataFrame, reports: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Index rows of ``split`` (None or "all" = every row) with their report text.

    The split comes from the features index (the volume manifest); cases without a report
    are logged and left out.
    """
    rows = index if split in (None, "all") else index[index["split"] == split]
    joined = rows.merge(reports[["case_id", "report"]], on="case_id", how="left")
    lacking = joined["report"].isna()
    if lacking.any():
        log.warning(
            "%d case(s) of split %s have features but no report: %s",
            int(lacking.sum()),
            split,
            joined["case_id"][lacking].tolist()[:5],
        )
    return joined[~lacking].sort_values("case_id", kind="stable").reset_index(drop=True)


class FeatureReportDataset(Dataset):
    """(visual tokens, report ids) pairs from the feature cache.

    Args:
        rows: frame with case_id, path (absolute), report.
        frozen_hash: every feature file must carry this hash.
        mode: ``selected`` or ``all`` visual tokens.
        tokenizer: has ``encode(text, max_length)``; None = no ids (generation only).
        max_tokens: truncation of the report ids (BOS and EOS included).
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        frozen_hash: str,
        mode: str,
        tokenizer: Any = None,
        max_tokens: int | None = None,
        findings: bool = False,
    ) -> None:
        self.case_ids: list[str] = []
        self.findings: list[torch.Tensor] = []  # (L,) finding states per case (+1 / -1)
        self.reports: list[str] = []
        self.visual: list[torch.Tensor] = []
        self.ids: list[list[int]] = []
        self.skipped: list[dict[str, str]] = []
        self.kind = self.structure = None
        keys = feature_keys_for(mode, findings)
        for row in tqdm(
            rows.itertuples(index=False),
            total=len(rows),
            desc="features",
            unit="case",
            disable=len(rows) < 200,
        ):
            try:
                features = load_case_features(row.path, expected_hash=frozen_hash, keys=keys)
                visual = visual_tokens_from_features([features], mode, findings)
            except (FrozenHashMismatch, MissingFeatures):
                raise
            except Exception as err:  # one unreadable file is reported and skipped
                log.error("%s: %s: %s", row.case_id, row.path, err)
                self.skipped.append({"case_id": row.case_id, "file": row.path, "reason": str(err)})
                continue
            if self.kind is None:
                self.kind, self.structure = visual.kind, visual.structure
            elif visual.tokens.shape[1] != self.kind.shape[0]:
                raise ValueError(
                    f"{row.path}: {visual.tokens.shape[1]} visual tokens, "
                    f"other cases have {self.kind.shape[0]}"
                )
            self.case_ids.append(row.case_id)
            self.reports.append(row.report)
            self.visual.append(visual.tokens[0])
            if visual.findings is not None:
                self.findings.append(visual.findings[0])
            if tokenizer is not None:
                self.ids.append(tokenizer.encode(row.report, max_length=max_tokens))
        if not self.case_ids:
            raise ValueError(f"no readable feature files among {len(rows)} case(s)")

    def use_report_findings(self, path: str | Path, names: tuple[str, ...]) -> int:
        """Replace the head's finding states by each case's own report labels (``ctrg
        label`` output): teacher states for training. A case without labels keeps 0
        (unknown) for every label.

        Returns:
            how many cases have labels.

        Raises:
            ValueError: naming the file for a missing column or values other than 0/1.
        """
        from ctrg.evaluate.clinical import label_matrix
        from ctrg.models.finding_head import label_states

        labels, found = label_matrix(path, self.case_ids, names)
        self.findings = list(label_states(torch.from_numpy(labels)))
        return found

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def visual_dim(self) -> int:
        """C, the width of the visual tokens."""
        return int(self.visual[0].shape[-1])

    @property
    def num_tokens(self) -> int:
        """T, visual tokens per case."""
        return int(self.visual[0].shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"visual": self.visual[i], "ids": self.ids[i] if self.ids else [], "index": i}
        if self.findings:
            item["findings"] = self.findings[i]
        return item


class Collate:
    """Stack visual tokens, right-pad ids with ``pad_id``; shared slot kinds are added once."""

    def __init__(self, kind: torch.Tensor, structure: torch.Tensor, pad_id: int) -> None:
        self.kind, self.structure, self.pad_id = kind, structure, pad_id

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(item["ids"]) for item in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, : len(item["ids"])] = torch.tensor(item["ids"], dtype=torch.long)
        batch = {
            "visual": torch.stack([item["visual"] for item in items]),
            "kind": self.kind,
            "structure": self.structure,
            "ids": ids,
            "index": torch.tensor([item["index"] for item in items]),
        }
        if "findings" in items[0]:
            batch["findings"] = torch.stack([item["findings"] for item in items])  # (B, L)
        return batch
