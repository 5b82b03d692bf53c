"""A BERT encoder in plain torch, with `transformers.BertModel`'s parameter names and arithmetic.

Why: importing `transformers`' BERT costs about 180 MB of resident memory in every process, a third of the
monitor's budget, for a model that is twelve standard layers. This module computes the same function
(post-LayerNorm BERT, exact GELU, additive padding mask) with the same state-dict keys, so weights move
between the two unchanged; `tests/test_target_model.py` checks the outputs agree with `BertModel`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


@dataclass(frozen=True)
class BertShape:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1


@dataclass(frozen=True)
class EncoderOutput:
    last_hidden_state: torch.Tensor


class _Embeddings(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(shape.vocab_size, shape.hidden_size)
        self.position_embeddings = nn.Embedding(shape.max_position_embeddings, shape.hidden_size)
        self.token_type_embeddings = nn.Embedding(shape.type_vocab_size, shape.hidden_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)  # noqa: N815 - BERT's name
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        hidden = embeds + self.position_embeddings(positions) + self.token_type_embeddings(types)
        return self.dropout(self.LayerNorm(hidden))


class _SelfAttention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.heads = shape.num_attention_heads
        self.query = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.key = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.value = nn.Linear(shape.hidden_size, shape.hidden_size)
        self.dropout = shape.dropout

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, width, size = hidden.shape

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, width, self.heads, size // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.query(hidden)),
            split(self.key(hidden)),
            split(self.value(hidden)),
            attn_mask=bias.to(hidden.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(batch, width, size)


class _Output(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual): BERT's post-LayerNorm sublayer output."""

    def __init__(self, shape: BertShape, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, shape.hidden_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)  # noqa: N815
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class _Attention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.self = _SelfAttention(shape)
        self.output = _Output(shape, shape.hidden_size)


class _Intermediate(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(shape.hidden_size, shape.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.attention = _Attention(shape)
        self.intermediate = _Intermediate(shape)
        self.output = _Output(shape, shape.intermediate_size)

    def forward(self, hidden: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        attended = self.attention.output(self.attention.self(hidden, bias), hidden)
        return self.output(F.gelu(self.intermediate.dense(attended)), attended)


class _Layers(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(shape) for _ in range(shape.num_hidden_layers))


class BertEncoder(nn.Module):
    """`BertModel(config, add_pooling_layer=False)` for inference and fine-tuning from `inputs_embeds`."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.embeddings = _Embeddings(shape)
        self.encoder = _Layers(shape)

    def forward(
        self,
        *,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> EncoderOutput:
        hidden = self.embeddings(inputs_embeds, position_ids, token_type_ids)
        # Padding keys get the most negative float, as BertModel's extended attention mask does.
        bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.encoder.layer:
            hidden = layer(hidden, bias)
        return EncoderOutput(hidden)
