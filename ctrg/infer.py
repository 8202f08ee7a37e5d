"""``ctrg generate PATH... --run results/<run>``: reports for NIfTI files or DICOM folders.

One code path with training and evaluation: ``ctrg.data.ingest.load_and_preprocess`` (the
ingestion preprocessing), the frozen stage-1 model (``ctrg.features.extract``: the same
``extract_batch`` that filled the feature cache, top-k patch selection included), the
decoder's visual tokens (``ctrg.features.cache.visual_tokens_from_features``) and its decoding
(``ctrg.models.generation.generate_reports``, settings from the generate config). Then the
report is split into per-structure sentences (``ctrg.text.structures.StructureParser``) and
labelled (``ctrg.text.labeller.Labeller``).

Inputs: paths on the command line and/or ``--manifest CSV`` (column ``image``, paths
relative to the CSV; optional ``case_id``). Models and configs come from ``--run``
(``frozen/model.safetensors``, ``stage2/model.pt``, ``configs/{features,generate}.json`` and
the shared ``../configs/{preprocess,text}.json``); each can be given explicitly instead.
Without ``--out`` the reports are printed; with it, ``<case_id>.json`` per case,
``reports.csv``, ``rejected.csv`` and ``summary.json`` are written (``--inspect`` adds the
attention overlays of ``ctrg inspect`` under ``<case_id>/``). An input that cannot be read is
reported (file and reason) and skipped; the exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.config import load_stage_config
from ctrg.runtime import (
    atomic_write_csv,
    atomic_write_json,
    provenance,
    seed_everything,
    select_device,
    setup_logging,
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrg generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="NIfTI files or DICOM folders")
    parser.add_argument("--manifest", type=Path, help="CSV with an image column (batch mode)")
    parser.add_argument("--run", type=Path, help="results/<run> holding the trained models")
    parser.add_argument("--frozen", type=Path, help="frozen stage-1 model.safetensors")
    parser.add_argument("--model", type=Path, help="stage-2 model.pt")
    parser.add_argument("--preprocess-config", type=Path, help="resolved preprocess.json")
    parser.add_argument("--features-config", type=Path, help="resolved features.json")
    parser.add_argument("--generate-config", type=Path, help="resolved generate.json")
    parser.add_argument("--text-config", type=Path, help="resolved text.json")
    parser.add_argument("--device", default=None, help="cpu, cuda[:N] or auto (default: config)")
    parser.add_argument("--out", type=Path, help="output folder (default: print the reports)")
    parser.add_argument(
        "--inspect", action="store_true", help="with --out: also write attention overlays per case"
    )
    return parser


def _resolve(explicit: Path | None, run: Path | None, relative: str, what: str) -> Path:
    path = explicit or (run / relative if run else None)
    if path is None:
        raise ValueError(f"no {what}: give --run or the explicit option")
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


class Pipeline:
    """Loaded models and settings; :meth:`run` turns one input into a report."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ctrg.features.extract import load_frozen_observer
        from ctrg.generate import check_model_features
        from ctrg.models.decoder import load_stage2
        from ctrg.models.generation import GenerationConfig
        from ctrg.text.labeller import Labeller
        from ctrg.text.structures import StructureParser

        run = args.run
        configs = {
            name: load_stage_config(_resolve(flag, run, rel, f"{name} config"), name)
            for name, flag, rel in (
                ("preprocess", args.preprocess_config, "../configs/preprocess.json"),
                ("text", args.text_config, "../configs/text.json"),
                ("features", args.features_config, "configs/features.json"),
                ("generate", args.generate_config, "configs/generate.json"),
            )
        }
        generate = configs["generate"]
        seed_everything(int(generate["seed"]))
        self.device = select_device(args.device or generate.get("device", "auto"))
        frozen = _resolve(args.frozen, run, "frozen/model.safetensors", "frozen stage-1 model")
        decoder = _resolve(args.model, run, "stage2/model.pt", "stage-2 model")
        self.observer, content = load_frozen_observer(frozen, self.device)
        self.model, self.tokenizer, self.meta = load_stage2(
            decoder, self.device, merge_lora=generate["generate"]["merge_lora"]
        )
        check_model_features(self.meta, content, decoder, frozen)
        self.preprocess = configs["preprocess"]["preprocess"]
        self.top_k = int(configs["features"]["features"]["top_k"])
        self.decoding = GenerationConfig(**generate["generate"]["decoding"])
        text = configs["text"]["text"]
        self.parser = StructureParser(text["structure_set"], text["default_sentence"])
        self.labeller = Labeller()
        self.sources = {
            "frozen": str(frozen),
            "frozen_hash": content,
            "model": str(decoder),
            "configs": {k: v for k, v in configs.items()},
        }

    @torch.no_grad()
    def encode(self, volume: np.ndarray) -> dict[str, torch.Tensor]:
        """(D, H, W) volume -> the feature dict the cache would hold for it."""
        from ctrg.features.extract import extract_batch

        store_all = self.meta["visual_tokens"] == "all"
        return extract_batch(self.observer, volume[None], self.top_k, store_all, self.device)[0]

    @torch.no_grad()
    def decode(self, features: dict[str, torch.Tensor]) -> str:
        from ctrg.features.cache import visual_tokens_from_features
        from ctrg.models.generation import generate_reports

        findings = bool(self.meta.get("finding_tokens", False))
        visual = visual_tokens_from_features([features], self.meta["visual_tokens"], findings)
        visual = visual.to(self.device)
        return generate_reports(self.model, self.tokenizer, visual, self.decoding)[0]

    def inspect(
        self,
        out: Path,
        volume: np.ndarray,
        features: dict[str, torch.Tensor],
        spacing: tuple[float, float, float],
    ) -> None:
        """The ``ctrg inspect case`` view (overlays, NIfTI maps) of one input."""
        from ctrg.inspect import attention_volume, selected_mask, write_case_view

        grid = tuple(self.observer.patch_grid)
        maps = attention_volume(features["attention"].float().numpy(), grid, volume.shape)
        mask = selected_mask(features["selected_patch_index"].numpy(), grid, volume.shape)
        write_case_view(out, volume, maps, mask, spacing)

    def run(self, path: Path, case_id: str | None = None) -> tuple[dict[str, Any], Any]:
        """One input -> (result dict, (volume, features, spacing) for inspection)."""
        from ctrg.data.ingest import load_and_preprocess

        times = {"start": time.perf_counter()}
        volume, info = load_and_preprocess(path, self.preprocess)
        times["preprocess"] = time.perf_counter()
        features = self.encode(volume)
        times["encode"] = time.perf_counter()
        report = self.decode(features)
        times["generate"] = time.perf_counter()
        parsed = self.parser.parse(report)
        labels = self.labeller.label(report)
        stages = ("start", "preprocess", "encode", "generate")
        seconds = {f"{b}_s": times[b] - times[a] for a, b in zip(stages, stages[1:])}
        seconds["total_s"] = time.perf_counter() - times["start"]
        result = {
            "case_id": case_id or info["case_id"],
            "input": str(path),
            "report": report,
            "structures": dict(parsed.texts),
            "defaulted": list(parsed.defaulted),
            "labels": [name for name, value in labels.items() if value],
            "seconds": seconds,
            "preprocess": _json_info(info),
        }
        return result, (volume, features, tuple(float(s) for s in info["spacing"]))


