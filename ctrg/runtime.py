"""Shared run-time helpers: logging, seeds, device choice, atomic writes, provenance."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO") -> None:
    """Configure the root logger once, writing to stderr (Snakemake redirects it to ``{log}``)."""
    root = logging.getLogger()
    if not any(getattr(h, "_ctrg", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
        handler._ctrg = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def add_runtime_arguments(parser: Any) -> None:
    """Add the ``--threads`` and ``--log-level`` options every model stage takes."""
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch default)"
    )
    parser.add_argument("--log-level", default="INFO")


def apply_runtime_arguments(args: Any) -> None:
    """Set up logging and torch's CPU thread count from :func:`add_runtime_arguments` options."""
    setup_logging(args.log_level)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # text-only use
        pass


def select_device(choice: str = "auto") -> Any:
    """Return a ``torch.device`` for ``auto|cpu|cuda`` (``cuda:N`` also accepted).

    ``auto`` picks CUDA when available (the local rank's GPU under torchrun/srun), else CPU.
    Asking for CUDA where there is none is an error, never a silent fallback.
    """
    import torch

    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} requested but CUDA is not available")
        if choice == "cuda":
            local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
            choice = f"cuda:{local_rank % torch.cuda.device_count()}"
    elif choice != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {choice!r}")
    return torch.device(choice)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file keeps the target's suffix (``suffix`` overrides it) so that writers
    that infer the format from the name (``.npy``, ``.nii.gz``, ``.png``) still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{sfx}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically (temp file then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON (indented, keys sorted) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_csv(path: str | os.PathLike, frame: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of an object's canonical JSON form."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def git_revision() -> str:
    """The git revision of the ctrg source tree, or ``"unknown"`` outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def versions() -> dict[str, str]:
    """Versions of Python, ctrg and the main libraries (from package metadata, no imports)."""
    from importlib import metadata

    from ctrg import __version__

    found = {"python": platform.python_version(), "ctrg": __version__}
    names = ("torch", "numpy", "scipy", "transformers", "spacy", "snakemake", "nibabel", "pydicom")
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def cpu_facts() -> dict[str, str]:
    """The CPU model (Linux /proc/cpuinfo) and, where torch is loaded, its kernel level.

    Floating-point results (and so trained weights) can differ between CPUs with different
    vector units (e.g. AVX2 vs AVX-512), so every artifact records them.
    """
    facts = {"cpu": platform.processor() or "unknown"}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        facts["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return facts


def provenance() -> dict[str, Any]:
    """What produced an artifact: versions, git revision, host facts (CPU included)."""
    return {
        "versions": versions(),
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        **cpu_facts(),
    }


def write_stage_summary(out_dir: str | os.PathLike, stage: str, config: Any, summary: dict) -> None:
    """Write ``resolved_config.json`` and ``summary.json`` (with provenance) into ``out_dir``."""
    out = Path(out_dir)
    atomic_write_json(out / "resolved_config.json", {"stage": stage, "config": config})
    atomic_write_json(out / "summary.json", {"stage": stage, **summary, "provenance": provenance()})
