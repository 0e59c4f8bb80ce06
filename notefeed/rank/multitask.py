"""The multi-task fine ranker (CGC by default; PLE, MMoE and single-task MLPs as options).

``FineRanker(config).fit(ds)`` builds request-time features and samples, trains with
pre-tensorised batches: sparse id gradients go to :class:`RowwiseAdam`, dense weights to Adam.
Binary tasks use BCE, ``dwell`` MSE on ``log1p`` seconds; a missing label (NaN) is masked out of
its task's loss, and a task with no labels at all contributes nothing. ``predict(batch)`` returns
``{task: (B,) float32}`` (probabilities; dwell in log1p seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from notefeed.data.dataset import Dataset
from notefeed.rank.checkpoint import load_state, read_config, save_checkpoint
from notefeed.rank.features import FeatureBuilder, FeatureConfig
from notefeed.rank.finenet import BATCH_KEYS, FineConfig, FineNet
from notefeed.rank.optim import RowwiseAdam, split_params
from notefeed.rank.samples import Samples, build_samples

__all__ = ["FineRanker", "to_tensors", "masked_loss", "positives"]


def to_tensors(feats: Mapping[str, np.ndarray], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Feature arrays -> tensors once (int64 ids, float32 dense); batches are then slices."""
    out = {}
    for k in BATCH_KEYS:
        if k not in feats:
            raise ValueError(f"batch: missing field '{k}'")
        a = np.asarray(feats[k])
        if k == "dense":
            if not np.isfinite(a).all():
                raise ValueError("batch: field 'dense' has NaN/inf")
            out[k] = torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)
        else:
            out[k] = torch.from_numpy(np.ascontiguousarray(a, np.int64)).to(device)
    return out


