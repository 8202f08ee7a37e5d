"""Report tokenizer: a BPE or WordPiece vocabulary trained on the training reports.

Saved as one ``tokenizer.json`` (the ``tokenizers`` library's format) so that a trained
decoder travels with its exact vocabulary. Ids 0-3 are reserved: ``[PAD]``, ``[UNK]``,
``[BOS]``, ``[EOS]``. The BPE kind is byte-level and lossless (``decode(encode(t)) == t``);
the WordPiece kind lower-cases and rejoins punctuation with the usual clean-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ctrg.runtime import atomic_path

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "wordpiece")


class ReportTokenizer:
    """Encode reports to id sequences ``[BOS] ... [EOS]`` and decode them back.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` whose vocabulary starts with SPECIAL_TOKENS.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
        if ids != [0, 1, 2, 3]:
            raise ValueError(f"tokenizer must map {SPECIAL_TOKENS} to ids 0-3, got {ids}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = ids

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Ids ``[BOS] tokens [EOS]``; truncated to ``max_length`` ids (EOS kept last).

        Args:
            text: a report.
            max_length: the most ids returned (BOS and EOS included), or None.
        """
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if max_length is not None:
            if max_length < 3:
                raise ValueError(f"max_length must be at least 3, got {max_length}")
            ids = ids[: max_length - 2]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of an id sequence; stops at the first EOS and drops BOS/PAD."""
        kept: list[int] = []
        for token in ids:
            token = int(token)
            if token == self.eos_id:
                break
            if token in (self.pad_id, self.bos_id):
                continue
            kept.append(token)
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip()

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` atomically."""
        with atomic_path(path) as tmp:
            self.tokenizer.save(str(tmp))

    @classmethod
    def load(cls, path: str | Path) -> ReportTokenizer:
        """Read a ``tokenizer.json`` written by :meth:`save`."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def from_json(cls, text: str) -> ReportTokenizer:
        """Rebuild from the JSON string (as stored inside a checkpoint)."""
        return cls(Tokenizer.from_str(text))

    def to_json(self) -> str:
        """The tokenizer as a JSON string."""
        return self.tokenizer.to_str()


def train_tokenizer(
    texts: Iterable[str], kind: str = "bpe", vocab_size: int = 2000, min_frequency: int = 2
) -> ReportTokenizer:
    """Train a tokenizer on report texts (the training split only).

    Args:
        texts: training reports.
        kind: ``bpe`` (byte-level, lossless) or ``wordpiece`` (lower-cased).
        vocab_size: target vocabulary size, special tokens included.
        min_frequency: minimum count of a merge / word piece.
    """
    texts = [text for text in texts if text and text.strip()]
    if not texts:
        raise ValueError("cannot train a tokenizer on an empty set of reports")
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=None))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(cleanup=True)
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
    else:
        raise ValueError(f"tokenizer kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
    tokenizer.train_from_iterator(texts, trainer=trainer)
    log.info(
        "trained a %s tokenizer: %d ids from %d reports",
        kind,
        tokenizer.get_vocab_size(),
        len(texts),
    )
    return ReportTokenizer(tokenizer)
