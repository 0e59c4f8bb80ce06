"""The two-tower retrieval model (PyTorch): user tower and note tower, sampled softmax with logQ.

Note tower: item-id embedding + mean of hashed side tokens (tags, category, author, words),
then an MLP, L2-normalised. During training the id embedding is dropped with probability
``id_dropout`` so the side-only path (what a brand-new note has) learns to stand alone.
User tower: user-id embedding + hashed attribute tokens + mean-pooled history (the note
tower's input representation of each recent item), then an MLP, L2-normalised.

Loss: in-batch softmax over the batch's target notes, logits ``u.v / temperature - log q_j``
where ``q_j`` is note j's sampling probability (its frequency among training targets): the
logQ correction of Yi et al. (RecSys 2019), without which popular notes are over-penalised.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

__all__ = ["TwoTowerConfig", "TwoTowerModel", "train_two_tower", "save_model", "load_model", "log_q",
           "in_batch_softmax_loss"]


@dataclass
class TwoTowerConfig:
    n_users: int
    n_items: int
    dim: int = 64
    buckets: int = 1 << 15
    side_width: int = 32
    attr_width: int = 8
    hist_len: int = 20
    hist_side_width: int = 4
    temperature: float = 0.05
    id_dropout: float = 0.2
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 3e-3
    max_samples: int = 100_000
    seed: int = 0


class TwoTowerModel(nn.Module):
    def __init__(self, cfg: TwoTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.item_id = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)  # 0: unknown / new note
        self.user_id = nn.Embedding(cfg.n_users + 1, d, padding_idx=0)
        self.token = nn.Embedding(cfg.buckets + 1, d, padding_idx=0)  # side + attribute tokens
        self.item_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.user_mlp = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d))
        for emb in (self.item_id, self.user_id, self.token):
            nn.init.normal_(emb.weight, std=0.05)
            with torch.no_grad():
                emb.weight[0].zero_()

    def _bag(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean of non-pad token embeddings: (..., w) -> (..., d)."""
        e = self.token(tokens)
        n = (tokens > 0).sum(-1, keepdim=True).clamp(min=1)
        return e.sum(-2) / n

    def item_input(self, ids: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """ids (...,) (item index + 1, 0 = unknown), side (..., w) -> (..., d)."""
        return self.item_id(ids) + self._bag(side)

    def item_vec(self, ids: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """(b,), (b, w) -> (b, d) L2-normalised note vectors."""
        return F.normalize(self.item_mlp(self.item_input(ids, side)), dim=-1)

    def user_vec(
        self, uids: torch.Tensor, attrs: torch.Tensor, hist_ids: torch.Tensor, hist_side: torch.Tensor
    ) -> torch.Tensor:
        """uids (b,), attrs (b, a), hist_ids (b, L), hist_side (b, L, w) -> (b, d) L2-normalised."""
        # history items: id + their first few side tokens (tags/category/author come first);
        # the full bag per history item would dominate training cost for little gain
        h = self.item_input(hist_ids, hist_side[..., : self.cfg.hist_side_width])
        mask = (hist_ids > 0) | (hist_side[..., 0] > 0)
        pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        x = torch.cat([self.user_id(uids) + self._bag(attrs), pooled], dim=-1)
        return F.normalize(self.user_mlp(x), dim=-1)


def log_q(targets: np.ndarray, n: int) -> torch.Tensor:
    """(n,) log sampling probability of each item as a positive in ``targets`` (an item never
    seen counts once): the logQ correction of in-batch negatives, which are drawn that way."""
    freq = np.bincount(targets, minlength=n).astype(np.float64)
    return torch.tensor(np.log(np.maximum(freq, 1.0) / freq.sum()), dtype=torch.float32)


def in_batch_softmax_loss(qv: torch.Tensor, iv: torch.Tensor, targets: torch.Tensor, temperature: float,
                          logq: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy of row ``i`` of ``qv`` against every row of ``iv`` (its positive
    is row ``i``; the others are its negatives), scaled by ``temperature``, minus ``logq`` of
    the targets when given; the same target twice in a batch is not a negative of itself."""
    logits = qv @ iv.T / temperature
    if logq is not None:
        logits = logits - logq[targets].unsqueeze(0)
    dup = (targets.unsqueeze(0) == targets.unsqueeze(1)) & ~torch.eye(len(targets), dtype=torch.bool)
    logits = logits.masked_fill(dup, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(targets)))


def _samples(users: np.ndarray, items: np.ndarray, hist_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From a (user, item) log sorted by user then time: (user, target, history (n, L) with -1 pads)."""
    n = users.size
    hist = np.full((n, hist_len), -1, np.int64)
    start = np.r_[True, users[1:] != users[:-1]] if n else np.empty(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0)) if n else np.empty(0, np.int64)
    for lag in range(1, hist_len + 1):
        src = np.arange(n) - lag
        ok = src >= first
        hist[ok, hist_len - lag] = items[src[ok]]
    return users, items, hist


def train_two_tower(
    cfg: TwoTowerConfig,
    users: np.ndarray,
    items: np.ndarray,
    item_side: np.ndarray,
    user_attrs: np.ndarray,
    progress: bool = False,
) -> TwoTowerModel:
    """Train on a positive log (``users``, ``items`` (n,) sorted by user then time).

    ``item_side`` (n_items, side_width), ``user_attrs`` (n_users, attr_width) int64 token ids.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = TwoTowerModel(cfg)
    u, tgt, hist = _samples(np.asarray(users, np.int64), np.asarray(items, np.int64), cfg.hist_len)
    if u.size == 0:
        return model.eval()
    logq = log_q(tgt, cfg.n_items)
    side_t = torch.as_tensor(item_side, dtype=torch.long)
    attr_t = torch.as_tensor(user_attrs, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n = min(u.size, cfg.max_samples)
    steps = max(1, n // cfg.batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs * steps, desc="two-tower", unit="batch")
    model.train()
    for _ in range(cfg.epochs):
        perm = rng.permutation(u.size)[:n]
        for s in range(steps):
            b = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            bu = torch.as_tensor(u[b])
            bt = torch.as_tensor(tgt[b])
            bh = torch.as_tensor(hist[b])
            h_ids = (bh + 1).clamp(min=0)
            h_side = side_t[bh.clamp(min=0)] * (bh >= 0).unsqueeze(-1)
            ids = bt + 1
            drop = torch.rand(ids.shape) < cfg.id_dropout
            iv = model.item_vec(torch.where(drop, torch.zeros_like(ids), ids), side_t[bt])
            uv = model.user_vec(bu + 1, attr_t[bu], h_ids, h_side)
            loss = in_batch_softmax_loss(uv, iv, bt, cfg.temperature, logq)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar is not None:
        bar.close()
    return model.eval()


def save_model(model: TwoTowerModel, path: str | Path, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``path/model.safetensors`` (weights + ``extra`` tensors) and ``path/config.json``."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"extra.{k}": v.contiguous() for k, v in (extra or {}).items()})
    save_file(tensors, str(p / "model.safetensors"))
    (p / "config.json").write_text(json.dumps({"kind": "two-tower", **asdict(model.cfg)}, indent=2))


def load_model(path: str | Path) -> tuple[TwoTowerModel, dict[str, torch.Tensor]]:
    """Inverse of :func:`save_model`; a missing, corrupt or mismatched file raises ``ValueError``."""
    p = Path(path)
    try:
        raw = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"two-tower: cannot read {p / 'config.json'}: {e}") from e
    if raw.pop("kind", None) != "two-tower":
        raise ValueError(f"two-tower: {p / 'config.json'} is not a two-tower config (field 'kind')")
    try:
        cfg = TwoTowerConfig(**raw)
    except TypeError as e:
        raise ValueError(f"two-tower: bad config {p / 'config.json'}: {e}") from e
    try:
        tensors = load_file(str(p / "model.safetensors"))
    except Exception as e:  # safetensors raises several types on corrupt files
        raise ValueError(f"two-tower: cannot read {p / 'model.safetensors'}: {e}") from e
    model = TwoTowerModel(cfg)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"two-tower: weights do not match config in {p}: {e}") from e
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    return model.eval(), extra