def masked_loss(out: torch.Tensor, y: torch.Tensor, tasks: tuple[str, ...],
                weights: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """out, y: (B, T); NaN in ``y`` = missing. Returns (weighted total, per-task mean loss)."""
    total = out.new_zeros(())
    parts: dict[str, float] = {}
    for t, task in enumerate(tasks):
        m = ~torch.isnan(y[:, t])
        if not bool(m.any()):
            continue
        o, target = out[m, t], y[m, t]
        if task == "dwell":
            loss = F.mse_loss(o, target)
        else:
            loss = F.binary_cross_entropy_with_logits(o, target)
        total = total + float(weights.get(task, 1.0)) * loss
        parts[task] = float(loss.detach())
    return total, parts


def positives(y: torch.Tensor, tasks: tuple[str, ...]) -> dict[str, float]:
    """Labels (n, T), NaN = missing -> {task: count of non-zero labels} (the evidence per task)."""
    nz = (torch.nan_to_num(y, nan=0.0) != 0).sum(0)
    return {t: float(nz[k]) for k, t in enumerate(tasks)}


class FineRanker:
    """Multi-task fine ranker; see the module docstring."""

    kind = "fine_ranker"

    def __init__(self, config: FineConfig | None = None, device: str = "cpu") -> None:
        self.cfg = config or FineConfig()
        self.device = torch.device(device)
        self.net: FineNet | None = None
        self.history: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return f"rank/{self.cfg.arch}"

    # ------------------------------------------------------------------ build / train
    def build(self, builder: FeatureBuilder) -> FineNet:
        self.cfg.vocab = builder.vocab()
        self.cfg.features = builder.cfg.to_dict()
        torch.manual_seed(self.cfg.seed)
        self.net = FineNet(self.cfg, torch.from_numpy(builder.item_cat), torch.from_numpy(builder.item_author),
                           torch.from_numpy(builder.item_tags)).to(self.device)
        return self.net

    def labels_tensor(self, samples: Samples) -> torch.Tensor:
        n = len(samples)
        cols = [samples.labels.get(t, np.full(n, np.nan, np.float32)) for t in self.cfg.tasks]
        return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32)).to(self.device)

    def fit(self, ds: Dataset, samples: Samples | None = None, builder: FeatureBuilder | None = None,
            epochs: int | None = None, progress: bool = False) -> FineRanker:
        """Train on ``samples`` (default: :func:`build_samples` of ``ds``)."""
        builder = builder or FeatureBuilder(ds, FeatureConfig(**_feature_kwargs(self.cfg.features)))
        samples = samples if samples is not None else build_samples(ds)
        feats = builder.features(samples.users, samples.items, samples.ts, samples.position, samples.surface)
        if self.net is None:
            self.build(builder)
        return self.fit_tensors(to_tensors(feats, self.device), self.labels_tensor(samples), epochs, progress)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        assert self.net is not None
        sp, de = split_params(self.net)
        opts: list[torch.optim.Optimizer] = [torch.optim.Adam(de, lr=self.cfg.lr)]
        if sp:
            opts.append(RowwiseAdam(sp, lr=self.cfg.sparse_lr))
        return opts

    def fit_tensors(self, x: dict[str, torch.Tensor], y: torch.Tensor, epochs: int | None = None,
                    progress: bool = False) -> FineRanker:
        """Train on pre-tensorised features ``x`` and labels ``y`` (n, T)."""
        assert self.net is not None, "call build() first"
        self.net.mt.task_grad = self.cfg.task_grad(positives(y, self.cfg.tasks))
        n = len(y)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        opts = self.optimizers()
        bs = self.cfg.batch_size
        n_ep = epochs if epochs is not None else self.cfg.epochs
        steps = range(n_ep * ((n + bs - 1) // bs))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(steps), desc=f"train {self.name}", unit="step")
        self.net.train()
        for ep in range(n_ep):
            perm = torch.randperm(n, generator=gen).to(self.device)
            agg: dict[str, float] = {}
            nb = 0
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                b = {k: v[idx] for k, v in x.items()}
                loss, parts = masked_loss(self.net(b), y[idx], self.cfg.tasks, self.cfg.task_weights)
                for o in opts:
                    o.zero_grad(set_to_none=True)
                if loss.requires_grad:
                    loss.backward()
                    for o in opts:
                        o.step()
                for k, v in parts.items():
                    agg[k] = agg.get(k, 0.0) + v
                nb += 1
                if bar is not None:
                    bar.update(1)
            self.history.append({"epoch": ep, **{k: v / max(nb, 1) for k, v in agg.items()}})
        if bar is not None:
            bar.close()
        self.net.eval()
        return self

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, batch: Mapping[str, np.ndarray] | Mapping[str, torch.Tensor],
                chunk: int = 65_536) -> dict[str, np.ndarray]:
        """``{task: (B,) float32}``: probabilities; ``dwell`` in log1p seconds."""
        if self.net is None:
            raise RuntimeError("FineRanker: not fitted or loaded")
        self.net.eval()
        x = batch if all(isinstance(v, torch.Tensor) for v in batch.values()) else to_tensors(batch, self.device)
        n = len(x["item"])
        outs = [self.net({k: v[s:s + chunk] for k, v in x.items()}) for s in range(0, max(n, 1), chunk)]
        out = torch.cat(outs).float().cpu()
        res = {}
        for t, task in enumerate(self.cfg.tasks):
            col = out[:, t]
            res[task] = (col if task == "dwell" else torch.sigmoid(col)).numpy().astype(np.float32)
        return res

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        if self.net is None:
            raise RuntimeError("FineRanker: nothing to save (not fitted)")
        return save_checkpoint(path, self.kind, self.cfg.to_dict(), self.net)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FineRanker:
        from notefeed.rank.checkpoint import CheckpointError

        raw = read_config(path, cls.kind, required=("tasks", "arch", "vocab"))
        try:
            cfg = FineConfig(**raw)
            v = cfg.vocab
            net_args = (torch.zeros(v["n_items"], dtype=torch.long), torch.zeros(v["n_items"], dtype=torch.long),
                        torch.zeros(v["n_items"], v["n_tags"], dtype=torch.long))
            self = cls(cfg, device)
            self.net = FineNet(cfg, *net_args)
        except (TypeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: config does not describe a fine ranker ({e})") from None
        load_state(path, self.net)
        self.net.to(self.device).eval()
        return self


def _feature_kwargs(d: Mapping[str, object]) -> dict[str, object]:
    out = dict(d)
    if "windows" in out:
        out["windows"] = tuple(out["windows"])  # type: ignore[arg-type]
    return out
