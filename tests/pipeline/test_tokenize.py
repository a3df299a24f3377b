"""Tokenizers: word-level (tiny models) and Hugging Face offline loading with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.adapters.tokenize import (
    build_word_tokenizer,
    load_hf_tokenizer,
    load_tokenizer,
    load_word_tokenizer,
    save_word_tokenizer,
)
from pipeline.core.errors import UserError


def test_word_tokenizer_layout_and_padding(tmp_path: Path) -> None:
    tok = build_word_tokenizer(["the", "red", "circle", "moving", "left", "red"])
    assert tok.vocab_size == 4 + 5
    out = tok(["The red circle", "red circle moving left!"])
    # <s>=0 ... </s>=2, pads 1, like RoBERTa
    assert out.input_ids[0].tolist() == [0, 4, 5, 6, 2, 1, 1]
    assert out.attention_mask[0].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert out.input_ids[1, 0] == 0 and out.input_ids[1, -1] == 2 and out.input_ids[1, -2] == 3
    assert tok.unknown_words("red triangle") == ["triangle"]
    path = tmp_path / "tok" / "tokenizer.json"
    path.parent.mkdir()
    save_word_tokenizer(tok, path)
    again = load_word_tokenizer(path)
    assert again(["red circle"]).input_ids.tolist() == tok(["red circle"]).input_ids.tolist()
    assert isinstance(load_tokenizer(path), type(again))


def test_missing_files_are_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="not found"):
        load_word_tokenizer(tmp_path / "none.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_hf_tokenizer("roberta-base", tmp_path / "no-such-folder")
    message = str(err.value)
    assert "no-such-folder" in message and "empty-cache" in message
    with pytest.raises(UserError):
        load_tokenizer("bert-base-uncased")
    with pytest.raises(UserError, match="no expression"):
        build_word_tokenizer(["a"])([])


def test_hf_tokenizer_from_a_local_folder(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    words = build_word_tokenizer(["the", "red", "circle"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=words.tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(tmp_path / "tok")
    tok = load_hf_tokenizer("roberta-base", tmp_path / "tok")
    out = tok(["the red circle", "red"])
    assert out.input_ids.tolist() == [[0, 4, 5, 6, 2], [0, 5, 2, 1, 1]]
    assert out.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert isinstance(load_tokenizer(tmp_path / "tok"), type(tok))
