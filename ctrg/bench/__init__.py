"""``ctrg bench <name>``: benchmarks that print numbers (and ratios against a same-process baseline).

Each benchmark is a module ``ctrg.bench.<name>`` with ``main(argv) -> int``.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, str] = {
    "preprocess": "resampling / whole-volume preprocessing vs MONAI and bare interpolate",
    "text": "report parser and labeller against the real CT-RATE data in ../shared/data",
    "stage2-memory": "one stage-2 step with selected patches vs all patches",
    "stage1-oracle": "the stage-1 objective with a label-reading oracle instead of the encoder",
    "stage1-retrieval": "held-out retrieval of a trained stage-1 model against a permutation null",
    "probe": "ridge probe: how well a run's frozen features read each label (held-out AUC)",
    "text-signal": "how much of each structure's text embedding its findings explain (R²)",
    "soft-targets": "where a trained stage 1's soft pseudo targets put their mass (own, copies, others)",
    "speed": "training / extraction / inference throughput and peak memory",
    "autocast": "the stage-1 step in fp32 vs bf16 autocast (PEG convolutions in fp32 or not)",
    "loader": "stage-1 data loader: volumes/s from disk to device, float32 vs stored float16",
    "quality": "the ablation and baseline quality table on the phantom benchmark",
    "baseline": "predictions of the method-free baselines (most frequent report, NN retrieval)",
    "finding-head": "the frozen finding head against ground truth, and reports against it",
    "label-ceiling": "a supervised 3D CNN on the report labels: what the volumes support",
    "bootstrap": "METEOR bootstrap resamples: the jar's EVAL against numpy sums of its statistics",
    "bucketing": "stage-2 batches sorted by report length vs random batches: padding, step time",
    "paired": "A minus B per seed and pooled over seeds (e.g. shuffled-image control vs method)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"ctrg.bench.{args.name.replace('-', '_')}")
    return int(module.main(args.args) or 0)
