"""The ``ctrg`` command: one subcommand per stage, plus synth, generate, inspect and bench.

Each subcommand lives in its own module as ``main(argv) -> int``; this file only dispatches,
so ``ctrg --help`` stays fast (no torch import) and each stage owns its arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ctrg import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("ctrg.data.synth_cli", "generate the built-in phantom chest-CT data set"),
    "make-manifest": ("ctrg.data.adapters", "turn a CT-RATE / CTRG-Chest layout into a manifest"),
    "ingest": ("ctrg.data.ingest", "DICOM/NIfTI -> resampled, model-ready volumes (one shard)"),
    "gather-volumes": ("ctrg.data.gather", "merge ingestion shards into one manifest"),
    "parse-reports": ("ctrg.text.parse_cli", "split reports into per-structure sentences"),
    "label-reports": ("ctrg.text.label_cli", "extract the 18 CT-RATE abnormality labels"),
    "encode-texts": ("ctrg.models.text_cache", "encode structure texts once (frozen encoder)"),
    "stage1": ("ctrg.train.stage1", "train structure queries (contrastive stage 1)"),
    "freeze": ("ctrg.features.freeze", "export the frozen stage-1 model with its content hash"),
    "extract": ("ctrg.features.extract", "cache observation + top-k patch tokens (one shard)"),
    "gather-features": ("ctrg.features.gather", "merge feature shards into one index"),
    "stage2": ("ctrg.train.stage2", "train the report decoder on cached features"),
    "generate-features": ("ctrg.generate", "generate reports from cached features"),
    "generate": ("ctrg.infer", "generate reports for NIfTI files or DICOM folders"),
    "evaluate": ("ctrg.evaluate.run", "metrics for a predictions file (NLG + clinical)"),
    "evaluate-text": ("ctrg.evaluate.text_cli", "metrics for any CSV of reference/prediction"),
    "inspect": ("ctrg.inspect", "PNG/NIfTI overlays, report diffs, training curves"),
    "bench": ("ctrg.bench", "benchmarks: preprocessing, training, quality table"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctrg",
        description="Chest CT report generation with structure-observation contrastive learning.",
    )
    parser.add_argument("--version", action="version", version=f"ctrg {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command")
    parser.epilog = "commands:\n" + "\n".join(
        f"  {name:<18} {text}" for name, (_, text) in COMMANDS.items()
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``ctrg COMMAND ARGS...`` to ``<module>.main(ARGS)``."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(args.args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
