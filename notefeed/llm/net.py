"""The built-in transformer: one stack, two attention modes.

Bidirectional with an ``[EMB]`` token first: its final state, projected and L2-normalised, is
the note embedding (NoteLLM compresses a note into one token the same way), and a linear head
on it classifies tags and category. Causal (the same weights, a triangular mask): a language
model with the output layer tied to the token embeddings, for ``generate``.

The layers' parameters are those of ``nn.TransformerEncoderLayer`` (pre-norm, GELU), so saved
models load unchanged, but the forward pass is our own (:func:`_layer`): one fused QKV
projection into ``scaled_dot_product_attention`` with a boolean mask, and dropout masks drawn
from NumPy's generator (:func:`fast_dropout`). On a CPU, PyTorch's module path spent a large
share of a training step drawing dropout masks element by element (``bernoulli_``: 17% alone)
and re-laying out the packed projections. In eval mode this path computes the module's function (to float
rounding, checked by a test against the module). In training it drops the residual and
feed-forward paths as the module does, but not the attention weights (the largest mask, and the
one that sends the fused attention kernel to its slow path).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NoteLMNet", "POOLS", "fast_dropout"]

POOLS = ("emb", "emb+mean", "emb+bow")


def fast_dropout(x: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    """Inverted dropout with the keep mask drawn from ``rng``'s raw 64-bit output, 16 bits an
    element (keep when >= round(p * 65536)): the same distribution as ``F.dropout`` to 1/65536,
    without its per-element draws. CPU tensors only (see :func:`_drop`)."""
    n = x.numel()
    bits = rng.bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]
    keep = torch.from_numpy(bits >= np.uint16(round(p * 65536))).view(x.shape)
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def _drop(x: torch.Tensor, p: float, rng: np.random.Generator | None) -> torch.Tensor:
    if rng is None or p <= 0:
        return x
    return fast_dropout(x, p, rng) if x.device.type == "cpu" else F.dropout(x, p, True)


def _layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, mask: torch.Tensor, heads: int,
           rng: np.random.Generator | None) -> torch.Tensor:
    """One pre-norm encoder layer over ``x`` (b, t, d) with ``mask`` (b or 1, 1, t or 1, t), True =
    may attend; ``rng`` None = no dropout. The function of ``layer(x)`` with ``norm_first=True``
    and GELU (attention weights are not dropped: only the residual and feed-forward paths are)."""
    b, t, d = x.shape
    a = layer.self_attn
    y = F.layer_norm(x, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    qkv = F.linear(y, a.in_proj_weight, a.in_proj_bias).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    h = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask).transpose(1, 2).reshape(b, t, d)
    x = x + _drop(F.linear(h, a.out_proj.weight, a.out_proj.bias), layer.dropout1.p, rng)
    y = F.layer_norm(x, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    y = _drop(F.gelu(F.linear(y, layer.linear1.weight, layer.linear1.bias)), layer.dropout.p, rng)
    return x + _drop(F.linear(y, layer.linear2.weight, layer.linear2.bias), layer.dropout2.p, rng)


class NoteLMNet(nn.Module):
    """Shapes: token ids (b, t) int64 with 0 = padding."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, max_len: int, n_tags: int,
                 n_cats: int, out_dim: int, dropout: float = 0.1, pool: str = "emb") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool: one of {', '.join(POOLS)}, got {pool!r}")
        self.max_len, self.pool, self.heads = max_len, pool, heads
        self.tok = nn.Embedding(vocab, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True,
                                           activation="gelu")
        self.stack = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)
        # "emb+mean": a second path from the mean of the tokens' states (SentenceBERT's pooling),
        # "emb+bow": from the mean of the input token embeddings (a fastText-like bag of words)
        self.mean_proj = nn.Linear(dim, out_dim) if pool != "emb" else None
        self.tag_head = nn.Linear(out_dim, max(1, n_tags))
        self.cat_head = nn.Linear(out_dim, max(1, n_cats))
        # learned contrastive temperature, as CLIP: logits = cos * exp(logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def _states(self, ids: torch.Tensor, causal: bool, tokens: torch.Tensor | None = None) -> torch.Tensor:
        t = ids.shape[1]
        x = (self.tok(ids) if tokens is None else tokens) + self.pos(torch.arange(t, device=ids.device))[None]
        mask = (ids != 0)[:, None, None, :]
        if causal:
            mask = mask & torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        # dropout's masks come from a NumPy generator seeded by one draw from torch's, so
        # torch.manual_seed still fixes a training run
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)))) if self.training else None
        for layer in self.stack.layers:
            x = _layer(layer, x, mask, self.heads, rng)
        return self.norm(x)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, t) ids starting with ``[EMB]`` -> (b, out_dim) unit vectors (before normalising: ``pooled``)."""
        return F.normalize(self.pooled(ids), dim=-1)

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        if self.mean_proj is None:
            return self.proj(self._states(ids, causal=False)[:, 0])
        e = self.tok(ids)
        h = self._states(ids, causal=False, tokens=e)
        keep = (ids != 0).float()
        keep[:, 0] = 0.0  # the [EMB] token itself
        src = h if self.pool == "emb+mean" else e
        mean = (src * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
        return self.proj(h[:, 0]) + self.mean_proj(mean)

    def lm_states(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, t) ids -> (b, t, dim) causal states (``@ tok.weight.T``: the next-token logits)."""
        return self._states(ids, causal=True)

    def lm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, t) ids -> (b, t, vocab) next-token logits (causal)."""
        return self.lm_states(ids) @ self.tok.weight.T
