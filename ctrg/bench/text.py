"""``ctrg bench text``: the report parser and the labeller against real CT-RATE data.

Reads ``ctrate-region-texts/dev.csv`` (parser) and ``ctrate-labelled-reports/train.csv``
(labeller) from the shared data folder (``--data``, else ``$CTRG_SHARED_DATA``, else
``../shared/data`` beside the repository); skips with a message when they are absent.
With ``--phantom DIR`` it also scores the labeller on a phantom set's ``labels.csv``.
Prints tables; asserts nothing. Labeller errors (``--errors``) are shown for folds 1-4
only: fold 0 stays held out; ``--tuning-only`` hides every fold-0 number too.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from ctrg.anatomy import CTRATE_LABELS
from ctrg.text.evaluation import (
    ReferenceReport,
    f1_scores,
    fold_of,
    label_counts,
    load_region_references,
    score_parser,
)
from ctrg.text.labeller import Labeller
from ctrg.text.report_io import resolve_texts
from ctrg.text.structures import StructureParser

N_FOLDS = 5


def default_data_dir() -> Path:
    env = os.environ.get("CTRG_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def bench_parser(path: Path, structure_set: str, show_errors: int) -> None:
    """Print overall and per-structure recall/precision of the parser."""
    started = time.perf_counter()
    references = load_region_references(str(path))
    built = time.perf_counter()
    parser = StructureParser(structure_set)
    s = score_parser(parser, references)
    took = time.perf_counter() - built
    n = s.n_sentences
    print(f"\n== parser vs {path} ({len(references)} reports, {n} sentences)")
    print(
        f"reference rebuild {built - started:.2f}s; parse+score {took:.2f}s "
        f"({len(references) / took:.0f} reports/s); unmatched sentences {s.unmatched}"
    )
    print(f"recall (a reference structure assigned) {s.hits_any / n:.4f}")
    print(f"recall (per sentence-structure pair)     {s.ref_pairs_hit / s.ref_pairs:.4f}")
    print(f"precision (assigned pairs correct)       {s.assigned_correct / s.assigned_pairs:.4f}")
    print(f"\n{'structure':<22}{'ref':>6}{'recall':>8}{'assigned':>10}{'precision':>10}")
    for name, (ref, hit, assigned, ok) in s.per_structure.items():
        rec = f"{hit / ref:.3f}" if ref else "-"
        prec = f"{ok / assigned:.3f}" if assigned else "-"
        print(f"{name:<22}{ref:>6}{rec:>8}{assigned:>10}{prec:>10}")
    print(f"\n{'fold':<6}{'reports':>8}{'recall':>8}{'pair-rec':>9}{'precision':>10}")
    for k in range(N_FOLDS):
        fold = [r for r in references if fold_of(r.case_id) == k]
        f = score_parser(parser, fold)
        print(
            f"{k:<6}{len(fold):>8}{f.hits_any / f.n_sentences:>8.4f}"
            f"{f.ref_pairs_hit / f.ref_pairs:>9.4f}{f.assigned_correct / f.assigned_pairs:>10.4f}"
        )
    tuning = [e for e in s.errors if fold_of(e[0]) != 0]  # fold 0 errors are never shown
    for case, sentence, truth, got in tuning[:show_errors]:
        print(f"  {case}: ref={list(truth)} got={list(got)} :: {sentence[:160]}")


def _print_label_table(title: str, truth: pd.DataFrame, pred: pd.DataFrame) -> tuple[float, float]:
    counts = label_counts(truth, pred, CTRATE_LABELS)
    micro, macro, per = f1_scores(counts)
    print(f"\n== {title}: {len(truth)} reports; micro-F1 {micro:.4f}  macro-F1 {macro:.4f}")
    print(f"{'label':<36}{'support':>8}{'tp':>6}{'fp':>5}{'fn':>5}{'F1':>8}")
    for label in CTRATE_LABELS:
        c = counts.loc[label]
        print(f"{label:<36}{c.support:>8}{c.tp:>6}{c.fp:>5}{c.fn:>5}{per[label]:>8.3f}")
    return micro, macro


def bench_labeller(
    path: Path, show_errors: int, tuning_only: bool = False, error_label: str | None = None
) -> None:
    """Held-out fold 0, tuning folds 1-4, and per-fold (cross-validation) F1.

    Args:
        path: ``ctrate-labelled-reports/train.csv``.
        show_errors: print this many labelling errors (folds 1-4 only, never fold 0).
        tuning_only: print nothing about fold 0 (for use while rules are being tuned).
        error_label: only print errors of this label.
    """
    frame = pd.read_csv(path)
    labeller = Labeller()
    started = time.perf_counter()
    pred = pd.DataFrame(labeller.label_many(frame["report_text"].tolist()))
    took = time.perf_counter() - started
    print(
        f"\n== labeller vs {path}: {len(frame)} reports in {took:.2f}s "
        f"({len(frame) / took:.0f} reports/s)"
    )
    folds = frame["AccessionNo"].map(fold_of)
    held = folds == 0
    if not tuning_only:
        _print_label_table("fold 0 (held out, never looked at)", frame[held], pred[held])
    _print_label_table("folds 1-4 (rules tuned on these)", frame[~held], pred[~held])
    print(f"\n{'fold':<6}{'n':>5}{'micro':>8}{'macro':>8}")
    micros, macros, n_scored = [], [], 0
    for k in range(1 if tuning_only else 0, N_FOLDS):
        mask = folds == k
        n_scored += int(mask.sum())
        micro, macro, _ = f1_scores(label_counts(frame[mask], pred[mask], CTRATE_LABELS))
        micros.append(micro)
        macros.append(macro)
        print(f"{k:<6}{int(mask.sum()):>5}{micro:>8.4f}{macro:>8.4f}")
    mean_micro, mean_macro = sum(micros) / len(micros), sum(macros) / len(macros)
    print(f"{'mean':<6}{n_scored:>5}{mean_micro:>8.4f}{mean_macro:>8.4f}")
    shown = 0
    labels = [error_label] if error_label else CTRATE_LABELS
    for i in frame.index[~held]:  # fold 0 errors are never shown
        for label in labels:
            if shown < show_errors and int(frame.at[i, label]) != int(pred.at[i, label]):
                kind = "FN" if int(frame.at[i, label]) else "FP"
                print(f"  {kind} {label} {frame.at[i, 'AccessionNo']}")
                for m in labeller.findings(frame.at[i, "report_text"]):
                    if m.label == label:
                        print(f"      neg={m.negated:d} '{m.text}' :: {m.sentence[:200]}")
                shown += 1


def bench_phantom(folder: Path) -> None:
    """The labeller (labels.csv) and the parser (structure_sentences.csv) on a phantom set."""
    missing = [n for n in ("manifest.csv", "labels.csv") if not (folder / n).is_file()]
    if missing:
        print(f"SKIP phantom benchmark: {folder} lacks {missing}")
        return
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str)
    truth = pd.read_csv(folder / "labels.csv", dtype={"case_id": str}).set_index("case_id")
    texts, _ = resolve_texts(manifest, "report", folder)
    gt_path = folder / "structure_sentences.csv"
    if gt_path.is_file():
        gt = pd.read_csv(gt_path, dtype=str)
        refs = []
        for case_id, text in zip(manifest["case_id"], texts):
            rows = gt[gt["case_id"] == case_id]
            reference: dict[str, set[str]] = {}
            for structure, sentence in zip(rows["structure"], rows["sentence"]):
                reference.setdefault(sentence, set()).add(structure)
            refs.append(ReferenceReport(case_id, text, list(reference), reference))
        s = score_parser(StructureParser(), refs)
        print(
            f"\n== parser vs {gt_path}: {s.n_sentences} sentences (unmatched {s.unmatched}); "
            f"recall {s.hits_any / max(s.n_sentences, 1):.4f}, "
            f"precision {s.assigned_correct / max(s.assigned_pairs, 1):.4f}"
        )
        for case, sentence, ref, got in s.errors[:10]:
            print(f"  {case}: ref={list(ref)} got={list(got)} :: {sentence[:120]}")
    pred = pd.DataFrame(Labeller().label_many(texts), index=manifest["case_id"])
    truth = truth.loc[pred.index]
    _print_label_table(f"phantom {folder}", truth, pred)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench text", description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--which", choices=["parser", "labeller", "both"], default="both")
    parser.add_argument("--structure-set", default="chest")
    parser.add_argument("--errors", type=int, default=0, help="print this many errors")
    parser.add_argument("--error-label", default=None, help="only print errors of this label")
    parser.add_argument(
        "--tuning-only",
        action="store_true",
        help="print no fold-0 numbers (use while tuning rules; fold 0 stays held out)",
    )
    parser.add_argument("--phantom", type=Path, default=None, help="phantom folder to score")
    args = parser.parse_args(argv)
    data = args.data or default_data_dir()
    region = data / "ctrate-region-texts" / "dev.csv"
    labelled = data / "ctrate-labelled-reports" / "train.csv"
    if args.which in ("parser", "both"):
        if region.is_file():
            bench_parser(region, args.structure_set, args.errors)
        else:
            print(f"SKIP parser benchmark: {region} not found (set --data or CTRG_SHARED_DATA)")
    if args.which in ("labeller", "both"):
        if labelled.is_file():
            bench_labeller(labelled, args.errors, args.tuning_only, args.error_label)
        else:
            print(f"SKIP labeller benchmark: {labelled} not found (set --data/CTRG_SHARED_DATA)")
    if args.phantom is not None:
        bench_phantom(args.phantom)
    return 0
