"""Assign report sentences to anatomical structures with a lexicon kept in a data file.

The lexicon of a structure set lives in ``ctrg/text/lexicon_<set>.yaml`` (see
``lexicon_chest.yaml`` for the format); a new set (e.g. brain) is a new file plus its names
in :data:`ctrg.anatomy.STRUCTURE_SETS` -- no code change here. Rules, in order:

1. ``ignore`` phrases are blanked out (e.g. "lung parenchyma window" names a window, not a
   finding).
2. ``exact`` rules: a regex that, when it matches (and its ``unless`` regex does not),
   fixes the sentence's structures; the first matching rule wins.
3. ``keywords``: every structure with a matching keyword is assigned; a keyword listed
   under ``weak`` only counts when no ordinary keyword matched.
4. Continuation: a sentence with no keyword inherits the previous sentence's structures
   when it continues it (starts with a cue such as "it", "and", "however"; with
   ``continuation.mode: always`` any keyword-less sentence inherits).
5. Anything still unassigned goes to the fallback structure ("others").

Unmentioned structures get the default sentence (e.g. "No abnormality found in lung.").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ctrg.anatomy import STRUCTURE_SETS
from ctrg.anatomy import structures as structure_names
from ctrg.text.sentences import clean_report, split_many, split_sentences

log = logging.getLogger(__name__)

DEFAULT_SENTENCE = "No abnormality found in {structure}."


@dataclass
class ParsedReport:
    """One parsed report.

    Attributes:
        sentences: (sentence, structure names) in report order.
        texts: structure name -> its text (anatomy order); defaulted ones hold the default
            sentence.
        defaulted: structures that the report never mentions (anatomy order).
        warnings: cleaning warnings (``empty``, ``markup``, ``not_english``, ``truncated``).
    """

    sentences: list[tuple[str, tuple[str, ...]]]
    texts: dict[str, str]
    defaulted: list[str]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Lexicon:
    """A compiled structure lexicon (see ``lexicon_chest.yaml``)."""

    names: tuple[str, ...]
    ignore: re.Pattern | None
    exact: tuple[tuple[re.Pattern, re.Pattern | None, tuple[str, ...]], ...]
    strong: tuple[tuple[str, re.Pattern], ...]
    weak: tuple[tuple[str, re.Pattern], ...]
    continuation: re.Pattern
    continuation_mode: str
    fallback: str


def _alternation(patterns: list[str], where: str) -> re.Pattern | None:
    if not patterns:
        return None
    try:
        return re.compile(r"\b(?:" + "|".join(f"(?:{p})" for p in patterns) + ")", re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"{where}: invalid regex: {err}") from None


def load_lexicon_data(structure_set: str) -> tuple[str, dict[str, Any]]:
    """Read ``ctrg/text/lexicon_<set>.yaml``; returns (file name, parsed YAML)."""
    name = f"lexicon_{structure_set}.yaml"
    resource = resources.files("ctrg.text").joinpath(name)
    if not resource.is_file():
        raise ValueError(f"no lexicon file {name} in ctrg/text for structure set {structure_set!r}")
    try:
        return name, yaml.safe_load(resource.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"ctrg/text/{name}: invalid YAML: {err}") from None


def set_names(structure_set: str, data: dict[str, Any], where: str) -> tuple[str, ...]:
    """Structure names of a set: ``ctrg.anatomy`` for known sets, else the file's ``names``.

    A known set's file may repeat its names (then they must match, in order).
    """
    listed = tuple(data.get("names") or ())
    if structure_set in STRUCTURE_SETS:
        names = structure_names(structure_set)
        if listed and listed != names:
            raise ValueError(f"{where}: names {listed} differ from ctrg.anatomy's {names}")
        return names
    if not listed:
        raise ValueError(f"{where}: set {structure_set!r} is not in ctrg.anatomy; list its names")
    return listed


@cache
def load_lexicon(structure_set: str = "chest") -> Lexicon:
    """Read and compile the lexicon of a structure set (cached)."""
    where, data = load_lexicon_data(structure_set)
    return compile_lexicon(data, set_names(structure_set, data, where), where)


def compile_lexicon(data: dict[str, Any], names: tuple[str, ...], where: str) -> Lexicon:
    """Compile parsed lexicon YAML for the given structure names (model order)."""
    table = data.get("structures") or {}
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ValueError(f"{where}: structures {unknown} are not in the set {names}")
    fallback = data.get("fallback", names[-1])
    if fallback not in names:
        raise ValueError(f"{where}: fallback {fallback!r} is not one of {names}")
    strong, weak = [], []
    for name in names:
        entry = table.get(name) or {}
        for key, bucket in (("keywords", strong), ("weak", weak)):
            pattern = _alternation(entry.get(key) or [], f"{where}: {name}.{key}")
            if pattern is not None:
                bucket.append((name, pattern))
    exact = []
    for i, rule in enumerate(data.get("exact") or []):
        bad = sorted(set(rule["structures"]) - set(names))
        if bad:
            raise ValueError(f"{where}: exact[{i}] names unknown structures {bad}")
        ordered = tuple(n for n in names if n in rule["structures"])
        pattern = _alternation([rule["pattern"]], f"{where}: exact[{i}]")
        unless = _alternation(rule.get("unless") or [], f"{where}: exact[{i}].unless")
        exact.append((pattern, unless, ordered))
    cont = data.get("continuation") or {}
    mode = cont.get("mode", "cue")
    if mode not in ("cue", "always", "never"):
        raise ValueError(f"{where}: continuation.mode must be cue|always|never, got {mode!r}")
    return Lexicon(
        names=names,
        ignore=_alternation(data.get("ignore") or [], f"{where}: ignore"),
        exact=tuple(exact),
        strong=tuple(strong),
        weak=tuple(weak),
        continuation=re.compile(
            r"^\W*(?:" + "|".join(cont.get("cues") or ["(?!)"]) + r")\b", re.IGNORECASE
        ),
        continuation_mode=mode,
        fallback=fallback,
    )


class StructureParser:
    """Split a report into sentences and assign each to structures.

    Args:
        structure_set: name of the structure set (``lexicon_<set>.yaml``).
        default_sentence: text for unmentioned structures; ``{structure}`` is replaced by
            the structure name.
        spacy_model: ``"blank"`` (tokenizer + sentencizer) or an installed spaCy package.
        max_chars: reports longer than this are truncated (with a warning).
        lexicon: an already compiled lexicon (e.g. from :func:`compile_lexicon`); overrides
            ``structure_set``'s file.
    """

    def __init__(
        self,
        structure_set: str = "chest",
        default_sentence: str = DEFAULT_SENTENCE,
        spacy_model: str = "blank",
        max_chars: int = 20000,
        lexicon: Lexicon | None = None,
    ) -> None:
        self.lexicon = lexicon if lexicon is not None else load_lexicon(structure_set)
        self.structure_set = structure_set
        self.default_sentence = default_sentence
        self.spacy_model = spacy_model
        self.max_chars = max_chars

    @property
    def names(self) -> tuple[str, ...]:
        """Structure names in model order."""
        return self.lexicon.names

    def keyword_structures(self, sentence: str) -> tuple[str, ...]:
        """Structures named by a sentence's keywords alone (no continuation, no fallback)."""
        lex = self.lexicon
        text = lex.ignore.sub(" ", sentence) if lex.ignore is not None else sentence
        for pattern, unless, fixed in lex.exact:
            if pattern.search(text) and not (unless is not None and unless.search(text)):
                return fixed
        found = {name for name, pattern in lex.strong if pattern.search(text)}
        if not found:
            found = {name for name, pattern in lex.weak if pattern.search(text)}
        return tuple(n for n in lex.names if n in found)

    def assign(self, sentences: list[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Assign structures to the sentences of one report, in order."""
        lex = self.lexicon
        out: list[tuple[str, tuple[str, ...]]] = []
        previous: tuple[str, ...] = ()
        for sentence in sentences:
            found = self.keyword_structures(sentence)
            if not found and previous and self._continues(sentence):
                found = previous
            if not found:
                found = (lex.fallback,)
            out.append((sentence, found))
            previous = found
        return out

    def _continues(self, sentence: str) -> bool:
        mode = self.lexicon.continuation_mode
        if mode == "always":
            return True
        return mode == "cue" and bool(self.lexicon.continuation.search(sentence))

    def parse(self, text: Any) -> ParsedReport:
        """Parse one report (any text; bad input gives warnings, never an exception)."""
        cleaned = clean_report(text, self.max_chars)
        sentences = split_sentences(cleaned.text, self.spacy_model)
        return self._build(self.assign(sentences), cleaned.warnings)

    def parse_many(self, texts: list[Any]) -> list[ParsedReport]:
        """Parse many reports with batched spaCy (same result as :meth:`parse`)."""
        cleaned = [clean_report(t, self.max_chars) for t in texts]
        split = split_many([c.text for c in cleaned], self.spacy_model)
        return [self._build(self.assign(s), c.warnings) for s, c in zip(split, cleaned)]

    def _build(
        self, assigned: list[tuple[str, tuple[str, ...]]], warnings: list[str]
    ) -> ParsedReport:
        per: dict[str, list[str]] = {name: [] for name in self.names}
        for sentence, names in assigned:
            for name in names:
                per[name].append(sentence)
        defaulted = [name for name in self.names if not per[name]]
        texts = {
            name: " ".join(per[name]) or self.default_sentence.format(structure=name)
            for name in self.names
        }
        return ParsedReport(assigned, texts, defaulted, list(warnings))
