"""The BERT text encoder, built from a configuration (no download, no files).

UNINEXT uses ``bert-base-uncased`` as ``BertModel(add_pooling_layer=False)`` and takes the last
hidden layer (MasterBin-IIAU/UNINEXT@5ab0386 ``models/deformable_detr/bert_model.py``). Its
checkpoint keys are ``text_encoder.body.model.*``; here the model sits at ``text_encoder.bert``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel

from models.uninext.spec import TextSpec


def bert_config(spec: TextSpec) -> BertConfig:
    """The transformers configuration for ``spec`` (bert-base-uncased for the defaults)."""
    return BertConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=spec.max_positions,
        type_vocab_size=spec.type_vocab_size,
        layer_norm_eps=spec.layer_norm_eps,
        pad_token_id=spec.pad_token_id,
    )


class BertTextEncoder(nn.Module):
    """Token ids -> contextual token features (BERT's last hidden layer)."""

    def __init__(self, spec: TextSpec) -> None:
        super().__init__()
        self.spec = spec
        self.bert = BertModel(bert_config(spec), add_pooling_layer=False)

    @property
    def hidden_size(self) -> int:
        return self.spec.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """E x L int64 ids and 0/1 mask -> E x L x hidden float features."""
        if input_ids.shape[-1] > self.spec.max_positions:
            raise ValueError(
                f"{input_ids.shape[-1]} tokens exceed BERT's {self.spec.max_positions} positions"
            )
        if int(input_ids.max()) >= self.spec.vocab_size or int(input_ids.min()) < 0:
            raise ValueError(f"token ids must lie in [0, {self.spec.vocab_size})")
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state
