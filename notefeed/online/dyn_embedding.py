"""Growing the fine ranker's id tables in place, optimiser state included.

The online trainer meets users and notes that did not exist when the ranker was built. Instead
of a fixed table size (or hashing ids into buckets, which makes unrelated ids share a row), the
id tables grow: :func:`grow_fine_net` replaces every ``nn.Embedding`` whose vocabulary grew by
a bigger one whose first rows are the old rows, unchanged, and whose new rows are drawn with the
table's initial scale. The item side-info buffers (category, author, tags) are extended too, and
the optimisers' per-row state (Adam moments, row-wise step counts) is padded with zeros, so a
grown row starts exactly like a fresh row and old rows keep their history. Tag and user-attribute
tables stay hashed (``hash_buckets`` rows): they are a fixed hash space by design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["grow_fine_net", "GROWABLE"]

#: (module attribute, vocab key, init std) of the tables that grow with the catalogue
GROWABLE: tuple[tuple[str, str, float], ...] = (
    ("user_emb", "n_users", 0.01),
    ("item_emb", "n_items", 0.01),
    ("author_emb", "n_authors", 0.05),
    ("cat_emb", "n_cats", 0.1),
)


def _pad_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` (m, ...) -> (n, ...) with zero rows appended (n >= m)."""
    extra = torch.zeros((n - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    return torch.cat([t, extra])


def _swap_param(opts: Sequence[torch.optim.Optimizer], old: nn.Parameter, new: nn.Parameter) -> None:
    """Point every optimiser holding ``old`` at ``new``; per-row state is zero-padded."""
    n_old, n_new = old.shape[0], new.shape[0]
    for opt in opts:
        for group in opt.param_groups:
            for k, p in enumerate(group["params"]):
                if p is old:
                    group["params"][k] = new
        if old in opt.state:
            st = opt.state.pop(old)
            opt.state[new] = {key: (_pad_rows(v, n_new) if isinstance(v, torch.Tensor) and v.ndim >= 1
                                    and v.shape[0] == n_old else v) for key, v in st.items()}


def grow_fine_net(net: nn.Module, vocab: Mapping[str, int], item_cat: torch.Tensor, item_author: torch.Tensor,
                  item_tags: torch.Tensor, opts: Sequence[torch.optim.Optimizer] = (),
                  seed: int = 0) -> list[str]:
    """Grow ``net``'s id tables to ``vocab`` sizes and replace its item side-info buffers.

    ``item_cat``/``item_author`` (n_items,), ``item_tags`` (n_items, n_tags): the full new
    buffers (padding row 0 included). Tables never shrink: a smaller size raises. Returns the
    names of the tables that grew.
    """
    gen = torch.Generator().manual_seed(seed)
    grown = []
    for attr, key, std in GROWABLE:
        old: nn.Embedding = getattr(net, attr)
        n_old, n_new = old.num_embeddings, int(vocab[key])
        if n_new < n_old:
            raise ValueError(f"grow_fine_net: vocab '{key}' shrank from {n_old} to {n_new}")
        if n_new == n_old:
            continue
        new = nn.Embedding(n_new, old.embedding_dim, padding_idx=old.padding_idx, sparse=old.sparse)
        with torch.no_grad():
            new.weight[:n_old] = old.weight
            new.weight[n_old:] = torch.randn(n_new - n_old, old.embedding_dim, generator=gen) * std
        new = new.to(old.weight.device)
        _swap_param(opts, old.weight, new.weight)
        setattr(net, attr, new)
        grown.append(attr)
    dev = net.item_cat.device
    if item_cat.shape[0] < net.item_cat.shape[0]:
        raise ValueError(f"grow_fine_net: field 'item_cat' has {item_cat.shape[0]} rows, the net {net.item_cat.shape[0]}")
    net.item_cat = item_cat.long().to(dev)
    net.item_author = item_author.long().to(dev)
    net.item_tags = item_tags.long().to(dev)
    return grown
