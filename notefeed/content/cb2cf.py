"""CB2CF: learn to predict collaborative similarity from content alone.

Following the idea of Barkan et al., "CB2CF: a neural multiview content-to-collaborative
filtering model for completely cold item recommendations" (RecSys 2019), a twin network (one
shared MLP tower applied to both notes of a pair) maps content vectors into a space where the
cosine of two notes predicts whether users co-engage with them. Positive pairs are each note's
ItemCF cosine top neighbours (:func:`~notefeed.content.kernels.item_neighbours`, a small pure function,
so this module does not depend on the recall stage); negatives are uniform random notes. The
loss is binary cross-entropy on ``cos / temperature + bias + w * log1p(count of the second
note)``: co-engagement neighbours are mostly popular notes, and a candidate's popularity is
known at serving time even when the query note is brand new (``popularity=False`` drops it).

A new note with no interactions gets a collaborative-style vector from its content alone
(:meth:`CB2CF.transform`), which the feed can use for item-to-item recall and for related notes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from notefeed.content._common import ContentError, check_matrix, l2_normalise, load_artifact, save_artifact
from notefeed.content.fusion import GatedFusion
from notefeed.content.kernels import cooccurrence_pairs, item_neighbours, topk_cosine

__all__ = ["item_neighbours", "cooccurrence_pairs", "topk_cosine", "CB2CFConfig", "CB2CF"]

_KIND = "notefeed.content.CB2CF"


@dataclass
class CB2CFConfig:
    """Hyper-parameters of :class:`CB2CF` (saved with the model)."""

    out_dim: int = 64
    hidden: int = 256
    n_layers: int = 2  # hidden layers of the tower
    dropout: float = 0.1
    temperature: float = 0.1
    n_negatives: int = 4
    epochs: int = 8
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    k_pos: int = 10  # positive neighbours per item
    min_common: int = 2  # co-engaging users needed for a positive pair
    seed: int = 0
    text_dim: int = 0  # set by fit()
    image_dim: int = 0  # > 0: a GatedFusion over (text, image) feeds the tower
    #: learn a weight on the candidate's log-popularity: co-engagement neighbours are mostly
    #: popular notes, which unit vectors alone cannot express (the query needs no count)
    popularity: bool = True

    def __post_init__(self) -> None:
        for f in ("out_dim", "hidden", "n_layers", "epochs", "batch_size", "k_pos", "n_negatives"):
            if int(getattr(self, f)) < 1:
                raise ContentError(f"{f}: must be >= 1, got {getattr(self, f)}")
        if self.temperature <= 0:
            raise ContentError(f"temperature: must be > 0, got {self.temperature}")


class _Tower(nn.Module):
    """The shared tower: [GatedFusion] -> MLP -> unit vector."""

    def __init__(self, c: CB2CFConfig) -> None:
        super().__init__()
        self.fusion = GatedFusion(c.text_dim, c.image_dim, c.hidden) if c.image_dim > 0 else None
        layers: list[nn.Module] = []
        d = c.hidden if self.fusion is not None else c.text_dim
        for _ in range(c.n_layers):
            layers += [nn.Linear(d, c.hidden), nn.GELU(), nn.Dropout(c.dropout)]
            d = c.hidden
        layers.append(nn.Linear(d, c.out_dim))
        self.mlp = nn.Sequential(*layers)
        self.bias = nn.Parameter(torch.zeros(()))
        self.pop_weight = nn.Parameter(torch.zeros(()))

    def forward(self, text: torch.Tensor, image: torch.Tensor | None = None, has: torch.Tensor | None = None) -> torch.Tensor:
        h = text if self.fusion is None else self.fusion(text, image, has)
        return F.normalize(self.mlp(h), dim=-1)


class CB2CF:
    """Twin-tower content -> collaborative embedding model. ``fit`` / ``transform`` / ``similar_items``."""

    name = "content/cb2cf"

    def __init__(self, config: CB2CFConfig | None = None, **params: object) -> None:
        self.config = config or CB2CFConfig(**params)  # type: ignore[arg-type]
        self.tower: _Tower | None = None
        self.item_vectors_: np.ndarray | None = None  # (n_items, out_dim) of the fitted catalogue
        self.log_pop_: np.ndarray | None = None  # (n_items,) log1p(engaged users) of the catalogue
        self.losses_: list[float] = []

    # ------------------------------------------------------------------ inputs
    def _inputs(self, text: object, image: object, has_image: object) -> tuple[torch.Tensor, ...]:
        c = self.config
        t = check_matrix(text, "text", dim=c.text_dim or None)
        if c.image_dim > 0:
            if image is None:
                im = np.zeros((t.shape[0], c.image_dim), np.float32)
                has = np.zeros(t.shape[0], bool)
            else:
                im = check_matrix(image, "image", dim=c.image_dim, rows=t.shape[0])
                has = np.linalg.norm(im, axis=1) > 0 if has_image is None else np.asarray(has_image, bool)
                if has.shape != (t.shape[0],):
                    raise ContentError(f"has_image: expected shape ({t.shape[0]},), got {has.shape}")
            return torch.from_numpy(t), torch.from_numpy(l2_normalise(im)), torch.from_numpy(has)
        if image is not None:
            raise ContentError("image: this model was configured without images (image_dim=0)")
        return (torch.from_numpy(t),)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        text: np.ndarray,
        interactions: sp.spmatrix | None = None,
        *,
        pairs: np.ndarray | None = None,
        image: np.ndarray | None = None,
        has_image: np.ndarray | None = None,
        item_counts: np.ndarray | None = None,
        progress: bool = False,
    ) -> CB2CF:
        """Train on content vectors (n_items, d_t) and co-engagement pairs.

        Pairs come from ``interactions`` (user x item, via :func:`cooccurrence_pairs`) unless
        given directly as ``pairs`` ((m, 2) item indices). ``item_counts`` (n_items,) engaged
        users per item, for the popularity term, default: from ``interactions``, else zeros.
        """
        c = self.config
        t = check_matrix(text, "text")
        n = t.shape[0]
        c.text_dim = t.shape[1]
        if image is not None and c.image_dim == 0:
            c.image_dim = int(np.asarray(image).shape[1]) if np.asarray(image).ndim == 2 else 0
        if pairs is None:
            if interactions is None:
                raise ContentError("interactions: give interactions or pairs")
            if interactions.shape[1] != n:
                raise ContentError(f"interactions: has {interactions.shape[1]} items, text has {n} rows")
            pairs, _ = cooccurrence_pairs(interactions, k=c.k_pos, min_common=c.min_common)
        if item_counts is None:
            if interactions is not None:
                b = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
                b.data[:] = 1.0
                item_counts = np.asarray(b.sum(axis=0)).ravel()
            else:
                item_counts = np.zeros(n, np.float32)
        cnt = np.asarray(item_counts, dtype=np.float64)
        if cnt.shape != (n,) or not np.isfinite(cnt).all() or (cnt < 0).any():
            raise ContentError(f"item_counts: expected ({n},) non-negative finite counts, got shape {cnt.shape}")
        self.log_pop_ = np.log1p(cnt).astype(np.float32)
        pairs = np.asarray(pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ContentError(f"pairs: expected shape (m, 2), got {pairs.shape}")
        if len(pairs) == 0:
            raise ContentError("pairs: no positive pairs (too few co-engagements; lower min_common?)")
        if pairs.min() < 0 or pairs.max() >= n:
            raise ContentError(f"pairs: item index out of range [0, {n})")
        inputs = self._inputs(t, image, has_image)
        log_pop = torch.from_numpy(self.log_pop_)

        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        self.tower = _Tower(c)
        opt = torch.optim.AdamW(self.tower.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps_per_epoch = max(1, int(np.ceil(len(pairs) / c.batch_size)))
        bar = tqdm(total=c.epochs * steps_per_epoch, desc="cb2cf", disable=not progress, leave=False)
        self.losses_ = []
        self.tower.train()
        for _ in range(c.epochs):
            perm = rng.permutation(len(pairs))
            total = 0.0
            for s in range(steps_per_epoch):
                b = pairs[perm[s * c.batch_size : (s + 1) * c.batch_size]]
                neg = rng.integers(0, n, size=(len(b), c.n_negatives))
                loss = self._loss(inputs, b, neg, log_pop)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                bar.update(1)
            self.losses_.append(total / steps_per_epoch)
            bar.set_postfix(loss=f"{self.losses_[-1]:.4f}")
        bar.close()
        self.tower.eval()
        self.item_vectors_ = self._encode(inputs)
        return self

    def _loss(
        self, inputs: tuple[torch.Tensor, ...], b: np.ndarray, neg: np.ndarray, log_pop: torch.Tensor
    ) -> torch.Tensor:
        assert self.tower is not None
        c = self.config
        idx = torch.from_numpy(np.concatenate([b[:, 0], b[:, 1], neg.ravel()]))
        z = self.tower(*(x[idx] for x in inputs))
        m = len(b)
        za, zp, zn = z[:m], z[m : 2 * m], z[2 * m :].view(m, c.n_negatives, -1)
        pos = (za * zp).sum(-1) / c.temperature + self.tower.bias
        negl = (za.unsqueeze(1) * zn).sum(-1) / c.temperature + self.tower.bias
        if c.popularity:
            pos = pos + self.tower.pop_weight * log_pop[torch.from_numpy(b[:, 1])]
            negl = negl + self.tower.pop_weight * log_pop[torch.from_numpy(neg)]
        # each class averaged separately, so one positive weighs as much as its n_negatives
        lp = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        ln = F.binary_cross_entropy_with_logits(negl, torch.zeros_like(negl))
        return 0.5 * (lp + ln)

    @torch.no_grad()
    def _encode(self, inputs: tuple[torch.Tensor, ...], batch: int = 4096) -> np.ndarray:
        assert self.tower is not None
        n = inputs[0].shape[0]
        outs = [self.tower(*(x[i : i + batch] for x in inputs)).numpy() for i in range(0, n, batch)]
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, self.config.out_dim), np.float32)

    # ------------------------------------------------------------------ inference
    def transform(self, text: np.ndarray, image: np.ndarray | None = None, has_image: np.ndarray | None = None) -> np.ndarray:
        """Content of any notes (new ones included) -> (n, out_dim) unit vectors."""
        if self.tower is None:
            raise ContentError("CB2CF: call fit() or load() before transform()")
        self.tower.eval()
        return self._encode(self._inputs(text, image, has_image))

    def similarity(self, pairs: np.ndarray) -> np.ndarray:
        """Cosine in the learned space of catalogue item pairs (m, 2) -> (m,)."""
        v = self._vectors()
        p = np.asarray(pairs, dtype=np.int64)
        if p.ndim != 2 or p.shape[1] != 2 or (p.size and (p.min() < 0 or p.max() >= len(v))):
            raise ContentError(f"pairs: expected (m, 2) item indices in [0, {len(v)})")
        return (v[p[:, 0]] * v[p[:, 1]]).sum(axis=1)

    def neighbours(self, z: np.ndarray, k: int = 10, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Catalogue items most likely co-engaged with notes whose CB2CF vectors are ``z``.

        Score = cosine + ``temperature * pop_weight * log1p(count)`` of the candidate (the
        trained logit divided by 1/temperature; cosine alone when ``popularity`` is off).
        Shapes: z (q, out_dim), exclude (q,) item or -1 -> (items (q, k) int64, scores (q, k)).
        """
        v = self._vectors()
        q = check_matrix(z, "z", dim=v.shape[1])
        if not self.config.popularity or self.log_pop_ is None or self.tower is None:
            return topk_cosine(q, v, k, exclude)
        w = float(self.tower.pop_weight.detach()) * self.config.temperature
        s = q @ v.T + w * self.log_pop_[None, :]
        if exclude is not None:
            ok = np.asarray(exclude) >= 0
            s[np.flatnonzero(ok), np.asarray(exclude)[ok]] = -np.inf
        k = min(k, v.shape[0])
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ts = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-ts, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64), np.take_along_axis(ts, order, axis=1)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` catalogue items most likely co-engaged with ``item`` (itself excluded)."""
        v = self._vectors()
        if not isinstance(item, int | np.integer) or not 0 <= int(item) < len(v):
            raise ContentError(f"item: unknown item index {item!r} (catalogue has {len(v)})")
        idx, sc = self.neighbours(v[int(item)][None], k, exclude=np.array([int(item)]))
        return idx[0], sc[0]

    def _vectors(self) -> np.ndarray:
        if self.item_vectors_ is None:
            raise ContentError("CB2CF: call fit() or load() first")
        return self.item_vectors_

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        if self.tower is None or self.item_vectors_ is None:
            raise ContentError("CB2CF: nothing to save, call fit() first")
        tensors = {f"tower.{k}": v.detach().numpy() for k, v in self.tower.state_dict().items()}
        tensors["item_vectors"] = self.item_vectors_
        tensors["log_pop"] = self.log_pop_ if self.log_pop_ is not None else np.zeros(len(self.item_vectors_), np.float32)
        return save_artifact(folder, _KIND, {"config": asdict(self.config)}, tensors)

    @classmethod
    def load(cls, folder: str | Path) -> CB2CF:
        cfg, t = load_artifact(folder, _KIND, {"item_vectors": (-1, -1), "log_pop": (-1,)})
        try:
            config = CB2CFConfig(**cfg["config"])
        except (KeyError, TypeError) as e:
            raise ContentError(f"{Path(folder) / 'config.json'}: field 'config' is incomplete ({e})") from None
        model = cls(config)
        model.tower = _Tower(config)
        state = {k[len("tower.") :]: torch.from_numpy(v.copy()) for k, v in t.items() if k.startswith("tower.")}
        try:
            model.tower.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ContentError(f"{Path(folder) / 'weights.safetensors'}: weights do not match the config ({e})") from None
        model.tower.eval()
        if t["item_vectors"].shape[1] != config.out_dim:
            raise ContentError(f"{Path(folder) / 'weights.safetensors'}: item_vectors dimension != out_dim {config.out_dim}")
        model.item_vectors_ = t["item_vectors"].astype(np.float32)
        if t["log_pop"].shape[0] != model.item_vectors_.shape[0]:
            raise ContentError(f"{Path(folder) / 'weights.safetensors'}: log_pop and item_vectors differ in length")
        model.log_pop_ = t["log_pop"].astype(np.float32)
        return model
