"""Scoring the parser and the labeller against real reference data (used by ``ctrg bench text``).

Parser reference (RadGenome-ChestCT region texts, ``ctrate-region-texts/dev.csv``): each
region's text is a concatenation of report sentences. The full report is not given, so it
is rebuilt: every region text is cleaned and split with the same splitter as the parser,
the regions' sentence sequences are merged into one order (a topological merge of the
per-region orders, ties broken by region order, so shared sentences keep their relative
place), duplicated sentences are kept once, and the sentences are joined with spaces. The
reference structures of a sentence are all regions whose text contains it (mediastinum ->
heart, "trachea and bronchie" -> "trachea and bronchi"). The parser then parses the rebuilt
report and its sentences are matched to the reference by exact text.

Labeller reference (``ctrate-labelled-reports/train.csv``): fold of a report =
md5(AccessionNo) mod 5; fold 0 is held out (rules were never tuned looking at it).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from ctrg.text.sentences import clean_report, split_sentences

REGION_ORDER: tuple[str, ...] = (
    "trachea and bronchie",
    "heart",
    "mediastinum",
    "lung",
    "esophagus",
    "pleura",
    "bone",
    "thyroid",
    "breast",
    "abdomen",
)
REGION_TO_STRUCTURE: dict[str, str] = {
    "trachea and bronchie": "trachea and bronchi",
    "mediastinum": "heart",
}


@dataclass
class ReferenceReport:
    """A rebuilt report with per-sentence reference structures."""

    case_id: str
    text: str
    sentences: list[str]
    reference: dict[str, set[str]] = field(default_factory=dict)


def fold_of(case_id: str, n_folds: int = 5) -> int:
    """Stable fold of an id: md5 of the id, modulo ``n_folds``."""
    return int(hashlib.md5(str(case_id).encode()).hexdigest(), 16) % n_folds


def merge_orders(sequences: list[list[str]]) -> list[str]:
    """Merge sentence sequences into one order consistent with each (ties: earlier sequence).

    Cycles (a pair in different orders in two regions) are broken by taking the
    earliest-ranked remaining sentence.
    """
    rank: dict[str, tuple[int, int]] = {}
    successors: dict[str, set[str]] = defaultdict(set)
    indegree: dict[str, int] = defaultdict(int)
    for r, seq in enumerate(sequences):
        for i, sentence in enumerate(seq):
            rank.setdefault(sentence, (r, i))
            indegree.setdefault(sentence, 0)
        for a, b in zip(seq, seq[1:]):
            if b not in successors[a] and a != b:
                successors[a].add(b)
                indegree[b] += 1
    heap = [(rank[s], s) for s, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(rank):
        if not heap:  # a cycle: release the earliest remaining sentence
            rest = min((rank[s], s) for s in rank if s not in done)
            heap.append(rest)
        _, sentence = heapq.heappop(heap)
        if sentence in done:
            continue
        done.add(sentence)
        order.append(sentence)
        for nxt in successors[sentence]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0 and nxt not in done:
                heapq.heappush(heap, (rank[nxt], nxt))
    return order


def load_region_references(path: str, spacy_model: str = "blank") -> list[ReferenceReport]:
    """Rebuild reports and per-sentence references from ``ctrate-region-texts/dev.csv``."""
    frame = pd.read_csv(path, dtype=str).fillna("")
    reports = []
    for case_id, group in frame.groupby("volume", sort=True):
        by_region = dict(zip(group["region"], group["text"]))
        sequences, reference = [], defaultdict(set)
        for region in [r for r in REGION_ORDER if r in by_region]:
            seq = split_sentences(clean_report(by_region[region]).text, spacy_model)
            seq = list(dict.fromkeys(seq))
            sequences.append(seq)
            for sentence in seq:
                reference[sentence].add(REGION_TO_STRUCTURE.get(region, region))
        order = merge_orders(sequences)
        reports.append(ReferenceReport(case_id, " ".join(order), order, dict(reference)))
    return reports


@dataclass
class ParserScores:
    """Sentence-level parser scores (see :func:`score_parser`)."""

    n_sentences: int = 0
    unmatched: int = 0
    hits_any: int = 0
    ref_pairs: int = 0
    ref_pairs_hit: int = 0
    assigned_pairs: int = 0
    assigned_correct: int = 0
    per_structure: dict[str, list[int]] = field(default_factory=dict)  # [ref, hit, assigned, ok]
    errors: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)


def score_parser(parser, references: list[ReferenceReport]) -> ParserScores:
    """Recall (a reference structure of the sentence is assigned; also per pair) and
    precision (share of assigned structures that the reference gives the sentence)."""
    scores = ParserScores(per_structure={name: [0, 0, 0, 0] for name in parser.names})
    parsed = parser.parse_many([r.text for r in references])
    for ref, result in zip(references, parsed):
        for sentence, assigned in result.sentences:
            truth = ref.reference.get(sentence)
            if truth is None:
                scores.unmatched += 1
                continue
            scores.n_sentences += 1
            got = set(assigned)
            scores.hits_any += bool(got & truth)
            scores.ref_pairs += len(truth)
            scores.ref_pairs_hit += len(got & truth)
            scores.assigned_pairs += len(got)
            scores.assigned_correct += len(got & truth)
            for name in parser.names:
                row = scores.per_structure[name]
                row[0] += name in truth
                row[1] += name in truth and name in got
                row[2] += name in got
                row[3] += name in got and name in truth
            if got != truth:
                scores.errors.append((ref.case_id, sentence, tuple(sorted(truth)), assigned))
    return scores


def label_counts(truth: pd.DataFrame, pred: pd.DataFrame, labels) -> pd.DataFrame:
    """Per-label tp, fp, fn, support (rows aligned)."""
    rows = []
    for label in labels:
        t, p = truth[label].astype(int).values, pred[label].astype(int).values
        tp, fp, fn = (
            int(((t == 1) & (p == 1)).sum()),
            int(((t == 0) & (p == 1)).sum()),
            int(((t == 1) & (p == 0)).sum()),
        )
        rows.append({"label": label, "tp": tp, "fp": fp, "fn": fn, "support": int(t.sum())})
    return pd.DataFrame(rows).set_index("label")


def f1_scores(counts: pd.DataFrame) -> tuple[float, float, pd.Series]:
    """(micro F1, macro F1, per-label F1) from :func:`label_counts` (F1 of 0/0 = 1.0)."""

    def f1(tp: int, fp: int, fn: int) -> float:
        return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)

    per = counts.apply(lambda r: f1(r.tp, r.fp, r.fn), axis=1)
    micro = f1(counts.tp.sum(), counts.fp.sum(), counts.fn.sum())
    return micro, float(per.mean()), per
