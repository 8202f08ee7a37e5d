"""``ctrg synth``: generate the built-in phantom chest-CT data set with ground truth.

Example::

    ctrg synth --config results/configs/synth.json --out results/phantom --threads 2
    ctrg synth --out /tmp/tiny --n-cases 8 --shape 32 32 32 --preview 2
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ctrg.config import load_schema, load_stage_config, validate
from ctrg.runtime import setup_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctrg synth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="resolved synth stage file (results/configs/synth.json); schema defaults without it",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--threads", type=int, default=1, help="worker processes")
    parser.add_argument("--n-cases", type=int, default=None, help="override synth.n_cases")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("D", "H", "W"),
        default=None,
        help="override synth.shape (nominal native shape)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the global seed")
    parser.add_argument(
        "--format", choices=("nifti", "dicom"), default=None, help="override synth.format"
    )
    parser.add_argument(
        "--preview",
        type=int,
        default=None,
        metavar="K",
        help="write preview/<case>.png for the first K cases",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def resolve_payload(args: argparse.Namespace) -> dict:
    """The stage payload with command-line overrides applied and re-validated."""
    payload = load_stage_config(args.config, "synth")
    synth = payload["synth"]
    overrides = {
        "n_cases": args.n_cases,
        "format": args.format,
        "preview": args.preview,
        "shape": list(args.shape) if args.shape else None,
    }
    synth.update({k: v for k, v in overrides.items() if v is not None})
    validate(synth, load_schema("synth"), "synth")
    if args.seed is not None:
        payload["seed"] = args.seed
    return payload


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ctrg synth``; returns 0 on success, 1 if any case failed."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.threads < 1:
        raise SystemExit("ctrg synth: --threads must be >= 1")
    payload = resolve_payload(args)
    from ctrg.data.synth import generate_dataset

    summary = generate_dataset(payload, args.out, args.threads)
    return 1 if summary.get("failed") else 0
