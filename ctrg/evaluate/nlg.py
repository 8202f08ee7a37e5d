"""Natural-language metrics with the real pycocoevalcap scorers: BLEU-1..4, METEOR, ROUGE-L, CIDEr.

Protocol (recorded in every output by :func:`protocol`):

* **Normalisation** (``raw``, ``lower``, ``lower-nopunct``, ``ptb``) is applied to references
  and predictions alike before scoring. Every mode first collapses runs of whitespace
  (newlines included) into one space, because the scorers split on single spaces and the
  METEOR jar reads one line per segment. ``ptb`` is the COCO caption protocol: the Stanford
  PTB tokenizer shipped with pycocoevalcap (lower-cases, splits and drops punctuation).
* **Corpus level** (the headline numbers): BLEU from n-gram counts summed over all cases
  (pycocoevalcap ``closest`` reference length), METEOR from the jar's aggregated statistics
  (``EVAL`` over all segments; resamples aggregate them in numpy, checked against the jar:
  :mod:`ctrg.evaluate.meteor`), ROUGE-L and CIDEr as pycocoevalcap reports them (mean of the
  per-case scores; CIDEr's document frequencies from the whole evaluated corpus).
* **Per-sample** (for comparison with papers that average sentence scores): mean over cases of
  each case's own BLEU-n (pycocoevalcap's smoothed sentence BLEU) and METEOR.
* SPICE is not computed: it needs Stanford CoreNLP models that pycocoevalcap downloads at
  first use, and nothing downloads at run time here.
"""

from __future__ import annotations

import logging
import re
import string
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer, cook_refs, cook_test
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from ctrg.evaluate.meteor import check_against_jar, parse_stats

log = logging.getLogger(__name__)

NORMALISATIONS: tuple[str, ...] = ("raw", "lower", "lower-nopunct", "ptb")
NLG_KEYS: tuple[str, ...] = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
SPICE_NOTE = (
    "SPICE not computed: it needs Stanford CoreNLP models that pycocoevalcap downloads at first "
    "use, and ctrg never downloads at run time"
)
_WHITESPACE = re.compile(r"\s+")
_PUNCT_TABLE = str.maketrans({ch: " " for ch in string.punctuation})
_SMALL, _TINY = 1e-9, 1e-15  # pycocoevalcap BleuScorer constants


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", str(text)).strip()


def normalise_texts(texts: list[str], mode: str) -> list[str]:
    """Normalise texts for scoring.

    Args:
        texts: report strings.
        mode: one of :data:`NORMALISATIONS`.

    Returns:
        The normalised strings, same order and length.
    """
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
    collapsed = [_collapse(t) for t in texts]
    if mode == "raw":
        return collapsed
    if mode == "lower":
        return [t.lower() for t in collapsed]
    if mode == "lower-nopunct":
        return [_collapse(t.lower().translate(_PUNCT_TABLE)) for t in collapsed]
    return ptb_tokenize(collapsed)


def ptb_tokenize(texts: list[str]) -> list[str]:
    """pycocoevalcap's PTB tokenisation (Stanford PTBTokenizer 3.4.1 jar, ``-lowerCase``,
    punctuation tokens dropped), fed through stdin.

    pycocoevalcap's own wrapper writes a temporary file into its installed package folder,
    which fails on a read-only environment; this runs the same jar on the same input.
    """
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = Path(ptb.__file__).with_name(ptb.STANFORD_CORENLP_3_4_1_JAR)
    cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer"]
    cmd += ["-preserveLines", "-lowerCase"]
    if any("\n" in t for t in texts):
        raise ValueError("ptb_tokenize expects one line per text (collapse whitespace first)")
    done = subprocess.run(cmd, input="\n".join(texts).encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"PTB tokenizer ({jar}) failed: {done.stderr.decode()[-500:]}")
    lines = done.stdout.decode().split("\n")
    if len(lines) < len(texts):
        raise RuntimeError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
    drop = set(ptb.PUNCTUATIONS)
    return [
        " ".join(w for w in line.rstrip().split(" ") if w not in drop)
        for line in lines[: len(texts)]
    ]


def bleu_case_stats(references: list[str], predictions: list[str], n: int = 4) -> np.ndarray:
    """Per-case BLEU sufficient statistics, exactly as pycocoevalcap's BleuScorer counts them.

    Returns:
        (N, 2n+2) float array: ``correct[0..n-1]``, ``guess[0..n-1]``, ``testlen``, ``reflen``
        (``closest`` reference length; one reference per case).
    """
    rows = []
    for ref, pred in zip(references, predictions):
        comps = cook_test(pred, cook_refs([ref], n=n), eff="closest", n=n)
        rows.append([*comps["correct"], *comps["guess"], comps["testlen"], comps["reflen"]])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 * n + 2)


