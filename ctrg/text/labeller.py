"""Rule-based extraction of the 18 CT-RATE abnormality labels, with negation and uncertainty.

The rules live in ``ctrg/text/label_rules.yaml``: per label, ``mention`` regexes (synonyms
and common misspellings of translated reports) and ``veto`` regexes (clause contexts that
cancel a mention, e.g. "lymph node that did not reach pathological size"); global
``negation`` cues before (``pre``), right before (``pre_adjacent``: "loss of X") and after
(``post``) a mention, ``uncertainty`` cues (a cue inside a worded parenthetical, as in
"nodes (metastasis?)", covers only that parenthetical), ``hypothetical`` cues ("correlation
in terms of X": never affirmed), and the ``clause_breaks`` that end a cue's scope. A
label is 1 when any sentence has an affirmed mention (uncertain mentions count as affirmed
unless ``uncertain_positive`` is false). :meth:`Labeller.findings` also returns each mention with laterality and lobe.

A learned labeller (e.g. the CT-CLIP RadBERT classifier) can replace the rules through
:func:`load_labeller` with ``"module:factory"``: the factory must return an object with
``label_many(texts) -> list[dict[str, int]]``; weights are the user's, read locally.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ctrg.anatomy import CTRATE_LABELS
from ctrg.text.sentences import clean_report, split_many, split_sentences

log = logging.getLogger(__name__)

_SIDE = re.compile(r"\b(bilateral|both|right|left)\b", re.IGNORECASE)
_LOBE = re.compile(
    r"\b(upper|middle|lower|inferior|superior)\s+lobes?\b|\blingula\w*|\blinguistic\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Mention:
    """One label mention in a report.

    Attributes:
        label: the CT-RATE label.
        sentence: the sentence it is in.
        text: the matched words.
        negated: a negation cue covers it.
        uncertain: an uncertainty cue covers it.
        side: ``right``/``left``/``bilateral`` or ``""`` when not stated in the clause.
        lobe: e.g. ``"upper lobe"``, ``""`` when not stated.
        hypothetical: the mention is what something is to be evaluated for ("correlation in
            terms of infiltration", "evaluated for pneumonia"), not an observation.
    """

    label: str
    sentence: str
    text: str
    negated: bool
    uncertain: bool
    side: str
    lobe: str
    hypothetical: bool = False


def _compile(patterns: list[str], where: str, whole_words: bool = False) -> re.Pattern | None:
    if not patterns:
        return None
    end = r"\b" if whole_words else ""
    try:
        body = "|".join(f"(?:{p})" for p in patterns)
        return re.compile(r"\b(?:" + body + ")" + end, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"label_rules.yaml: {where}: invalid regex: {err}") from None


@dataclass(frozen=True)
class _Rules:
    mention: dict[str, re.Pattern]
    contextual: dict[str, list[tuple[re.Pattern, re.Pattern, re.Pattern | None]]]
    veto: dict[str, re.Pattern | None]
    not_negation: dict[str, re.Pattern | None]
    pre: re.Pattern
    pre_adjacent: re.Pattern | None
    post: re.Pattern
    affirm: re.Pattern | None
    uncertain: re.Pattern | None
    hypothetical: re.Pattern | None
    breaks: re.Pattern
    pre_window: int
    uncertain_positive: dict[str, bool]


@cache
def load_rules(name: str = "label_rules.yaml") -> _Rules:
    """Compile the labeller's rules file (a YAML file in ``ctrg/text``)."""
    try:
        data = yaml.safe_load(resources.files("ctrg.text").joinpath(name).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"ctrg/text/{name}: cannot read rules: {err}") from None
    labels = data.get("labels") or {}
    missing = [label for label in CTRATE_LABELS if label not in labels]
    extra = sorted(set(labels) - set(CTRATE_LABELS))
    if missing or extra:
        raise ValueError(f"{name}: labels missing {missing}, unknown {extra}")
    mention, veto, uncertain_positive, contextual, not_negation = {}, {}, {}, {}, {}
    default_uncertain = bool(data.get("uncertain_positive", True))
    for label in CTRATE_LABELS:
        entry = labels[label]
        mention[label] = _compile(entry.get("mention") or [], f"{label}.mention")
        if mention[label] is None:
            raise ValueError(f"{name}: label {label!r} has no mention patterns")
        veto[label] = _compile(entry.get("veto") or [], f"{label}.veto")
        not_negation[label] = _compile(entry.get("not_negation") or [], f"{label}.not_negation")
        contextual[label] = [
            (
                _compile(group["mention"], f"{label}.contextual[{i}].mention"),
                _compile(group["require"], f"{label}.contextual[{i}].require"),
                _compile(group.get("unless") or [], f"{label}.contextual[{i}].unless"),
            )
            for i, group in enumerate(entry.get("contextual") or [])
        ]
        uncertain_positive[label] = bool(entry.get("uncertain_positive", default_uncertain))
    neg = data.get("negation") or {}
    return _Rules(
        mention=mention,
        contextual=contextual,
        veto=veto,
        not_negation=not_negation,
        pre=_compile(neg.get("pre") or ["(?!)"], "negation.pre", whole_words=True),
        pre_adjacent=_adjacent(neg.get("pre_adjacent") or [], "negation.pre_adjacent"),
        post=_compile(neg.get("post") or ["(?!)"], "negation.post", whole_words=True),
        affirm=_compile(neg.get("affirm") or [], "negation.affirm"),
        uncertain=_compile(data.get("uncertainty") or [], "uncertainty"),
        hypothetical=_adjacent(data.get("hypothetical") or [], "hypothetical", max_words=2),
        breaks=re.compile("|".join(data.get("clause_breaks") or ["(?!)"]), re.IGNORECASE),
        pre_window=int(neg.get("pre_window_chars", 10_000)),
        uncertain_positive=uncertain_positive,
    )


def _adjacent(patterns: list[str], where: str, max_words: int = 1) -> re.Pattern | None:
    """Cues that reach only a mention right after them (at most ``max_words`` words between):
    the pattern is anchored to the end of the text before the mention."""
    if not patterns:
        return None
    body = "|".join(f"(?:{p})" for p in patterns)
    try:
        return re.compile(
            r"\b(?:" + body + r")\s+(?:[\w-]+\s+){0," + str(max_words) + "}$", re.IGNORECASE
        )
    except re.error as err:
        raise ValueError(f"label_rules.yaml: {where}: invalid regex: {err}") from None


_PAREN = re.compile(r"\([^()]*\)")
_WORD = re.compile(r"[^\W\d_]{3,}")


def _outside_parentheses(clause: str) -> str:
    """The clause with worded parentheticals blanked ("(metastasis?)"; "(?)" is kept)."""
    return _PAREN.sub(
        lambda m: " " * len(m.group(0)) if _WORD.search(m.group(0)) else m.group(0), clause
    )


class Labeller:
    """The rule-based CT-RATE labeller.

    Args:
        rules: rules file name in ``ctrg/text`` (default ``label_rules.yaml``).
        spacy_model: sentence splitter model (``"blank"`` = tokenizer + sentencizer).
    """

    labels: tuple[str, ...] = CTRATE_LABELS

    def __init__(self, rules: str = "label_rules.yaml", spacy_model: str = "blank") -> None:
        self.rules = load_rules(rules)
        self.spacy_model = spacy_model

    def label(self, text: Any) -> dict[str, int]:
        """Labels of one report: {label: 0/1} over the 18 CT-RATE labels, in order."""
        sentences = split_sentences(clean_report(text).text, self.spacy_model)
        return self._labels_from(sentences)

    def label_many(self, texts: list[Any]) -> list[dict[str, int]]:
        """Labels of many reports (batched sentence splitting)."""
        split = split_many([clean_report(t).text for t in texts], self.spacy_model)
        return [self._labels_from(sentences) for sentences in split]

    def findings(self, text: Any) -> list[Mention]:
        """Every mention in a report, affirmed or not, with laterality and lobe."""
        sentences = split_sentences(clean_report(text).text, self.spacy_model)
        return [m for s in sentences for m in self.sentence_mentions(s)]

    def _labels_from(self, sentences: list[str]) -> dict[str, int]:
        found = dict.fromkeys(self.labels, 0)
        for sentence in sentences:
            for mention in self.sentence_mentions(sentence):
                if self._affirmed(mention):
                    found[mention.label] = 1
        return found

    def _affirmed(self, mention: Mention) -> bool:
        if mention.negated or mention.hypothetical:
            return False
        return self.rules.uncertain_positive[mention.label] or not mention.uncertain

    def sentence_mentions(self, sentence: str) -> list[Mention]:
        """Mentions in one sentence, clause by clause."""
        out: list[Mention] = []
        for clause in self.rules.breaks.split(sentence):
            if clause and clause.strip():
                out.extend(self._clause_mentions(sentence, clause))
        return out

    def _clause_mentions(self, sentence: str, clause: str) -> list[Mention]:
        rules = self.rules
        out = []
        # an uncertainty cue inside a worded parenthetical ("nodes (metastasis?)") covers only
        # the mentions inside it
        outside = _outside_parentheses(clause)
        uncertain_outside = bool(rules.uncertain and rules.uncertain.search(outside))
        side_match = _SIDE.search(clause)
        side = side_match.group(1).lower() if side_match else ""
        side = "bilateral" if side == "both" else side
        lobe_match = _LOBE.search(clause)
        lobe = lobe_match.group(0).lower() if lobe_match else ""
        for label in self.labels:
            veto = rules.veto[label]
            if veto is not None and veto.search(clause):
                continue
            for match in self._matches(label, clause):
                negated, hypothetical = self._cues(label, clause, match)
                uncertain = self._uncertain(clause, outside, match, uncertain_outside)
                out.append(
                    Mention(
                        label,
                        sentence,
                        match.group(0),
                        negated,
                        uncertain,
                        side,
                        lobe,
                        hypothetical,
                    )
                )
        return out

    def _cues(self, label: str, clause: str, match: re.Match) -> tuple[bool, bool]:
        """(negated, hypothetical) of a mention: pre/post/adjacent negation, hypothetical cues."""
        rules = self.rules
        before = clause[max(0, match.start() - rules.pre_window) : match.start()]
        negated = (
            bool(rules.pre.search(before))
            or bool(rules.pre_adjacent and rules.pre_adjacent.search(before))
            or self._post_negated(label, clause[match.end() :])
        )
        return negated, bool(rules.hypothetical and rules.hypothetical.search(before))

    def _uncertain(self, clause: str, outside: str, match: re.Match, default: bool) -> bool:
        """Uncertainty of a mention: its own parenthetical's cues when inside one."""
        if outside[match.start() : match.end()].strip() or self.rules.uncertain is None:
            return default
        start = clause.rfind("(", 0, match.start())
        end = clause.find(")", match.end())
        return bool(self.rules.uncertain.search(clause[start : end + 1]))

    def _matches(self, label: str, clause: str) -> list[re.Match]:
        """Plain mentions, plus contextual ones whose required context is in the clause."""
        found = list(self.rules.mention[label].finditer(clause))
        for pattern, require, unless in self.rules.contextual[label]:
            if require.search(clause) and not (unless and unless.search(clause)):
                found.extend(pattern.finditer(clause))
        return found

    def _post_negated(self, label: str, after: str) -> bool:
        """A post-negation cue after the mention, with no affirmation in between.

        Phrases in the label's ``not_negation`` list are blanked out first.
        """
        exceptions = self.rules.not_negation[label]
        if exceptions is not None:
            after = exceptions.sub(lambda m: " " * len(m.group(0)), after)
        cue = self.rules.post.search(after)
        if cue is None:
            return False
        affirm = self.rules.affirm
        return affirm is None or affirm.search(after[: cue.start()]) is None


def load_labeller(spec: str = "rules") -> Any:
    """Return the rule-based labeller (``"rules"``) or a user's ``"module:factory"`` one.

    Raises:
        ValueError: when the spec cannot be imported or the object lacks ``label_many``.
    """
    if spec == "rules":
        return Labeller()
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"labeller spec must be 'rules' or 'module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load labeller {spec!r}: {err}") from None
    labeller = factory()
    if not callable(getattr(labeller, "label_many", None)):
        raise ValueError(f"labeller {spec!r} has no label_many(texts) method")
    return labeller
