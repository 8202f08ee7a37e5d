"""The report tokenizer trained with ``tokenizers``: special ids, round trip, truncation, files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrg.models.tokenizer import ReportTokenizer, train_tokenizer

REPORTS = [
    "The heart is normal in size. No pleural effusion.",
    "A 4.6 mm nodule in the right upper lobe. The heart is enlarged.",
    "Emphysema in both lungs; the trachea is patent.",
] * 3


def test_bpe_round_trip_is_lossless_and_ids_are_framed() -> None:
    tokenizer = train_tokenizer(REPORTS, kind="bpe", vocab_size=300, min_frequency=1)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    text = "A 4.6 mm nodule in the LEFT lower lobe, unseen words: xyzzy!"
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert tokenizer.unk_id not in ids  # byte-level: every character is representable
    assert tokenizer.decode(ids) == text
    # decoding stops at the first EOS and ignores padding
    assert tokenizer.decode(ids + [0, 0]) == text
    assert tokenizer.decode([*ids[:-1], tokenizer.eos_id, *ids[1:4]]) == text


def test_truncation_keeps_eos() -> None:
    tokenizer = train_tokenizer(REPORTS, vocab_size=300, min_frequency=1)
    ids = tokenizer.encode(REPORTS[1], max_length=5)
    assert len(ids) == 5 and ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    with pytest.raises(ValueError, match="at least 3"):
        tokenizer.encode(REPORTS[1], max_length=2)


def test_wordpiece_lower_cases(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(REPORTS, kind="wordpiece", vocab_size=200, min_frequency=1)
    assert tokenizer.decode(tokenizer.encode("The HEART is enlarged.")) == "the heart is enlarged."


def test_save_load_and_json_give_the_same_ids(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(REPORTS, vocab_size=300, min_frequency=1)
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = ReportTokenizer.load(tmp_path / "tokenizer.json")
    again = ReportTokenizer.from_json(tokenizer.to_json())
    for other in (loaded, again):
        assert other.vocab_size == tokenizer.vocab_size
        assert other.encode(REPORTS[2]) == tokenizer.encode(REPORTS[2])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ReportTokenizer.load(tmp_path / "missing.json")


def test_refuses_empty_training_set_and_unknown_kind() -> None:
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(REPORTS, kind="unigram")
