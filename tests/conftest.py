"""Shared pytest setup: offline Hugging Face, repository paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CTRG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (holds Snakefile, config.yaml)."""
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real CT-RATE reports); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real report data not found at {SHARED_DATA}")
    return SHARED_DATA