def bleu_from_stats(stats: np.ndarray, n: int = 4) -> np.ndarray:
    """Corpus BLEU-1..n from summed statistics (pycocoevalcap's formula).

    Args:
        stats: (..., 2n+2) summed statistics (see :func:`bleu_case_stats`).

    Returns:
        (..., n) BLEU-1..n.
    """
    correct, guess = stats[..., :n], stats[..., n : 2 * n]
    testlen, reflen = stats[..., 2 * n], stats[..., 2 * n + 1]
    log_prec = np.log((correct + _TINY) / (guess + _SMALL))
    bleus = np.exp(np.cumsum(log_prec, axis=-1) / np.arange(1, n + 1))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, _TINY)), 1.0)
    return bleus * brevity[..., None]


@dataclass
class NLGResult:
    """Scores of one evaluation.

    Attributes:
        corpus: corpus-level headline scores (keys :data:`NLG_KEYS`).
        per_sample_mean: mean over cases of per-case scores (same keys).
        per_case: (N,) arrays per key: each case's own score.
        bleu_stats: (N, 10) BLEU sufficient statistics, for bootstrap resampling.
        meteor_stats: (N, 23) METEOR sufficient statistics (the jar's lines, parsed), for
            bootstrap resampling with :func:`ctrg.evaluate.meteor.aggregate`.
    """

    corpus: dict[str, float]
    per_sample_mean: dict[str, float]
    per_case: dict[str, np.ndarray]
    bleu_stats: np.ndarray
    meteor_stats: np.ndarray = field(repr=False)


class NLGScorer:
    """Holds one METEOR JVM for all scoring calls (starting it costs ~10 s).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self) -> None:
        self._meteor: Meteor | None = None

    @property
    def meteor(self) -> Meteor:
        if self._meteor is None:
            log.info("starting the METEOR 1.5 JVM (once)")
            self._meteor = Meteor()
        return self._meteor

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.__del__()  # closes stdin, kills and reaps the JVM (safe to repeat)
            self._meteor = None

    def __enter__(self) -> NLGScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def meteor_case_stats(self, references: list[str], predictions: list[str]) -> list[str]:
        """The jar's per-segment statistics lines (``SCORE`` requests)."""
        meteor = self.meteor
        with meteor.lock:
            return [meteor._stat(p, [r]) for r, p in zip(references, predictions)]

    def meteor_from_stats(self, stats: list[str]) -> tuple[float, list[float]]:
        """Aggregate METEOR (``EVAL``) over the given statistics lines, plus per-segment scores."""
        meteor = self.meteor
        with meteor.lock:
            meteor.meteor_p.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            meteor.meteor_p.stdin.flush()
            per_case = [float(meteor.meteor_p.stdout.readline().strip()) for _ in stats]
            total = float(meteor.meteor_p.stdout.readline().strip())
        return total, per_case

    def score(self, references: list[str], predictions: list[str]) -> NLGResult:
        """Score already-normalised texts (see :func:`normalise_texts`).

        Args:
            references: N reference reports.
            predictions: N generated reports.
        """
        if len(references) != len(predictions):
            raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
        if not references:
            raise ValueError("nothing to score: no reference/prediction pairs")
        gts = {i: [r] for i, r in enumerate(references)}
        res = {i: [p] for i, p in enumerate(predictions)}
        bleu = BleuScorer(n=4)
        for ref, pred in zip(references, predictions):
            bleu += (pred, [ref])
        bleu_corpus, bleu_cases = bleu.compute_score(option="closest", verbose=0)
        meteor_stats = self.meteor_case_stats(references, predictions)
        meteor_corpus, meteor_cases = self.meteor_from_stats(meteor_stats)
        meteor_array = parse_stats(meteor_stats)
        check_against_jar(meteor_array, meteor_cases, meteor_corpus)
        rouge_corpus, rouge_cases = Rouge().compute_score(gts, res)
        cider_corpus, cider_cases = Cider().compute_score(gts, res)
        per_case = {f"bleu_{k + 1}": np.asarray(bleu_cases[k]) for k in range(4)}
        per_case.update(
            meteor=np.asarray(meteor_cases),
            rouge_l=np.asarray(rouge_cases, dtype=float),
            cider=np.asarray(cider_cases, dtype=float),
        )
        corpus = {f"bleu_{k + 1}": float(bleu_corpus[k]) for k in range(4)}
        corpus.update(meteor=meteor_corpus, rouge_l=float(rouge_corpus), cider=float(cider_corpus))
        means = {key: float(np.mean(values)) for key, values in per_case.items()}
        return NLGResult(
            corpus, means, per_case, bleu_case_stats(references, predictions), meteor_array
        )


def protocol(normalise: str, level: str) -> dict[str, Any]:
    """The scoring protocol, recorded beside the numbers."""
    return {
        "library": "pycocoevalcap 1.2 (BLEU closest ref length, METEOR 1.5 -l en -norm, "
        "ROUGE-L beta 1.2, CIDEr-D n=4 sigma=6)",
        "normalise": normalise,
        "whitespace": "runs of whitespace (newlines included) collapsed to one space",
        "level": level,
        "references_per_case": 1,
        "spice": SPICE_NOTE,
    }