def _json_info(info: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "orig_spacing",
        "orig_shape",
        "spacing",
        "shape",
        "hu_min",
        "hu_max",
        "hu_rule",
        "warnings",
    )
    return {k: np.asarray(info[k]).tolist() if k in info else None for k in keep}


def collect_inputs(args: argparse.Namespace) -> list[tuple[Path, str | None]]:
    """(path, case id or None) for the command-line paths and the manifest rows."""
    inputs: list[tuple[Path, str | None]] = [(p, None) for p in args.paths]
    if args.manifest:
        frame = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
        if "image" not in frame.columns:
            raise ValueError(f"{args.manifest}: no image column (has {list(frame.columns)})")
        ids = frame["case_id"] if "case_id" in frame.columns else [None] * len(frame)
        inputs += [(args.manifest.parent / p, c or None) for p, c in zip(frame["image"], ids)]
    if not inputs:
        raise ValueError("nothing to do: give PATH... and/or --manifest")
    return inputs


def format_result(result: dict[str, Any]) -> str:
    """Human-readable block: report, structure sentences, labels, timing."""
    lines = [f"== {result['case_id']} ({result['input']})", result["report"], "", "Structures:"]
    for name in CHEST_STRUCTURES:
        text = result["structures"].get(name, "")
        mark = " (default)" if name in result["defaulted"] else ""
        lines.append(f"  {name}{mark}: {text}")
    lines.append(f"Labels: {', '.join(result['labels']) or 'none'}")
    lines.append("Seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items()))
    return "\n".join(lines) + "\n\n"


def write_outputs(out: Path, results: list[dict], rejected: list[dict], summary: dict) -> None:
    rows = []
    for result in results:
        atomic_write_json(out / f"{result['case_id']}.json", result)
        rows.append(
            {
                "case_id": result["case_id"],
                "input": result["input"],
                "report": result["report"],
                "labels": ";".join(result["labels"]),
                **{name: result["structures"].get(name, "") for name in CHEST_STRUCTURES},
                "seconds": round(result["seconds"]["total_s"], 4),
            }
        )
    atomic_write_csv(out / "reports.csv", pd.DataFrame(rows))
    atomic_write_csv(out / "rejected.csv", pd.DataFrame(rejected, columns=["input", "reason"]))
    atomic_write_json(out / "summary.json", summary)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    inputs = collect_inputs(args)
    started = time.perf_counter()
    pipeline = Pipeline(args)
    load_s = time.perf_counter() - started
    results, rejected = [], []
    for path, case_id in inputs:
        try:
            result, arrays = pipeline.run(path, case_id)
        except Exception as err:  # one unreadable input is reported and skipped
            log.error("%s: %s", path, err)
            rejected.append({"input": str(path), "reason": f"{type(err).__name__}: {err}"})
            continue
        results.append(result)
        if args.out is None:
            sys.stdout.write(format_result(result))
        elif args.inspect:
            pipeline.inspect(args.out / result["case_id"], *arrays)
    totals = [r["seconds"]["total_s"] for r in results]
    summary = {
        "stage": "generate",
        "inputs": len(inputs),
        "reports": len(results),
        "rejected": rejected,
        "model_load_s": load_s,
        "mean_case_s": float(np.mean(totals)) if totals else None,
        "device": str(pipeline.device),
        **pipeline.sources,
        "provenance": provenance(),
    }
    if args.out is not None:
        write_outputs(args.out, results, rejected, summary)
    log.info(
        "%d report(s), %d rejected; models loaded in %.2f s, %.2f s per case",
        len(results),
        len(rejected),
        load_s,
        summary["mean_case_s"] or float("nan"),
    )
    return 1 if rejected else 0
