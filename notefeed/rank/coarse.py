"""Coarse ranker (pre-ranking): user vector . cached item vector + a small cross MLP.

Two towers: the user tower reads the user id, hashed attributes, the mean of the short behaviour
sequence and user counts; the item tower reads the note id, category, author, tags and the note's
engagement statistics. Item vectors are cached for the whole catalogue (:meth:`cache_items`), so
a request costs one user-tower pass plus a (k, d) gather, a dot product and a d -> 16 -> 1 MLP on
``u * v`` in numpy. Trained on the click label plus distillation towards the fine ranker's click
probability (``teacher``), so the coarse stage keeps what the fine stage would rank high.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from notefeed.rank.base import SCORERS
from notefeed.rank.features import DENSE_NAMES, FeatureBuilder
from notefeed.rank.layers import attach_id_tables, mlp
from notefeed.rank.optim import RowwiseAdam, split_params
from notefeed.recall.base import UserContext

__all__ = ["CoarseRanker", "CoarseNet", "USER_DENSE", "ITEM_DENSE"]

USER_DENSE = [DENSE_NAMES.index(n) for n in ("user_pos_log", "user_imp_log")]
ITEM_DENSE = [k for k, n in enumerate(DENSE_NAMES) if n.startswith("note_") or n in
              ("creator_followers_log", "small_creator")]


class CoarseNet(nn.Module):
    def __init__(self, vocab: Mapping[str, int], item_cat: torch.Tensor, item_author: torch.Tensor,
                 item_tags: torch.Tensor, d: int = 16, out: int = 16) -> None:
        super().__init__()
        attach_id_tables(self, vocab, d, sparse=True)
        for e in (self.user_emb, self.item_emb, self.author_emb, self.cat_emb, self.tag_emb, self.attr_emb):
            nn.init.normal_(e.weight, 0.0, 0.05)
        self.user_tower = mlp([3 * d + len(USER_DENSE), 32, out], last_act=False)
        self.item_tower = mlp([4 * d + len(ITEM_DENSE), 32, out], last_act=False)
        self.cross = mlp([out, 16, 1], last_act=False)
        self.register_buffer("item_cat", item_cat.long())
        self.register_buffer("item_author", item_author.long())
        self.register_buffer("item_tags", item_tags.long())

    def user_vec(self, b: Mapping[str, torch.Tensor]) -> torch.Tensor:
        seq = b["seq_items"]
        m = (seq > 0).float().unsqueeze(-1)
        pooled = ((self.item_emb(seq) + self.cat_emb(self.item_cat[seq])) * m).sum(1) / m.sum(1).clamp_min(1.0)
        x = torch.cat([self.user_emb(b["user"]), self.attr_emb(b["attrs"]), pooled, b["dense"][:, USER_DENSE]], 1)
        return self.user_tower(x)

    def item_vec(self, item: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.item_emb(item), self.cat_emb(self.item_cat[item]),
                       self.author_emb(self.item_author[item]), self.tag_emb(self.item_tags[item]),
                       dense[:, ITEM_DENSE]], 1)
        return self.item_tower(x)

    def forward(self, b: Mapping[str, torch.Tensor]) -> torch.Tensor:
        u, v = self.user_vec(b), self.item_vec(b["item"], b["dense"])
        return (u * v).sum(1) + self.cross(u * v).squeeze(1)


class CoarseRanker:
    """Pre-ranking model; ``select(ctx, items, keep)`` returns the ``keep`` best items."""

    name = "rank/coarse"

    def __init__(self, builder: FeatureBuilder, d: int = 16, lr: float = 3e-3, sparse_lr: float = 3e-2,
                 distill_weight: float = 1.0, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.builder = builder
        self.net = CoarseNet(builder.vocab(), torch.from_numpy(builder.item_cat),
                             torch.from_numpy(builder.item_author), torch.from_numpy(builder.item_tags), d)
        self.lr, self.sparse_lr, self.distill_weight = lr, sparse_lr, distill_weight
        self.item_cache: np.ndarray | None = None
        self._np: dict[str, np.ndarray] = {}

    def fit(self, x: Mapping[str, torch.Tensor], click: np.ndarray, teacher: np.ndarray | None = None,
            epochs: int = 2, batch_size: int = 4096, seed: int = 0) -> CoarseRanker:
        """``x`` pre-tensorised features, ``click`` (n,) labels (NaN masked), ``teacher`` (n,) the
        fine ranker's click probability for the same rows (distillation target)."""
        y = torch.from_numpy(np.asarray(click, np.float32))
        tt = None if teacher is None else torch.from_numpy(np.asarray(teacher, np.float32))
        sp, de = split_params(self.net)
        opts = [torch.optim.Adam(de, lr=self.lr), RowwiseAdam(sp, lr=self.sparse_lr)]
        gen = torch.Generator().manual_seed(seed)
        n = len(y)
        self.net.train()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                idx = perm[s:s + batch_size]
                logit = self.net({k: v[idx] for k, v in x.items()})
                yi = y[idx]
                m = ~torch.isnan(yi)
                loss = F.binary_cross_entropy_with_logits(logit[m], yi[m]) if bool(m.any()) else logit.sum() * 0
                if tt is not None:
                    loss = loss + self.distill_weight * F.binary_cross_entropy_with_logits(logit, tt[idx])
                for o in opts:
                    o.zero_grad(set_to_none=True)
                loss.backward()
                for o in opts:
                    o.step()
        self.net.eval()
        self.item_cache = None
        return self

    @torch.no_grad()
    def cache_items(self, ts: int | None = None, chunk: int = 65_536) -> np.ndarray:
        """(n_items, out) item vectors with note statistics as of ``ts`` (default: end of log)."""
        b = self.builder
        t = b.t_now if ts is None else ts
        vecs = []
        for s in range(0, b.n_items, chunk):
            items = np.arange(s, min(s + chunk, b.n_items))
            f = b.features(np.full(len(items), -1), items, np.full(len(items), t))
            vecs.append(self.net.item_vec(torch.from_numpy(f["item"]), torch.from_numpy(f["dense"])).numpy())
        self.item_cache = np.concatenate(vecs).astype(np.float32)
        lin = [m for m in self.net.cross if isinstance(m, nn.Linear)]
        self._np = {"w1": lin[0].weight.T.numpy().copy(), "b1": lin[0].bias.numpy().copy(),
                    "w2": lin[1].weight.T.numpy()[:, 0].copy(), "b2": lin[1].bias.numpy().copy()}
        return self.item_cache

    @torch.no_grad()
    def user_vector(self, ctx: UserContext) -> np.ndarray:
        b = self.builder
        # users added after the builder was made have no logged history here: treat as unknown
        u = -1 if ctx.user is None or not 0 <= int(ctx.user) < b.n_users else int(ctx.user)
        t = ctx.ts if ctx.ts > 0 else b.t_now
        f = b.features(np.array([u]), np.array([0]), np.array([t]))
        x = {k: torch.from_numpy(v) for k, v in f.items()}
        return self.net.user_vec(x).numpy()[0]

    def scores(self, ctx: UserContext, items: np.ndarray, cross: bool = True) -> np.ndarray:
        """(n,) float32 scores in input order (dot product, plus the cross MLP when ``cross``)."""
        if self.item_cache is None:
            self.cache_items()
        assert self.item_cache is not None
        items = np.asarray(items, np.int64)
        if len(items) and (items.min() < 0 or items.max() >= len(self.item_cache)):
            raise ValueError(f"{self.name}: field 'items' has indices outside 0..{len(self.item_cache) - 1}")
        uv = self.item_cache[items] * self.user_vector(ctx)
        s = uv.sum(1)
        if cross:
            p = self._np
            s = s + np.maximum(uv @ p["w1"] + p["b1"], 0.0) @ p["w2"] + p["b2"][0]
        return s.astype(np.float32)

    def score(self, ctx: UserContext, items: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": self.scores(ctx, items)}

    def select(self, ctx: UserContext, items: np.ndarray, keep: int, cross: bool = True) -> np.ndarray:
        """The ``keep`` highest-scoring of ``items`` (item indices, best first)."""
        items = np.asarray(items, np.int64)
        if keep >= len(items):
            s = self.scores(ctx, items, cross)
            return items[np.argsort(-s, kind="stable")]
        s = self.scores(ctx, items, cross)
        top = np.argpartition(-s, keep - 1)[:keep]
        return items[top[np.argsort(-s[top], kind="stable")]]

    def cascade(self, ctx: UserContext, items: np.ndarray, keeps: tuple[int, ...] = (5000, 500)) -> np.ndarray:
        """Dot product only down to ``keeps[0]``, then dot + cross MLP down to each next size."""
        out = np.asarray(items, np.int64)
        for k, keep in enumerate(keeps):
            out = self.select(ctx, out, keep, cross=k > 0)
        return out


@SCORERS.register("rank/coarse")
def _coarse_scorer(ranker: CoarseRanker) -> CoarseRanker:
    return ranker
