"""The built-in transformer: one stack, two attention modes.

Bidirectional with an ``[EMB]`` token first: its final state, projected and L2-normalised, is
the note embedding (NoteLLM compresses a note into one token the same way), and a linear head
on it classifies tags and category. Causal (the same weights, a triangular mask): a language
model with the output layer tied to the token embeddings, for ``generate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NoteLMNet", "POOLS"]

POOLS = ("emb", "emb+mean", "emb+bow")


class NoteLMNet(nn.Module):
    """Shapes: token ids (b, t) int64 with 0 = padding."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, max_len: int, n_tags: int,
                 n_cats: int, out_dim: int, dropout: float = 0.1, pool: str = "emb") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool: one of {', '.join(POOLS)}, got {pool!r}")
        self.max_len, self.pool = max_len, pool
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
        mask = torch.ones(t, t, dtype=torch.bool, device=ids.device).triu(1) if causal else None
        h = self.stack(x, mask=mask, src_key_padding_mask=ids == 0, is_causal=causal)
        return self.norm(h)

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

    def lm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, t) ids -> (b, t, vocab) next-token logits (causal)."""
        return self._states(ids, causal=True) @ self.tok.weight.T
