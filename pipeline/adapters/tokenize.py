"""Tokenizers for the RVOS models: Hugging Face ones (offline) and a word-level one for tiny models.

The official models tokenise with ``RobertaTokenizerFast('roberta-base')`` (SgMg, ReferFormer,
MUTR, SOC) or ``bert-base-uncased`` (UNINEXT), padding to the longest expression and never
truncating. Their vocabularies are in no checkpoint, so they are read from a local folder
(``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` / ``vocab.txt``) or from the user's
Hugging Face cache, never downloaded.

The tiny models trained on the synthetic benchmark use a word-level vocabulary with RoBERTa's
special-token layout (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3), so the same RoBERTa
encoder code serves both; it is saved as a ``tokenizer.json`` beside the weights.

Every tokenizer returns :class:`models.common.producer.TokenizedText`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from models.common.producer import TokenizedText
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.io import atomic_write_text

WORD_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


class TextTokenizer(Protocol):
    """Expressions -> padded token ids."""

    pad_token_id: int

    def __call__(self, texts: Sequence[str]) -> TokenizedText: ...


class HFTokenizer:
    """A transformers fast tokenizer, padded to the longest text, no truncation."""

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer = tokenizer
        self.pad_token_id = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        if not texts:
            raise UserError("no expression to tokenise")
        out = self.tokenizer(  # type: ignore[operator]
            list(texts), padding="longest", truncation=False, return_tensors="pt"
        )
        return TokenizedText(out["input_ids"].long(), out["attention_mask"].long())


class WordTokenizer:
    """A ``tokenizers`` WordLevel tokenizer: lower-cased words, ``<s> ... </s>``, padded."""

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer = tokenizer
        self.pad_token_id = int(tokenizer.token_to_id("<pad>"))  # type: ignore[attr-defined]

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())  # type: ignore[attr-defined]

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        if not texts:
            raise UserError("no expression to tokenise")
        encodings = self.tokenizer.encode_batch(list(texts))  # type: ignore[attr-defined]
        length = max(len(e.ids) for e in encodings)
        ids = torch.full((len(encodings), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(encodings), length), dtype=torch.long)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = torch.tensor(enc.ids, dtype=torch.long)
            mask[row, : len(enc.ids)] = 1
        return TokenizedText(ids, mask)

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` outside the vocabulary (they become ``<unk>``)."""
        vocab = self.tokenizer.get_vocab()  # type: ignore[attr-defined]
        words = self.tokenizer.pre_tokenizer.pre_tokenize_str(text.lower())  # type: ignore[attr-defined]
        return [w for w, _ in words if w not in vocab]


def build_word_tokenizer(vocabulary: Iterable[str]) -> WordTokenizer:
    """A word-level tokenizer over ``vocabulary`` (order kept after the 4 special tokens)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(WORD_SPECIALS)}
    for word in vocabulary:
        word = word.strip().lower()
        if word and word not in vocab:
            vocab[word] = len(vocab)
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return WordTokenizer(tok)


def save_word_tokenizer(tokenizer: WordTokenizer, path: str | Path) -> None:
    """Write the tokenizer as a ``tokenizer.json`` (atomically)."""
    atomic_write_text(Path(path), tokenizer.tokenizer.to_str(pretty=True))  # type: ignore[attr-defined]


def load_word_tokenizer(path: str | Path) -> WordTokenizer:
    """Read a word-level ``tokenizer.json``."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"tokenizer file not found: {path}")
    try:
        return WordTokenizer(Tokenizer.from_file(str(path)))
    except Exception as err:
        raise InputFileError(f"cannot read tokenizer {path}: {err}") from err


def hf_cache_dir() -> Path:
    """Where transformers keeps downloaded models (``$HF_HUB_CACHE`` / ``$HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def load_hf_tokenizer(
    name: str = "roberta-base", local_dir: str | Path | None = None
) -> HFTokenizer:
    """A Hugging Face tokenizer from ``local_dir``, else from the HF cache; never downloads.

    Raises:
        UserError: neither place has it; the message names both.
    """
    from transformers import AutoTokenizer

    tried = []
    if local_dir is not None:
        local = Path(local_dir)
        tried.append(f"local folder {local}")
        if local.is_dir():
            try:
                return HFTokenizer(AutoTokenizer.from_pretrained(str(local), local_files_only=True))
            except (OSError, ValueError) as err:
                raise InputFileError(f"cannot read the {name} tokenizer in {local}: {err}") from err
    tried.append(f"Hugging Face cache {hf_cache_dir()} (model {name!r})")
    try:
        return HFTokenizer(AutoTokenizer.from_pretrained(name, local_files_only=True))
    except (OSError, ValueError) as err:
        raise UserError(
            f"no {name} tokenizer found: looked in the {' and the '.join(tried)}. Copy the "
            f"tokenizer files ({name}'s tokenizer.json, or vocab/merges) into a folder and pass "
            "it, or populate the Hugging Face cache on a machine with internet access"
        ) from err


def load_tokenizer(spec: str | Path, *, hf_name: str = "roberta-base") -> TextTokenizer:
    """``spec`` = a word-level ``tokenizer.json`` file, a Hugging Face tokenizer folder, or a
    model name looked up in the Hugging Face cache."""
    path = Path(spec)
    if path.is_file():
        return load_word_tokenizer(path)
    if path.is_dir():
        return load_hf_tokenizer(hf_name, path)
    if path.is_absolute() or str(spec).startswith((".", "~")):  # a path, not a model name
        raise InputFileError(
            f"tokenizer folder not found: {spec} (pass a folder of tokenizer files, a word-level "
            "tokenizer.json, or a model name in the Hugging Face cache)"
        )
    return load_hf_tokenizer(str(spec))
