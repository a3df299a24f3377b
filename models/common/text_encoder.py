"""RoBERTa text encoder (transformers ``RobertaModel`` built from a config, never downloaded).

SgMg, ReferFormer, MUTR and SOC encode an expression with roberta-base: word features are
``last_hidden_state``, the sentence feature is ``pooler_output`` (tanh(dense(h[:, 0]))); each is
then projected to the transformer width by a :class:`FeatureResizer` (Linear + LayerNorm eps
1e-12 + dropout). Token ids and the attention mask go in directly: tokenisation belongs to the
pipeline (``pipeline/adapters/tokenize.py``).

RoBERTa's position ids are the cumulative count of non-pad tokens plus ``pad_token_id`` (real
tokens start at 2, pads get 1), so a batch of expressions padded to a common length gives every
expression the same features as alone. Checkpoints saved with transformers < 4.31 also carry
``embeddings.position_ids``: a derived buffer that converters drop (:data:`POSITION_IDS_SKIP`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import RobertaConfig, RobertaModel

from models.shared.checkpoint import SkipRule

POSITION_IDS_SKIP = SkipRule(
    r".*embeddings\.position_ids",
    "RoBERTa position ids: a derived buffer saved by transformers < 4.31, recomputed from the ids",
)


@dataclass(frozen=True)
class TextFeatures:
    """Encoded expressions.

    Attributes:
        words: B x L x D word features (pad positions hold values that must be masked).
        sentence: B x D sentence feature.
        pad_mask: B x L bool, True on padding.
    """

    words: torch.Tensor
    sentence: torch.Tensor
    pad_mask: torch.Tensor


class RobertaTextEncoder(nn.Module):
    """A RoBERTa encoder with pooler; defaults are roberta-base.

    Args:
        vocab_size, hidden_size, num_layers, num_heads, intermediate_size,
        max_position_embeddings, type_vocab_size, layer_norm_eps, pad_token_id, bos_token_id,
        eos_token_id: the RobertaConfig fields.
        dropout: hidden and attention dropout (0.1 in roberta-base).
        attn_implementation: ``"eager"`` (what parity uses) or ``"sdpa"``.
        frozen: no gradients and always in eval mode (the released RVOS models freeze it).
        sentence_pooling: ``"pooler"`` (RoBERTa's ``pooler_output``, the released models) or
            ``"mean"`` (the mean of the real tokens' features; no pooler layer). A RoBERTa
            trained from scratch keeps a nearly constant ``<s>`` state (cosine > 0.9999 between
            different sentences after 1500 steps on the synthetic benchmark), so its pooler
            cannot tell sentences apart; the tiny models use ``"mean"``.

    Attributes:
        model: the transformers ``RobertaModel``; its parameter names are roberta-base's.
    """

    def __init__(
        self,
        *,
        vocab_size: int = 50265,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 514,
        type_vocab_size: int = 1,
        layer_norm_eps: float = 1e-5,
        pad_token_id: int = 1,
        bos_token_id: int = 0,
        eos_token_id: int = 2,
        dropout: float = 0.1,
        attn_implementation: str = "eager",
        frozen: bool = True,
        sentence_pooling: str = "pooler",
    ) -> None:
        super().__init__()
        if sentence_pooling not in ("pooler", "mean"):
            raise ValueError(
                f"sentence_pooling must be 'pooler' or 'mean', got {sentence_pooling!r}"
            )
        config = RobertaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            type_vocab_size=type_vocab_size,
            layer_norm_eps=layer_norm_eps,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            hidden_act="gelu",
        )
        config._attn_implementation = attn_implementation
        self.sentence_pooling = sentence_pooling
        self.model = RobertaModel(config, add_pooling_layer=sentence_pooling == "pooler")
        self.hidden_size = hidden_size
        self.frozen = frozen
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> RobertaTextEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """Encode a batch of expressions.

        Args:
            input_ids: B x L int64.
            attention_mask: B x L int (1 on real tokens).

        Returns:
            :class:`TextFeatures` with D = ``hidden_size``.
        """
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask "
                f"{tuple(attention_mask.shape)} must both be B x L"
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        words = out.last_hidden_state
        if self.sentence_pooling == "pooler":
            sentence = out.pooler_output
        else:
            weights = attention_mask.to(words.dtype)[..., None]
            sentence = (words * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextFeatures(words, sentence, attention_mask.ne(1))


class FeatureResizer(nn.Module):
    """Linear -> LayerNorm (eps 1e-12) -> dropout: text features to the transformer width.

    Args:
        in_dim: input channels (768 for roberta-base).
        out_dim: output channels (256).
        dropout: after the norm (0.1 in the released models).
        layer_norm: whether to normalise.
    """

    def __init__(
        self, in_dim: int, out_dim: int, dropout: float = 0.1, layer_norm: bool = True
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.layer_norm = nn.LayerNorm(out_dim, eps=1e-12) if layer_norm else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """... x in_dim -> ... x out_dim."""
        x = self.fc(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.dropout(x)
