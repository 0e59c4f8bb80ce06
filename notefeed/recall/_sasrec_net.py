"""The SASRec network: a causal pre-LN transformer over item ids with a tied output layer.

Index 0 is padding; item ``i`` of the catalogue is token ``i + 1``. Sequences are
right-padded, so position ``t`` holds the ``t``-th item kept (oldest first) and a causal mask
alone keeps every real position from seeing padding or the future.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SASRecNet", "SASRecEnsemble", "full_ce_loss", "sampled_ce_loss", "sampled_ce_loss_sparse"]


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRecNet(nn.Module):
    """``forward(seq (b, t) int64) -> (b, t, dim)`` hidden states; ``item_weight`` (n_items, dim)."""

    def __init__(self, n_items: int, dim: int, layers: int, heads: int, max_len: int, dropout: float,
                 init: bool = True) -> None:
        """``init=False``: the tables are left uninitialised (``torch.empty``), for a network
        whose state is loaded at once; drawing a million-note table only to overwrite it took
        about a second."""
        super().__init__()
        if dim % heads:
            raise ValueError(f"sequence/sasrec: 'dim' ({dim}) must be a multiple of 'heads' ({heads})")
        self.n_items, self.max_len = n_items, max_len
        empty = {} if init else {"_weight": torch.empty(n_items + 1, dim)}
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0, **empty)
        self.pos = nn.Embedding(max_len, dim, **({} if init else {"_weight": torch.empty(max_len, dim)}))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        if init:
            self.apply(_init)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.item.weight[1:]

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        t = seq.shape[1]
        x = self.drop(self.item(seq) + self.pos.weight[:t])
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x)


class SASRecEnsemble(nn.Module):
    """Networks trained apart (their own seeds), served as one: ``forward`` concatenates their
    hidden states and ``item_weight`` their item tables, so a dot product of the two (what
    recall, scoring and the ANN index compute) is the sum of the members' logits."""

    def __init__(self, members: list[SASRecNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("sequence/sasrec: an ensemble needs at least one network")
        self.members = nn.ModuleList(members)

    @property
    def item_weight(self) -> torch.Tensor:
        return torch.cat([m.item_weight for m in self.members], dim=-1)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(seq) for m in self.members], dim=-1)


def _init(m: nn.Module) -> None:
    # small-std init: with the tied output layer, unit-variance embeddings start with huge
    # logits and training stalls; std 0.02 trains several times faster
    if isinstance(m, nn.Embedding | nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
    if isinstance(m, nn.Embedding) and m.padding_idx is not None:
        with torch.no_grad():
            m.weight[m.padding_idx].zero_()


def full_ce_loss(h: torch.Tensor, target: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over the whole catalogue.

    ``h`` (n, dim) hidden states of real positions, ``target`` (n,) item indices (0-based),
    ``items`` (n_items, dim) output embeddings.
    """
    return F.cross_entropy((h @ items.T).float(), target)  # the softmax in float32 under autocast


def sampled_ce_loss(
    h: torch.Tensor, target: torch.Tensor, items: torch.Tensor, n_negatives: int, gen: torch.Generator
) -> torch.Tensor:
    """Softmax cross-entropy over the target and ``n_negatives`` uniform negatives shared by the batch.

    Shapes as :func:`full_ce_loss`; a negative equal to a row's target is masked out.
    """
    neg = _negatives(items.shape[0], n_negatives, gen, h.device)
    return _sampled_ce(h, target, items[target], items[neg], neg)


def sampled_ce_loss_sparse(
    h: torch.Tensor, target: torch.Tensor, table: torch.Tensor, n_negatives: int, gen: torch.Generator
) -> torch.Tensor:
    """:func:`sampled_ce_loss` (same negatives for the same ``gen``) with sparse gradients.

    ``table`` is the whole embedding table, padding row 0 included (``SASRecNet.item.weight``);
    the target and negative rows are looked up as ``nn.Embedding(sparse=True)`` does, so the
    table's gradient holds only the rows of the batch (for :class:`~notefeed.rank.optim.RowwiseAdam`).
    """
    neg = _negatives(table.shape[0] - 1, n_negatives, gen, h.device)
    pos = F.embedding(target + 1, table, sparse=True)
    return _sampled_ce(h, target, pos, F.embedding(neg + 1, table, sparse=True), neg)


def _negatives(n_items: int, n_negatives: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, n_items, (n_negatives,), generator=gen, device="cpu").to(device)


def _sampled_ce(
    h: torch.Tensor, target: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, neg: torch.Tensor
) -> torch.Tensor:
    pos_logit = (h * pos).sum(-1, keepdim=True)
    neg_logit = h @ negs.T
    neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1).float()
    return F.cross_entropy(logits, torch.zeros_like(target))
